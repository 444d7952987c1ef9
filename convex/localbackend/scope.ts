/**
 * Per-request state, carried through async code with AsyncLocalStorage.
 *
 * The server runs each HTTP request inside its own scope, so concurrent
 * requests never mix their log lines or their writes. Async work a function
 * leaves behind (a scheduled function firing later) inherits the scope of
 * the request that started it; `open` and `generation` tell that apart.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { inspect } from "node:util";

export interface RequestScope {
  /** 16 hex digits, like the real backend's request ids. */
  requestId: string;
  /** Console output of the function, as `[LEVEL] message`. */
  logLines: string[];
  /** The database generation the request started in (see `/_test/reset`). */
  generation: number;
  /** False once the reply is sent. */
  open: boolean;
  /** Write sets the recorder received during the request. */
  recorded: number;
}

export const requestScope = new AsyncLocalStorage<RequestScope>();

export function newScope(generation: number): RequestScope {
  return {
    requestId: randomBytes(8).toString("hex"),
    logLines: [],
    generation,
    open: true,
    recorded: 0,
  };
}

const LEVELS = { log: "LOG", info: "INFO", warn: "WARN", error: "ERROR", debug: "DEBUG" } as const;

let consoleCaptured = false;

/**
 * Routes `console.*` calls made while a request is open into its log lines
 * (returned as `logLines`, like the real backend); anything else goes to
 * stderr, never stdout, whose first line belongs to the ready message.
 */
export function captureConsole(): void {
  if (consoleCaptured) {
    return;
  }
  consoleCaptured = true;
  for (const [method, level] of Object.entries(LEVELS)) {
    (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      const message = args.map((arg) => inspect(arg, { depth: 6, breakLength: Infinity })).join(" ");
      const scope = requestScope.getStore();
      if (scope?.open) {
        scope.logLines.push(`[${level}] ${message}`);
      } else {
        process.stderr.write(`[${level}] ${message}\n`);
      }
    };
  }
}
