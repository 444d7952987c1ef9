/**
 * The test app (convex/testapp) served by the local backend: component
 * tables tagged with `_component`, the undeclared table, json_schemas as the
 * real backend shapes it, the ZIP snapshot export and the streaming-export
 * switch, and a planted json_schemas refusal.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { BigJsonInteger, parseJson } from "../json.ts";
import { STREAMING_EXPORT_NOT_ENABLED } from "../app.ts";
import { readZip } from "../zip.ts";
import { ADMIN, TESTAPP, integerField, startBackend, type Backend } from "./harness.ts";

let backend: Backend;
before(async () => {
  backend = await startBackend([], {}, TESTAPP);
});
after(async () => {
  await backend.stop();
});
beforeEach(async () => {
  await backend.reset();
});

type Row = Record<string, any>;

// The app adopted the migrationkit outbox (testapp/functions.ts): its own
// tables fill with every write. They are tested from Python
// (tests/integration/test_app_outbox.py); here they would only be noise.
const KIT_TABLE = /^migrationkit[A-Z]/;
const ownRows = (rows: Row[]) => rows.filter((r) => !KIT_TABLE.test(r._table));

const i64 = (n: bigint) => {
  const bytes = Buffer.alloc(8);
  bytes.writeBigInt64LE(n);
  return { $integer: bytes.toString("base64") };
};
const bytes = (...values: number[]) => ({ $bytes: Buffer.from(values).toString("base64") });
const nan = { $float: Buffer.from([0, 0, 0, 0, 0, 0, 0xf8, 0x7f]).toString("base64") };

function user(overrides: Row = {}): Row {
  return {
    name: "Ada",
    email: "ada@example.com",
    credits: i64(100n),
    role: "admin",
    teamId: "team-a",
    profile: { links: ["https://a.example"], prefs: { theme: "dark", beta: true } },
    ...overrides,
  };
}

async function mutate(fnPath: string, args: unknown = {}): Promise<any> {
  const reply = await backend.call("mutation", fnPath, args, { format: "convex_encoded_json" });
  assert.equal(reply.body.status, "success", reply.text);
  return reply.body.value;
}

async function readTs(): Promise<bigint> {
  const reply = await backend.admin("/api/list_snapshot", { tableName: "none", format: "json" });
  return integerField(reply.text, "snapshot");
}

/** Every page of a snapshot, with the given selection parameters. */
async function snapshot(params: Record<string, string> = {}): Promise<Row[]> {
  const docs: Row[] = [];
  let cursor: string | undefined;
  let pinned: bigint | undefined;
  for (;;) {
    const query: Record<string, string | bigint> = { format: "json", pageSize: "2", ...params };
    if (cursor !== undefined) query.cursor = cursor;
    if (pinned !== undefined) query.snapshot = pinned;
    const reply = await backend.admin("/api/list_snapshot", query);
    assert.equal(reply.status, 200, reply.text);
    pinned = integerField(reply.text, "snapshot");
    docs.push(...ownRows(reply.body.values));
    if (!reply.body.hasMore) return docs;
    cursor = reply.body.cursor;
  }
}

async function deltas(cursor: bigint, params: Record<string, string> = {}): Promise<Row[]> {
  const rows: Row[] = [];
  for (;;) {
    const reply = await backend.admin("/api/document_deltas", { format: "json", cursor, ...params });
    assert.equal(reply.status, 200, reply.text);
    rows.push(...ownRows(reply.body.values));
    cursor = integerField(reply.text, "cursor");
    if (!reply.body.hasMore) return rows;
  }
}

const big = (v: unknown): bigint => (v instanceof BigJsonInteger ? BigInt(v.text) : BigInt(v as number));

const tablesOf = (rows: Row[]) => [...new Set(rows.map((r) => `${r._component}:${r._table}`))];

