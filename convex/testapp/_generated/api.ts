/**
 * References to this app's Convex functions, e.g. `api.users.create`, and to
 * the components it installs, e.g. `components.ratelimiter.limits.hit`.
 *
 * Hand-kept stand-in for the file `npx convex codegen` writes (codegen needs a
 * deployment). `anyApi` and `componentsGeneric()` build a reference from any
 * property path at run time; `api`/`internal` are untyped, `components` is
 * typed by hand the way codegen types a component's functions (as internal
 * references, callable only from this app). A real `npx convex dev` /
 * `deploy` replaces this file with the generated one.
 */
import { anyApi, componentsGeneric } from "convex/server";
import type { AnyApi, FunctionReference } from "convex/server";

export const api: AnyApi = anyApi;

export const internal: AnyApi = anyApi;

type Limit = { key: string; count: bigint; resetAt: number };

export const components = componentsGeneric() as unknown as {
  ratelimiter: {
    limits: {
      hit: FunctionReference<
        "mutation",
        "internal",
        { key: string; max: bigint; windowMs: number },
        Limit & { ok: boolean }
      >;
      reset: FunctionReference<"mutation", "internal", { key: string }, boolean>;
      get: FunctionReference<"query", "internal", { key: string }, (Limit & { _id: string; _creationTime: number }) | null>;
      list: FunctionReference<"query", "internal", Record<string, never>, Array<Limit & { _id: string; _creationTime: number }>>;
    };
  };
};
