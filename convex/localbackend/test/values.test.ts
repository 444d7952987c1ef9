/** Convex values on the wire: encoded JSON in, both formats out. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BigJsonInteger, parseJson, stringify } from "../json.ts";
import { floatText, writeValue } from "../values.ts";
import { startBackend, type Backend } from "./harness.ts";

describe("writer", () => {
  test("every Float64 has a decimal point or an exponent", () => {
    assert.equal(floatText(1), "1.0");
    assert.equal(floatText(0), "0.0");
    assert.equal(floatText(-3), "-3.0");
    assert.equal(floatText(1.5), "1.5");
    assert.equal(floatText(1e21), "1e+21");
    assert.equal(floatText(2 ** 60), "1152921504606847000.0");
    assert.equal(floatText(5e-324), "5e-324");
  });

  test("clean JSON: int64 as a string, bytes as base64, non-finite floats as strings", () => {
    const value = { i: 3n, b: new Uint8Array([104, 105]).buffer, n: NaN, p: Infinity, m: -Infinity, z: -0, f: 2 };
    assert.equal(
      writeValue(value, "json"),
      '{"i":"3","b":"aGk=","n":"NaN","p":"Infinity","m":"-Infinity","z":-0.0,"f":2.0}',
    );
  });

  test("encoded JSON: $integer, $bytes, $float for what JSON numbers cannot say", () => {
    const value = [-1n, new Uint8Array([1]).buffer, NaN, -0, 0.5, null, true, "s"];
    assert.equal(
      writeValue(value, "convex_encoded_json"),
      '[{"$integer":"//////////8="},{"$bytes":"AQ=="},{"$float":"AAAAAAAA+H8="},{"$float":"AAAAAAAAAIA="},0.5,null,true,"s"]',
    );
  });

  test("envelopes write BigInt timestamps exactly; parsing keeps them exact", () => {
    const ts = 1_795_366_954_119_000_001n;
    const text = stringify({ _ts: ts, cursor: null });
    assert.equal(text, '{"_ts":1795366954119000001,"cursor":null}');
    const parsed = parseJson(text) as { _ts: BigJsonInteger };
    assert.ok(parsed._ts instanceof BigJsonInteger);
    assert.equal(parsed._ts.text, "1795366954119000001");
    assert.deepEqual(parseJson('{"a":[1,2.5,"x",{"__proto__":1}]}'), { a: [1, 2.5, "x", JSON.parse('{"__proto__":1}')] });
  });
});

describe("over HTTP", () => {
  let backend: Backend;
  before(async () => {
    backend = await startBackend();
  });
  after(async () => {
    await backend.stop();
  });

  const echo = (value: unknown, format = "json") => backend.call("query", "items:echo", { value }, { format });

  test("plain numbers are Float64 and come back with a decimal point", async () => {
    assert.equal((await echo(1)).text, '{"status":"success","value":1.0}');
    assert.equal((await echo([0, -2, 1.25])).text, '{"status":"success","value":[0.0,-2.0,1.25]}');
    assert.equal((await echo({ a: 1e300 })).text, '{"status":"success","value":{"a":1e+300}}');
  });

  test("$integer in, int64 out in both formats", async () => {
    const big = Buffer.alloc(8);
    big.writeBigInt64LE(-(2n ** 62n));
    const arg = { $integer: big.toString("base64") };
    assert.equal((await echo(arg)).text, `{"status":"success","value":"${-(2n ** 62n)}"}`);
    assert.deepEqual((await echo(arg, "convex_encoded_json")).body.value, arg);
  });

  test("$bytes in, bytes out in both formats", async () => {
    const arg = { $bytes: Buffer.from("héllo").toString("base64") };
    assert.equal((await echo(arg)).body.value, arg.$bytes);
    assert.deepEqual((await echo(arg, "convex_encoded_json")).body.value, arg);
  });

  test("$float for NaN, ±Infinity and -0.0", async () => {
    const f = (n: number) => {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(n);
      return { $float: b.toString("base64") };
    };
    assert.deepEqual((await echo([f(NaN), f(Infinity), f(-Infinity)])).body.value, ["NaN", "Infinity", "-Infinity"]);
    assert.equal((await echo(f(-0))).text, '{"status":"success","value":-0.0}');
    const encoded = await echo([f(NaN), f(-0), 2], "convex_encoded_json");
    assert.deepEqual(encoded.body.value, [f(NaN), f(-0), 2]);
    assert.match(encoded.text, /,2\.0\]/);
  });

  test("documents keep their types through a mutation and a query", async () => {
    const count = Buffer.alloc(8);
    count.writeBigInt64LE(42n);
    const created = await backend.call("mutation", "items:create", {
      name: "typed",
      qty: 3,
      count: { $integer: count.toString("base64") },
      blob: { $bytes: "AAE=" },
    });
    const got = await backend.call("query", "items:get", { id: created.body.value }, { format: "convex_encoded_json" });
    assert.match(got.text, /"qty":3\.0/);
    assert.deepEqual(got.body.value.count, { $integer: count.toString("base64") });
    assert.deepEqual(got.body.value.blob, { $bytes: "AAE=" });
  });

  test("malformed encodings are refused: $-prefixed names, a finite $float", async () => {
    for (const value of [{ $nope: 1 }, { $float: "AAAAAAAAAEA=" }]) {
      const reply = await echo(value);
      assert.equal(reply.body.status, "error", reply.text);
    }
  });
});
