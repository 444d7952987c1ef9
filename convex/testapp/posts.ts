// Posts: hand-written public functions.
import { v } from "convex/values";
import { query } from "./_generated/server";
import { customizedMutation as mutation } from "./functions";
import { postFields, postStatus } from "./schema";

export const create = mutation({
  args: postFields,
  returns: v.id("posts"),
  handler: async (ctx, args) => {
    if ((await ctx.db.get(args.author)) === null) {
      throw new Error(`no user ${args.author}`);
    }
    return await ctx.db.insert("posts", args);
  },
});

/** Patches the given fields; `attachment` or `publishedAt` set to null are removed. */
export const update = mutation({
  args: {
    id: v.id("posts"),
    title: v.optional(v.string()),
    body: v.optional(v.string()),
    tags: v.optional(v.array(v.string())),
    stats: v.optional(postFields.stats),
    status: v.optional(postStatus),
    score: v.optional(postFields.score),
    teamId: v.optional(v.string()),
    attachment: v.optional(v.union(v.bytes(), v.null())),
    removeAttachment: v.optional(v.boolean()),
    publishedAt: v.optional(v.union(v.number(), v.null())),
  },
  returns: v.null(),
  handler: async (ctx, { id, removeAttachment, publishedAt, ...fields }) => {
    await ctx.db.patch(id, {
      ...fields,
      ...(removeAttachment === true ? { attachment: undefined } : {}),
      ...(publishedAt === undefined ? {} : { publishedAt: publishedAt ?? undefined }),
    });
    return null;
  },
});

/** Counts a view: `stats.views` goes up by one. */
export const view = mutation({
  args: { id: v.id("posts") },
  returns: v.int64(),
  handler: async (ctx, { id }) => {
    const post = await ctx.db.get(id);
    if (post === null) {
      throw new Error(`no post ${id}`);
    }
    const views = post.stats.views + 1n;
    await ctx.db.patch(id, { stats: { ...post.stats, views } });
    return views;
  },
});

/** Retitles several posts in one transaction; any missing one fails them all. */
export const retitle = mutation({
  args: { ids: v.array(v.string()), title: v.string() },
  returns: v.null(),
  handler: async (ctx, { ids, title }) => {
    for (const given of ids) {
      const id = ctx.db.normalizeId("posts", given);
      if (id === null || (await ctx.db.get(id)) === null) {
        throw new Error(`no post ${given}`);
      }
      await ctx.db.patch(id, { title });
    }
    return null;
  },
});

export const remove = mutation({
  args: { id: v.id("posts") },
  returns: v.null(),
  handler: async (ctx, { id }) => {
    await ctx.db.delete(id);
    return null;
  },
});

export const get = query({
  args: { id: v.id("posts") },
  handler: async (ctx, { id }) => await ctx.db.get(id),
});

export const list = query({
  args: { teamId: v.optional(v.string()) },
  handler: async (ctx, { teamId }) =>
    teamId === undefined
      ? await ctx.db.query("posts").collect()
      : await ctx.db
          .query("posts")
          .withIndex("by_team", (q) => q.eq("teamId", teamId))
          .collect(),
});
