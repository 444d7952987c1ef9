/**
 * Who is calling: the `Authorization` header, read the way the real backend
 * reads it (its `local_backend/src/authentication.rs`, `keybroker` and
 * `common::types::admin_key`).
 *
 * - `Convex <admin key>`: an admin. Needed for internal functions, streaming
 *   export and the test-only endpoints. A wrong key is refused outright
 *   (401 `BadAdminKey`), on every endpoint.
 * - `Convex <admin key>:<base64 of a JSON identity>`: an admin acting as a
 *   user (`ConvexHttpClient.setAdminAuth(key, identity)`, the dashboard's
 *   "act as a user"): admin rights, and the identity is what
 *   `ctx.auth.getUserIdentity()` returns.
 * - `Bearer <JWT>`: a user. There is no auth provider here, so the token
 *   cannot be verified: it is refused (401 `NoAuthProvider`) unless the
 *   server was started with `--accept-unverified-jwt`, when it is decoded
 *   (NOT verified) and its claims become the user identity.
 * - no header: anonymous; public functions only.
 * - anything else is a malformed header: 400 (`InvalidHeaderFailure`,
 *   `InvalidAdminKey`, `HeaderParseFailure`: the real backend's codes).
 *
 * Admin keys. A key is `[<type>:][<instance name>|]<secret>`: real deploy
 * keys look like `prod:happy-animal-123|<secret>`, `dev:name|<secret>`,
 * self-hosted ones `convex-self-hosted|<secret>`. Like the real backend, the
 * `<type>:` prefix is cosmetic and dropped before the key is checked (for
 * `preview:` and `project:` keys the whole `<type>:...|` prefix is dropped);
 * the first `:` after that starts the acting-as identity. What is compared:
 *
 * - the secret (after the first `|`, or the whole key without one) must equal
 *   the configured key's secret, compared in constant time;
 * - the instance name, when both the key sent and `CONVEX_ADMIN_KEY` carry
 *   one, must be the same (the real backend refuses a key "for invalid
 *   instance"). A key without a name is checked by its secret alone (a real
 *   key may carry its instance name inside its encrypted part), and so is
 *   any key when `CONVEX_ADMIN_KEY` names no instance.
 *
 * The key is never logged or echoed.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { UserIdentity } from "convex/server";
import { HttpError } from "./http.ts";

export type Identity = Partial<UserIdentity> & Record<string, unknown>;

export interface Caller {
  admin: boolean;
  identity?: Identity;
}

/** An admin key, its cosmetic `<type>:` prefix dropped. */
export interface AdminKey {
  instanceName?: string;
  secret: string;
}

export interface AuthConfig {
  adminKey: AdminKey;
  /** `--accept-unverified-jwt`: take `Bearer` JWT claims without verifying them. */
  acceptUnverifiedJwt: boolean;
}

export const ACCEPT_UNVERIFIED_JWT_FLAG = "--accept-unverified-jwt";

/**
 * Reads `CONVEX_ADMIN_KEY`; throws an Error (whose message never holds the
 * key) if it cannot be used.
 */
export function configuredAdminKey(raw: string): AdminKey {
  const key = raw.trim();
  if (key === "") {
    throw new Error("CONVEX_ADMIN_KEY is not set: the backend needs an admin key to check callers against");
  }
  const plain = removeTypePrefix(key);
  if (plain.includes(":")) {
    throw new Error(
      "CONVEX_ADMIN_KEY must not contain ':' after its optional `<type>:` prefix: " +
        "a ':' in `Authorization: Convex <key>` starts the identity to act as",
    );
  }
  const parsed = splitKey(plain);
  if (parsed.secret === "" || parsed.instanceName === "") {
    throw new Error("CONVEX_ADMIN_KEY must be `[<type>:][<instance name>|]<secret>` with non-empty parts");
  }
  return parsed;
}

