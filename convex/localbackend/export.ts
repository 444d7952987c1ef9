/**
 * A ZIP snapshot export of the current state, laid out like the one
 * `npx convex export` downloads (the real backend's crates/exports):
 *
 *   README.md
 *   _tables/documents.jsonl                {"name":"users","id":10001} per table, by table number
 *   _components/<name>/_tables/documents.jsonl
 *   <table>/documents.jsonl                one document per line, fields sorted
 *   <table>/generated_schema.jsonl
 *   _components/<name>/<table>/...         a component's tables
 *   _storage/documents.jsonl               only with includeStorage (empty here), per component
 *
 * Every component's `_tables` comes first, then the tables from smallest to
 * largest, then `_storage`. Two value formats:
 * - "uniform" (the current one): documents in the lossless export JSON
 *   (Int64 as a bare integer, every float with a decimal point or exponent,
 *   `$bytes` / `$float` objects) and `generated_schema.jsonl` is the line
 *   `"uniform"`;
 * - "legacy" (older exports): documents in clean JSON (Int64 as a decimal
 *   string, bytes as base64, NaN/Infinity as strings) and
 *   `generated_schema.jsonl` holds the table's shape as a JSON string, then
 *   `{"<_id>": <export context>}` for each document that needs one to decode
 *   (see shapes.ts).
 *
 * `wrapper` puts everything under one folder: the real exporter never does
 * that, but an export re-zipped by hand often has one and import accepts it.
 */
import type { Value } from "convex/values";
import type { CommitLog, Doc, TableRef } from "./commitlog.ts";
import { tableShape } from "./jsonschema.ts";
import { exportContext, formatShape, isAmbiguous } from "./shapes.ts";
import { writeValue } from "./values.ts";
import { writeZip, type ZipEntry } from "./zip.ts";

export type ExportFormat = "uniform" | "legacy";

export interface ExportOptions {
  format: ExportFormat;
  wrapper?: string;
  includeStorage?: boolean;
}

/** The real exporter's README.md (crates/exports zip_uploader.rs). */
export const README_MD_CONTENTS = `# Welcome to your Convex snapshot export!

This ZIP file contains a snapshot of the tables in your Convex deployment.

Documents for each table are listed as lines of JSON in
<table_name>/documents.jsonl files.

For details on the format and how to use this snapshot with npx convex import,
check out [the docs](https://docs.convex.dev/database/import-export/export) or
ask us in [Discord](http://convex.dev/community).
`;

/** "" -> "", "a" -> "_components/a/", "a/b" -> "_components/a/_components/b/". */
export function componentPrefix(component: string): string {
  return component === "" ? "" : component.split("/").map((name) => `_components/${name}/`).join("");
}

/** The export's files, in the order the real exporter writes them. */
export function snapshotEntries(log: CommitLog, components: readonly string[], options: ExportOptions): ZipEntry[] {
  const ts = log.readTs();
  const entries: ZipEntry[] = [{ name: "README.md", data: Buffer.from(README_MD_CONTENTS) }];
  for (const component of components) {
    const lines = log.tablesOf(component).map(({ table, number }) => `{"name":${JSON.stringify(table)},"id":${number}}\n`);
    entries.push({ name: `${componentPrefix(component)}_tables/documents.jsonl`, data: Buffer.from(lines.join("")) });
  }
  const tables: Array<{ ref: TableRef; documents: Buffer; schema: Buffer }> = [];
  for (const component of components) {
    for (const ref of log.tablesOf(component)) {
      tables.push({ ref, ...tableFiles(log, ref, ts, options.format) });
    }
  }
  // Small to large (stable: ties keep component and table-number order).
  tables.sort((a, b) => a.documents.length - b.documents.length);
  for (const { ref, documents, schema } of tables) {
    const prefix = `${componentPrefix(ref.component)}${ref.table}/`;
    entries.push({ name: `${prefix}documents.jsonl`, data: documents });
    entries.push({ name: `${prefix}generated_schema.jsonl`, data: schema });
  }
  if (options.includeStorage === true) {
    // File storage is not emulated: every component's _storage is empty.
    for (const component of components) {
      entries.push({ name: `${componentPrefix(component)}_storage/documents.jsonl`, data: Buffer.alloc(0) });
    }
  }
  const wrapper = options.wrapper;
  return wrapper === undefined ? entries : entries.map((e) => ({ ...e, name: `${wrapper}/${e.name}` }));
}

export function snapshotZip(log: CommitLog, components: readonly string[], options: ExportOptions): Buffer {
  return writeZip(snapshotEntries(log, components, options));
}

function tableFiles(
  log: CommitLog,
  ref: TableRef,
  ts: bigint,
  format: ExportFormat,
): { documents: Buffer; schema: Buffer } {
  const docs = [...log.documentsAt(ref, ts)].map(({ doc }) => doc);
  const lines = docs.map((doc) => `${writeValue(sorted(doc), format === "uniform" ? "export_json" : "json")}\n`);
  const documents = Buffer.from(lines.join(""));
  if (format === "uniform") {
    return { documents, schema: Buffer.from(`${JSON.stringify("uniform")}\n`) };
  }
  const shape = tableShape(log, ref, ts);
  const schemaLines = [`${JSON.stringify(formatShape(shape))}\n`];
  if (isAmbiguous([shape])) {
    for (const doc of docs) {
      const context = exportContext(doc, [shape]);
      if (context !== "infer") {
        schemaLines.push(`${JSON.stringify({ [doc._id as string]: context })}\n`);
      }
    }
  }
  return { documents, schema: Buffer.from(schemaLines.join("")) };
}

/** A document with its fields (and nested objects' fields) in name order, as Convex stores them. */
function sorted(value: Value): Value {
  if (Array.isArray(value)) {
    return value.map(sorted);
  }
  if (value !== null && typeof value === "object" && !(value instanceof ArrayBuffer)) {
    const out: Record<string, Value> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Doc)[key];
      if (v !== undefined) {
        out[key] = sorted(v);
      }
    }
    return out;
  }
  return value;
}

/** Checks `wrapper`: one or more plain folder names joined by "/". */
export function validWrapper(wrapper: string): boolean {
  return wrapper.split("/").every((part) => part !== "" && part !== "." && part !== ".." && !/[\\\0]/.test(part));
}
