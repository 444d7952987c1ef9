// The forms of a write the Convex API offers, for the outbox wrapper's tests:
// the forms naming the table, and the older id-only forms.
import { v } from "convex/values";
import { mutation } from "./functions";
import { userFields } from "./schema";

export const everyForm = mutation({
  args: { user: v.object(userFields) },
  returns: v.id("users"),
  handler: async (ctx, { user }) => {
    const id = await ctx.db.insert("users", user);
    await ctx.db.patch("users", id, { name: "patched with the table named" });
    await ctx.db.patch(id, { name: "patched by id alone" });
    await ctx.db.replace("users", id, { ...user, name: "replaced with the table named" });
    await ctx.db.delete("users", id);
    return id;
  },
});
