/**
 * Shapes: the types the real backend infers from the documents a table holds
 * (its `shape_inference` crate), which is what `GET /api/json_schemas` and
 * the legacy ZIP export's `generated_schema.jsonl` describe. A schema's
 * validators play no part in either.
 *
 * This is a smaller version of that inference, with the same vocabulary and
 * printed form, and these simplifications (see README):
 * - a union holds at most 16 variants; past that, string literals widen to
 *   `field_name`, special floats to `float64`, objects merge into one object
 *   with optional fields, and then anything else gives `unknown` (the real
 *   backend picks supertypes more finely);
 * - objects with the same set of fields merge field by field; objects with
 *   different fields stay separate variants (as the real inference does,
 *   having no structural subtyping);
 * - arrays merge into one array of the union of their elements;
 * - an object whose field names are not all identifiers, or with more than
 *   64 fields, is a `record<key, value>`.
 *
 * On top of shapes: the "reduced" shapes json_schemas prints (objects in a
 * union merged into one object with optional fields, literals read as
 * strings or ids), their JSON Schema, and the per-document export contexts
 * (`ExportContext`) that let a clean-JSON document round-trip.
 */
import type { Value } from "convex/values";
import type { ValueFormat } from "./values.ts";

export type Shape =
  | { k: "never" | "null" | "int64" | "-inf" | "inf" | "-0" | "NaN" | "normalfloat64" | "float64" }
  | { k: "boolean" | "field_name" | "string" | "bytes" | "unknown" }
  | { k: "literal"; value: string }
  | { k: "id"; table: number }
  | { k: "array"; element: Shape }
  | { k: "object"; fields: Map<string, Field> }
  | { k: "record"; key: Shape; value: Shape }
  | { k: "union"; variants: Shape[] };

export interface Field {
  shape: Shape;
  optional: boolean;
}

const MAX_UNION_LENGTH = 16;
const MAX_OBJECT_FIELDS = 64;

const NEVER: Shape = { k: "never" };

/** Order of the real `ShapeEnum` variants: unions print in this order. */
const ORDER = [
  "never", "null", "int64", "-inf", "inf", "-0", "NaN", "normalfloat64", "float64", "boolean",
  "literal", "id", "field_name", "string", "bytes", "array", "object", "record", "union", "unknown",
] as const;

const FLOATS = new Set(["-inf", "inf", "-0", "NaN", "normalfloat64", "float64"]);
const STRINGS = new Set(["literal", "id", "field_name", "string"]);

/** Convex identifiers: what string literal shapes and object shape fields may be. */
export function isIdentifier(s: string): boolean {
  return s.length <= 64 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) && !/^_+$/.test(s);
}

/** Convex field names: no leading `$`, non-control ASCII, at most 1024 characters. */
function isFieldName(s: string): boolean {
  return !s.startsWith("$") && s.length <= 1024 && /^[\x20-\x7e]*$/.test(s);
}

/** Tells the table number of a string that is a document id, if it is one. */
export type IdResolver = (s: string) => number | undefined;

/** The shape of one value. */
export function shapeOf(value: Value | undefined, ids: IdResolver): Shape {
  if (value === null || value === undefined) {
    return { k: "null" };
  }
  switch (typeof value) {
    case "bigint":
      return { k: "int64" };
    case "number":
      if (Number.isNaN(value)) return { k: "NaN" };
      if (value === Infinity) return { k: "inf" };
      if (value === -Infinity) return { k: "-inf" };
      if (Object.is(value, -0)) return { k: "-0" };
      return { k: "normalfloat64" };
    case "boolean":
      return { k: "boolean" };
    case "string": {
      if (isIdentifier(value)) return { k: "literal", value };
      const table = ids(value);
      if (table !== undefined) return { k: "id", table };
      return isFieldName(value) ? { k: "field_name" } : { k: "string" };
    }
    default:
      break;
  }
  if (value instanceof ArrayBuffer) {
    return { k: "bytes" };
  }
  if (Array.isArray(value)) {
    return { k: "array", element: unionOf(value.map((v) => shapeOf(v, ids))) };
  }
  const entries = Object.entries(value as Record<string, Value | undefined>).filter(([, v]) => v !== undefined);
  if (entries.length <= MAX_OBJECT_FIELDS && entries.every(([key]) => isIdentifier(key))) {
    const fields = new Map<string, Field>();
    for (const [key, v] of entries.sort(([a], [b]) => compare(a, b))) {
      fields.set(key, { shape: shapeOf(v, ids), optional: false });
    }
    return { k: "object", fields };
  }
  return {
    k: "record",
    key: unionOf(entries.map(([key]) => shapeOf(key, ids))),
    value: unionOf(entries.map(([, v]) => shapeOf(v, ids))),
  };
}