describe("components", () => {
  test("component tables carry _component; app tables have it empty", async () => {
    const start = await readTs();
    await mutate("ratelimit:hit", { key: "k1" });
    await mutate("ratelimit:hit", { key: "k1" });
    await mutate("users:create", user());
    const docs = await snapshot();
    assert.deepEqual(tablesOf(docs), [":users", "ratelimiter:limits"]);
    const limit = docs.find((d) => d._table === "limits")!;
    assert.equal(limit._component, "ratelimiter");
    assert.equal(limit.key, "k1");
    assert.equal(limit.count, "2");
    const rows = await deltas(start);
    assert.deepEqual(
      rows.map((r) => [r._component, r._table, r._deleted]),
      [
        ["ratelimiter", "limits", false],
        ["ratelimiter", "limits", false],
        ["", "users", false],
      ],
    );
    await mutate("ratelimit:reset", { key: "k1" });
    const [deletion] = await deltas(big(rows[2]!._ts));
    assert.deepEqual(Object.keys(deletion!), ["_component", "_table", "_ts", "_deleted", "_id"]);
    assert.equal(deletion!._component, "ratelimiter");
    assert.equal(deletion!._deleted, true);
    assert.equal(deletion!._id, limit._id);
  });

  test("one mutation writing to the app and a component is one transaction", async () => {
    const start = await readTs();
    await mutate("users:createLimited", { user: user(), max: i64(1n) });
    const rows = await deltas(start);
    assert.deepEqual(tablesOf(rows), [":users", "ratelimiter:limits"]);
    assert.equal(new Set(rows.map((r) => big(r._ts))).size, 1, "one commit timestamp");
    // Over the limit: the ConvexError rolls back the component's write too.
    const refused = await backend.call("mutation", "users:createLimited", { user: user(), max: i64(1n) });
    assert.equal(refused.body.status, "error");
    assert.equal(refused.body.errorData.code, "RateLimited");
    assert.equal((await deltas(start)).length, 2);
    const [limit] = await snapshot({ component: "ratelimiter" });
    assert.equal(limit!.count, "1");
  });

  test("selection: component, tableName with component, and a POST selection object", async () => {
    const start = await readTs();
    await mutate("ratelimit:hit", { key: "k" });
    await mutate("users:create", user());
    await mutate("events:record", { event: { kind: "view", page: "/" } });
    assert.deepEqual(tablesOf(await snapshot({ component: "ratelimiter" })), ["ratelimiter:limits"]);
    assert.deepEqual(tablesOf(await snapshot({ component: "" })), [":users", ":events"].sort());
    // tableName alone means a table of the app.
    assert.deepEqual(await snapshot({ tableName: "limits" }), []);
    assert.deepEqual(tablesOf(await snapshot({ tableName: "limits", component: "ratelimiter" })), ["ratelimiter:limits"]);
    assert.deepEqual(tablesOf(await deltas(start, { component: "ratelimiter" })), ["ratelimiter:limits"]);
    assert.deepEqual(tablesOf(await deltas(start, { tableName: "users" })), [":users"]);

    const selection = {
      _other: "included",
      "": { _other: "excluded", users: { _other: "included", email: "excluded", _id: "excluded" } },
      ratelimiter: "excluded",
    };
    const posted = await backend.post(
      "/api/list_snapshot",
      { selection, format: "json" },
      { authorization: ADMIN },
    );
    assert.equal(posted.status, 200, posted.text);
    const values: Row[] = posted.body.values;
    assert.deepEqual(tablesOf(values), [":users"]);
    assert.equal(values[0]!.email, undefined, "an excluded column is left out");
    assert.equal(typeof values[0]!._id, "string", "_id cannot be excluded");
    assert.equal(values[0]!.name, "Ada");
    const postedDeltas = await backend.post(
      "/api/document_deltas",
      `{"cursor":${start},"format":"json","selection":${JSON.stringify(selection)}}`,
      { authorization: ADMIN },
    );
    assert.deepEqual(tablesOf(postedDeltas.body.values), [":users"]);
    const bad = await backend.post("/api/list_snapshot", { selection: { "": "included" } }, { authorization: ADMIN });
    assert.equal(bad.status, 400);
  });
});

