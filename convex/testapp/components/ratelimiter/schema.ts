// The ratelimiter component's own tables.
import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

export default defineSchema({
  limits: defineTable({
    key: v.string(),
    count: v.int64(),
    resetAt: v.float64(),
  }).index("by_key", ["key"]),
});
