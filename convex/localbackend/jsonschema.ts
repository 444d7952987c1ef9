/**
 * `GET /api/json_schemas`: a JSON Schema per table, built like the real
 * backend builds it: from the shape inferred from the documents the table
 * holds now (see shapes.ts), not from the schema's validators. An empty
 * table gets just `_id` and `_creationTime`.
 *
 * Output: `{"<table>": schema, ...}` over every component (a component's
 * table replaces an app table of the same name, as in the real flat map),
 * or with `byComponent=true`, `{"<component path>": {"<table>": schema}}`
 * with "" for the app. Each schema ends with `"$schema"` (draft-07); with
 * `deltaSchema=true` its `properties` also list `_table`, `_component`,
 * `_ts` and `_deleted` (not `required`).
 */
import type { CommitLog, TableRef } from "./commitlog.ts";
import {
  float64Schema,
  idSchema,
  jsonSchema,
  objectSchema,
  reduce,
  shapeOf,
  unionOf,
  type IdResolver,
  type Shape,
} from "./shapes.ts";
import type { ValueFormat } from "./values.ts";

type JsonSchema = Record<string, unknown>;

export const DRAFT_07 = "http://json-schema.org/draft-07/schema#";

/** Components in output order: the app (""), then the others by path. */
export function componentPaths(log: CommitLog, declared: Iterable<string>): string[] {
  const paths = new Set<string>([""]);
  for (const path of declared) paths.add(path);
  for (const { component } of log.tables()) paths.add(component);
  return [...paths].sort((a, b) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

export function tableJsonSchemas(
  log: CommitLog,
  components: readonly string[],
  options: { format: ValueFormat; deltaSchema: boolean; byComponent: boolean },
): Record<string, unknown> {
  const ts = log.readTs();
  const out: Record<string, unknown> = {};
  for (const component of components) {
    const target: Record<string, unknown> = options.byComponent ? {} : out;
    for (const ref of log.tablesOf(component)) {
      target[ref.table] = tableSchema(log, ref, ts, options.format, options.deltaSchema);
    }
    if (options.byComponent) {
      out[component] = target;
    }
  }
  return out;
}

/** The shape of a table's documents at `ts` (never, for an empty table). */
export function tableShape(log: CommitLog, ref: TableRef, ts: bigint): Shape {
  const ids = idResolver(log, ref.component);
  let shape: Shape = { k: "never" };
  let batch: Shape[] = [];
  for (const { doc } of log.documentsAt(ref, ts)) {
    batch.push(shapeOf(doc, ids));
    if (batch.length >= 512) {
      shape = unionOf([shape, ...batch]);
      batch = [];
    }
  }
  return batch.length > 0 ? unionOf([shape, ...batch]) : shape;
}

/** convex-test's ids are digits then the table name: an id of a table that exists. */
export function idResolver(log: CommitLog, component: string): IdResolver {
  return (s) => {
    const match = /^\d{5,}([A-Za-z_][A-Za-z0-9_]*)$/.exec(s);
    return match === null ? undefined : log.tableNumber({ component, table: match[1]! });
  };
}

function tableSchema(log: CommitLog, ref: TableRef, ts: bigint, format: ValueFormat, deltaSchema: boolean): JsonSchema {
  const names = new Map(log.tablesOf(ref.component).map((t) => [t.number, t.table]));
  const reduced = reduce(tableShape(log, ref, ts), (n) => names.get(n));
  const schema: JsonSchema =
    reduced.k === "object"
      ? (jsonSchema(reduced, format) as JsonSchema)
      : // An empty table (and, here, anything that is not an object).
        objectSchema({ _creationTime: float64Schema(false, format), _id: idSchema(ref.table) }, ["_creationTime", "_id"]);
  if (deltaSchema) {
    const properties = schema.properties as Record<string, unknown>;
    properties._table = { type: "string" };
    properties._component = { type: "string" };
    properties._ts = { type: "integer" };
    properties._deleted = { type: "boolean" };
  }
  schema.$schema = DRAFT_07;
  return schema;
}
