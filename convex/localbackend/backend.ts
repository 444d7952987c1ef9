/**
 * The local backend's state: a convex-test instance running the functions,
 * the commit log beside it, and function calls in Convex's wire terms.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { makeFunctionReference } from "convex/server";
import type { Value } from "convex/values";
import { convexTest } from "convex-test";
import type { Caller } from "./auth.ts";

/** The system query the dashboard counts a table's documents with. */
const TABLE_SIZE_QUERY = "_system/frontend/tableSize:default";
import { Clock, CommitLog, type Doc, type TableRef, type Write } from "./commitlog.ts";
import { toPlainJson } from "./json.ts";
import {
  importModule,
  kindOf,
  loadFunctionsApp,
  type FunctionKind,
  type FunctionsApp,
  type RegisteredFunction,
} from "./modules.ts";
import { requestScope } from "./scope.ts";
import { decodeValue } from "./values.ts";
import type { RecordedWrite, WriteFrame, WriteRecorder } from "../functions/_generated/server.ts";

export interface BackendOptions {
  functionsDir: string;
  retentionMs: number;
}

/** A function's outcome, before it is written in a value format. */
export type CallResult =
  | { status: "success"; value: Value; logLines: string[] }
  | { status: "error"; errorMessage: string; errorData?: Value; logLines: string[] };

type TestConvex = ReturnType<typeof convexTest>;

/** A planted json_schemas refusal: the code, and the table its message names (if it names one). */
export interface JsonSchemasError {
  code: string;
  table?: string;
}

// Argument and return validation errors are recognised by where they were
// thrown; convex-test's validators recurse, so keep deep stacks.
Error.stackTraceLimit = Math.max(Error.stackTraceLimit, 100);

export class Backend {
  /** Bumped by reset; work started before a reset records nothing after. */
  private generation = 0;
  private readonly clock = new Clock();
  private readonly frames = new AsyncLocalStorage<WriteFrame>();
  private readonly mutations = new Mutex();
  /** Set by POST /_test/fail_next_mutation; see record(). */
  private failNext = false;
  /** Mutations already warned about (see checkRecorded). */
  private readonly unrecorded = new Set<string>();
  private test: TestConvex;
  log: CommitLog;

  private constructor(
    private readonly app: FunctionsApp,
    private retentionMs: number,
  ) {
    this.test = this.freshTest();
    this.log = this.freshLog();
    const recorder: WriteRecorder = {
      frames: this.frames,
      record: (writes) => this.record(writes),
    };
    (globalThis as { __localBackendRecorder?: WriteRecorder }).__localBackendRecorder = recorder;
  }

  static async create(options: BackendOptions): Promise<Backend> {
    return new Backend(await loadFunctionsApp(options.functionsDir), options.retentionMs);
  }

  get currentGeneration(): number {
    return this.generation;
  }

  /** Component path ("" for the app) -> table -> document validator JSON, from the schemas. */
  get documentTypes(): ReadonlyMap<string, ReadonlyMap<string, unknown>> {
    const out = new Map<string, ReadonlyMap<string, unknown>>([["", this.app.documentTypes]]);
    for (const [name, component] of this.app.components) {
      out.set(name, component.documentTypes);
    }
    return out;
  }

  /** Whether streaming export answers (see POST /_test/streaming_export). */
  streamingExportEnabled = true;

  /** The refusal json_schemas answers with instead of the schemas (see POST /_test/json_schemas_error). */
  jsonSchemasError: JsonSchemasError | undefined = undefined;

  /** A fresh, empty database and commit log. */
  async reset(): Promise<void> {
    // Under the mutation lock, so no mutation the server started is halfway.
    await this.mutations.run(async () => {
      this.generation++;
      this.streamingExportEnabled = true;
      this.jsonSchemasError = undefined;
      this.test = this.freshTest();
      this.log = this.freshLog();
    });
  }

  /**
   * Fault injection: the next top-level mutation runs its handler to the
   * end, writes included, then fails before it commits, so tests can see
   * that nothing of it survives.
   */
  failNextMutation(): void {
    this.failNext = true;
  }

