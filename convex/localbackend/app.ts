/**
 * The HTTP surface: Convex's public API routes, answered the way the real
 * backend answers them, plus test-only routes under `/_test/`.
 *
 *   GET  /version                       plain-text version
 *   POST /api/query|mutation|action     {path, args, format}
 *   POST /api/run/{module path}/{fn}    {args, format}
 *   GET  /api/json_schemas              admin
 *   GET|POST /api/list_snapshot         admin
 *   GET|POST /api/document_deltas       admin
 *   POST /_test/reset                   admin; not part of Convex
 *   POST /_test/retention               admin; not part of Convex
 *   POST /_test/fail_next_mutation      admin; not part of Convex (fault injection)
 *   POST /_test/export_zip              admin; not part of Convex (a ZIP snapshot export)
 *   POST /_test/streaming_export        admin; not part of Convex (turns streaming export off/on)
 *   POST /_test/json_schemas_error      admin; not part of Convex (json_schemas refuses with a code)
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { callerOf, requireAdmin, type AuthConfig, type Caller } from "./auth.ts";
import type { Backend, CallResult, JsonSchemasError } from "./backend.ts";
import { DELTAS_PAGE_LIMIT, SNAPSHOT_PAGE_LIMIT, type Doc, type TableRef } from "./commitlog.ts";
import {
  badRequest,
  HttpError,
  int64Param,
  missingField,
  readJsonObject,
  send,
  sendError,
} from "./http.ts";
import { RawJson, stringify } from "./json.ts";
import { snapshotZip, validWrapper } from "./export.ts";
import { componentPaths, tableJsonSchemas } from "./jsonschema.ts";
import { newScope, requestScope } from "./scope.ts";
import { isValueFormat, writeFields, writeValue, type ExportFormat, type ValueFormat } from "./values.ts";

/** What `GET /version` says: which stand-in this is, and on what. */
export const VERSION = "convex-localbackend (convex-test 0.0.60, convex 1.48.0)";

type Params = Record<string, unknown>;

