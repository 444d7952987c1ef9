/**
 * Streaming export from the commit log: list_snapshot, document_deltas,
 * json_schemas, and the log's faithfulness to what committed.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, beforeEach, describe, test } from "node:test";
import { BigJsonInteger } from "../json.ts";
import { ADMIN, integerField, startBackend, type Backend } from "./harness.ts";

let backend: Backend;
before(async () => {
  backend = await startBackend();
});
after(async () => {
  await backend.stop();
});
beforeEach(async () => {
  await backend.reset();
});

const FORMAT = "convex_encoded_json";
const METADATA = ["_component", "_table", "_ts", "_deleted"];

const big = (v: unknown): bigint => (v instanceof BigJsonInteger ? BigInt(v.text) : BigInt(v as number));

type Row = Record<string, any>;

async function mutate(path: string, args: unknown = {}): Promise<any> {
  const reply = await backend.call("mutation", path, args, { format: FORMAT });
  assert.equal(reply.body.status, "success", reply.text);
  return reply.body.value;
}

/** Every page of one snapshot; `between` runs after each page but the last. */
async function snapshot(
  options: { pageSize?: number; tableName?: string; between?: (page: number) => Promise<void> } = {},
): Promise<{ docs: Row[]; snapshot: bigint; pages: number }> {
  const docs: Row[] = [];
  let pinned: bigint | undefined;
  let cursor: string | undefined;
  for (let page = 0; ; page++) {
    const params: Record<string, string | number | bigint> = { format: FORMAT };
    if (options.pageSize !== undefined) params.pageSize = options.pageSize;
    if (options.tableName !== undefined) params.tableName = options.tableName;
    if (pinned !== undefined) params.snapshot = pinned;
    if (cursor !== undefined) params.cursor = cursor;
    const reply = await backend.admin("/api/list_snapshot", params);
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(Object.keys(reply.body), ["values", "snapshot", "cursor", "hasMore"]);
    const at = integerField(reply.text, "snapshot");
    assert.equal(pinned ?? at, at, "every page reads the first page's snapshot");
    pinned = at;
    const tables = new Set(reply.body.values.map((v: Row) => v._table));
    assert.ok(tables.size <= 1, "a page holds one table");
    docs.push(...reply.body.values);
    if (!reply.body.hasMore) {
      assert.equal(reply.body.cursor, null);
      return { docs, snapshot: pinned, pages: page + 1 };
    }
    cursor = reply.body.cursor;
    assert.equal(typeof cursor, "string");
    await options.between?.(page);
  }
}

/** Every delta after `cursor`, page by page. */
async function deltas(
  cursor: bigint,
  options: { pageSize?: number; tableName?: string } = {},
): Promise<{ rows: Row[]; pages: Row[][]; cursor: bigint }> {
  const pages: Row[][] = [];
  for (;;) {
    const params: Record<string, string | number | bigint> = { format: FORMAT, cursor };
    if (options.pageSize !== undefined) params.pageSize = options.pageSize;
    if (options.tableName !== undefined) params.tableName = options.tableName;
    const reply = await backend.admin("/api/document_deltas", params);
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(Object.keys(reply.body), ["values", "cursor", "hasMore"]);
    pages.push(reply.body.values);
    const next = integerField(reply.text, "cursor");
    assert.ok(next >= cursor, "the cursor never goes back");
    cursor = next;
    if (!reply.body.hasMore) {
      return { rows: pages.flat(), pages, cursor };
    }
  }
}

function strip(row: Row): Row {
  return Object.fromEntries(Object.entries(row).filter(([k]) => !METADATA.includes(k)));
}

/** Applies a snapshot then deltas, keeping the highest _ts per _id. */
function replay(snapshotDocs: Row[], deltaRows: Row[]): Map<string, Row> {
  const state = new Map<string, { ts: bigint; doc: Row | null }>();
  for (const row of [...snapshotDocs, ...deltaRows]) {
    const ts = big(row._ts);
    const seen = state.get(row._id);
    if (seen === undefined || seen.ts < ts) {
      state.set(row._id, { ts, doc: row._deleted === true ? null : strip(row) });
    }
  }
  return new Map(
    [...state].filter(([, v]) => v.doc !== null).map(([id, v]) => [id, v.doc!]),
  );
}

async function currentState(): Promise<Map<string, Row>> {
  const reply = await backend.call("query", "all:dump", {}, { format: FORMAT });
  return new Map(reply.body.value.map((doc: Row) => [doc._id, doc]));
}

