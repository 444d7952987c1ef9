// The tables the migrationkit outbox keeps in the app's own deployment.
// Spread them into the app's schema: defineSchema({ ...appTables, ...migrationkitTables }).
import { defineTable } from "convex/server";
import { v } from "convex/values";

export const migrationkitTables = {
  // One row per write to a tracked table, written in the write's own
  // transaction. `rev` orders the revisions of one document; `doc` is the
  // document after the write (system fields apart), null for a delete.
  migrationkitOutbox: defineTable({
    table: v.string(),
    docId: v.string(),
    // The document's PostgreSQL _id when it was created there (rollback).
    externalId: v.optional(v.string()),
    op: v.union(v.literal("insert"), v.literal("patch"), v.literal("replace"), v.literal("delete")),
    rev: v.int64(),
    doc: v.union(v.any(), v.null()),
    creationTime: v.optional(v.number()),
    // pending: for the worker; done: the worker has it in PostgreSQL;
    // applied: written here from PostgreSQL (kept as the revision record).
    status: v.union(v.literal("pending"), v.literal("done"), v.literal("applied")),
    at: v.number(),
  })
    .index("by_status", ["status"])
    .index("by_doc", ["table", "docId", "rev"]),
  // Documents created in PostgreSQL (during the rollback window) and the
  // Convex _id they were given here.
  migrationkitIdMap: defineTable({
    table: v.string(),
    externalId: v.string(),
    docId: v.string(),
  })
    .index("by_external", ["table", "externalId"])
    .index("by_doc", ["table", "docId"]),
  // The cutover fence: while PostgreSQL is the authority for a scope (a
  // table or "*", a workspace or "*"), the wrapper refuses the app's writes
  // to it (ConvexError StageMoved). `migrationkit cutover set` sets it
  // through migrationkit/outbox:setFence (MIGRATIONKIT_CONVEX_OUTBOX=app).
  migrationkitFence: defineTable({
    entity: v.string(),
    workspaceId: v.string(),
    authority: v.union(v.literal("convex"), v.literal("postgres")),
  }).index("by_scope", ["entity", "workspaceId"]),
  // The audit log: one row per write to a tracked table, in the write's own
  // transaction. `before` and `after` are the document (system fields apart)
  // before and after the write, null where there was none. `actor` is the
  // caller's identity (its `subject`) when it has one, null otherwise: never
  // guessed. Append-only: the wrapped db refuses to change or remove a row.
  // Not bookkeeping: it is mirrored to PostgreSQL like any table of the app.
  migrationkitAuditLog: defineTable({
    table: v.string(),
    docId: v.string(),
    action: v.union(v.literal("create"), v.literal("update"), v.literal("delete")),
    before: v.union(v.any(), v.null()),
    after: v.union(v.any(), v.null()),
    actor: v.union(v.string(), v.null()),
    at: v.number(),
  }).index("by_doc", ["table", "docId", "at"]),
};