export function requestHandler(backend: Backend, auth: AuthConfig) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const scope = newScope(backend.currentGeneration);
    void requestScope.run(scope, async () => {
      try {
        const url = new URL(req.url ?? "/", "http://127.0.0.1");
        await route(backend, auth, req, res, url);
      } catch (e) {
        if (e instanceof HttpError) {
          sendError(res, e);
        } else {
          process.stderr.write(`local backend: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
          sendError(res, new HttpError(500, "InternalServerError", (e as Error)?.message ?? String(e)));
        }
      } finally {
        scope.open = false;
      }
    });
  };
}

async function route(
  backend: Backend,
  auth: AuthConfig,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const method = req.method ?? "GET";
  const path = url.pathname;
  const caller = () => callerOf(req.headers.authorization, auth);
  const only = (...methods: string[]) => {
    if (!methods.includes(method)) {
      throw new HttpError(405, "MethodNotAllowed", `${method} is not allowed on ${path}`);
    }
  };

  if (path === "/version") {
    only("GET");
    return send(res, 200, VERSION, "text/plain; charset=utf-8");
  }
  const call = /^\/api\/(query|mutation|action)$/.exec(path);
  if (call) {
    only("POST");
    // Body first, then the key: the real backend checks them in this order.
    const body = await readJsonObject(req);
    if (typeof body.path !== "string") {
      throw body.path === undefined ? missingField("path") : badRequest("BadJsonBody", "`path` must be a string");
    }
    const kind = call[1] as "query" | "mutation" | "action";
    return reply(res, await callFunction(backend, caller(), kind, body.path, body));
  }
  if (path.startsWith("/api/run/")) {
    only("POST");
    const udfPath = runPath(path.slice("/api/run/".length));
    const body = await readJsonObject(req);
    return reply(res, await callFunction(backend, caller(), "any", udfPath, body));
  }
  if (path === "/api/json_schemas") {
    only("GET");
    const who = caller();
    requireStreamingExport(backend);
    requireAdmin(who);
    const format = streamFormat(url.searchParams.get("format") ?? undefined, "BadQueryArgs");
    if (format === "export_json") {
      throw badRequest("BadFormat", "json_schemas: format export_json is not supported by the local backend");
    }
    // After the format, as the real backend fails while building the schemas.
    if (backend.jsonSchemasError !== undefined) {
      throw jsonSchemasRefusal(backend.jsonSchemasError);
    }
    const schemas = tableJsonSchemas(backend.log, componentPaths(backend.log, backend.documentTypes.keys()), {
      format,
      deltaSchema: booleanParam(url, "deltaSchema"),
      byComponent: booleanParam(url, "byComponent"),
    });
    return send(res, 200, stringify(schemas));
  }
  if (path === "/api/list_snapshot" || path === "/api/document_deltas") {
    only("GET", "POST");
    const who = caller();
    requireStreamingExport(backend);
    requireAdmin(who);
    const params = method === "POST" ? await readJsonObject(req) : queryParams(url);
    const badParam = method === "POST" ? "BadJsonBody" : "BadQueryArgs";
    const body =
      path === "/api/list_snapshot" ? listSnapshot(backend, params, badParam) : documentDeltas(backend, params, badParam);
    return send(res, 200, body);
  }
  if (path === "/_test/reset") {
    only("POST");
    requireAdmin(caller());
    await backend.reset();
    return send(res, 200, stringify({ status: "ok", startTs: backend.log.startTs }));
  }
  if (path === "/_test/fail_next_mutation") {
    only("POST");
    requireAdmin(caller());
    backend.failNextMutation();
    return send(res, 200, stringify({ status: "ok" }));
  }
  if (path === "/_test/export_zip") {
    only("POST");
    requireAdmin(caller());
    const { format = "uniform", wrapper, includeStorage = false } = await readJsonObject(req);
    if (format !== "uniform" && format !== "legacy") {
      throw badRequest("BadJsonBody", '`format` must be "uniform" or "legacy"');
    }
    if (wrapper !== undefined && (typeof wrapper !== "string" || !validWrapper(wrapper))) {
      throw badRequest("BadJsonBody", "`wrapper` must be a folder name (parts joined by /, no . or ..)");
    }
    if (typeof includeStorage !== "boolean") {
      throw badRequest("BadJsonBody", "`includeStorage` must be a boolean");
    }
    const components = componentPaths(backend.log, backend.documentTypes.keys());
    const zip = snapshotZip(backend.log, components, { format, wrapper, includeStorage });
    res.writeHead(200, {
      "content-type": "application/zip",
      "content-length": zip.length,
      "content-disposition": `attachment; filename="snapshot_${backend.log.readTs()}.zip"`,
    });
    res.end(zip);
    return;
  }
  if (path === "/_test/streaming_export") {
    only("POST");
    requireAdmin(caller());
    const { enabled } = await readJsonObject(req);
    if (typeof enabled !== "boolean") {
      throw badRequest("BadJsonBody", "`enabled` must be a boolean");
    }
    backend.streamingExportEnabled = enabled;
    return send(res, 200, stringify({ enabled }));
  }
  if (path === "/_test/json_schemas_error") {
    only("POST");
    requireAdmin(caller());
    const planted = plannedJsonSchemasError(await readJsonObject(req));
    backend.jsonSchemasError = planted;
    return send(res, 200, stringify(planted ?? {}));
  }
  if (path === "/_test/retention") {
    only("POST");
    requireAdmin(caller());
    const { retentionMs } = await readJsonObject(req);
    if (typeof retentionMs !== "number" || !(retentionMs >= 0)) {
      throw badRequest("BadJsonBody", "`retentionMs` must be a number >= 0");
    }
    backend.setRetention(retentionMs);
    return send(res, 200, stringify({ retentionMs }));
  }
  throw new HttpError(404, "NotFound", `No route for ${method} ${path}`);
}

async function callFunction(
  backend: Backend,
  caller: Caller,
  kind: "query" | "mutation" | "action" | "any",
  udfPath: string,
  body: Params,
): Promise<{ result: CallResult; format: ValueFormat }> {
  if (!("args" in body)) {
    throw missingField("args");
  }
  // Checked before running anything, so a bad format never half-runs a mutation.
  const format = valueFormat(body.format);
  return { result: await backend.call(kind, udfPath, body.args, caller), format };
}

function reply(res: ServerResponse, { result, format }: { result: CallResult; format: ValueFormat }): void {
  const logLines = result.logLines.length > 0 ? result.logLines : undefined;
  const body =
    result.status === "success"
      ? { status: "success", value: new RawJson(writeValue(result.value, format)), logLines }
      : {
          status: "error",
          errorMessage: result.errorMessage,
          errorData: "errorData" in result ? new RawJson(writeValue(result.errorData, format)) : undefined,
          logLines,
        };
  send(res, 200, stringify(body));
}

/** `/api/run/messages/list` -> `messages:list` (segments URL-decoded). */
function runPath(rest: string): string {
  const missing = () =>
    badRequest("MissingIdentifier", "Path or function name not provided in path, e.g. /api/run/messages/list");
  let parts: string[];
  try {
    parts = rest.split("/").map(decodeURIComponent);
  } catch {
    throw missing();
  }
  if (parts.length < 2 || parts.some((p) => p === "")) {
    throw missing();
  }
  const name = parts.pop()!;
  return `${parts.join("/")}:${name}`;
}

function valueFormat(format: unknown): ValueFormat {
  const value = format ?? "json";
  if (!isValueFormat(value)) {
    throw badRequest(
      "InvalidFormat",
      `Invalid format ${JSON.stringify(value)}: use "json" or "convex_encoded_json"`,
    );
  }
  return value;
}

/**
 * The `format` of the streaming-export endpoints, read like the real
 * backend's `ValueFormat::from_str`: `json` / `convex_clean_json`,
 * `convex_encoded_json` / `convex_json`, or `export_json`.
 */
function streamFormat(format: unknown, code: string): ExportFormat {
  switch (format ?? "json") {
    case "json":
    case "convex_clean_json":
      return "json";
    case "convex_encoded_json":
    case "convex_json":
      return "convex_encoded_json";
    case "export_json":
      return "export_json";
    default:
      if (typeof format !== "string") {
        throw badRequest(code, "`format` must be a string");
      }
      throw badRequest("BadFormat", `format param must be one of [\`json\`]. Got ${format}`);
  }
}

/** A boolean query parameter (serde reads `true` / `false`). */
function booleanParam(url: URL, name: string): boolean {
  const value = url.searchParams.get(name);
  if (value === null || value === "false") {
    return false;
  }
  if (value === "true") {
    return true;
  }
  throw badRequest("BadQueryArgs", `\`${name}\` must be true or false, got ${JSON.stringify(value)}`);
}

function queryParams(url: URL): Params {
  return Object.fromEntries(url.searchParams.entries());
}

function stringParam(params: Params, name: string, code: string): string | undefined {
  const value = params[name];
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value !== "string") {
    throw badRequest(code, `\`${name}\` must be a string`);
  }
  return value;
}

/**
 * `pageSize` is not a Convex parameter: it lets tests force small pages.
 * It can only shrink a page below the real backend's size.
 */
function pageSize(params: Params, code: string, max: number): number {
  const value = params.pageSize;
  if (value === undefined || value === null) {
    return max;
  }
  const n = typeof value === "string" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw badRequest(code, "`pageSize` must be a positive integer");
  }
  return Math.min(n, max);
}

/**
 * What a streaming-export request selects, as the real backend reads it:
 * a POST `selection` object (components -> tables -> columns, each with an
 * `_other` default), else `tableName` (`table_name`) with an optional
 * `component` (default: the app, ""), else `component` alone (all its
 * tables), else everything.
 */
interface Selected {
  include: (ref: TableRef) => boolean;
  /** Which fields to leave out of one table's documents (`_id` never is); undefined: none. */
  excluded: (ref: TableRef) => ((field: string) => boolean) | undefined;
}

const EVERYTHING: Selected = { include: () => true, excluded: () => undefined };

function selectionOf(params: Params, code: string): Selected {
  if (params.selection !== undefined && params.selection !== null) {
    return parseSelection(params.selection, code);
  }
  const component = stringParam(params, "component", code);
  const tableName = stringParam(params, "tableName", code) ?? stringParam(params, "table_name", code);
  if (tableName !== undefined) {
    const wanted = component ?? "";
    return {
      include: (ref) => ref.component === wanted && ref.table === tableName,
      excluded: () => undefined,
    };
  }
  if (component !== undefined) {
    return { include: (ref) => ref.component === component, excluded: () => undefined };
  }
  return EVERYTHING;
}

type Inclusion = "included" | "excluded";

function inclusion(value: unknown, where: string, code: string): Inclusion {
  if (value === "included" || value === "incl") return "included";
  if (value === "excluded" || value === "excl") return "excluded";
  throw badRequest(code, `selection: ${where} must be "included" or "excluded", got ${JSON.stringify(value)}`);
}

function selectionObject(value: unknown, where: string, code: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw badRequest(code, `selection: ${where} must be an object or "excluded"`);
  }
  const object = value as Record<string, unknown>;
  if (!("_other" in object)) {
    throw badRequest(code, `selection: ${where} is missing field \`_other\``);
  }
  return object;
}

