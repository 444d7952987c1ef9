/**
 * A local stand-in for the Convex backend, for tests: serves the Convex
 * functions in a directory over Convex's HTTP API (see README.md).
 *
 *   CONVEX_ADMIN_KEY=... node --import tsx localbackend/server.ts \
 *       [--port 3210] [--functions ../functions] [--retention-ms 172800000]
 *       [--accept-unverified-jwt]
 *
 * When it is listening it prints exactly one line to stdout, `{"port": N}`
 * (so `--port 0` can pick any free port and tell the caller which).
 */
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { requestHandler } from "./app.ts";
import { ACCEPT_UNVERIFIED_JWT_FLAG, configuredAdminKey, type AdminKey } from "./auth.ts";
import { Backend } from "./backend.ts";
import { captureConsole } from "./scope.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The self-hosted backend's default document retention: 2 days. */
const DEFAULT_RETENTION_MS = 2 * 24 * 60 * 60 * 1000;

const USAGE = `usage: CONVEX_ADMIN_KEY=<key> node --import tsx localbackend/server.ts [options]

  --port N           port on 127.0.0.1 (default 3210; 0 = any free port)
  --functions DIR    Convex functions directory (default: ../functions); a
                     relative DIR is looked up from the current directory,
                     then from localbackend/ (so ../testapp works from convex/)
  --retention-ms N   how far back document_deltas and list_snapshot may read
                     (default ${DEFAULT_RETENTION_MS}, two days)
  ${ACCEPT_UNVERIFIED_JWT_FLAG}
                     for tests: accept \`Authorization: Bearer <JWT>\` and take
                     its claims as the user identity WITHOUT verifying it
                     (by default such tokens are refused: there is no auth
                     provider here to verify them)

CONVEX_ADMIN_KEY is \`[<type>:][<instance name>|]<secret>\` (e.g. prod:name|secret);
callers may send it with or without the \`<type>:\` prefix.`;

interface Options {
  port: number;
  functionsDir: string;
  retentionMs: number;
  adminKey: AdminKey;
  acceptUnverifiedJwt: boolean;
}

function fail(message: string): never {
  process.stderr.write(`local backend: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "3210" },
        functions: { type: "string", default: path.join(HERE, "..", "functions") },
        "retention-ms": { type: "string", default: String(DEFAULT_RETENTION_MS) },
        "accept-unverified-jwt": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`--port must be an integer from 0 to 65535, got ${values.port}`);
  }
  const retentionMs = Number(values["retention-ms"]);
  if (!Number.isFinite(retentionMs) || retentionMs < 0) {
    fail(`--retention-ms must be a number >= 0, got ${values["retention-ms"]}`);
  }
  let adminKey: AdminKey;
  try {
    adminKey = configuredAdminKey(process.env.CONVEX_ADMIN_KEY ?? "");
  } catch (e) {
    fail((e as Error).message);
  }
  return {
    port,
    functionsDir: functionsDir(values.functions!),
    retentionMs,
    adminKey,
    acceptUnverifiedJwt: values["accept-unverified-jwt"] === true,
  };
}

/**
 * A relative `--functions` is taken from the current directory or, failing
 * that, from localbackend/ like the default: `--functions ../testapp` works
 * from convex/.
 */
function functionsDir(given: string): string {
  const fromCwd = path.resolve(given);
  if (path.isAbsolute(given) || existsSync(fromCwd)) {
    return fromCwd;
  }
  const fromHere = path.resolve(HERE, given);
  return existsSync(fromHere) ? fromHere : fromCwd;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  captureConsole();
  let backend: Backend;
  try {
    backend = await Backend.create(options);
  } catch (e) {
    fail(`cannot load functions from ${options.functionsDir}: ${(e as Error).message}`);
  }
  if (options.acceptUnverifiedJwt) {
    process.stderr.write(
      `local backend: WARNING: ${ACCEPT_UNVERIFIED_JWT_FLAG}: Bearer JWTs are accepted WITHOUT verification; ` +
        "anyone can claim any identity (tests only)\n",
    );
  }
  const server = createServer(
    requestHandler(backend, { adminKey: options.adminKey, acceptUnverifiedJwt: options.acceptUnverifiedJwt }),
  );
  server.keepAliveTimeout = 60_000;
  server.on("error", (e) => fail(`cannot listen on 127.0.0.1:${options.port}: ${e.message}`));
  server.listen(options.port, "127.0.0.1", () => {
    const address = server.address();
    const port = typeof address === "object" && address !== null ? address.port : options.port;
    process.stdout.write(`{"port": ${port}}\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

await main();
