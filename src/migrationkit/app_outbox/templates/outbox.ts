// The worker's side of the migrationkit outbox: read pending rows, mark them
// processed, and (for the rollback window) apply PostgreSQL's changes to the
// app's own tables. Internal functions: callable with the deploy key only.
import { ConvexError, v } from "convex/values";
import { internalMutation, internalQuery } from "../_generated/server";
import { ID_FIELDS, TRACKED } from "./config";
import { externalIdOf, latestRevision } from "./wrap";

const MAX_LIMIT = 1000;
// A Python client sends an int as Int64.
const count = v.union(v.number(), v.int64());

function checkLimit(given: number | bigint): number {
  const limit = Number(given);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new ConvexError({ code: "ValidationFailed", message: `limit must be an integer from 1 to ${MAX_LIMIT}` });
  }
  return limit;
}

/** The oldest pending rows, as revisions keyed the way PostgreSQL keys them. */
export const pending = internalQuery({
  args: { limit: count },
  handler: async (ctx, args) => {
    const limit = checkLimit(args.limit);
    const rows = await ctx.db
      .query("migrationkitOutbox")
      .withIndex("by_status", (q) => q.eq("status", "pending"))
      .take(limit);
    return rows.map((row) => {
      const id = row.externalId ?? row.docId;
      return {
        eventId: row._id,
        table: row.table,
        id,
        rev: row.rev,
        deleted: row.op === "delete",
        document: row.doc === null ? null : { ...row.doc, _id: id, _creationTime: row.creationTime },
      };
    });
  },
});

/** Marks rows the worker has committed to PostgreSQL; twice is harmless. */
export const markProcessed = internalMutation({
  args: { eventIds: v.array(v.string()) },
  handler: async (ctx, { eventIds }) => {
    let marked = 0;
    for (const eventId of eventIds) {
      const id = ctx.db.normalizeId("migrationkitOutbox", eventId);
      const row = id === null ? null : await ctx.db.get(id);
      if (id !== null && row !== null && row.status === "pending") {
        await ctx.db.patch(id, { status: "done" });
        marked += 1;
      }
    }
    return marked;
  },
});

/** The backlog and the age of its oldest row (scans at most `limit`). */
export const stats = internalQuery({
  args: { limit: count },
  handler: async (ctx, args) => {
    const limit = checkLimit(args.limit);
    const rows = await ctx.db
      .query("migrationkitOutbox")
      .withIndex("by_status", (q) => q.eq("status", "pending"))
      .take(limit);
    return { pending: rows.length, oldestAt: rows.length === 0 ? null : rows[0]!.at };
  },
});

/** Sets the cutover fence of a scope (`migrationkit cutover set` calls it). */
export const setFence = internalMutation({
  args: {
    entity: v.string(),
    workspaceId: v.string(),
    authority: v.union(v.literal("convex"), v.literal("postgres")),
  },
  handler: async (ctx, { entity, workspaceId, authority }) => {
    const existing = await ctx.db
      .query("migrationkitFence")
      .withIndex("by_scope", (q) => q.eq("entity", entity).eq("workspaceId", workspaceId))
      .first();
    if (existing === null) {
      await ctx.db.insert("migrationkitFence", { entity, workspaceId, authority });
    } else {
      await ctx.db.patch(existing._id, { authority });
    }
    return authority;
  },
});

const change = v.object({
  table: v.string(),
  // The PostgreSQL _id: a Convex id, or the id of a row created in PostgreSQL.
  id: v.string(),
  rev: v.int64(),
  deleted: v.boolean(),
  document: v.optional(v.any()),
});

/**
 * PostgreSQL's changes, written to the app's tables (the rollback window).
 * Version-guarded by `rev`, so replays and reordering change nothing; the
 * writes are not recorded as pending, so nothing echoes back. A row created
 * in PostgreSQL gets a new Convex document, and the pair is kept in
 * migrationkitIdMap so later changes (and references to it) find it.
 */
export const apply = internalMutation({
  args: { changes: v.array(change) },
  handler: async (ctx, { changes }) => {
    const db = ctx.db as any;
    let applied = 0;
    let stale = 0;
    const ids: string[] = [];
    for (const c of changes) {
      if (!(TRACKED as readonly string[]).includes(c.table)) {
        throw new ConvexError({ code: "UnknownTable", message: `${c.table} is not tracked by the outbox` });
      }
      const mapping = await db
        .query("migrationkitIdMap")
        .withIndex("by_external", (q: any) => q.eq("table", c.table).eq("externalId", c.id))
        .first();
      let docId: string | null = mapping?.docId ?? db.normalizeId(c.table, c.id);
      const current = docId === null ? null : await latestRevision(db, c.table, docId);
      if (current !== null && current >= c.rev) {
        stale += 1;
        ids.push(docId ?? "");
        continue;
      }
      const existing = docId === null ? null : await db.get(docId);
      if (c.deleted) {
        if (existing !== null) await db.delete(docId);
      } else {
        const fields = await inboundFields(db, c.table, c.document ?? {});
        if (existing !== null) {
          await db.replace(docId, fields);
        } else {
          // New here: created in PostgreSQL, or deleted here and written there since.
          docId = await db.insert(c.table, fields);
          if (mapping !== null) {
            await db.patch(mapping._id, { docId });
          } else {
            await db.insert("migrationkitIdMap", { table: c.table, externalId: c.id, docId });
          }
        }
      }
      if (docId !== null) {
        const externalId = await externalIdOf(db, c.table, docId);
        await db.insert("migrationkitOutbox", {
          table: c.table,
          docId,
          ...(externalId === undefined ? {} : { externalId }),
          op: c.deleted ? "delete" : existing !== null ? "replace" : "insert",
          rev: c.rev,
          doc: null,
          status: "applied",
          at: Date.now(),
        });
      }
      applied += 1;
      ids.push(docId ?? "");
    }
    return { applied, stale, ids };
  },
});

/** The fields to store: system fields dropped, references translated to Convex ids. */
async function inboundFields(db: any, table: string, document: Record<string, unknown>) {
  const { _id, _creationTime, ...fields } = document;
  for (const [field, target] of Object.entries(ID_FIELDS[table] ?? {})) {
    const value = fields[field];
    if (typeof value !== "string" || db.normalizeId(target, value) !== null) continue;
    const mapped = await db
      .query("migrationkitIdMap")
      .withIndex("by_external", (q: any) => q.eq("table", target).eq("externalId", value))
      .first();
    if (mapped === null) {
      throw new ConvexError({
        code: "UnresolvedReference",
        message: `${table}.${field} refers to ${target} ${value}, which Convex does not have (yet)`,
      });
    }
    fields[field] = mapped.docId;
  }
  return fields;
}
