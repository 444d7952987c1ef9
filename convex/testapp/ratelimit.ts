// The app's public entry points to the ratelimiter component (a component's
// functions are only callable from the app that installs it).
import { v } from "convex/values";
import { components } from "./_generated/api";
import { mutation } from "./functions";
import { query } from "./_generated/server";

// Numbers may come as floats or Int64 (a Python client sends an int as Int64).
const number = v.union(v.number(), v.int64());

export const hit = mutation({
  args: { key: v.string(), max: v.optional(number), windowMs: v.optional(number) },
  handler: async (ctx, { key, max, windowMs }) =>
    await ctx.runMutation(components.ratelimiter.limits.hit, {
      key,
      max: max === undefined ? 10n : BigInt(max),
      windowMs: windowMs === undefined ? 60_000 : Number(windowMs),
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
