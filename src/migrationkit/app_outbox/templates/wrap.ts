// The app's mutations, wrapped so that every write to a tracked table also
// records one outbox row and one audit row (migrationkitAuditLog) in the
// same transaction. Adopt it in one place:
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
//   export const mutation = customMutation(raw, customCtx((ctx) => ({ db: outboxDb(ctx.db, ctx.auth) })));
//
// (without `ctx.auth` there, the audit rows' actor is null). A mutation that
// throws rolls its outbox and audit rows back with its writes.
import { ConvexError } from "convex/values";
import { ID_FIELDS, TRACKED, WORKSPACE_FIELDS } from "./config";

type Op = "insert" | "patch" | "replace" | "delete";
type Db = any;
type Doc = Record<string, unknown>;
/** `ctx.auth`, or anything that says who the caller is the same way. */
type Auth = { getUserIdentity(): Promise<{ subject: string } | null> };

const tracked = new Set<string>(TRACKED);

/** The audit log's table: written here only, never changed or removed through the wrapper. */
export const AUDIT_LOG = "migrationkitAuditLog";

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

/**
 * Refuses the write (the whole mutation rolls back) while PostgreSQL is the
 * authority for its scope. The most specific fence wins: (table, workspace),
 * ("*", workspace), (table, "*"), ("*", "*"). Read inside the mutation, so a
 * fence set concurrently either commits first (and this write is refused)
 * or after (and this write is in the outbox the switch drains first).
 */
export async function checkFence(db: Db, table: string, doc: Doc | null): Promise<void> {
  await checkScope(db, table, workspaceOf(table, doc));
}

/** The document's workspace, as the fence scopes it ("*" when the table has none). */
function workspaceOf(table: string, doc: Doc | null): string {
  const field = WORKSPACE_FIELDS[table];
  const value = field === undefined || doc === null ? undefined : doc[field];
  return typeof value === "string" ? value : "*";
}

async function checkScope(db: Db, table: string, workspace: string): Promise<void> {
  const scopes: Array<[string, string]> = [[table, workspace], ["*", workspace], [table, "*"], ["*", "*"]];
  for (const [entity, workspaceId] of scopes) {
    const fence = await db
      .query("migrationkitFence")
      .withIndex("by_scope", (q: any) => q.eq("entity", entity).eq("workspaceId", workspaceId))
      .first();
    if (fence !== null) {
      if (fence.authority === "postgres") {
        throw new ConvexError({ code: "StageMoved", authority: "postgres", entity: table, workspaceId: workspace });
      }
      return;
    }
  }
}

/** The document's own fields (system fields apart), or null. */
function fieldsOf(doc: Doc | null): Doc | null {
  if (doc === null) return null;
  const { _id, _creationTime, ...fields } = doc;
  return fields;
}

/** The caller's identity subject; null for an anonymous caller or when `auth` is not given. */
async function actorOf(auth: Auth | undefined): Promise<string | null> {
  const identity = auth === undefined ? null : await auth.getUserIdentity();
  return identity?.subject ?? null;
}

/**
 * The outbox row of a write to a tracked table, and its audit row: `before`
 * is the document as it was before the write (null for an insert), read by
 * the caller before writing.
 */
export async function recordWrite(
  db: Db,
  table: string,
  docId: string,
  op: Op,
  before: Doc | null = null,
  auth?: Auth,
): Promise<void> {
  const doc = op === "delete" ? null : await db.get(docId);
  // Both workspaces: a document may neither leave nor enter a fenced one.
  // (The audit row follows a write that was already let through.)
  // Most writes keep their workspace: each one is looked up once.
  if (table !== AUDIT_LOG) {
    for (const workspace of new Set([workspaceOf(table, before), workspaceOf(table, doc)])) {
      await checkScope(db, table, workspace);
    }
  }
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
  if (table === AUDIT_LOG) return; // the audit row itself: replicated, never audited
  const auditId = await db.insert(AUDIT_LOG, {
    table,
    docId,
    action: doc === null ? "delete" : op === "insert" ? "create" : "update",
    before: fieldsOf(before),
    after: fieldsOf(doc),
    actor: await actorOf(auth),
    at: Date.now(),
  });
  // Mirrored like any table: through the outbox too, when the app's config tracks it.
  if (tracked.has(AUDIT_LOG)) await recordWrite(db, AUDIT_LOG, auditId, "insert");
}

function refuseAuditWrite(table: string | undefined): void {
  if (table === AUDIT_LOG) {
    throw new Error(`${AUDIT_LOG} is append-only: only the migrationkit wrapper writes to it`);
  }
}

/**
 * `db` with every write to a tracked table recorded in the outbox and the
 * audit log; `auth` (the mutation's `ctx.auth`) names the audit rows' actor.
 */
export function outboxDb<DB>(db: DB, auth?: Auth): DB {
  const raw = db as Db;
  const tableOf = (table: string | undefined, id: string): string | undefined =>
    table ?? [...TRACKED, AUDIT_LOG].find((t) => raw.normalizeId(t, id) !== null);
  // The document as it is before a write: what the audit row records as `before`.
  const current = async (name: string | undefined, id: string): Promise<Doc | null> =>
    name !== undefined && tracked.has(name) ? await raw.get(id) : null;
  const writes = {
    insert: async (table: string, value: unknown) => {
      refuseAuditWrite(table);
      const id = await raw.insert(table, value);
      if (tracked.has(table)) await recordWrite(raw, table, id, "insert", null, auth);
      return id;
    },
    patch: async (a0: any, a1: any, a2?: any) => {
      const [table, id, value] = a2 === undefined ? [undefined, a0, a1] : [a0, a1, a2];
      const name = tableOf(table, id);
      refuseAuditWrite(name);
      const before = await current(name, id);
      await (table === undefined ? raw.patch(id, value) : raw.patch(table, id, value));
      if (name !== undefined && tracked.has(name)) await recordWrite(raw, name, id, "patch", before, auth);
    },
    replace: async (a0: any, a1: any, a2?: any) => {
      const [table, id, value] = a2 === undefined ? [undefined, a0, a1] : [a0, a1, a2];
      const name = tableOf(table, id);
      refuseAuditWrite(name);
      const before = await current(name, id);
      await (table === undefined ? raw.replace(id, value) : raw.replace(table, id, value));
      if (name !== undefined && tracked.has(name)) await recordWrite(raw, name, id, "replace", before, auth);
    },
    delete: async (a0: any, a1?: any) => {
      const [table, id] = a1 === undefined ? [undefined, a0] : [a0, a1];
      // Which table, and the document, before it is gone.
      const name = tableOf(table, id);
      refuseAuditWrite(name);
      const before = await current(name, id);
      await (table === undefined ? raw.delete(id) : raw.delete(table, id));
      if (name !== undefined && tracked.has(name)) await recordWrite(raw, name, id, "delete", before, auth);
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
      handler({ ...ctx, db: outboxDb(ctx.db, ctx.auth) }, args);
  return ((definition: any) =>
    typeof definition === "function"
      ? builder(wrap(definition))
      : builder({ ...definition, handler: wrap(definition.handler) })) as B;
}
