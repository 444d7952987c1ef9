// Users: hand-written public functions.
import { ConvexError, v } from "convex/values";
import { components } from "./_generated/api";
import { mutation } from "./functions";
import { query } from "./_generated/server";
import { profile, role, userFields } from "./schema";

export const create = mutation({
  args: userFields,
  returns: v.id("users"),
  handler: async (ctx, args) => await ctx.db.insert("users", args),
});

/**
 * Creates a user unless the team has created `max` in the current window:
 * one transaction writing to the app and to the ratelimiter component.
 */
export const createLimited = mutation({
  args: { user: v.object(userFields), max: v.optional(v.union(v.number(), v.int64())) },
  returns: v.id("users"),
  handler: async (ctx, { user, max }) => {
    const limit = await ctx.runMutation(components.ratelimiter.limits.hit, {
      key: `users:create:${user.teamId}`,
      max: max === undefined ? 100n : BigInt(max),
      windowMs: 60_000,
    });
    if (!limit.ok) {
      throw new ConvexError({ code: "RateLimited", resetAt: limit.resetAt });
    }
    return await ctx.db.insert("users", user);
  },
});

/** Patches the given fields; `age` or `avatar` set to null are removed. */
export const update = mutation({
  args: {
    id: v.id("users"),
    name: v.optional(v.string()),
    email: v.optional(v.string()),
    age: v.optional(v.union(v.number(), v.null())),
    credits: v.optional(v.int64()),
    avatar: v.optional(v.union(v.bytes(), v.null())),
    role: v.optional(role),
    teamId: v.optional(v.string()),
    profile: v.optional(profile),
  },
  returns: v.null(),
  handler: async (ctx, { id, age, avatar, ...fields }) => {
    await ctx.db.patch(id, {
      ...fields,
      ...(age === undefined ? {} : { age: age ?? undefined }),
      ...(avatar === undefined ? {} : { avatar: avatar ?? undefined }),
    });
    return null;
  },
});

/** Replaces the user's document whole. */
export const replace = mutation({
  args: { id: v.id("users"), user: v.object(userFields) },
  returns: v.null(),
  handler: async (ctx, { id, user }) => {
    await ctx.db.replace(id, user);
    return null;
  },
});

export const remove = mutation({
  args: { id: v.id("users") },
  returns: v.null(),
  handler: async (ctx, { id }) => {
    await ctx.db.delete(id);
    return null;
  },
});

export const get = query({
  args: { id: v.id("users") },
  handler: async (ctx, { id }) => await ctx.db.get(id),
});

export const list = query({
  args: { teamId: v.optional(v.string()) },
  handler: async (ctx, { teamId }) =>
    teamId === undefined
      ? await ctx.db.query("users").collect()
      : await ctx.db
          .query("users")
          .withIndex("by_team", (q) => q.eq("teamId", teamId))
          .collect(),
});
