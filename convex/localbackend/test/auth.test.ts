/**
 * The Authorization header as real clients send it: an admin key acting as a
 * user (the official client's `setAdminAuth`), `<type>:<name>|` key prefixes,
 * malformed headers (400), and `Bearer` JWTs, refused unless the server was
 * started with `--accept-unverified-jwt`.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConvexHttpClient } from "convex/browser";
import { makeFunctionReference } from "convex/server";
import { ADMIN, ADMIN_KEY, FIXTURES, TESTAPP, startBackend, type Backend } from "./harness.ts";

// The harness's key is `local-test|0123456789abcdef`.
const [INSTANCE, SECRET] = ADMIN_KEY.split("|") as [string, string];
const ADA = { subject: "user-1", issuer: "https://issuer.example", name: "Ada" };
const whoami = makeFunctionReference<"query">("whoami:whoami");
const whoamiInternal = makeFunctionReference<"query">("whoami:whoamiInternal");
const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

/** `setAdminAuth` is marked internal, so it is left out of the client's types. */
interface AdminAuthClient {
  setAdminAuth(key: string, actingAsIdentity?: Record<string, unknown>): void;
}
function adminClient(backend: Backend, key: string, identity?: Record<string, unknown>): ConvexHttpClient {
  const client = new ConvexHttpClient(backend.url, { logger: false });
  (client as unknown as AdminAuthClient).setAdminAuth(key, identity);
  return client;
}

function jwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "RS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`;
}

let backend: Backend;
before(async () => {
  backend = await startBackend([], {}, TESTAPP);
});
after(async () => {
  await backend.stop();
});

describe("an admin key acting as a user", () => {
  test("ConvexHttpClient.setAdminAuth(key, identity): the function sees that identity", async () => {
    const client = adminClient(backend, ADMIN_KEY, ADA);
    const expected = { ...ADA, tokenIdentifier: "https://issuer.example|user-1" };
    assert.deepEqual(await client.query(whoami, {}), expected);
    // Acting as a user keeps the admin's rights: internal functions are there.
    assert.deepEqual(await client.query(whoamiInternal, {}), expected);
  });

  test("setAdminAuth(key) without an identity: an admin, no user identity", async () => {
    const client = adminClient(backend, ADMIN_KEY);
    assert.equal(await client.query(whoamiInternal, {}), null);
    assert.equal(await client.query(whoami, {}), null);
  });

  test("acting as a user with a prod: prefixed key; tokenIdentifier alone is enough", async () => {
    const client = adminClient(backend, `prod:${ADMIN_KEY}`, { tokenIdentifier: "custom|id-7", email: "a@b.c" });
    const identity = (await client.query(whoami, {})) as Record<string, unknown>;
    assert.equal(identity.tokenIdentifier, "custom|id-7");
    assert.equal(identity.email, "a@b.c");
  });

  test("a malformed identity to act as is 400 HeaderParseFailure, before the key is checked", async () => {
    const bad = [
      "not base64!",
      "",
      b64("not json"),
      b64("[1, 2]"),
      b64('{"name":"no subject or issuer"}'),
      b64('{"subject":"user-1"}'),
      b64('{"subject":1,"issuer":"https://issuer.example"}'),
      b64('{"tokenIdentifier":"x","emailVerified":"yes"}'),
      Buffer.from([0xff, 0xfe, 0x7b]).toString("base64"),
    ];
    for (const key of [ADMIN_KEY, `${INSTANCE}|wrong-secret`]) {
      for (const identity of bad) {
        const reply = await backend.call("query", "whoami:whoami", {}, { auth: `Convex ${key}:${identity}` });
        assert.equal(reply.status, 400, `${identity}: ${reply.text}`);
        assert.equal(reply.body.code, "HeaderParseFailure");
        assert.match(reply.body.message, /^Malformed Authorization header/);
        assert.doesNotMatch(reply.text, new RegExp(SECRET));
      }
    }
  });
});