function variantsOf(shape: Shape): Shape[] {
  return shape.k === "union" ? shape.variants : shape.k === "never" ? [] : [shape];
}

/** The union of `shapes`, kept within the union rules above. */
export function unionOf(shapes: readonly Shape[]): Shape {
  const all = shapes.flatMap(variantsOf);
  if (all.length === 0) return NEVER;
  if (all.length === 1) return all[0]!;
  if (all.some((s) => s.k === "unknown")) return { k: "unknown" };

  const singles = new Map<string, Shape>();
  const literals = new Map<string, Shape>();
  const ids = new Map<number, Shape>();
  const arrays: Shape[] = [];
  const records: Shape[] = [];
  const objects = new Map<string, Array<Extract<Shape, { k: "object" }>>>();
  for (const s of all) {
    if (s.k === "literal") literals.set(s.value, s);
    else if (s.k === "id") ids.set(s.table, s);
    else if (s.k === "array") arrays.push(s);
    else if (s.k === "record") records.push(s);
    else if (s.k === "object") {
      const signature = [...s.fields.keys()].join(",");
      objects.set(signature, [...(objects.get(signature) ?? []), s]);
    } else singles.set(s.k, s);
  }
  // Subtypes: float64 holds every float; string holds every string; a
  // field_name holds literals (identifiers) and ids (ours are field names).
  if (singles.has("float64")) for (const k of FLOATS) if (k !== "float64") singles.delete(k);
  if (singles.has("string")) {
    singles.delete("field_name");
    literals.clear();
    ids.clear();
  } else if (singles.has("field_name")) {
    literals.clear();
    ids.clear();
  }
  const merged = (): Shape[] => {
    const out: Shape[] = [...singles.values(), ...literals.values(), ...ids.values()];
    if (arrays.length > 0) {
      out.push({ k: "array", element: unionOf(arrays.map((a) => (a as { element: Shape }).element)) });
    }
    if (records.length > 0) {
      const rs = records as Array<{ key: Shape; value: Shape }>;
      out.push({ k: "record", key: unionOf(rs.map((r) => r.key)), value: unionOf(rs.map((r) => r.value)) });
    }
    for (const group of objects.values()) out.push(mergeObjects(group));
    return out;
  };
  let variants = merged();
  // Contract a union that grew too long, coarsest steps last.
  if (variants.length > MAX_UNION_LENGTH && literals.size > 0) {
    literals.clear();
    ids.clear();
    singles.delete("string");
    singles.set("field_name", { k: "field_name" });
    variants = merged();
  }
  if (variants.length > MAX_UNION_LENGTH && [...singles.keys()].some((k) => FLOATS.has(k))) {
    for (const k of FLOATS) singles.delete(k);
    singles.set("float64", { k: "float64" });
    variants = merged();
  }
  if (variants.length > MAX_UNION_LENGTH && objects.size > 1) {
    const everything = [...objects.values()].flat();
    objects.clear();
    objects.set("*", [mergeObjects(everything) as Extract<Shape, { k: "object" }>]);
    variants = merged();
  }
  if (variants.length > MAX_UNION_LENGTH) return { k: "unknown" };
  if (variants.length === 1) return variants[0]!;
  return { k: "union", variants: variants.sort(compareShapes) };
}