export function callerOf(header: string | undefined, config: AuthConfig): Caller {
  if (header === undefined) {
    return { admin: false };
  }
  // The real backend reads the header as visible ASCII, then looks at its
  // first 7 characters: `convex ` (any case) or else `bearer `.
  if (!/^[\t\x20-\x7e]*$/.test(header)) {
    throw new HttpError(400, "HeaderParseFailure", "Failed to parse the Authorization header: it must be visible ASCII");
  }
  if (header.length < 7 || /^convex\s*$/i.test(header) || /^bearer\s*$/i.test(header)) {
    throw invalidHeader();
  }
  const scheme = header.slice(0, 7).toLowerCase();
  if (scheme === "convex ") {
    const { key, actingAs } = splitActingAs(header.slice(7).trim());
    if (key === "") {
      throw invalidHeader();
    }
    if (!sameAdminKey(key, config.adminKey)) {
      throw new HttpError(401, "BadAdminKey", "The provided admin key was invalid for this instance");
    }
    return actingAs === undefined ? { admin: true } : { admin: true, identity: actingAs };
  }
  if (scheme === "bearer ") {
    const identity = identityFromJwt(header.slice(7).trim());
    if (!config.acceptUnverifiedJwt) {
      throw new HttpError(
        401,
        "NoAuthProvider",
        "This local backend cannot verify JWTs (it has no auth providers), so it refuses `Bearer` tokens; " +
          `start it with ${ACCEPT_UNVERIFIED_JWT_FLAG} to accept them unverified (tests only)`,
      );
    }
    return { admin: false, identity };
  }
  throw new HttpError(
    400,
    "InvalidAdminKey",
    "Invalid admin key: the Authorization header must be `Convex <admin key>` or `Bearer <token>`",
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

function invalidHeader(): HttpError {
  return new HttpError(
    400,
    "InvalidHeaderFailure",
    "Invalid authentication header: expected `Convex <admin key>` or `Bearer <token>`",
  );
}

/**
 * `prod:name|secret` -> `name|secret`; `preview:team:project|secret` ->
 * `secret` (the real `AdminKey::remove_type_prefix`).
 */
function removeTypePrefix(key: string): string {
  const bar = key.indexOf("|");
  if (bar < 0) {
    return key;
  }
  const instance = key.slice(0, bar);
  const colon = instance.indexOf(":");
  if (colon < 0) {
    return key;
  }
  const type = instance.slice(0, colon).toLowerCase();
  if (type === "preview" || type === "project") {
    return key.slice(bar + 1);
  }
  return `${instance.slice(colon + 1)}|${key.slice(bar + 1)}`;
}

function splitKey(key: string): AdminKey {
  const bar = key.indexOf("|");
  return bar < 0 ? { secret: key } : { instanceName: key.slice(0, bar), secret: key.slice(bar + 1) };
}

/** The key, and the identity after its first `:` (once the type prefix is gone). */
function splitActingAs(value: string): { key: string; actingAs?: Identity } {
  const plain = removeTypePrefix(value);
  const colon = plain.indexOf(":");
  if (colon < 0) {
    return { key: plain };
  }
  return { key: plain.slice(0, colon), actingAs: actingAsIdentity(plain.slice(colon + 1)) };
}

const STRING_ATTRIBUTES = [
  "tokenIdentifier",
  "issuer",
  "subject",
  "name",
  "givenName",
  "familyName",
  "nickname",
  "preferredUsername",
  "profileUrl",
  "pictureUrl",
  "websiteUrl",
  "email",
  "gender",
  "birthday",
  "timezone",
  "language",
  "phoneNumber",
  "address",
  "updatedAt",
];
const BOOLEAN_ATTRIBUTES = ["emailVerified", "phoneNumberVerified"];

/**
 * Base64 (standard alphabet) of the UTF-8 JSON of the user's attributes, as
 * `setAdminAuth` writes it. Like the real `UserIdentityAttributes`, it must
 * be an object whose known attributes have their types, with either
 * `tokenIdentifier` or both `issuer` and `subject`; other fields are custom
 * claims.
 */
function actingAsIdentity(encoded: string): Identity {
  const malformed = (why: string) =>
    new HttpError(400, "HeaderParseFailure", `Malformed Authorization header: the identity to act as ${why}`);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) || encoded.length % 4 === 1 || encoded.replace(/=+$/, "") === "") {
    throw malformed("(after the key's ':') is not base64");
  }
  let attributes: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(encoded, "base64"));
    attributes = JSON.parse(text);
  } catch {
    throw malformed("(after the key's ':') is not base64 of UTF-8 JSON");
  }
  if (attributes === null || typeof attributes !== "object" || Array.isArray(attributes)) {
    throw malformed("must be a JSON object");
  }
  const identity: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(attributes as Record<string, unknown>)) {
    const known = STRING_ATTRIBUTES.includes(field) ? "string" : BOOLEAN_ATTRIBUTES.includes(field) ? "boolean" : null;
    if (known !== null && value === null) {
      continue; // an absent attribute
    }
    if (known !== null && typeof value !== known) {
      throw malformed(`has a non-${known} "${field}"`);
    }
    identity[field] = value;
  }
  const has = (field: string) => typeof identity[field] === "string";
  if (!has("tokenIdentifier") && !(has("issuer") && has("subject"))) {
    throw malformed('needs either "tokenIdentifier" or both "issuer" and "subject"');
  }
  return identity as Identity;
}

function sameAdminKey(given: string, expected: AdminKey): boolean {
  const { instanceName, secret } = splitKey(given);
  // The secret is always compared, whatever the name, in constant time.
  const secretMatches = sameSecret(secret, expected.secret);
  const nameMatches =
    instanceName === undefined || expected.instanceName === undefined || instanceName === expected.instanceName;
  return secretMatches && nameMatches;
}

function sameSecret(given: string, expected: string): boolean {
  // Hash first so the comparison takes the same time whatever the lengths.
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function identityFromJwt(token: string): Identity {
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
