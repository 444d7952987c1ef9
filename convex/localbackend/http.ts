/**
 * Small HTTP helpers: the request-level error shape and body reading.
 *
 * A request-level failure is a non-2xx reply `{"code": ..., "message": ...}`,
 * as the real backend sends (a function that throws is not one: that is a
 * 200 with `"status": "error"`).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { BigJsonInteger, JsonSyntaxError, parseJson } from "./json.ts";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (code: string, message: string) => new HttpError(400, code, message);

/** Bodies above this are refused (Convex caps function arguments at 16 MiB). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      throw new HttpError(413, "PayloadTooLarge", `Request body is larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The JSON object body of a request. Like the real backend, it must be sent
 * as `Content-Type: application/json` (or `application/*+json`).
 */
export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  const contentType = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (contentType !== "application/json" && !/^application\/[^/]+\+json$/.test(contentType)) {
    throw badRequest("BadJsonBody", "Expected request with `Content-Type: application/json`");
  }
  const text = await readBody(req);
  let body: unknown;
  try {
    body = parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      throw badRequest("BadJsonBody", `Failed to parse the request body as JSON: ${e.message}`);
    }
    throw e;
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw badRequest(
      "BadJsonBody",
      "Failed to deserialize the JSON body into the target type: expected a JSON object",
    );
  }
  return body as Record<string, unknown>;
}

export function missingField(field: string): HttpError {
  return badRequest(
    "BadJsonBody",
    `Failed to deserialize the JSON body into the target type: missing field \`${field}\``,
  );
}

/** An optional int64 parameter (a timestamp) from a query string or body. */
export function int64Param(value: unknown, name: string, code: string): bigint | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  const text =
    value instanceof BigJsonInteger
      ? value.text
      : typeof value === "number" && Number.isSafeInteger(value)
        ? String(value)
        : typeof value === "string"
          ? value
          : undefined;
  if (text === undefined || !/^-?\d+$/.test(text)) {
    throw badRequest(code, `\`${name}\` must be an integer timestamp, got ${JSON.stringify(String(value))}`);
  }
  const n = BigInt(text);
  if (n < 0n || n >= 2n ** 63n) {
    throw badRequest(code, `\`${name}\` is out of range: ${text}`);
  }
  return n;
}

export function send(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = "application/json",
): void {
  res.writeHead(status, {
    "content-type": contentType,
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

export function sendError(res: ServerResponse, error: HttpError): void {
  send(res, error.status, JSON.stringify({ code: error.code, message: error.message }));
}
