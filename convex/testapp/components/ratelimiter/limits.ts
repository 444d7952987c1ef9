// The ratelimiter component's API: fixed-window counters by key. The app
// calls these through `components.ratelimiter.limits.*`.
import { v } from "convex/values";
import { mutation, query } from "./_generated/server";

const state = v.object({ key: v.string(), count: v.int64(), resetAt: v.float64(), ok: v.boolean() });

export const hit = mutation({
  args: { key: v.string(), max: v.int64(), windowMs: v.float64() },
  returns: state,
  handler: async (ctx, { key, max, windowMs }) => {
    const now = Date.now();
    const found = await ctx.db
      .query("limits")
      .withIndex("by_key", (q) => q.eq("key", key))
      .unique();
    if (found === null) {
      const resetAt = now + windowMs;
      await ctx.db.insert("limits", { key, count: 1n, resetAt });
      return { key, count: 1n, resetAt, ok: 1n <= max };
    }
    const expired = found.resetAt <= now;
    const count = expired ? 1n : found.count + 1n;
    const resetAt = expired ? now + windowMs : found.resetAt;
    await ctx.db.patch(found._id, { count, resetAt });
    return { key, count, resetAt, ok: count <= max };
  },
});

export const reset = mutation({
  args: { key: v.string() },
  returns: v.boolean(),
  handler: async (ctx, { key }) => {
    const found = await ctx.db
      .query("limits")
      .withIndex("by_key", (q) => q.eq("key", key))
      .unique();
    if (found === null) {
      return false;
    }
    await ctx.db.delete(found._id);
    return true;
  },
});

export const get = query({
  args: { key: v.string() },
  handler: async (ctx, { key }) =>
    await ctx.db
      .query("limits")
      .withIndex("by_key", (q) => q.eq("key", key))
      .unique(),
});

export const list = query({
  args: {},
  handler: async (ctx) => await ctx.db.query("limits").collect(),
});
