// Bulk test data: `seed:bulk` writes `count` generated documents in one
// transaction, half users and half posts by those users, so a benchmark can
// fill 100k documents in a hundred calls.
import { ConvexError, v, type GenericId } from "convex/values";
import { mutation } from "./_generated/server";

/** The most documents one call writes. */
export const MAX_BULK = 1000;

const ROLES = ["admin", "member", "guest"] as const;
const STATUSES = ["draft", "published", "archived"] as const;
const THEMES = ["light", "dark"] as const;

// Counts may be sent as floats or as Int64 (a Python client sends an int as Int64).
const count = v.union(v.number(), v.int64());

export const bulk = mutation({
  args: {
    count,
    // Numbers documents from here on, so successive calls do not repeat values.
    offset: v.optional(count),
    // Every user goes to this team; otherwise users spread over `teams` teams.
    teamId: v.optional(v.string()),
    teams: v.optional(count),
  },
  returns: v.object({ users: v.number(), posts: v.number() }),
  handler: async (ctx, args) => {
    const count = Number(args.count);
    const offset = Number(args.offset ?? 0);
    const teams = Number(args.teams ?? 10);
    const teamId = args.teamId;
    if (!Number.isInteger(count) || count < 1 || count > MAX_BULK) {
      throw new ConvexError(`count must be an integer from 1 to ${MAX_BULK}, got ${count}`);
    }
    if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(teams) || teams < 1) {
      throw new ConvexError("offset must be an integer >= 0 and teams an integer >= 1");
    }
    const userCount = Math.ceil(count / 2);
    const authors: Array<{ id: GenericId<"users">; teamId: string }> = [];
    for (let k = 0; k < userCount; k++) {
      const i = offset + k;
      const team = teamId ?? `team-${i % teams}`;
      const id = await ctx.db.insert("users", {
        name: `User ${i}`,
        email: `user${i}@example.com`,
        ...(i % 3 === 0 ? {} : { age: 18 + (i % 60) + 0.5 }),
        credits: BigInt(i) * 10n,
        ...(i % 5 === 0 ? { avatar: new Uint8Array([i & 255, (i >> 8) & 255, 1, 2]).buffer } : {}),
        role: ROLES[i % ROLES.length]!,
        teamId: team,
        profile: {
          ...(i % 2 === 0 ? { bio: `Bio of user ${i}` } : {}),
          links: i % 4 === 0 ? [] : [`https://example.com/u/${i}`],
          prefs: { theme: THEMES[i % THEMES.length]!, beta: i % 2 === 1 },
        },
      });
      authors.push({ id, teamId: team });
    }
    const postCount = count - userCount;
    for (let k = 0; k < postCount; k++) {
      const i = offset + k;
      const author = authors[k % authors.length]!;
      const status = STATUSES[i % STATUSES.length]!;
      await ctx.db.insert("posts", {
        author: author.id,
        teamId: author.teamId,
        title: `Post ${i}`,
        body: `Body of post ${i}.`,
        tags: i % 3 === 0 ? [] : ["bulk", `tag${i % 7}`],
        stats: { views: BigInt(i * 3), ratings: i % 2 === 0 ? [4.5, 3.0] : [] },
        status,
        score: i % 2 === 0 ? i / 4 : `grade-${i % 5}`,
        ...(i % 7 === 0 ? { attachment: new Uint8Array([7, i & 255]).buffer } : i % 11 === 0 ? { attachment: null } : {}),
        ...(status === "published" ? { publishedAt: 1_700_000_000_000 + i } : {}),
      });
    }
    return { users: userCount, posts: postCount };
  },
});