  /**
   * The dashboard's system query `_system/frontend/tableSize:default`
   * (`{componentId: null, tableName}`): how many live documents an app
   * table holds now. Admin only, as on a deployment; a component's tables
   * are named by an internal id there, which this stand-in does not have.
   */
  private tableSize(
    args: unknown,
    fail: (message: string) => CallResult,
    logLines: string[],
  ): CallResult {
    const given = (Array.isArray(args) ? args[0] : args) as { tableName?: unknown; componentId?: unknown };
    if (typeof given?.tableName !== "string" || (given.componentId ?? null) !== null) {
      return fail("ArgumentValidationError: expected {componentId: null, tableName: string}");
    }
    let count = 0;
    for (const _ of this.log.documentsAt({ component: "", table: given.tableName }, this.log.readTs())) {
      count += 1;
    }
    return { status: "success", value: count, logLines };
  }

  setRetention(retentionMs: number): void {
    this.retentionMs = retentionMs;
    this.log.retentionMs = retentionMs;
  }

  /**
   * Runs `path` ("module:fn", "dir/module:fn", optionally with ".js") with
   * encoded-JSON `args`. `kind` is what the endpoint expects ("any" for
   * `/api/run`). Function failures come back as a CallResult error, with
   * the real backend's messages; nothing here throws for them.
   */
  async call(kind: FunctionKind | "any", path: string, args: unknown, caller: Caller): Promise<CallResult> {
    const scope = requestScope.getStore();
    const logLines = scope?.logLines ?? [];
    const fail = (message: string, errorData?: Value): CallResult => ({
      status: "error",
      errorMessage: `[Request ID: ${scope?.requestId ?? "0000000000000000"}] Server Error\n${message}`,
      ...(errorData === undefined ? {} : { errorData }),
      logLines,
    });

    if (path === TABLE_SIZE_QUERY && caller.admin && (kind === "query" || kind === "any")) {
      return this.tableSize(args, fail, logLines);
    }
    const udf = parseUdfPath(path);
    const fn = udf && (await this.lookup(udf.module, udf.name));
    const actualKind = fn && kindOf(fn);
    if (!udf || !fn || !actualKind || (fn.isInternal && !caller.admin)) {
      return fail(
        `Could not find public function for '${udf ? `${udf.module}:${udf.name}` : path}'. ` +
          "Did you forget to run `npx convex dev` or `npx convex deploy`?",
      );
    }
    if (kind !== "any" && kind !== actualKind) {
      return fail(
        `Trying to execute ${udf.module}.js:${udf.name} as ${title(kind)}, but it is defined as ${title(actualKind)}.`,
      );
    }
    let decoded: Value;
    try {
      decoded = decodeValue(toPlainJson(Array.isArray(args) ? (args[0] ?? {}) : args));
    } catch (e) {
      return fail(`ArgumentValidationError: ${(e as Error).message}`);
    }

    const accessor = caller.identity ? this.test.withIdentity(caller.identity) : this.test;
    const reference = makeFunctionReference<any>(`${udf.module}:${udf.name}`);
    try {
      let value: Value;
      if (actualKind === "mutation") {
        // One mutation at a time, so the log's order is the commit order.
        value = await this.mutations.run(() => accessor.mutation(reference, decoded as any));
        this.checkRecorded(udf.module, udf.name);
      } else if (actualKind === "query") {
        value = await accessor.query(reference, decoded as any);
      } else {
        value = await accessor.action(reference, decoded as any);
      }
      return { status: "success", value: value ?? null, logLines };
    } catch (e) {
      return fail(errorMessageOf(e), convexErrorData(e));
    }
  }

  private async lookup(module: string, name: string): Promise<RegisteredFunction | undefined> {
    if (module.split("/").some((part) => part.startsWith("_") || part === "")) {
      return undefined;
    }
    const exports = await importModule(this.app, module);
    const fn = exports?.[name] as RegisteredFunction | undefined;
    return typeof fn === "function" ? fn : undefined;
  }

