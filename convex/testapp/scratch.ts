// Scratch: a table the schema does not declare, holding any documents.
import { v } from "convex/values";
import { mutation } from "./functions";
import { query } from "./_generated/server";

/** Inserts `doc`, or replaces document `id` with it. */
export const put = mutation({
  args: { doc: v.record(v.string(), v.any()), id: v.optional(v.string()) },
  returns: v.string(),
  handler: async (ctx, { doc, id }) => {
    if (id === undefined) {
      return await ctx.db.insert("scratch", doc);
    }
    const found = ctx.db.normalizeId("scratch", id);
    if (found === null) {
      throw new Error(`not a scratch id: ${id}`);
    }
    await ctx.db.replace(found, doc);
    return found;
  },
});

export const remove = mutation({
  args: { id: v.string() },
  returns: v.null(),
  handler: async (ctx, { id }) => {
    const found = ctx.db.normalizeId("scratch", id);
    if (found === null) {
      throw new Error(`not a scratch id: ${id}`);
    }
    await ctx.db.delete(found);
    return null;
  },
});

export const list = query({
  args: {},
  handler: async (ctx) => await ctx.db.query("scratch").collect(),
});
