// Events: a table whose documents are one of several object shapes.
import { v } from "convex/values";
import { mutation } from "./functions";
import { query } from "./_generated/server";
import { click, view } from "./schema";

export const record = mutation({
  args: { event: v.union(click, view) },
  returns: v.id("events"),
  handler: async (ctx, { event }) => await ctx.db.insert("events", event),
});

export const remove = mutation({
  args: { id: v.id("events") },
  returns: v.null(),
  handler: async (ctx, { id }) => {
    await ctx.db.delete(id);
    return null;
  },
});

export const list = query({
  args: {},
  handler: async (ctx) => await ctx.db.query("events").collect(),
});