describe("a table the schema does not declare", () => {
  test("scratch documents appear in list_snapshot and document_deltas", async () => {
    const start = await readTs();
    const id = await mutate("scratch:put", { doc: { anything: [1, "x", { y: null }], n: i64(5n) } });
    await mutate("scratch:put", { id, doc: { replaced: true } });
    const other = await mutate("scratch:put", { doc: { b: bytes(1, 2) } });
    await mutate("scratch:remove", { id: other });
    const docs = await snapshot({ tableName: "scratch" });
    assert.equal(docs.length, 1);
    assert.equal(docs[0]!._id, id);
    assert.equal(docs[0]!._component, "");
    assert.equal(docs[0]!.replaced, true);
    assert.equal(docs[0]!.anything, undefined);
    const rows = await deltas(start);
    assert.deepEqual(
      rows.map((r) => [r._table, r._deleted]),
      [
        ["scratch", false],
        ["scratch", false],
        ["scratch", false],
        ["scratch", true],
      ],
    );
    assert.equal(rows[0]!.n, "5");
  });
});

async function schemas(params: Record<string, string> = {}): Promise<Row> {
  const reply = await backend.admin("/api/json_schemas", { deltaSchema: "true", format: "json", ...params });
  assert.equal(reply.status, 200, reply.text);
  return withoutKitTables(reply.body);
}

/** A json_schemas body without the outbox's tables (byComponent nests a level down). */
function withoutKitTables(body: Row): Row {
  const out: Row = {};
  for (const [key, value] of Object.entries(body)) {
    if (KIT_TABLE.test(key)) continue;
    const nested = value !== null && typeof value === "object" && !("type" in value) && !("$schema" in value);
    out[key] = nested ? withoutKitTables(value) : value;
  }
  return out;
}

