/**
 * The audit log of the wrapper an existing app adopts (testapp/migrationkit/
 * wrap.ts), on a small in-memory stand-in for `ctx.db`: one audit row per
 * write with the document before and after, the actor from `ctx.auth`, and
 * no way to change or remove an audit row through the wrapped db. (Through
 * the real backend, with rollback, it is tested from Python:
 * tests/integration/test_audit_log.py.)
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AUDIT_LOG, outboxDb } from "../../testapp/migrationkit/wrap.ts";

type Doc = Record<string, any>;

/** Just enough of a Convex `DatabaseWriter` for the wrapper. */
class MemoryDb {
  private rows = new Map<string, { table: string; doc: Doc }>();
  private next = 0;

  normalizeId(table: string, id: string): string | null {
    return this.rows.get(id)?.table === table ? id : null;
  }
  async get(id: string): Promise<Doc | null> {
    const row = this.rows.get(id);
    return row === undefined ? null : { ...row.doc };
  }
  async insert(table: string, value: Doc): Promise<string> {
    const id = `${++this.next}${table}`;
    this.rows.set(id, { table, doc: { ...value, _id: id, _creationTime: this.next } });
    return id;
  }
  // Each takes (id, ...) or, as the newer API, (table, id, ...).
  async patch(...args: any[]): Promise<void> {
    const [id, value] = args.length === 3 ? args.slice(1) : args;
    const row = this.rows.get(id)!;
    const doc = { ...row.doc, ...value };
    for (const [k, v] of Object.entries(value)) if (v === undefined) delete doc[k];
    row.doc = doc;
  }
  async replace(...args: any[]): Promise<void> {
    const [id, value] = args.length === 3 ? args.slice(1) : args;
    const row = this.rows.get(id)!;
    row.doc = { ...value, _id: id, _creationTime: row.doc._creationTime };
  }
  async delete(...args: any[]): Promise<void> {
    this.rows.delete(args.at(-1));
  }
  table(name: string) {
    return { name };
  }
  query(table: string) {
    const matches: [string, unknown][] = [];
    const all = () =>
      [...this.rows.values()]
        .filter((r) => r.table === table && matches.every(([k, v]) => r.doc[k] === v))
        .map((r) => r.doc);
    const chain = {
      withIndex: (_name: string, range: (q: any) => unknown) => {
        const q = { eq: (k: string, v: unknown) => (matches.push([k, v]), q) };
        range(q);
        return chain;
      },
      order: () => chain,
      first: async () => all().at(-1) ?? null,
    };
    return chain;
  }
  rowsOf(table: string): Doc[] {
    return [...this.rows.values()].filter((r) => r.table === table).map((r) => r.doc);
  }
}

const as = (subject: string | null) => ({
  getUserIdentity: async () => (subject === null ? null : { subject }),
});

describe("the wrapper's audit log", () => {
  test("one row per write: the document before and after, the caller's subject", async () => {
    const raw = new MemoryDb();
    const db: any = outboxDb(raw, as("user-1"));
    const id = await db.insert("users", { name: "Ada", age: 36 });
    await db.patch(id, { age: undefined });
    await db.replace("users", id, { name: "Grace" });
    await db.delete(id);

    const rows = raw.rowsOf(AUDIT_LOG).map(({ _id, _creationTime, at, ...row }) => row);
    assert.deepEqual(rows, [
      { table: "users", docId: id, action: "create", before: null, after: { name: "Ada", age: 36 }, actor: "user-1" },
      { table: "users", docId: id, action: "update", before: { name: "Ada", age: 36 }, after: { name: "Ada" }, actor: "user-1" },
      { table: "users", docId: id, action: "update", before: { name: "Ada" }, after: { name: "Grace" }, actor: "user-1" },
      { table: "users", docId: id, action: "delete", before: { name: "Grace" }, after: null, actor: "user-1" },
    ]);
    // The audit rows are not tracked by this app's config: the outbox has the writes only.
    assert.deepEqual(
      raw.rowsOf("migrationkitOutbox").map((r) => r.op),
      ["insert", "patch", "replace", "delete"],
    );
  });

  test("no identity, or no auth given: the actor is null, never guessed", async () => {
    for (const auth of [as(null), undefined]) {
      const raw = new MemoryDb();
      await (outboxDb(raw, auth) as any).insert("users", { name: "Ada" });
      assert.equal(raw.rowsOf(AUDIT_LOG)[0]!.actor, null);
    }
  });

  test("writes to untracked tables leave no audit row", async () => {
    const raw = new MemoryDb();
    await (outboxDb(raw, as("user-1")) as any).insert("notTracked", { x: 1 });
    assert.deepEqual(raw.rowsOf(AUDIT_LOG), []);
  });

  test("an audit row cannot be written, changed or removed through the wrapped db", async () => {
    const raw = new MemoryDb();
    const db: any = outboxDb(raw, as("user-1"));
    await db.insert("users", { name: "Ada" });
    const [row] = raw.rowsOf(AUDIT_LOG);
    const refused = /append-only/;
    await assert.rejects(db.insert(AUDIT_LOG, { ...row, actor: "forged" }), refused);
    await assert.rejects(db.patch(row!._id, { actor: "someone else" }), refused);
    await assert.rejects(db.patch(AUDIT_LOG, row!._id, { actor: "someone else" }), refused);
    await assert.rejects(db.replace(row!._id, { ...row, actor: "x" }), refused);
    await assert.rejects(db.delete(row!._id), refused);
    await assert.rejects(db.delete(AUDIT_LOG, row!._id), refused);
    assert.deepEqual(raw.rowsOf(AUDIT_LOG), [row]);
  });
});