/** The POST `selection` object (see the Selected comment). */
function parseSelection(value: unknown, code: string): Selected {
  const root = selectionObject(value, "selection", code);
  const otherComponents = inclusion(root._other, "selection._other", code);
  type TableRule = Inclusion | { other: Inclusion; columns: Map<string, Inclusion> };
  const components = new Map<string, "excluded" | { other: Inclusion; tables: Map<string, TableRule> }>();
  for (const [component, componentValue] of Object.entries(root)) {
    if (component === "_other") continue;
    const where = `selection[${JSON.stringify(component)}]`;
    if (typeof componentValue === "string") {
      if (inclusion(componentValue, where, code) !== "excluded") {
        throw badRequest(code, `selection: ${where} must be an object or "excluded"`);
      }
      components.set(component, "excluded");
      continue;
    }
    const tablesValue = selectionObject(componentValue, where, code);
    const tables = new Map<string, TableRule>();
    for (const [table, tableValue] of Object.entries(tablesValue)) {
      if (table === "_other") continue;
      const tableWhere = `${where}[${JSON.stringify(table)}]`;
      if (typeof tableValue === "string") {
        if (inclusion(tableValue, tableWhere, code) !== "excluded") {
          throw badRequest(code, `selection: ${tableWhere} must be an object or "excluded"`);
        }
        tables.set(table, "excluded");
        continue;
      }
      const columnsValue = selectionObject(tableValue, tableWhere, code);
      const columns = new Map<string, Inclusion>();
      for (const [column, columnValue] of Object.entries(columnsValue)) {
        if (column === "_other") continue;
        columns.set(column, inclusion(columnValue, `${tableWhere}[${JSON.stringify(column)}]`, code));
      }
      tables.set(table, { other: inclusion(columnsValue._other, `${tableWhere}._other`, code), columns });
    }
    components.set(component, { other: inclusion(tablesValue._other, `${where}._other`, code), tables });
  }
  const tableRule = (ref: TableRef): TableRule => {
    const rule = components.get(ref.component);
    if (rule === undefined) return otherComponents;
    if (rule === "excluded") return "excluded";
    return rule.tables.get(ref.table) ?? rule.other;
  };
  return {
    include: (ref) => tableRule(ref) !== "excluded",
    excluded: (ref) => {
      const rule = tableRule(ref);
      if (typeof rule === "string") return undefined;
      return (field) => field !== "_id" && (rule.columns.get(field) ?? rule.other) === "excluded";
    },
  };
}