async function readTs(): Promise<bigint> {
  const reply = await backend.admin("/api/list_snapshot", { tableName: "none", format: FORMAT });
  return integerField(reply.text, "snapshot");
}

describe("the commit log", () => {
  test("a mutation that throws leaves no write and no log entry", async () => {
    const start = await readTs();
    const reply = await backend.call("mutation", "items:createThenThrow", { name: "ghost" });
    assert.equal(reply.body.status, "error");
    assert.deepEqual((await currentState()).size, 0);
    assert.deepEqual((await deltas(start)).rows, []);
    assert.deepEqual((await snapshot()).docs, []);
  });

  test("one mutation is one transaction; timestamps are exact, above 2^53, increasing", async () => {
    const start = await readTs();
    await mutate("items:createMany", { names: ["a", "b", "c"] });
    await mutate("items:create", { name: "d" });
    const { rows } = await deltas(start);
    assert.equal(rows.length, 4);
    const ts = rows.map((r) => big(r._ts));
    assert.ok(ts.every((t) => t > 2n ** 53n && t > start));
    assert.equal(new Set(ts.slice(0, 3)).size, 1, "one commit timestamp per transaction");
    assert.ok(ts[3]! > ts[0]!);
    for (const row of rows) {
      assert.equal(row._component, "");
      assert.equal(row._table, "items");
      assert.equal(row._deleted, false);
      assert.ok(row._ts instanceof BigJsonInteger, "written as a bare integer");
    }
  });

  test("a nested mutation's writes join its caller's transaction", async () => {
    const start = await readTs();
    const id = await mutate("items:createViaNested", { name: "n", thenThrow: false });
    const { rows } = await deltas(start);
    assert.equal(rows.length, 1, "one row: the final value");
    assert.equal(rows[0]!._id, id);
    assert.equal(rows[0]!.qty, 7);

    const failed = await backend.call("mutation", "items:createViaNested", { name: "m", thenThrow: true });
    assert.equal(failed.body.status, "error");
    assert.equal((await deltas(big(rows[0]!._ts))).rows.length, 0);
    assert.equal((await currentState()).size, 1);
  });

  test("each mutation an action runs is its own transaction", async () => {
    const start = await readTs();
    await backend.call("action", "items:createTwiceAction", { name: "act" });
    const { rows } = await deltas(start);
    assert.deepEqual(rows.map((r) => r.name), ["act-1", "act-2"]);
    assert.ok(big(rows[1]!._ts) > big(rows[0]!._ts));
  });

  test("a scheduled mutation is logged as its own transaction when it runs", async () => {
    const start = await readTs();
    await mutate("items:scheduleCreate", { name: "s" });
    let rows: Row[] = [];
    for (let i = 0; i < 100 && rows.length < 2; i++) {
      await sleep(20);
      rows = (await deltas(start)).rows;
    }
    assert.deepEqual(rows.map((r) => r.name), ["s-now", "s-later"]);
    assert.ok(big(rows[1]!._ts) > big(rows[0]!._ts));
  });

  test("a mutation built without _generated/server is not logged, and the server says so", async () => {
    const start = await readTs();
    await mutate("raw:insertUnrecorded", { text: "raw" });
    assert.equal((await currentState()).size, 1);
    assert.deepEqual((await deltas(start)).rows, []);
    assert.match(backend.stderr(), /warning: mutation raw:insertUnrecorded is not built with/);
  });

  test("every write form is recorded: (id), (table, id), db.table(), delete", async () => {
    const start = await readTs();
    const id = await mutate("items:create", { name: "x" });
    const noteId = await mutate("items:touchTableForms", { id });
    await mutate("items:rename", { id, name: "renamed" });
    await mutate("items:removeByTable", { id: noteId });
    await mutate("items:create", { name: "y" });
    const { rows } = await deltas(start);
    assert.deepEqual(
      rows.map((r) => [r._table, r._deleted, r.name ?? r.text ?? null]),
      [
        ["items", false, "x"],
        ["items", false, "replaced"],
        ["notes", false, "t2"],
        ["items", false, "renamed"],
        ["notes", true, null],
        ["items", false, "y"],
      ],
    );
    const deletion = rows[4]!;
    assert.deepEqual(Object.keys(deletion), ["_component", "_table", "_ts", "_deleted", "_id"]);
    assert.deepEqual(replay([], rows), await currentState());
  });

  test("a document created and deleted in one transaction is no write", async () => {
    const keep = await mutate("items:create", { name: "keep" });
    const drop = await mutate("items:create", { name: "drop" });
    const start = await readTs();
    const made = await mutate("items:churn", { keep, drop });
    const { rows } = await deltas(start);
    assert.equal(new Set(rows.map((r) => r._ts.text)).size, 1);
    const byId = new Map(rows.map((r) => [r._id, r]));
    assert.equal(rows.length, 3);
    assert.equal(byId.get(made)!.name, "made");
    assert.equal(byId.get(keep)!.name, "kept");
    assert.equal(byId.get(keep)!.qty, 3.5);
    assert.equal(byId.get(drop)!._deleted, true);
  });
});