/** One object holding every field of `objects`; optional where some lack it. */
function mergeObjects(objects: ReadonlyArray<Extract<Shape, { k: "object" }>>): Shape {
  if (objects.length === 1) return objects[0]!;
  const names = new Set<string>();
  for (const o of objects) for (const name of o.fields.keys()) names.add(name);
  const fields = new Map<string, Field>();
  for (const name of [...names].sort(compare)) {
    const present = objects.map((o) => o.fields.get(name)).filter((f): f is Field => f !== undefined);
    fields.set(name, {
      shape: unionOf(present.map((f) => f.shape)),
      optional: present.length < objects.length || present.some((f) => f.optional),
    });
  }
  return { k: "object", fields };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareShapes(a: Shape, b: Shape): number {
  const byKind = ORDER.indexOf(a.k) - ORDER.indexOf(b.k);
  if (byKind !== 0) return byKind;
  if (a.k === "id" && b.k === "id") return a.table - b.table;
  return compare(formatShape(a), formatShape(b));
}

/** The printed form of a shape (the real `Display`, which `FromStr` reads back). */
export function formatShape(shape: Shape): string {
  switch (shape.k) {
    case "literal":
      return JSON.stringify(shape.value);
    case "id":
      return `id<${shape.table}>`;
    case "array":
      return `array<${formatShape(shape.element)}>`;
    case "record":
      return `record<${formatShape(shape.key)}, ${formatShape(shape.value)}>`;
    case "object":
      return `{${[...shape.fields].map(([name, f]) => `${JSON.stringify(name)}${f.optional ? "?" : ""}: ${formatShape(f.shape)}`).join(", ")}}`;
    case "union":
      return shape.variants.map(formatShape).join(" | ");
    default:
      return shape.k;
  }
}

// ---------------------------------------------------------------------------
// Export contexts: how a clean-JSON document is decoded back (legacy ZIPs).

/** An `ExportContext` in its JSON form: "infer" is left out by the caller. */
export type ExportContext =
  | "infer"
  | "int64"
  | "float64inf"
  | "bytes"
  | { $float64NaN: string }
  | ExportContext[]
  | { [field: string]: ExportContext };

type StringContext = "infer" | "int64" | "float64inf" | "bytes" | "nan";

function unionOptions(options: readonly Shape[]): Shape[] {
  return options.flatMap((s) => (s.k === "union" ? s.variants : [s]));
}

function distinct(shapes: Shape[]): Shape[] {
  const seen = new Map<string, Shape>();
  for (const s of shapes) seen.set(formatShape(s), s);
  return [...seen.values()];
}

function arrayElements(options: readonly Shape[]): Shape[] {
  return distinct(
    options.flatMap((s) =>
      s.k === "array" ? [s.element] : s.k === "union" ? arrayElements(s.variants) : s.k === "unknown" ? [s] : [],
    ),
  );
}

function objectField(options: readonly Shape[], field: string): Shape[] {
  return distinct(
    options.flatMap((s) => {
      if (s.k === "object") {
        const f = isIdentifier(field) ? s.fields.get(field) : undefined;
        return f === undefined ? [] : [f.shape];
      }
      if (s.k === "union") return objectField(s.variants, field);
      if (s.k === "record") return [s.value];
      return s.k === "unknown" ? [s] : [];
    }),
  );
}

function specifiedFields(options: readonly Shape[]): Set<string> {
  const out = new Set<string>();
  for (const s of unionOptions(options)) if (s.k === "object") for (const name of s.fields.keys()) out.add(name);
  return out;
}

function unspecifiedField(options: readonly Shape[]): Shape[] {
  return distinct(
    unionOptions(options).flatMap((s) => (s.k === "record" ? [s.value] : s.k === "unknown" ? [s] : [])),
  );
}

/** The ways a value exported as a JSON string could be meant. */
function stringContexts(options: readonly Shape[]): Set<StringContext> {
  const out = new Set<StringContext>();
  for (const s of unionOptions(options)) {
    if (s.k === "int64") out.add("int64");
    else if (s.k === "-inf" || s.k === "inf") out.add("float64inf");
    else if (s.k === "NaN" || s.k === "float64") {
      out.add("nan");
      out.add("float64inf");
    } else if (STRINGS.has(s.k)) out.add("infer");
    else if (s.k === "bytes") out.add("bytes");
    else if (s.k === "unknown") for (const c of ["infer", "float64inf", "nan", "int64", "bytes"] as const) out.add(c);
  }
  return out;
}

function inferredForString(options: readonly Shape[]): boolean {
  return stringContexts(options).size === 1;
}

/** Whether some value of these shapes needs a context to decode. */
export function isAmbiguous(options: readonly Shape[]): boolean {
  if (options.length === 0) return false;
  if (stringContexts(options).size >= 2) return true;
  if (isAmbiguous(arrayElements(options))) return true;
  if (unionOptions(options).some((s) => s.k === "unknown")) return true;
  if (isAmbiguous(unspecifiedField(options))) return true;
  for (const field of specifiedFields(options)) {
    if (isAmbiguous(objectField(options, field))) return true;
  }
  return false;
}

/** The export context of `value` under `options` ("infer" when none is needed). */
export function exportContext(value: Value | undefined, options: readonly Shape[]): ExportContext {
  if (!isAmbiguous(options)) return "infer";
  if (value === null || value === undefined) return "infer";
  switch (typeof value) {
    case "bigint":
      return inferredForString(options) ? "infer" : "int64";
    case "number":
      if (Number.isNaN(value)) {
        const bytes = Buffer.alloc(8);
        bytes.writeDoubleLE(value);
        return { $float64NaN: bytes.toString("base64") };
      }
      if (!Number.isFinite(value)) return inferredForString(options) ? "infer" : "float64inf";
      return "infer";
    case "boolean":
    case "string":
      return "infer";
    default:
      break;
  }
  if (value instanceof ArrayBuffer) {
    return inferredForString(options) ? "infer" : "bytes";
  }
  if (Array.isArray(value)) {
    const elements = arrayElements(options);
    const contexts = value.map((v) => exportContext(v, elements));
    return contexts.every((c) => c === "infer") ? "infer" : contexts;
  }
  const out: { [field: string]: ExportContext } = {};
  for (const [field, v] of Object.entries(value as Record<string, Value | undefined>).sort(([a], [b]) => compare(a, b))) {
    if (v === undefined) continue;
    const context = exportContext(v, objectField(options, field));
    if (context !== "infer") out[field] = context;
  }
  return Object.keys(out).length === 0 ? "infer" : out;
}

// ---------------------------------------------------------------------------
// Reduced shapes and their JSON Schema (GET /api/json_schemas).

export type Reduced =
  | { k: "unknown" | "never" | "null" | "int64" | "boolean" | "string" | "bytes" }
  | { k: "id"; table: string; number: number }
  | { k: "float64"; special: boolean }
  | { k: "object"; fields: Map<string, { shape: Reduced; optional: boolean }> }
  | { k: "array"; element: Reduced }
  | { k: "record" }
  | { k: "union"; variants: Reduced[] };

const REDUCED_ORDER = [
  "unknown", "never", "id", "null", "int64", "float64", "boolean", "string", "bytes", "object", "array", "record", "union",
] as const;

/** Table number -> name, for the tables that exist. */
export type TableNames = (table: number) => string | undefined;

/** A shape as json_schemas sees it (the real `ReducedShape::from_type`). */
export function reduce(shape: Shape, tables: TableNames): Reduced {
  switch (shape.k) {
    case "never":
    case "null":
    case "int64":
    case "boolean":
    case "bytes":
    case "unknown":
      return { k: shape.k };
    case "normalfloat64":
      return { k: "float64", special: false };
    case "-inf":
    case "inf":
    case "-0":
    case "NaN":
    case "float64":
      return { k: "float64", special: true };
    case "literal":
    case "field_name":
    case "string":
      return { k: "string" };
    case "id": {
      const name = tables(shape.table);
      return name === undefined ? { k: "string" } : { k: "id", table: name, number: shape.table };
    }
    case "array":
      return { k: "array", element: reduce(shape.element, tables) };
    case "record":
      return { k: "record" };
    case "object": {
      const fields = new Map<string, { shape: Reduced; optional: boolean }>();
      for (const [name, f] of shape.fields) fields.set(name, { shape: reduce(f.shape, tables), optional: f.optional });
      return { k: "object", fields };
    }
    case "union":
      return reduceUnion(shape.variants, tables);
  }
}

/** Objects in a union become one object with optional fields; floats merge. */
function reduceUnion(variants: readonly Shape[], tables: TableNames): Reduced {
  const objects = variants.filter((s): s is Extract<Shape, { k: "object" }> => s.k === "object");
  const out = new Map<string, Reduced>();
  let special: boolean | undefined;
  for (const s of variants) {
    if (s.k === "object") continue;
    const r = reduce(s, tables);
    if (r.k === "float64") {
      special = (special ?? false) || r.special;
    } else {
      out.set(JSON.stringify(reducedKey(r)), r);
    }
  }
  if (objects.length > 0) {
    const merged = mergeObjects(objects);
    out.set("object", reduce(merged, tables));
  }
  if (special !== undefined) out.set("float64", { k: "float64", special });
  const all = [...out.values()].sort(
    (a, b) =>
      REDUCED_ORDER.indexOf(a.k) - REDUCED_ORDER.indexOf(b.k) ||
      (a.k === "id" && b.k === "id" ? a.number - b.number : 0),
  );
  if (all.length === 0) return { k: "never" };
  if (all.length === 1) return all[0]!;
  return { k: "union", variants: all };
}

function reducedKey(r: Reduced): unknown {
  return r.k === "id" ? ["id", r.number] : r.k === "array" ? ["array", reducedKey(r.element)] : [r.k];
}

type JsonSchema = Record<string, unknown> | boolean;

/** The JSON Schema of a reduced shape, in `format` (the real `json_schemas` module). */
export function jsonSchema(r: Reduced, format: ValueFormat): JsonSchema {
  const encoded = format === "convex_encoded_json";
  switch (r.k) {
    case "unknown":
    case "record":
      return {};
    case "never":
      return false;
    case "id":
      return idSchema(r.table);
    case "null":
      return { type: "null" };
    case "int64":
      return encoded
        ? {
            $description: "int64",
            type: "object",
            properties: { $integer: { $description: "int64 -> little-endian -> base64", type: "string" } },
          }
        : { $description: "int64 represented as base10 string", type: "string" };
    case "float64":
      return float64Schema(r.special, format);
    case "boolean":
      return { type: "boolean" };
    case "string":
      return { type: "string" };
    case "bytes":
      return encoded
        ? { type: "object", $description: "base64 bytes", properties: { $bytes: { type: "string" } } }
        : { $description: "base64 bytes", type: "string" };
    case "array":
      return { type: "array", items: jsonSchema(r.element, format) };
    case "union":
      return { anyOf: r.variants.map((v) => jsonSchema(v, format)) };
    case "object": {
      const properties: Record<string, JsonSchema> = {};
      const required: string[] = [];
      for (const [name, f] of r.fields) {
        properties[name] = jsonSchema(f.shape, format);
        if (!f.optional) required.push(name);
      }
      return objectSchema(properties, required);
    }
  }
}

export function idSchema(table: string): Record<string, unknown> {
  return { $description: `Id(${table})`, type: "string" };
}

export function float64Schema(special: boolean, format: ValueFormat): Record<string, unknown> {
  if (!special) return { type: "number" };
  const other =
    format === "convex_encoded_json"
      ? {
          type: "object",
          $description: "-0, -inf, inf, or NaN",
          properties: { $float: { $description: "float64 -> little-endian -> base64", type: "string" } },
        }
      : { type: "string", $description: "-inf, inf, or NaN" };
  return { $description: "float64", anyOf: [{ type: "number" }, other] };
}

export function objectSchema(properties: Record<string, JsonSchema>, required: string[]): Record<string, unknown> {
  return { type: "object", properties, additionalProperties: false, required: [...required].sort(compare) };
}