/** Streaming export is off (POST /_test/streaming_export): 403, as on a plan without it. */
function requireStreamingExport(backend: Backend): void {
  if (!backend.streamingExportEnabled) {
    throw new HttpError(403, "StreamingExportNotEnabled", STREAMING_EXPORT_NOT_ENABLED);
  }
}

/** The real backend's wording (crates/model backend_info) for a plan without streaming export. */
export const STREAMING_EXPORT_NOT_ENABLED =
  "Streaming export is not available on your current subscription. See https://www.convex.dev/plans to upgrade.";

/**
 * The real backend's refusals of the whole json_schemas request
 * (crates/local_backend streaming_export.rs), when one table's stored
 * documents have no object shape and no usable schema describes them.
 * The functions take the table the message names.
 */
export const JSON_SCHEMAS_ERRORS: Readonly<Record<string, (table: string) => string>> = {
  NoSchemaForExport: () => "There is no active schema, which is needed for streaming export.",
  NoTableDefinitionForExport: (table) =>
    `The table "${table}" does not have a schema, which is needed for streaming export.`,
  UnsupportedSchemaForExport: (table) =>
    `Schema for table "${table}" contains a union of object types, which is unsupported for streaming export`,
};

/** Codes whose message names no table. */
const UNNAMED_TABLE = new Set(["NoSchemaForExport"]);

