/** Calling functions: reply shapes, errors, request-level failures, auth. */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { ADMIN, startBackend, type Backend } from "./harness.ts";

let backend: Backend;
before(async () => {
  // The bearer-token test below needs JWTs accepted (unverified).
  backend = await startBackend(["--accept-unverified-jwt"]);
});
after(async () => {
  await backend.stop();
});
beforeEach(async () => {
  await backend.reset();
});

const REQUEST_ID = /^\[Request ID: [0-9a-f]{16}\] Server Error\n/;

describe("success and error replies", () => {
  test("a success is 200 {status, value}, logLines left out when empty", async () => {
    const created = await backend.call("mutation", "items:create", { name: "a" });
    assert.equal(created.status, 200);
    assert.deepEqual(Object.keys(created.body), ["status", "value"]);
    assert.equal(created.body.status, "success");
    assert.equal(typeof created.body.value, "string");

    const got = await backend.call("query", "items:get", { id: created.body.value });
    assert.equal(got.body.value.name, "a");
    assert.equal(got.body.value._id, created.body.value);
    assert.match(got.text, /"_creationTime":\d+\.\d+/);
  });

  test("console output comes back as logLines", async () => {
    const reply = await backend.call("query", "items:logs");
    assert.deepEqual(reply.body.logLines, ["[LOG] 'hello' 42", "[WARN] 'careful'"]);
  });

  test("a thrown Error is 200 {status: error, errorMessage}, no errorData", async () => {
    const reply = await backend.call("query", "items:failInQuery");
    assert.equal(reply.status, 200);
    assert.equal(reply.body.status, "error");
    assert.match(reply.body.errorMessage, REQUEST_ID);
    assert.match(reply.body.errorMessage, /Uncaught Error: query broke$/);
    assert.equal("errorData" in reply.body, false);
  });

  test("a ConvexError carries errorData, in the requested format", async () => {
    const clean = await backend.call("mutation", "items:failWithData");
    assert.equal(clean.body.status, "error");
    assert.match(clean.text, /"errorData":\{"code":"NOT_ALLOWED","count":"3","ratio":1\.0\}/);
    const encoded = await backend.call("mutation", "items:failWithData", {}, { format: "convex_encoded_json" });
    assert.deepEqual(encoded.body.errorData.count, { $integer: "AwAAAAAAAAA=" });
  });

  test("bad arguments are an ArgumentValidationError function error", async () => {
    for (const args of [{ name: 1 }, {}, { name: "a", extra: true }]) {
      const reply = await backend.call("mutation", "items:create", args);
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.body.status, "error");
      assert.match(reply.body.errorMessage, /\nArgumentValidationError: /);
    }
    // A plain JSON number is a Float64, never an Int64.
    const reply = await backend.call("mutation", "items:create", { name: "a", count: 1 });
    assert.match(reply.body.errorMessage, /ArgumentValidationError/);
  });

  test("an unknown function is a function error, like the real backend's", async () => {
    for (const path of ["items:nope", "nope:list", "items", "_generated/server:query"]) {
      const reply = await backend.call("query", path);
      assert.equal(reply.status, 200);
      assert.equal(reply.body.status, "error");
      assert.match(
        reply.body.errorMessage,
        /Could not find public function for '.*'\. Did you forget to run `npx convex dev` or `npx convex deploy`\?$/,
      );
    }
  });

  test("calling a function as the wrong kind is a function error", async () => {
    const reply = await backend.call("mutation", "items:list");
    assert.match(reply.body.errorMessage, /Trying to execute items\.js:list as Mutation, but it is defined as Query\.$/);
  });

  test("paths: module/sub:fn, a .js suffix, and /api/run", async () => {
    assert.equal((await backend.call("query", "sub/deep:shout", { word: "hi" })).body.value, "HI");
    assert.equal((await backend.call("query", "sub/deep.js:shout", { word: "hi" })).body.value, "HI");
    const run = await backend.post("/api/run/sub/deep/shout", { args: { word: "yo" }, format: "json" });
    assert.deepEqual(run.body, { status: "success", value: "YO" });
    const short = await backend.post("/api/run/shout", { args: {} });
    assert.equal(short.status, 400);
    assert.equal(short.body.code, "MissingIdentifier");
  });

  test("an action's value and its mutations", async () => {
    const reply = await backend.call("action", "items:createTwiceAction", { name: "x" });
    assert.equal(reply.text, '{"status":"success","value":2.0}');
  });
});

