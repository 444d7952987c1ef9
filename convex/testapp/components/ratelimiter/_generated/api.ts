/**
 * References to this app's Convex functions, e.g. `api.leads.get` or
 * `internal.outbox.pending`.
 *
 * Hand-kept stand-in for the file `npx convex codegen` writes (codegen needs a
 * deployment). `anyApi` builds a reference from any property path, so these
 * are untyped; a real `npx convex dev` / `deploy` replaces this file with the
 * typed version.
 */
import { anyApi } from "convex/server";
import type { AnyApi } from "convex/server";

export const api: AnyApi = anyApi;

export const internal: AnyApi = anyApi;
