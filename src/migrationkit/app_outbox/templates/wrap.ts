// The app's mutations, wrapped so that every write to a tracked table also
// records one outbox row in the same transaction. Adopt it in one place:
//
//   // convex/functions.ts
//   import { mutation as raw, internalMutation as rawInternal } from "./_generated/server";
//   import { withOutbox } from "./migrationkit/wrap";
//   export const mutation = withOutbox(raw);
//   export const internalMutation = withOutbox(rawInternal);
//
// and import `mutation` / `internalMutation` from "./functions" instead of
// "./_generated/server". With convex-helpers, wrap the database instead:
//
//   export const mutation = customMutation(raw, customCtx((ctx) => ({ db: outboxDb(ctx.db) })));
//
// A mutation that throws rolls its outbox rows back with its writes.
import { ID_FIELDS, TRACKED } from "./config";

type Op = "insert" | "patch" | "replace" | "delete";
type Db = any;

const tracked = new Set<string>(TRACKED);

/** The revision of a write: after every earlier one of the document, and
 * at least the time in nanoseconds, so it also orders against the commit
 * timestamps of the change feed (a backfill's `_ts`). */
export async function nextRevision(db: Db, table: string, docId: string): Promise<bigint> {
  const last = await latestRevision(db, table, docId);
  const now = BigInt(Date.now()) * 1_000_000n;
  return last === null || last < now ? now : last + 1n;
}

export async function latestRevision(db: Db, table: string, docId: string): Promise<bigint | null> {
  const last = await db
    .query("migrationkitOutbox")
    .withIndex("by_doc", (q: any) => q.eq("table", table).eq("docId", docId))
    .order("desc")
    .first();
  return last === null ? null : (last.rev as bigint);
}

/** The PostgreSQL _id of a document created there, if it was. */
export async function externalIdOf(db: Db, table: string, docId: string): Promise<string | undefined> {
  const mapped = await db
    .query("migrationkitIdMap")
    .withIndex("by_doc", (q: any) => q.eq("table", table).eq("docId", docId))
    .first();
  return mapped === null ? undefined : (mapped.externalId as string);
}

/** The document without its system fields, its references named as PostgreSQL knows them. */
async function outboundFields(db: Db, table: string, doc: Record<string, unknown>) {
  const { _id, _creationTime, ...fields } = doc;
  for (const [field, target] of Object.entries(ID_FIELDS[table] ?? {})) {
    const value = fields[field];
    if (typeof value === "string") {
      fields[field] = (await externalIdOf(db, target, value)) ?? value;
    }
  }
  return { fields, creationTime: _creationTime as number };
}

export async function recordWrite(db: Db, table: string, docId: string, op: Op): Promise<void> {
  const doc = op === "delete" ? null : await db.get(docId);
  const rev = await nextRevision(db, table, docId);
  const externalId = await externalIdOf(db, table, docId);
  const outbound = doc === null ? null : await outboundFields(db, table, doc);
  await db.insert("migrationkitOutbox", {
    table,
    docId,
    ...(externalId === undefined ? {} : { externalId }),
    op: doc === null ? "delete" : op,
    rev,
    doc: outbound === null ? null : outbound.fields,
    ...(outbound === null ? {} : { creationTime: outbound.creationTime }),
    status: "pending",
    at: Date.now(),
  });
}

/** `db` with every write to a tracked table recorded in the outbox. */
export function outboxDb<DB>(db: DB): DB {
  const raw = db as Db;
  const tableOf = (table: string | undefined, id: string): string | undefined =>
    table ?? TRACKED.find((t) => raw.normalizeId(t, id) !== null);
  const writes = {
    insert: async (table: string, value: unknown) => {
      const id = await raw.insert(table, value);
      if (tracked.has(table)) await recordWrite(raw, table, id, "insert");
      return id;
    },
    patch: async (a0: any, a1: any, a2?: any) => {
      const [table, id, value] = a2 === undefined ? [undefined, a0, a1] : [a0, a1, a2];
      await (table === undefined ? raw.patch(id, value) : raw.patch(table, id, value));
      const name = tableOf(table, id);
      if (name !== undefined && tracked.has(name)) await recordWrite(raw, name, id, "patch");
    },
    replace: async (a0: any, a1: any, a2?: any) => {
      const [table, id, value] = a2 === undefined ? [undefined, a0, a1] : [a0, a1, a2];
      await (table === undefined ? raw.replace(id, value) : raw.replace(table, id, value));
      const name = tableOf(table, id);
      if (name !== undefined && tracked.has(name)) await recordWrite(raw, name, id, "replace");
    },
    delete: async (a0: any, a1?: any) => {
      const [table, id] = a1 === undefined ? [undefined, a0] : [a0, a1];
      // Which table, before the document is gone.
      const name = tableOf(table, id);
      await (table === undefined ? raw.delete(id) : raw.delete(table, id));
      if (name !== undefined && tracked.has(name)) await recordWrite(raw, name, id, "delete");
    },
  };
  const tableWriter = (name: string) => {
    const inner = raw.table(name);
    const bound: Record<string, unknown> = {
      insert: (value: unknown) => writes.insert(name, value),
      patch: (id: string, value: unknown) => writes.patch(name, id, value),
      replace: (id: string, value: unknown) => writes.replace(name, id, value),
      delete: (id: string) => writes.delete(name, id),
    };
    return new Proxy(inner, { get: (target, prop) => bound[prop as string] ?? forward(target, prop) });
  };
  const overrides: Record<string, unknown> = { ...writes, table: tableWriter };
  return new Proxy(raw, { get: (target, prop) => overrides[prop as string] ?? forward(target, prop) }) as DB;
}

function forward(target: any, prop: string | symbol): unknown {
  const value = Reflect.get(target, prop);
  return typeof value === "function" ? value.bind(target) : value;
}

/** A mutation builder whose handlers see `outboxDb(ctx.db)`. */
export function withOutbox<B extends (definition: any) => any>(builder: B): B {
  const wrap =
    (handler: (ctx: any, args: any) => unknown) =>
    (ctx: any, args: any): unknown =>
      handler({ ...ctx, db: outboxDb(ctx.db) }, args);
  return ((definition: any) =>
    typeof definition === "function"
      ? builder(wrap(definition))
      : builder({ ...definition, handler: wrap(definition.handler) })) as B;
}