describe("json_schemas for the test app", () => {
  test("empty tables: only the system fields; every table, components flattened in", async () => {
    const body = await schemas();
    assert.deepEqual(Object.keys(body), ["users", "posts", "events", "limits"]);
    assert.deepEqual(body.users, {
      type: "object",
      properties: {
        _creationTime: { type: "number" },
        _id: { $description: "Id(users)", type: "string" },
        _table: { type: "string" },
        _component: { type: "string" },
        _ts: { type: "integer" },
        _deleted: { type: "boolean" },
      },
      additionalProperties: false,
      required: ["_creationTime", "_id"],
      $schema: "http://json-schema.org/draft-07/schema#",
    });
  });

  test("described from the stored documents: ids, int64, bytes, literals, unions, optional and nested fields", async () => {
    await mutate("seed:bulk", { count: 40 });
    await mutate("events:record", { event: { kind: "click", x: 1, y: 2 } });
    await mutate("events:record", { event: { kind: "view", page: "/home" } });
    await mutate("scratch:put", { doc: { free: "form", n: nan } });
    await mutate("ratelimit:hit", { key: "k" });
    const body = await schemas();
    assert.deepEqual(Object.keys(body), ["users", "posts", "events", "scratch", "limits"]);

    const users = body.users;
    assert.deepEqual(users.properties.credits, { $description: "int64 represented as base10 string", type: "string" });
    assert.deepEqual(users.properties.avatar, { $description: "base64 bytes", type: "string" });
    assert.deepEqual(users.properties.age, { type: "number" });
    assert.deepEqual(users.properties.role, { type: "string" }, "literals are strings");
    assert.deepEqual(users.required, ["_creationTime", "_id", "credits", "email", "name", "profile", "role", "teamId"]);
    assert.deepEqual(users.properties.profile, {
      type: "object",
      properties: {
        bio: { type: "string" },
        links: { type: "array", items: { type: "string" } },
        prefs: {
          type: "object",
          properties: { beta: { type: "boolean" }, theme: { type: "string" } },
          additionalProperties: false,
          required: ["beta", "theme"],
        },
      },
      additionalProperties: false,
      required: ["links", "prefs"],
    });

    const posts = body.posts;
    assert.deepEqual(posts.properties.author, { $description: "Id(users)", type: "string" });
    assert.deepEqual(posts.properties.score, { anyOf: [{ type: "number" }, { type: "string" }] });
    assert.deepEqual(posts.properties.attachment, {
      anyOf: [{ type: "null" }, { $description: "base64 bytes", type: "string" }],
    });
    assert.deepEqual(posts.properties.stats.properties.views, {
      $description: "int64 represented as base10 string",
      type: "string",
    });
    assert.ok(!posts.required.includes("publishedAt") && !posts.required.includes("attachment"));

    // A union of objects comes out as one object with optional fields.
    const events = body.events;
    assert.deepEqual(events.required, ["_creationTime", "_id", "kind"]);
    assert.deepEqual(Object.keys(events.properties).slice(0, 6), ["_creationTime", "_id", "kind", "page", "x", "y"]);

    // The undeclared table, with a NaN: float64 with its special values.
    assert.deepEqual(body.scratch.properties.n, {
      $description: "float64",
      anyOf: [{ type: "number" }, { type: "string", $description: "-inf, inf, or NaN" }],
    });
    assert.deepEqual(body.limits.properties._id, { $description: "Id(limits)", type: "string" });
  });

  test("byComponent, convex_encoded_json, no deltaSchema", async () => {
    await mutate("users:create", user({ avatar: bytes(1) }));
    await mutate("ratelimit:hit", { key: "k" });
    const byComponent = await schemas({ byComponent: "true" });
    assert.deepEqual(Object.keys(byComponent), ["", "ratelimiter"]);
    assert.deepEqual(Object.keys(byComponent[""]), ["users", "posts", "events"]);
    assert.deepEqual(Object.keys(byComponent.ratelimiter), ["limits"]);
    const encoded = await schemas({ format: "convex_encoded_json" });
    assert.deepEqual(encoded.users.properties.credits, {
      $description: "int64",
      type: "object",
      properties: { $integer: { $description: "int64 -> little-endian -> base64", type: "string" } },
    });
    assert.deepEqual(encoded.users.properties.avatar, {
      type: "object",
      $description: "base64 bytes",
      properties: { $bytes: { type: "string" } },
    });
    const plain = await backend.admin("/api/json_schemas", { format: "json" });
    assert.equal(plain.body.users.properties._ts, undefined);
    const bad = await backend.admin("/api/json_schemas", { format: "xml" });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, "BadFormat");
  });
});

