/**
 * `GET /api/json_schemas`: a JSON Schema per table.
 *
 * The real backend derives these from the shapes of the stored documents,
 * narrowed by the schema. Here they come from the schema's validators alone
 * (a table without one gets an open object), which describes the same
 * documents with less detail about what is actually stored; see README.
 */
import { jsonToConvex } from "convex/values";
import { RawJson } from "./json.ts";
import { writeValue, type ValueFormat } from "./values.ts";

/** The JSON form of a Convex validator (`validator.json`). */
type ValidatorJson =
  | { type: "null" | "number" | "bigint" | "boolean" | "string" | "bytes" | "any" | "commitTs" }
  | { type: "literal"; value: unknown }
  | { type: "id"; tableName: string }
  | { type: "array"; value: ValidatorJson }
  | { type: "record"; keys: ValidatorJson; values: FieldJson }
  | { type: "object"; value: Record<string, FieldJson> }
  | { type: "union"; value: ValidatorJson[] };

interface FieldJson {
  fieldType: ValidatorJson;
  optional: boolean;
}

type JsonSchema = Record<string, unknown>;

const INT64 = (format: ValueFormat): JsonSchema =>
  format === "json"
    ? { type: "string", pattern: "^-?[0-9]+$" }
    : { type: "object", properties: { $integer: { type: "string" } }, required: ["$integer"] };

/** Schemas for `tables`; `documentTypes` maps a table to its validator JSON. */
export function tableJsonSchemas(
  tables: readonly string[],
  documentTypes: ReadonlyMap<string, unknown>,
  format: ValueFormat,
  deltaSchema: boolean,
): Record<string, JsonSchema> {
  const out: Record<string, JsonSchema> = {};
  for (const table of tables) {
    const documentType = documentTypes.get(table) as ValidatorJson | undefined;
    const schema: JsonSchema =
      documentType?.type === "object"
        ? toJsonSchema(documentType, format)
        : { type: "object", properties: {}, additionalProperties: true };
    const properties = schema.properties as Record<string, JsonSchema>;
    properties._id = { type: "string" };
    properties._creationTime = { type: "number" };
    schema.required = ["_creationTime", "_id", ...((schema.required as string[] | undefined) ?? [])];
    if (deltaSchema) {
      properties._table = { type: "string" };
      properties._component = { type: "string" };
      properties._ts = { type: "integer" };
      properties._deleted = { type: "boolean" };
    }
    out[table] = schema;
  }
  return out;
}

function toJsonSchema(v: ValidatorJson, format: ValueFormat): JsonSchema {
  switch (v.type) {
    case "null":
      return { type: "null" };
    case "number":
      // NaN and the infinities are strings in clean JSON, $float in encoded.
      return format === "json"
        ? { anyOf: [{ type: "number" }, { type: "string", enum: ["NaN", "Infinity", "-Infinity"] }] }
        : { anyOf: [{ type: "number" }, { type: "object", properties: { $float: { type: "string" } }, required: ["$float"] }] };
    case "bigint":
    case "commitTs":
      return INT64(format);
    case "boolean":
      return { type: "boolean" };
    case "string":
    case "id":
      return { type: "string" };
    case "bytes":
      return format === "json"
        ? { type: "string", contentEncoding: "base64" }
        : { type: "object", properties: { $bytes: { type: "string" } }, required: ["$bytes"] };
    case "any":
      return {};
    case "literal":
      return { const: new RawJson(writeValue(jsonToConvex(v.value as never), format)) };
    case "array":
      return { type: "array", items: toJsonSchema(v.value, format) };
    case "record":
      return { type: "object", additionalProperties: toJsonSchema(v.values.fieldType, format) };
    case "object": {
      const properties: Record<string, JsonSchema> = {};
      const required: string[] = [];
      for (const [name, field] of Object.entries(v.value)) {
        properties[name] = toJsonSchema(field.fieldType, format);
        if (!field.optional) {
          required.push(name);
        }
      }
      return { type: "object", properties, required, additionalProperties: false };
    }
    case "union":
      return { anyOf: v.value.map((member) => toJsonSchema(member, format)) };
  }
}
