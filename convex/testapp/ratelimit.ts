// The app's public entry points to the ratelimiter component (a component's
// functions are only callable from the app that installs it).
import { v } from "convex/values";
import { components } from "./_generated/api";
import { mutation, query } from "./_generated/server";

export const hit = mutation({
  args: { key: v.string(), max: v.optional(v.int64()), windowMs: v.optional(v.float64()) },
  handler: async (ctx, { key, max, windowMs }) =>
    await ctx.runMutation(components.ratelimiter.limits.hit, {
      key,
      max: max ?? 10n,
      windowMs: windowMs ?? 60_000,
    }),
});

export const reset = mutation({
  args: { key: v.string() },
  handler: async (ctx, { key }) => await ctx.runMutation(components.ratelimiter.limits.reset, { key }),
});

export const get = query({
  args: { key: v.string() },
  handler: async (ctx, { key }) => await ctx.runQuery(components.ratelimiter.limits.get, { key }),
});

export const list = query({
  args: {},
  handler: async (ctx) => await ctx.runQuery(components.ratelimiter.limits.list, {}),
});
