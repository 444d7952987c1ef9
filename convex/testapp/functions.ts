// The app's mutation builders with the migrationkit outbox: the one place the
// app adopts it. Its modules import `mutation` / `internalMutation` from here
// instead of from "./_generated/server"; nothing else changes.
import { customCtx, customMutation } from "convex-helpers/server/customFunctions";
import { internalMutation as rawInternalMutation, mutation as rawMutation } from "./_generated/server";
import { outboxDb, withOutbox } from "./migrationkit/wrap";

export const mutation = withOutbox(rawMutation);
export const internalMutation = withOutbox(rawInternalMutation);

// The same, for an app built on convex-helpers' custom functions: the
// database is wrapped instead of the builder (posts.ts uses this one).
export const customizedMutation = customMutation(
  rawMutation,
  customCtx((ctx) => ({ db: outboxDb(ctx.db, ctx.auth) })),
);