describe("admin key prefixes", () => {
  const snapshot = (auth: string) =>
    backend.request("GET", "/api/list_snapshot?tableName=users&format=json", { headers: { authorization: auth } });

  test("prod:, dev:, preview: and unprefixed forms of the key are accepted", async () => {
    for (const key of [
      ADMIN_KEY,
      `prod:${ADMIN_KEY}`,
      `dev:${ADMIN_KEY}`,
      `PROD:${ADMIN_KEY}`,
      `preview:team-slug:project-slug|${SECRET}`,
      SECRET,
    ]) {
      const reply = await snapshot(`Convex ${key}`);
      assert.equal(reply.status, 200, `${key}: ${reply.text}`);
      const call = await backend.call("query", "whoami:whoamiInternal", {}, { auth: `convex ${key}` });
      assert.deepEqual(call.body, { status: "success", value: null });
    }
  });

  test("a wrong secret or another instance's name is 401 BadAdminKey, prefix or not", async () => {
    for (const key of [
      `prod:${INSTANCE}|not-the-secret`,
      `dev:${INSTANCE}|${SECRET}x`,
      `prod:other-instance|${SECRET}`,
      `other-instance|${SECRET}`,
      `preview:team:project|nope`,
      "not-the-secret",
    ]) {
      for (const reply of [
        await snapshot(`Convex ${key}`),
        await backend.call("query", "whoami:whoami", {}, { auth: `Convex ${key}` }),
      ]) {
        assert.equal(reply.status, 401, `${key}: ${reply.text}`);
        assert.deepEqual(reply.body, {
          code: "BadAdminKey",
          message: "The provided admin key was invalid for this instance",
        });
      }
    }
    assert.doesNotMatch(backend.stderr(), new RegExp(SECRET));
  });

  test("CONVEX_ADMIN_KEY itself may carry a prefix, or name no instance", async () => {
    const prefixed = await startBackend([], { CONVEX_ADMIN_KEY: "prod:happy-animal-123|s3cret" }, FIXTURES);
    const bare = await startBackend([], { CONVEX_ADMIN_KEY: "s3cret" }, FIXTURES);
    try {
      const status = async (b: Backend, key: string) =>
        (await b.request("GET", "/api/list_snapshot?format=json", { headers: { authorization: `Convex ${key}` } }))
          .status;
      for (const key of ["prod:happy-animal-123|s3cret", "happy-animal-123|s3cret", "dev:happy-animal-123|s3cret"]) {
        assert.equal(await status(prefixed, key), 200, key);
      }
      for (const key of ["prod:other-animal-1|s3cret", "prod:happy-animal-123|s3cre", "happy-animal-123|"]) {
        assert.equal(await status(prefixed, key), 401, key);
      }
      // Without an instance name of its own, the backend checks the secret alone.
      for (const key of ["s3cret", "prod:any-name-9|s3cret", "any-name|s3cret"]) {
        assert.equal(await status(bare, key), 200, key);
      }
      assert.equal(await status(bare, "prod:any-name-9|s3cre"), 401);
    } finally {
      await prefixed.stop();
      await bare.stop();
    }
  });

  test("a CONVEX_ADMIN_KEY holding ':' (the acting-as separator) stops the server at start", async () => {
    await assert.rejects(
      startBackend([], { CONVEX_ADMIN_KEY: "name|abc:def" }, FIXTURES),
      (e: Error) => /exited with 2/.test(e.message) && /must not contain ':'/.test(e.message) && !/abc:def/.test(e.message),
    );
  });
});

describe("a malformed Authorization header is 400", () => {
  const cases: Array<[string, string]> = [
    ["", "InvalidHeaderFailure"],
    ["abc", "InvalidHeaderFailure"],
    ["Convex", "InvalidHeaderFailure"],
    ["Convex    ", "InvalidHeaderFailure"],
    ["Bearer", "InvalidHeaderFailure"],
    ["Basic dXNlcjpwYXNz", "InvalidAdminKey"],
    ["garbage-with-no-scheme", "InvalidAdminKey"],
    [`Convex\t${ADMIN_KEY}`, "InvalidAdminKey"],
    [`Token ${ADMIN_KEY}`, "InvalidAdminKey"],
    ["Convex caf\u00e9", "HeaderParseFailure"],
  ];

  test("on function calls and admin endpoints alike, with the real backend's codes", async () => {
    for (const [header, code] of cases) {
      for (const reply of [
        await backend.call("query", "whoami:whoami", {}, { auth: header }),
        await backend.request("GET", "/api/list_snapshot?format=json", { headers: { authorization: header } }),
      ]) {
        assert.equal(reply.status, 400, `${JSON.stringify(header)}: ${reply.text}`);
        assert.equal(reply.body.code, code, JSON.stringify(header));
        assert.equal(typeof reply.body.message, "string");
      }
    }
  });

  test("no header at all is still anonymous", async () => {
    const reply = await backend.call("query", "whoami:whoami");
    assert.deepEqual(reply.body, { status: "success", value: null });
  });
});

describe("Bearer JWTs", () => {
  const token = jwt({ sub: "user-1", iss: "https://issuer.example", name: "Ada" });

  test("refused by default: 401 NoAuthProvider, naming the flag", async () => {
    const reply = await backend.call("query", "whoami:whoami", {}, { auth: `Bearer ${token}` });
    assert.equal(reply.status, 401);
    assert.equal(reply.body.code, "NoAuthProvider");
    assert.match(reply.body.message, /cannot verify/);
    assert.match(reply.body.message, /--accept-unverified-jwt/);
    assert.doesNotMatch(backend.stderr(), /WARNING/);
    const garbage = await backend.call("query", "whoami:whoami", {}, { auth: "Bearer not-a-jwt" });
    assert.equal(garbage.status, 401);
    assert.equal(garbage.body.code, "InvalidAuthHeader");
  });

  test("accepted unverified with --accept-unverified-jwt, which warns once on stderr", async () => {
    const trusting = await startBackend(["--accept-unverified-jwt"], {}, TESTAPP);
    try {
      const reply = await trusting.call("query", "whoami:whoami", {}, { auth: `Bearer ${token}` });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual(reply.body.value, { ...ADA, tokenIdentifier: "https://issuer.example|user-1" });
      // A user, not an admin: internal functions do not exist for it.
      const internal = await trusting.call("query", "whoami:whoamiInternal", {}, { auth: `Bearer ${token}` });
      assert.equal(internal.body.status, "error");
      assert.match(internal.body.errorMessage, /Could not find public function for 'whoami:whoamiInternal'/);
      const warnings = trusting.stderr().split("\n").filter((line) => /not verif|WITHOUT verification/i.test(line));
      assert.equal(warnings.length, 1, trusting.stderr());
      assert.match(warnings[0]!, /--accept-unverified-jwt/);
      // Admin keys work as ever.
      const admin = await trusting.call("query", "whoami:whoamiInternal", {}, { auth: ADMIN });
      assert.deepEqual(admin.body, { status: "success", value: null });
    } finally {
      await trusting.stop();
    }
  });
});
