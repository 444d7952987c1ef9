/**
 * Who is calling: the `Authorization` header.
 *
 * - `Convex <admin key>`: an admin. Needed for internal functions, streaming
 *   export and the test-only endpoints. A wrong key is refused outright
 *   (401 `BadAdminKey`), on every endpoint, as the real backend does.
 * - `Bearer <JWT>`: a user. The token is decoded but NOT verified (there is
 *   no auth provider here); its claims become `ctx.auth.getUserIdentity()`.
 * - nothing: anonymous; public functions only.
 *
 * The key is compared in constant time and never logged or echoed.
 */
import { timingSafeEqual, createHash } from "node:crypto";
import type { UserIdentity } from "convex/server";
import { HttpError } from "./http.ts";

export interface Caller {
  admin: boolean;
  identity?: Partial<UserIdentity> & Record<string, unknown>;
}

export function callerOf(header: string | undefined, adminKey: string): Caller {
  if (header === undefined || header.trim() === "") {
    return { admin: false };
  }
  if (/^convex /i.test(header)) {
    if (!sameSecret(header.slice("convex ".length).trim(), adminKey)) {
      throw new HttpError(401, "BadAdminKey", "The provided admin key was invalid for this instance");
    }
    return { admin: true };
  }
  if (/^bearer /i.test(header)) {
    return { admin: false, identity: identityFromJwt(header.slice("bearer ".length).trim()) };
  }
  throw new HttpError(
    401,
    "InvalidAuthHeader",
    "The Authorization header must be `Convex <admin key>` or `Bearer <token>`",
  );
}

export function requireAdmin(caller: Caller): void {
  if (!caller.admin) {
    throw new HttpError(
      401,
      "Unauthenticated",
      "This endpoint needs an admin or deploy key: send `Authorization: Convex <key>`",
    );
  }
}

function sameSecret(given: string, expected: string): boolean {
  // Hash first so the comparison takes the same time whatever the lengths.
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function identityFromJwt(token: string): Caller["identity"] {
  const payload = token.split(".")[1];
  try {
    const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString("utf8")) as Record<
      string,
      unknown
    >;
    if (claims === null || typeof claims !== "object") {
      throw new Error("not an object");
    }
    const { sub, iss, ...rest } = claims;
    return {
      ...rest,
      ...(typeof sub === "string" ? { subject: sub } : {}),
      ...(typeof iss === "string" ? { issuer: iss } : {}),
    };
  } catch {
    throw new HttpError(401, "InvalidAuthHeader", "The bearer token is not a JWT");
  }
}
