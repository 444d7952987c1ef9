// Who is calling: the user identity the function sees (null when anonymous).
// Used to check auth as real clients send it (a user's JWT, or an admin key
// "acting as" a user); it reads and writes no table.
import { internalQuery, query } from "./_generated/server";

export const whoami = query({
  args: {},
  handler: async (ctx) => await ctx.auth.getUserIdentity(),
});

/** The same, callable only with the admin key. */
export const whoamiInternal = internalQuery({
  args: {},
  handler: async (ctx) => await ctx.auth.getUserIdentity(),
});