describe("list_snapshot", () => {
  test("a pinned snapshot stays the same across pages while writes go on", async () => {
    const ids: string[] = await mutate("items:createMany", {
      names: Array.from({ length: 10 }, (_, i) => `item-${i}`),
    });
    const before = await currentState();
    const { docs, pages } = await snapshot({
      pageSize: 3,
      tableName: "items",
      between: async (page) => {
        await mutate("items:create", { name: `late-${page}` });
        await mutate("items:rename", { id: ids[page]!, name: "changed" });
        await mutate("items:remove", { id: ids[9 - page]! });
      },
    });
    assert.equal(pages, 4);
    assert.deepEqual(replay(docs, []), before);
    assert.notDeepEqual(await currentState(), before);
  });

  test("pages are one table each and cover every table", async () => {
    const id = await mutate("items:create", { name: "i" });
    await mutate("items:touchTableForms", { id });
    const { docs, pages } = await snapshot();
    assert.equal(pages, 2);
    assert.deepEqual(docs.map((d) => d._table), ["items", "notes"]);
    for (const doc of docs) {
      assert.equal(doc._component, "");
      assert.ok(big(doc._ts) > 2n ** 53n);
      assert.equal(typeof doc._creationTime, "number");
    }
  });

  test("snapshot, then deltas from it, reproduce the final state exactly", async () => {
    const ids: string[] = await mutate("items:createMany", { names: ["a", "b", "c", "d", "e", "f", "g"] });
    let step = 0;
    const { docs, snapshot: at } = await snapshot({
      pageSize: 2,
      between: async () => {
        step++;
        await mutate("items:rename", { id: ids[step % 3]!, name: `during-${step}` });
        if (step <= 3) {
          await mutate("items:remove", { id: ids[step + 3]! });
        }
        await mutate("items:touchTableForms", { id: ids[0]! });
      },
    });
    await mutate("items:create", { name: "after", tags: ["x"], qty: -0.5 });
    await mutate("items:remove", { id: ids[0]! });
    const { rows } = await deltas(at, { pageSize: 3 });
    assert.ok(rows.some((r) => r._deleted === true));
    assert.deepEqual(replay(docs, rows), await currentState());
  });
});

describe("document_deltas", () => {
  test("a page never splits a transaction", async () => {
    const start = await readTs();
    for (let i = 0; i < 6; i++) {
      await mutate("items:createMany", { names: ["p", "q", "r"].map((n) => `${n}${i}`) });
    }
    const { rows, pages } = await deltas(start, { pageSize: 2 });
    assert.equal(rows.length, 18);
    const pageOf = new Map<string, number>();
    pages.forEach((page, n) => {
      for (const row of page) {
        const ts = row._ts.text as string;
        assert.equal(pageOf.get(ts) ?? n, n, `transaction ${ts} is split across pages`);
        pageOf.set(ts, n);
      }
    });
    assert.equal(pageOf.size, 6);
  });

  test("the row limit counts rows read: a filtered page can be empty with hasMore", async () => {
    const start = await readTs();
    await mutate("items:createMany", { names: ["1", "2", "3", "4"] });
    const id = await mutate("items:create", { name: "5" });
    await mutate("items:touchTableForms", { id });
    const { rows, pages } = await deltas(start, { pageSize: 1, tableName: "notes" });
    assert.ok(pages.some((p) => p.length === 0) && pages.length > 1);
    assert.deepEqual(rows.map((r) => r._table), ["notes"]);
  });

  test("the final cursor is 'now': a later call returns only later commits", async () => {
    const start = await readTs();
    await mutate("items:create", { name: "a" });
    const first = await deltas(start);
    assert.ok(first.cursor >= big(first.rows[0]!._ts));
    assert.deepEqual((await deltas(first.cursor)).rows, []);
    await mutate("items:create", { name: "b" });
    assert.deepEqual((await deltas(first.cursor)).rows.map((r) => r.name), ["b"]);
  });

  test("POST bodies keep timestamps above 2^53 exact", async () => {
    const start = await readTs();
    await mutate("items:create", { name: "a" });
    const reply = await backend.post(
      "/api/document_deltas",
      `{"cursor":${start},"format":"json"}`,
      { authorization: ADMIN },
    );
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body.values.length, 1);
    const snap = await backend.post(
      "/api/list_snapshot",
      `{"snapshot":${start},"tableName":"items","format":"json"}`,
      { authorization: ADMIN },
    );
    assert.equal(integerField(snap.text, "snapshot"), start);
    assert.deepEqual(snap.body.values, [], "the snapshot predates the insert");
  });

  test("a missing cursor is 400 DocumentDeltasCursorRequired", async () => {
    const reply = await backend.admin("/api/document_deltas", { format: "json" });
    assert.equal(reply.status, 400);
    assert.equal(reply.body.code, "DocumentDeltasCursorRequired");
  });
});