describe("request-level failures", () => {
  test("malformed JSON, a non-object body, missing fields: 400 BadJsonBody", async () => {
    for (const body of ["{not json", "[1]", '{"args":{}}', '{"path":"items:list"}']) {
      const reply = await backend.post("/api/query", body);
      assert.equal(reply.status, 400, body);
      assert.equal(reply.body.code, "BadJsonBody");
      assert.equal(typeof reply.body.message, "string");
    }
  });

  test("a body that is not sent as application/json: 400", async () => {
    const reply = await backend.request("POST", "/api/query", {
      body: JSON.stringify({ path: "items:list", args: {} }),
      headers: { "content-type": "text/plain" },
    });
    assert.equal(reply.status, 400);
    assert.equal(reply.body.code, "BadJsonBody");
  });

  test("an unknown format: 400, and the mutation does not run", async () => {
    const reply = await backend.call("mutation", "items:create", { name: "a" }, { format: "xml" });
    assert.equal(reply.status, 400);
    assert.equal(reply.body.code, "InvalidFormat");
    assert.deepEqual((await backend.call("query", "items:list")).body.value, []);
  });

  test("unknown routes: 404; wrong method: 405", async () => {
    assert.equal((await backend.request("GET", "/api/nothing")).status, 404);
    assert.equal((await backend.request("GET", "/api/query")).status, 405);
  });

  test("GET /version is plain text", async () => {
    const reply = await backend.request("GET", "/version");
    assert.equal(reply.status, 200);
    assert.match(reply.text, /^convex-localbackend/);
  });
});

describe("auth", () => {
  test("public functions need no key", async () => {
    assert.equal((await backend.call("query", "items:list")).body.status, "success");
  });

  test("internal functions need the admin key; without it they do not exist", async () => {
    const anonymous = await backend.call("mutation", "items:internalCreate", { name: "a" });
    assert.match(anonymous.body.errorMessage, /Could not find public function for 'items:internalCreate'/);
    const admin = await backend.call("mutation", "items:internalCreate", { name: "a" }, { auth: ADMIN });
    assert.equal(admin.body.status, "success");
    const got = await backend.call("query", "items:internalGet", { id: admin.body.value }, { auth: ADMIN });
    assert.equal(got.body.value.name, "a");
  });

  test("a wrong admin key is 401 BadAdminKey, on any endpoint", async () => {
    const wrong = "Convex not-the-key";
    const call = await backend.call("query", "items:list", {}, { auth: wrong });
    assert.equal(call.status, 401);
    assert.deepEqual(call.body, {
      code: "BadAdminKey",
      message: "The provided admin key was invalid for this instance",
    });
    const snapshot = await backend.request("GET", "/api/list_snapshot", { headers: { authorization: wrong } });
    assert.equal(snapshot.status, 401);
    assert.doesNotMatch(snapshot.text + backend.stderr(), /not-the-key/);
  });

  test("streaming export, json_schemas and the test endpoints need the key", async () => {
    const routes: Array<[string, string]> = [
      ["GET", "/api/list_snapshot"],
      ["POST", "/api/list_snapshot"],
      ["GET", "/api/document_deltas?cursor=1"],
      ["GET", "/api/json_schemas?deltaSchema=true&format=json"],
      ["POST", "/_test/reset"],
      ["POST", "/_test/retention"],
    ];
    for (const [method, route] of routes) {
      const reply = await backend.request(method, route, {
        body: method === "POST" ? "{}" : undefined,
        headers: { "content-type": "application/json" },
      });
      assert.equal(reply.status, 401, `${method} ${route}`);
      assert.equal(typeof reply.body.code, "string");
    }
  });

  test("a bearer token's claims are the user identity (not verified)", async () => {
    const payload = Buffer.from(JSON.stringify({ sub: "user-1", iss: "https://issuer.test" })).toString("base64url");
    const token = `e30.${payload}.sig`;
    const reply = await backend.call("query", "identity:whoami", {}, { auth: `Bearer ${token}` });
    assert.equal(reply.body.value, "https://issuer.test|user-1");
    assert.equal((await backend.call("query", "identity:whoami")).body.value, null);
  });
});
