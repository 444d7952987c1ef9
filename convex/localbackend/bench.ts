/**
 * Sequential mutation rate over HTTP: one client, one mutation at a time,
 * against a local backend started for the purpose on a free port.
 *
 *   npm run bench -- [--count 2000] [--app]
 *
 * By default it inserts into the test fixture's `items` table; `--app` runs
 * the app's own `leads:upsert` (a write plus an outbox row, as the kit does).
 */
import { parseArgs } from "node:util";
import { ADMIN, FIXTURES, startBackend } from "./test/harness.ts";
import path from "node:path";
import { fileURLToPath } from "node:url";

const { values } = parseArgs({
  options: { count: { type: "string", default: "2000" }, app: { type: "boolean", default: false } },
});
const count = Number(values.count);
const appDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "functions");

const backend = await startBackend(["--functions", values.app ? appDir : FIXTURES]);
try {
  const mutation = (i: number) =>
    values.app
      ? backend.call(
          "mutation",
          "leads:upsert",
          {
            workspaceId: "bench",
            document: { id: `01J${String(i).padStart(23, "0")}`, email: `lead${i}@example.com` },
            expectedVersion: null,
          },
          { auth: ADMIN },
        )
      : backend.call("mutation", "items:create", { name: `item-${i}`, qty: i });
  for (let i = 0; i < 100; i++) {
    await mutation(-1 - i); // warm-up: module loading, JIT
  }
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const reply = await mutation(i);
    if (reply.body?.status !== "success") {
      throw new Error(`mutation ${i} failed: ${reply.text}`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${count} sequential mutations (${values.app ? "leads:upsert" : "items:create"}) in ${seconds.toFixed(2)} s: ` +
      `${Math.round(count / seconds)} mutations/s`,
  );
} finally {
  await backend.stop();
}
