/**
 * Starts the local backend as a child process on a free port, serving the
 * fixture functions, and talks to it over HTTP exactly as a client would.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseJson } from "../json.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SERVER = path.join(HERE, "..", "server.ts");
export const FIXTURES = path.join(HERE, "fixtures", "functions");
/** The test app: hand-written functions, a component, an undeclared table. */
export const TESTAPP = path.join(HERE, "..", "..", "testapp");
export const ADMIN_KEY = "local-test|0123456789abcdef";
export const ADMIN = `Convex ${ADMIN_KEY}`;

export interface Reply {
  status: number;
  text: string;
  /** Parsed with integers above 2^53 kept exact (as BigJsonInteger). */
  body: any;
}

export interface Backend {
  url: string;
  child: ChildProcess;
  stderr: () => string;
  request(method: string, route: string, init?: { body?: string; headers?: Record<string, string> }): Promise<Reply>;
  post(route: string, body: unknown, headers?: Record<string, string>): Promise<Reply>;
  /** POST /api/{kind} with format json unless given. */
  call(
    kind: "query" | "mutation" | "action",
    fnPath: string,
    args?: unknown,
    options?: { format?: string; auth?: string },
  ): Promise<Reply>;
  /** GET with admin auth and query params. */
  admin(route: string, params?: Record<string, string | number | bigint>): Promise<Reply>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export async function startBackend(
  extraArgs: string[] = [],
  env: Record<string, string> = {},
  functionsDir: string = FIXTURES,
): Promise<Backend> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", SERVER, "--port", "0", "--functions", functionsDir, ...extraArgs],
    { env: { ...process.env, CONVEX_ADMIN_KEY: ADMIN_KEY, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout! });
  const [first] = (await Promise.race([
    once(lines, "line"),
    once(child, "exit").then(([code]) => {
      throw new Error(`backend exited with ${code} before it was ready:\n${stderr}`);
    }),
  ])) as [string];
  const { port } = JSON.parse(first) as { port: number };
  const url = `http://127.0.0.1:${port}`;

  const request: Backend["request"] = async (method, route, init = {}) => {
    const response = await fetch(url + route, { method, body: init.body, headers: init.headers });
    const text = await response.text();
    let body: unknown;
    try {
      body = parseJson(text);
    } catch {
      body = undefined;
    }
    return { status: response.status, text, body };
  };
  const post: Backend["post"] = (route, body, headers = {}) =>
    request("POST", route, {
      body: typeof body === "string" ? body : JSON.stringify(body),
      headers: { "content-type": "application/json", ...headers },
    });
  return {
    url,
    child,
    stderr: () => stderr,
    request,
    post,
    call: (kind, fnPath, args = {}, options = {}) =>
      post(
        `/api/${kind}`,
        { path: fnPath, args, format: options.format ?? "json" },
        options.auth === undefined ? {} : { authorization: options.auth },
      ),
    admin: (route, params = {}) => {
      const query = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]));
      return request("GET", `${route}?${query}`, { headers: { authorization: ADMIN } });
    },
    reset: async () => {
      const reply = await post("/_test/reset", {}, { authorization: ADMIN });
      if (reply.status !== 200) {
        throw new Error(`reset failed: ${reply.status} ${reply.text}`);
      }
    },
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    },
  };
}

/** Extracts a bare-integer field from reply text, exactly. */
export function integerField(text: string, field: string): bigint {
  const match = new RegExp(`"${field}":(-?\\d+)[,}]`).exec(text);
  if (match === null) {
    throw new Error(`no integer "${field}" in ${text.slice(0, 200)}`);
  }
  return BigInt(match[1]!);
}
