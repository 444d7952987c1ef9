// Domain queries on leads, written by hand like their SQL counterparts in
// PostgresLeadRepository: the codegen covers only what every entity has.
import { v } from "convex/values";
import { internalQuery } from "./_generated/server";
import { checkId, checkLimit, checkWorkspace } from "./outbox";

const segment = v.union(v.literal("startup"), v.literal("enterprise"), v.literal("smb"));

function emailDomain(email: string): string {
  return email.slice(email.lastIndexOf("@") + 1).toLowerCase();
}

// Up to `limit` live leads after `after` (id order) matching every filter set.
export const listBySegment = internalQuery({
  args: {
    workspaceId: v.string(),
    after: v.union(v.string(), v.null()),
    limit: v.number(),
    segment: v.union(segment, v.null()),
    emailDomain: v.union(v.string(), v.null()),
    createdAfter: v.union(v.number(), v.null()),
  },
  handler: async (ctx, args) => {
    checkWorkspace(args.workspaceId);
    checkLimit(args.limit);
    if (args.after !== null) checkId(args.after);
    const rows = ctx.db
      .query("leads")
      .withIndex("by_workspace_id", (q: any) => {
        const inWorkspace = q.eq("workspaceId", args.workspaceId);
        return args.after === null ? inWorkspace : inWorkspace.gt("id", args.after);
      });
    const page: any[] = [];
    for await (const lead of rows) {
      if (lead.deletedAt !== null) continue;
      if (args.segment !== null && lead.segment !== args.segment) continue;
      if (args.emailDomain !== null && emailDomain(lead.email) !== args.emailDomain) continue;
      if (args.createdAfter !== null && !(lead.createdAt > args.createdAfter)) continue;
      page.push(lead);
      if (page.length >= args.limit) break;
    }
    return page;
  },
});
