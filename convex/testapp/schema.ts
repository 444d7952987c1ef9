// The test app's schema: hand-written, not in the kit's generated shape.
// Covers the value types and table kinds a migration has to handle.
import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";
import { migrationkitTables } from "./migrationkit/tables";

export const role = v.union(v.literal("admin"), v.literal("member"), v.literal("guest"));

export const profile = v.object({
  bio: v.optional(v.string()),
  links: v.array(v.string()),
  prefs: v.object({ theme: v.string(), beta: v.boolean() }),
});

export const userFields = {
  name: v.string(),
  email: v.string(),
  age: v.optional(v.number()),
  credits: v.int64(),
  avatar: v.optional(v.bytes()),
  role,
  // The workspace a migration scopes users by.
  teamId: v.string(),
  profile,
};

export const postStatus = v.union(v.literal("draft"), v.literal("published"), v.literal("archived"));

export const postFields = {
  author: v.id("users"),
  teamId: v.string(),
  title: v.string(),
  body: v.string(),
  tags: v.array(v.string()),
  stats: v.object({ views: v.int64(), ratings: v.array(v.number()) }),
  status: postStatus,
  // Not a literal union: a number or a string.
  score: v.union(v.number(), v.string()),
  attachment: v.optional(v.union(v.bytes(), v.null())),
  publishedAt: v.optional(v.number()),
};

export const click = v.object({ kind: v.literal("click"), x: v.number(), y: v.number() });
export const view = v.object({ kind: v.literal("view"), page: v.string() });

export default defineSchema(
  {
    users: defineTable(userFields).index("by_team", ["teamId"]).index("by_email", ["email"]),
    posts: defineTable(postFields).index("by_team", ["teamId"]).index("by_author", ["author"]),
    // The document validator is a union of objects.
    events: defineTable(v.union(click, view)),
    // `scratch` is written to but not declared: it has no schema.
    // The migrationkit outbox (convex/testapp/functions.ts adopts it).
    ...migrationkitTables,
  },
  { strictTableNameTypes: false },
);