/** The body of POST /_test/json_schemas_error: `{code, table}`, or `{}` to clear. */
function plannedJsonSchemasError(body: Params): JsonSchemasError | undefined {
  const { code, table } = body;
  if (code === undefined && table === undefined) {
    return undefined;
  }
  if (typeof code !== "string" || !Object.hasOwn(JSON_SCHEMAS_ERRORS, code)) {
    throw badRequest("BadJsonBody", `\`code\` must be one of ${Object.keys(JSON_SCHEMAS_ERRORS).join(", ")}`);
  }
  if (UNNAMED_TABLE.has(code)) {
    if (table !== undefined) {
      throw badRequest("BadJsonBody", `${code} names no table: leave \`table\` out`);
    }
    return { code };
  }
  if (typeof table !== "string" || table === "") {
    throw badRequest("BadJsonBody", `${code} names a table: \`table\` must be a non-empty string`);
  }
  return { code, table };
}

function jsonSchemasRefusal({ code, table }: JsonSchemasError): HttpError {
  return badRequest(code, JSON_SCHEMAS_ERRORS[code]!(table ?? ""));
}

function listSnapshot(backend: Backend, params: Params, code: string): string {
  const selected = selectionOf(params, code);
  const format = streamFormat(params.format, code);
  const page = backend.log.listSnapshot({
    snapshot: int64Param(params.snapshot, "snapshot", code),
    cursor: stringParam(params, "cursor", code),
    include: selected.include,
    limit: pageSize(params, code, SNAPSHOT_PAGE_LIMIT),
  });
  const values = page.documents.map(({ component, table, ts, doc }) =>
    documentJson({ _component: component, _table: table, _ts: ts }, doc, format, selected.excluded({ component, table })),
  );
  return stringify({ values, snapshot: page.snapshot, cursor: page.cursor, hasMore: page.hasMore });
}

function documentDeltas(backend: Backend, params: Params, code: string): string {
  const cursor = int64Param(params.cursor, "cursor", code);
  if (cursor === undefined) {
    throw badRequest("DocumentDeltasCursorRequired", "/api/document_deltas requires a cursor");
  }
  const selected = selectionOf(params, code);
  const format = streamFormat(params.format, code);
  const page = backend.log.documentDeltas({
    cursor,
    include: selected.include,
    limit: pageSize(params, code, DELTAS_PAGE_LIMIT),
  });
  const values = page.rows.map(({ component, table, ts, id, doc }) =>
    doc === null
      ? new RawJson(stringify({ _component: component, _table: table, _ts: ts, _deleted: true, _id: id }))
      : documentJson(
          { _component: component, _table: table, _ts: ts, _deleted: false },
          doc,
          format,
          selected.excluded({ component, table }),
        ),
  );
  return stringify({ values, cursor: page.cursor, hasMore: page.hasMore });
}

/** Metadata fields, then `_id`, `_creationTime` and the document's fields. */
function documentJson(
  metadata: Record<string, unknown>,
  doc: Doc,
  format: ExportFormat,
  excluded?: (field: string) => boolean,
): RawJson {
  const { _id, _creationTime, ...fields } = excluded === undefined ? doc : withoutFields(doc, excluded);
  const head = stringify(metadata).slice(0, -1);
  const body = writeFields({ _id, _creationTime, ...fields }, format).slice(1);
  return new RawJson(`${head},${body}`);
}

function withoutFields(doc: Doc, excluded: (field: string) => boolean): Doc {
  return Object.fromEntries(Object.entries(doc).filter(([field]) => !excluded(field))) as Doc;
}
