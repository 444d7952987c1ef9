/**
 * Convex values on the wire, as the real backend writes them.
 *
 * Two formats, chosen per request with `format`:
 * - `json` (clean JSON, lossy): Int64 as a decimal string, bytes as a base64
 *   string, NaN and the infinities as strings.
 * - `convex_encoded_json` (lossless): Int64 as `{"$integer": b64}`, bytes as
 *   `{"$bytes": b64}`, NaN/±Infinity/-0.0 as `{"$float": b64}` (8 bytes,
 *   little-endian).
 *
 * A third, `export_json` (lossless, "uniform": what ZIP snapshot exports
 * and `/api/v1/data/sync` use), is served by the streaming-export endpoints:
 * Int64 as a bare JSON integer, bytes as `{"$bytes": b64}`, NaN/±Infinity
 * as `{"$float": b64}`, every finite float (-0.0 included) as a number.
 *
 * In all, every Float64 is written with a decimal point or an exponent
 * (`1.0`, never `1`): clients, the official Python one among them, tell a
 * float from an integer by that. `JSON.stringify` cannot do it, hence this
 * writer.
 */
import { jsonToConvex, type Value } from "convex/values";

export type ValueFormat = "json" | "convex_encoded_json";

export const VALUE_FORMATS: readonly ValueFormat[] = ["json", "convex_encoded_json"];

/** What the streaming-export endpoints and the ZIP export write. */
export type ExportFormat = ValueFormat | "export_json";

export function isValueFormat(format: unknown): format is ValueFormat {
  return VALUE_FORMATS.includes(format as ValueFormat);
}

/** Args and other inputs are always Convex encoded JSON. */
export function decodeValue(json: unknown): Value {
  return jsonToConvex(json as Parameters<typeof jsonToConvex>[0]);
}

/** The JSON text of `value` in `format`. */
export function writeValue(value: Value | undefined, format: ExportFormat): string {
  if (value === undefined || value === null) {
    return "null";
  }
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return JSON.stringify(value);
    case "number":
      return writeFloat(value, format);
    case "bigint":
      return format === "json"
        ? JSON.stringify(value.toString())
        : format === "export_json"
          ? BigInt.asIntN(64, value).toString()
          : `{"$integer":${JSON.stringify(int64Base64(value))}}`;
    default:
      break;
  }
  if (value instanceof ArrayBuffer) {
    const b64 = JSON.stringify(Buffer.from(value).toString("base64"));
    return format === "json" ? b64 : `{"$bytes":${b64}}`;
  }
  if (Array.isArray(value)) {
    return `[${value.map((v) => writeValue(v, format)).join(",")}]`;
  }
  if (typeof value === "object") {
    return writeFields(value as Record<string, Value | undefined>, format);
  }
  throw new Error(`not a Convex value: ${String(value)}`);
}

/** An object's fields in `format` (fields set to `undefined` are absent). */
export function writeFields(
  fields: Record<string, Value | undefined>,
  format: ExportFormat,
): string {
  const parts: string[] = [];
  for (const [key, v] of Object.entries(fields)) {
    if (v !== undefined) {
      parts.push(`${JSON.stringify(key)}:${writeValue(v, format)}`);
    }
  }
  return `{${parts.join(",")}}`;
}

function writeFloat(n: number, format: ExportFormat): string {
  if (Number.isFinite(n) && !Object.is(n, -0)) {
    return floatText(n);
  }
  if (format === "export_json" && Object.is(n, -0)) {
    return "-0.0";
  }
  if (format !== "json") {
    return `{"$float":${JSON.stringify(float64Base64(n))}}`;
  }
  if (Object.is(n, -0)) {
    return "-0.0";
  }
  return JSON.stringify(Number.isNaN(n) ? "NaN" : n > 0 ? "Infinity" : "-Infinity");
}

/** Shortest round-trip digits, always readable as a float. */
export function floatText(n: number): string {
  const text = String(n);
  return /[.eE]/.test(text) ? text : `${text}.0`;
}

function int64Base64(n: bigint): string {
  const bytes = Buffer.alloc(8);
  bytes.writeBigInt64LE(BigInt.asIntN(64, n));
  return bytes.toString("base64");
}

function float64Base64(n: number): string {
  const bytes = Buffer.alloc(8);
  bytes.writeDoubleLE(n);
  return bytes.toString("base64");
}