  /**
   * Every mutation built with `_generated/server` reports to the recorder,
   * even with no writes. One that did not was built some other way (e.g.
   * with `mutationGeneric`), so its writes are missing from the log: say so.
   */
  private checkRecorded(module: string, name: string): void {
    const scope = requestScope.getStore();
    const path = `${module}:${name}`;
    if (scope !== undefined && scope.recorded === 0 && !this.unrecorded.has(path)) {
      this.unrecorded.add(path);
      process.stderr.write(
        `local backend: warning: mutation ${path} is not built with ./_generated/server's ` +
          "mutation/internalMutation, so its writes are not in list_snapshot or document_deltas\n",
      );
    }
  }

  /** The recorder's sink: one committed top-level mutation. */
  private record(writes: RecordedWrite[]): void {
    const scope = requestScope.getStore();
    if (scope !== undefined) {
      scope.recorded++;
    }
    if (scope !== undefined && scope.generation !== this.generation) {
      return; // e.g. a function scheduled before a reset, writing to the old database
    }
    if (this.failNext) {
      this.failNext = false;
      // Thrown inside the transaction, after the handler's writes: the
      // mutation fails and convex-test rolls all of them back.
      throw new Error("injected fault: the mutation failed after its writes, before commit");
    }
    if (writes.length === 0) {
      return;
    }
    const resolved: Write[] = writes.map(({ component = "", table, id, doc }) => {
      const known = table ?? this.log.tableOf(component, id) ?? tableOfTestId(id);
      if (known === undefined) {
        // Thrown inside the transaction: the mutation fails rather than
        // commit something the log cannot describe.
        throw new Error(`local backend: cannot tell which table document ${id} belongs to`);
      }
      return { component, table: known, id, doc: doc as Doc | null };
    });
    this.log.append(resolved);
  }

  private freshTest(): TestConvex {
    const test = convexTest(this.app.schema, this.app.modules);
    for (const [name, component] of this.app.components) {
      test.registerComponent(name, component.schema ?? (null as never), component.modules);
    }
    return test;
  }

  private freshLog(): CommitLog {
    const declared: TableRef[] = [];
    for (const [component, tables] of this.documentTypes) {
      for (const table of tables.keys()) {
        declared.push({ component, table });
      }
    }
    return new CommitLog(this.clock, declared, this.retentionMs);
  }
}

/** "dir/mod:fn" | "dir/mod.js:fn" | "dir/mod" (default export). */
export function parseUdfPath(path: string): { module: string; name: string } | undefined {
  const [modulePart, name = "default", ...rest] = path.split(":");
  if (rest.length > 0 || !modulePart || !name) {
    return undefined;
  }
  return { module: modulePart.replace(/\.js$/, ""), name };
}

/** convex-test's ids are digits followed by the table name. */
function tableOfTestId(id: string): string | undefined {
  const table = id.replace(/^[0-9]+/, "");
  return table !== "" && table !== id ? table : undefined;
}

function title(kind: FunctionKind): string {
  return kind[0]!.toUpperCase() + kind.slice(1);
}

/** The message the real backend would give for what a function threw. */
function errorMessageOf(thrown: unknown): string {
  if (!(thrown instanceof Error)) {
    return `Uncaught ${String(thrown)}`;
  }
  // Thrown by convex-test's argument check, before the handler ran: the
  // real backend reports these as ArgumentValidationError.
  if (/\bat validateFunctionArgs\b/.test(thrown.stack ?? "")) {
    return `ArgumentValidationError: ${thrown.message}`;
  }
  if (thrown.message.startsWith("Return value validation failed")) {
    return `ReturnsValidationError: ${thrown.message}`;
  }
  const name = thrown.name;
  const message = thrown.message;
  if (name && message) {
    return `Uncaught ${name}: ${message}`;
  }
  return `Uncaught ${name || message}`.trimEnd();
}

function convexErrorData(thrown: unknown): Value | undefined {
  if (typeof thrown === "object" && thrown !== null && Symbol.for("ConvexError") in thrown) {
    return ((thrown as { data?: Value }).data ?? null) as Value;
  }
  return undefined;
}

/** Runs async sections one at a time, in call order. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(section: () => Promise<T>): Promise<T> {
    const result = this.tail.then(section);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