async function exportZip(body: unknown): Promise<Map<string, string>> {
  const response = await fetch(`${backend.url}/_test/export_zip`, {
    method: "POST",
    headers: { authorization: ADMIN, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/zip");
  const zip = Buffer.from(await response.arrayBuffer());
  checkWithUnzip(zip);
  return new Map(readZip(zip).map((e) => [e.name, e.data.toString("utf8")]));
}

/** When the `unzip` tool is installed, it must accept the file too. */
function checkWithUnzip(zip: Buffer): void {
  if (spawnSync("unzip", ["-v"]).status !== 0) return;
  const dir = mkdtempSync(path.join(tmpdir(), "export-zip-"));
  try {
    const file = path.join(dir, "snapshot.zip");
    writeFileSync(file, zip);
    const check = spawnSync("unzip", ["-t", file], { encoding: "utf8" });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const lines = (text: string | undefined): any[] =>
  (text ?? "").split("\n").filter((l) => l !== "").map((l) => parseJson(l));

async function seedForExport(): Promise<{ ada: string }> {
  const ada = await mutate("users:create", user({ avatar: bytes(1, 2, 3), credits: i64(2n ** 60n), age: 36.5 }));
  await mutate("posts:create", {
    author: ada,
    teamId: "team-a",
    title: "T",
    body: "B",
    tags: [],
    stats: { views: i64(3n), ratings: [4.5] },
    status: "draft",
    score: "x",
  });
  await mutate("events:record", { event: { kind: "click", x: 1, y: 2 } });
  await mutate("scratch:put", { doc: { v: i64(5n), w: bytes(9) } });
  await mutate("scratch:put", { doc: { v: "5", w: "not bytes" } });
  await mutate("scratch:put", { doc: { v: nan, w: "x" } });
  await mutate("ratelimit:hit", { key: "k" });
  return { ada };
}

describe("the ZIP snapshot export", () => {
  test("uniform: the npx convex export layout, lossless documents", async () => {
    const { ada } = await seedForExport();
    const files = await exportZip({ format: "uniform" });
    const names = [...files.keys()];
    assert.equal(names[0], "README.md");
    assert.match(files.get("README.md")!, /^# Welcome to your Convex snapshot export!/);
    assert.deepEqual(names.slice(1, 3), ["_tables/documents.jsonl", "_components/ratelimiter/_tables/documents.jsonl"]);
    // The outbox's tables are declared in the schema, so numbered before scratch.
    assert.deepEqual(lines(files.get("_tables/documents.jsonl")), [
      { name: "users", id: 10001 },
      { name: "posts", id: 10002 },
      { name: "events", id: 10003 },
      { name: "migrationkitOutbox", id: 10004 },
      { name: "migrationkitIdMap", id: 10005 },
      { name: "migrationkitFence", id: 10006 },
      { name: "migrationkitAuditLog", id: 10007 },
      { name: "scratch", id: 10008 },
    ]);
    assert.deepEqual(lines(files.get("_components/ratelimiter/_tables/documents.jsonl")), [{ name: "limits", id: 10001 }]);
    const tableFiles = names.slice(3).filter((n) => !KIT_TABLE.test(n));
    assert.deepEqual(
      [...tableFiles].sort(),
      [
        "_components/ratelimiter/limits/documents.jsonl",
        "_components/ratelimiter/limits/generated_schema.jsonl",
        "events/documents.jsonl",
        "events/generated_schema.jsonl",
        "posts/documents.jsonl",
        "posts/generated_schema.jsonl",
        "scratch/documents.jsonl",
        "scratch/generated_schema.jsonl",
        "users/documents.jsonl",
        "users/generated_schema.jsonl",
      ],
      "no _storage unless asked for",
    );
    // Smallest table first; each documents.jsonl is followed by its schema.
    const sizes = tableFiles.filter((n) => n.endsWith("documents.jsonl")).map((n) => files.get(n)!.length);
    assert.deepEqual(sizes, [...sizes].sort((a, b) => a - b));
    for (let i = 0; i < tableFiles.length; i += 2) {
      assert.equal(tableFiles[i + 1], tableFiles[i]!.replace("documents.jsonl", "generated_schema.jsonl"));
      assert.equal(files.get(tableFiles[i + 1]!), '"uniform"\n');
    }
    const usersText = files.get("users/documents.jsonl")!;
    assert.ok(usersText.endsWith("\n"));
    assert.match(usersText, /"credits":1152921504606846976[,}]/, "Int64 as an exact bare integer");
    const [adaDoc] = lines(usersText);
    assert.deepEqual(Object.keys(adaDoc), [...Object.keys(adaDoc)].sort(), "fields in name order");
    assert.equal(adaDoc._id, ada);
    assert.deepEqual(adaDoc.avatar, { $bytes: "AQID" });
    assert.equal(adaDoc.age, 36.5);
    assert.match(usersText, /"_creationTime":\d+\.\d+/, "floats keep a decimal point");
    const scratch = files.get("scratch/documents.jsonl")!;
    assert.match(scratch, /"v":\{"\$float":"AAAAAAAA\+H8="\}/);
    assert.match(scratch, /"v":5,/);
    const [limit] = lines(files.get("_components/ratelimiter/limits/documents.jsonl"));
    assert.ok(limit.count instanceof BigJsonInteger || limit.count === 1);
  });

  test("legacy: clean JSON documents, the shape line and per-document overrides", async () => {
    await seedForExport();
    const files = await exportZip({ format: "legacy", includeStorage: true, wrapper: "snapshot" });
    const names = [...files.keys()];
    assert.ok(names.every((n) => n.startsWith("snapshot/")));
    assert.deepEqual(names.slice(-2), ["snapshot/_storage/documents.jsonl", "snapshot/_components/ratelimiter/_storage/documents.jsonl"]);
    assert.equal(files.get("snapshot/_storage/documents.jsonl"), "");

    const [adaDoc] = lines(files.get("snapshot/users/documents.jsonl"));
    assert.equal(adaDoc.credits, "1152921504606846976", "Int64 as a decimal string");
    assert.equal(adaDoc.avatar, "AQID", "bytes as base64");
    const usersSchema = lines(files.get("snapshot/users/generated_schema.jsonl"));
    assert.equal(usersSchema.length, 1, "nothing ambiguous in users: no overrides");
    assert.equal(typeof usersSchema[0], "string");
    assert.match(usersSchema[0], /"credits": int64/);
    assert.match(usersSchema[0], /"avatar": bytes/);
    assert.match(usersSchema[0], /"_id": id<10001>/);
    assert.match(usersSchema[0], /"role": "admin"/);
    assert.match(lines(files.get("snapshot/posts/generated_schema.jsonl"))[0], /"author": id<10001>/);

    // scratch: v is int64 | string | NaN across documents, w is bytes | string.
    const scratchDocs = lines(files.get("snapshot/scratch/documents.jsonl"));
    assert.deepEqual(
      scratchDocs.map((d) => [d.v, d.w]),
      [
        ["5", "CQ=="],
        ["5", "not bytes"],
        ["NaN", "x"],
      ],
    );
    const [shape, ...overrides] = lines(files.get("snapshot/scratch/generated_schema.jsonl"));
    assert.match(shape, /"v": int64 \| NaN \| field_name/);
    assert.deepEqual(overrides, [
      { [scratchDocs[0]._id]: { v: "int64", w: "bytes" } },
      { [scratchDocs[2]._id]: { v: { $float64NaN: "AAAAAAAA+H8=" } } },
    ]);
    assert.equal(
      files.get("snapshot/_components/ratelimiter/limits/generated_schema.jsonl")!.split("\n").length,
      2,
      "one shape line",
    );
  });

  test("bad requests: 400; no admin key: 401", async () => {
    const bad = await backend.post("/_test/export_zip", { format: "csv" }, { authorization: ADMIN });
    assert.equal(bad.status, 400);
    const badWrapper = await backend.post("/_test/export_zip", { format: "uniform", wrapper: "../x" }, { authorization: ADMIN });
    assert.equal(badWrapper.status, 400);
    assert.equal((await backend.post("/_test/export_zip", { format: "uniform" })).status, 401);
  });
});

describe("the streaming-export switch", () => {
  test("off: list_snapshot, document_deltas and json_schemas answer 403 StreamingExportNotEnabled", async () => {
    const start = await readTs();
    const off = await backend.post("/_test/streaming_export", { enabled: false }, { authorization: ADMIN });
    assert.equal(off.status, 200, off.text);
    for (const [route, params] of [
      ["/api/list_snapshot", { format: "json" }],
      ["/api/document_deltas", { format: "json", cursor: start }],
      ["/api/json_schemas", { format: "json", deltaSchema: "true" }],
    ] as const) {
      const reply = await backend.admin(route, params);
      assert.equal(reply.status, 403, route);
      assert.deepEqual(reply.body, { code: "StreamingExportNotEnabled", message: STREAMING_EXPORT_NOT_ENABLED });
    }
    const posted = await backend.post("/api/list_snapshot", { format: "json" }, { authorization: ADMIN });
    assert.equal(posted.status, 403);
    // Functions and the ZIP export still work.
    await mutate("users:create", user());
    assert.equal((await backend.post("/_test/export_zip", { format: "uniform" }, { authorization: ADMIN })).status, 200);

    await backend.post("/_test/streaming_export", { enabled: true }, { authorization: ADMIN });
    assert.equal((await deltas(start)).length, 1);
  });

  test("reset turns it back on", async () => {
    await backend.post("/_test/streaming_export", { enabled: false }, { authorization: ADMIN });
    await backend.reset();
    assert.equal((await backend.admin("/api/list_snapshot", { format: "json" })).status, 200);
  });
});

describe("a planted json_schemas refusal", () => {
  const schemas = () => backend.admin("/api/json_schemas", { format: "json", deltaSchema: "true" });
  const plant = (body: Row) => backend.post("/_test/json_schemas_error", body, { authorization: ADMIN });

  test("json_schemas answers 400 with the real code and message; the snapshot still answers", async () => {
    const start = await readTs();
    await mutate("events:record", { event: { kind: "view", page: "/" } });
    const cases = [
      [{ code: "NoSchemaForExport" }, "There is no active schema, which is needed for streaming export."],
      [
        { code: "NoTableDefinitionForExport", table: "events" },
        'The table "events" does not have a schema, which is needed for streaming export.',
      ],
      [
        { code: "UnsupportedSchemaForExport", table: "events" },
        'Schema for table "events" contains a union of object types, which is unsupported for streaming export',
      ],
    ] as const;
    for (const [body, message] of cases) {
      const planted = await plant(body);
      assert.equal(planted.status, 200, planted.text);
      assert.deepEqual(planted.body, body);
      const reply = await schemas();
      assert.equal(reply.status, 400, reply.text);
      assert.deepEqual(reply.body, { code: body.code, message });
      assert.equal((await snapshot()).length, 1);
      assert.equal((await deltas(start)).length, 1);
    }
    assert.deepEqual((await plant({})).body, {});
    assert.equal((await schemas()).status, 200);
  });

  test("streaming export off still answers 403 first; reset clears the refusal", async () => {
    await plant({ code: "NoSchemaForExport" });
    await backend.post("/_test/streaming_export", { enabled: false }, { authorization: ADMIN });
    assert.equal((await schemas()).status, 403);
    await backend.reset();
    assert.equal((await schemas()).status, 200);
  });

  test("bad bodies: 400; no admin key: 401", async () => {
    for (const body of [
      { code: "Nope", table: "events" },
      { code: "UnsupportedSchemaForExport" },
      { code: "NoTableDefinitionForExport", table: "" },
      { code: "NoSchemaForExport", table: "events" },
      { table: "events" },
    ]) {
      const reply = await plant(body);
      assert.equal(reply.status, 400, JSON.stringify(body));
      assert.equal(reply.body.code, "BadJsonBody");
    }
    assert.equal((await backend.post("/_test/json_schemas_error", { code: "NoSchemaForExport" })).status, 401);
    assert.equal((await schemas()).status, 200);
  });
});

describe("the hand-kept _generated/server.ts copies", () => {
  test("carry the same write-recorder hook", () => {
    const hook = (file: string) => {
      const text = readFileSync(file, "utf8");
      return text.slice(text.indexOf("// The write-recorder hook."));
    };
    const shipped = hook(path.join(TESTAPP, "..", "functions", "_generated", "server.ts"));
    assert.ok(shipped.length > 1000);
    for (const copy of ["_generated/server.ts", "components/ratelimiter/_generated/server.ts"]) {
      assert.equal(hook(path.join(TESTAPP, copy)), shipped, copy);
    }
  });
});

describe("the dashboard's tableSize system query", () => {
  test("counts an app table's live documents, for the admin only", async () => {
    const first = await mutate("users:create", user());
    await mutate("users:create", user({ email: "b@example.com" }));
    await mutate("users:remove", { id: first });
    const size = await backend.call(
      "query",
      "_system/frontend/tableSize:default",
      { componentId: null, tableName: "users" },
      { auth: ADMIN },
    );
    assert.equal(size.body.status, "success", size.text);
    assert.equal(size.body.value, 1);
    const anonymous = await backend.call("query", "_system/frontend/tableSize:default", {
      componentId: null,
      tableName: "users",
    });
    assert.equal(anonymous.body.status, "error");
    assert.match(anonymous.body.errorMessage, /Could not find public function/);
  });
});