describe("retention and reset", () => {
  test("past the retention window: InvalidWindowToReadDocuments, SnapshotTooOld", async () => {
    const old = await readTs();
    await mutate("items:create", { name: "a" });
    const set = (retentionMs: number) => backend.post("/_test/retention", { retentionMs }, { authorization: ADMIN });
    assert.equal((await set(30)).status, 200);
    try {
      await sleep(60);
      const expired = await backend.admin("/api/document_deltas", { cursor: old, format: "json" });
      assert.equal(expired.status, 400);
      assert.equal(expired.body.code, "InvalidWindowToReadDocuments");
      const tooOld = await backend.admin("/api/list_snapshot", { snapshot: old, format: "json" });
      assert.equal(tooOld.status, 400);
      assert.equal(tooOld.body.code, "SnapshotTooOld");
    } finally {
      await set(2 * 24 * 3600 * 1000);
    }
    assert.equal((await backend.admin("/api/document_deltas", { cursor: old })).status, 200);
  });

  test("a snapshot in the future is 400 SnapshotTooNew", async () => {
    const future = (await readTs()) + 10n ** 15n;
    const reply = await backend.admin("/api/list_snapshot", { snapshot: future });
    assert.equal(reply.status, 400);
    assert.equal(reply.body.code, "SnapshotTooNew");
  });

  test("reset: an empty database and log; cursors from before it are expired", async () => {
    const old = await readTs();
    await mutate("items:create", { name: "a" });
    await backend.reset();
    assert.equal((await currentState()).size, 0);
    assert.deepEqual((await snapshot()).docs, []);
    const stale = await backend.admin("/api/document_deltas", { cursor: old });
    assert.equal(stale.body.code, "InvalidWindowToReadDocuments");
  });

  test("--retention-ms sets the window", async () => {
    const short = await startBackend(["--retention-ms", "1"]);
    try {
      const reply = await short.admin("/api/list_snapshot", { format: "json" });
      const at = integerField(reply.text, "snapshot");
      await sleep(20);
      const expired = await short.admin("/api/document_deltas", { cursor: at });
      assert.equal(expired.body.code, "InvalidWindowToReadDocuments");
    } finally {
      await short.stop();
    }
  });
});

describe("json_schemas", () => {
  test("a JSON Schema per table, inferred from its documents, with the delta fields when asked", async () => {
    await mutate("items:create", { name: "a", qty: 1.5 });
    await mutate("items:create", { name: "b" });
    const reply = await backend.admin("/api/json_schemas", { deltaSchema: "true", format: "json" });
    assert.equal(reply.status, 200);
    assert.deepEqual(Object.keys(reply.body).sort(), ["items", "notes"]);
    const items = reply.body.items;
    assert.equal(items.type, "object");
    assert.equal(items.additionalProperties, false);
    assert.equal(items.$schema, "http://json-schema.org/draft-07/schema#");
    assert.deepEqual(items.properties.name, { type: "string" });
    assert.deepEqual(items.properties.qty, { type: "number" });
    assert.deepEqual(items.properties._id, { $description: "Id(items)", type: "string" });
    assert.deepEqual(items.properties._ts, { type: "integer" });
    assert.deepEqual(items.properties._deleted, { type: "boolean" });
    assert.deepEqual(items.required, ["_creationTime", "_id", "name"]);
    // An empty table: just the system fields.
    assert.deepEqual(reply.body.notes.required, ["_creationTime", "_id"]);
    const plain = await backend.admin("/api/json_schemas", { format: "json" });
    assert.equal(plain.body.items.properties._ts, undefined);
  });
});
