/**
 * Utilities for implementing server-side Convex functions.
 *
 * Hand-kept stand-in for the file `npx convex codegen` writes: codegen needs a
 * deployment, and tests run these functions in the local backend
 * (`../../localbackend`). A real `npx convex dev` / `deploy` overwrites this
 * file with the plain generated builders (convex.json asks for TypeScript
 * codegen); the functions behave the same with either.
 *
 * The mutation builders carry one addition: a write-recorder hook. When the
 * local backend has installed a recorder on `globalThis` (it never exists in
 * a real deployment), every document a mutation writes is noted and, once
 * the handler has returned and while the transaction is still open, read
 * back and handed to the recorder. That is how the local backend keeps the
 * commit log it serves `list_snapshot` and `document_deltas` from. The hook
 * imports nothing from Node, so this file also bundles for the Convex
 * runtime.
 */
import {
  actionGeneric,
  httpActionGeneric,
  internalActionGeneric,
  internalMutationGeneric,
  internalQueryGeneric,
  mutationGeneric,
  queryGeneric,
} from "convex/server";
import type {
  ActionBuilder,
  DataModelFromSchemaDefinition,
  GenericActionCtx,
  GenericDatabaseReader,
  GenericDatabaseWriter,
  GenericMutationCtx,
  GenericQueryCtx,
  HttpActionBuilder,
  MutationBuilder,
  QueryBuilder,
} from "convex/server";
import { convexToJson, type Value } from "convex/values";
import type schema from "../schema";

/** The app's tables and indexes, as `npx convex codegen` derives them. */
export type DataModel = DataModelFromSchemaDefinition<typeof schema>;

export const query: QueryBuilder<DataModel, "public"> = queryGeneric;

export const internalQuery: QueryBuilder<DataModel, "internal"> =
  internalQueryGeneric;

export const mutation: MutationBuilder<DataModel, "public"> =
  withWriteRecorder(mutationGeneric);

export const internalMutation: MutationBuilder<DataModel, "internal"> =
  withWriteRecorder(internalMutationGeneric);

export const action: ActionBuilder<DataModel, "public"> = actionGeneric;

export const internalAction: ActionBuilder<DataModel, "internal"> =
  internalActionGeneric;

export const httpAction: HttpActionBuilder = httpActionGeneric;

/** The deployment's environment variables. */
export const env: Record<string, string | undefined> = (
  globalThis as unknown as {
    process?: { env: Record<string, string | undefined> };
  }
).process?.env ?? {};

export type QueryCtx = GenericQueryCtx<DataModel>;

export type MutationCtx = GenericMutationCtx<DataModel>;

export type ActionCtx = GenericActionCtx<DataModel>;

export type DatabaseReader = GenericDatabaseReader<DataModel>;

export type DatabaseWriter = GenericDatabaseWriter<DataModel>;

// ---------------------------------------------------------------------------
// The write-recorder hook.

/** One document a committed mutation wrote: its final value, or null. */
export interface RecordedWrite {
  /** The component path of the document's table: "" for the app itself. */
  component: string;
  /** Known when the call named it (`insert`, `db.table(t)`, the 3-arg forms). */
  table: string | undefined;
  id: string;
  doc: Record<string, Value> | null;
}

/** The writes of one running mutation (and of the mutations it calls). */
export interface WriteFrame {
  /** The component the mutation runs in ("" for the app). */
  component: string;
  /** id -> table (if known), in first-write order: this component's writes. */
  written: Map<string, string | undefined>;
  /** Ids this transaction created: created and deleted again is no write. */
  inserted: Set<string>;
  /**
   * Writes of mutations it called in other components, already read back
   * there (a component's tables are only readable from inside it), keyed by
   * component and id.
   */
  resolved: Map<string, { write: RecordedWrite; created: boolean }>;
  /** False once the handler has returned: later async work is not ours. */
  open: boolean;
}

/** What the local backend installs as `globalThis.__localBackendRecorder`. */
export interface WriteRecorder {
  /** Async context holding the current frame (an `AsyncLocalStorage`). */
  frames: {
    getStore(): WriteFrame | undefined;
    run<R>(frame: WriteFrame, fn: () => R): R;
  };
  /** Called once per top-level mutation, just before it commits. */
  record(writes: RecordedWrite[]): void;
}

function installedRecorder(): WriteRecorder | undefined {
  return (globalThis as { __localBackendRecorder?: WriteRecorder })
    .__localBackendRecorder;
}

type Handler = (ctx: GenericMutationCtx<DataModel>, args: any) => unknown;

function withWriteRecorder<B extends (definition: any) => any>(builder: B): B {
  return ((definition: any) => {
    if (typeof definition === "function") {
      return builder(recording(definition));
    }
    return builder({ ...definition, handler: recording(definition.handler) });
  }) as B;
}

/** The component path the function runs in (`ctx.meta`, "" when absent). */
async function componentOf(ctx: GenericMutationCtx<DataModel>): Promise<string> {
  const meta = (ctx as { meta?: { getFunctionMetadata?(): Promise<{ componentPath?: string }> } }).meta;
  const metadata = await meta?.getFunctionMetadata?.();
  return metadata?.componentPath ?? "";
}

function recording(handler: Handler): Handler {
  return async (ctx, args) => {
    const recorder = installedRecorder();
    if (recorder === undefined) {
      return await handler(ctx, args);
    }
    const parent = recorder.frames.getStore();
    // A mutation called through ctx.runMutation runs inside its caller's
    // transaction: its writes join the caller's. A frame that has closed
    // belongs to a finished mutation (e.g. the one that scheduled this one).
    const nested = parent !== undefined && parent.open;
    const frame: WriteFrame = {
      component: await componentOf(ctx),
      written: new Map(),
      inserted: new Set(),
      resolved: new Map(),
      open: true,
    };
    let result: unknown;
    try {
      result = await recorder.frames.run(frame, () =>
        handler({ ...ctx, db: recordingWriter(ctx.db, frame) }, args),
      );
    } finally {
      frame.open = false;
    }
    if (nested && parent !== undefined && parent.component === frame.component) {
      // Same component: the caller reads these documents back itself.
      for (const [id, table] of frame.written) {
        noteWrite(parent, id, table);
      }
      for (const id of frame.inserted) {
        parent.inserted.add(id);
      }
      mergeResolved(parent, frame.resolved);
      return result;
    }
    if (!nested && !isConvexValue(result)) {
      // The runtime refuses this return value and rolls the transaction
      // back, so there is nothing to record.
      return result;
    }
    // Reads inside the transaction see its own writes: this is the final
    // value of each document as it stands now.
    const own = new Map<string, { write: RecordedWrite; created: boolean }>();
    for (const [id, table] of frame.written) {
      const db = ctx.db as unknown as { get(...at: string[]): Promise<RecordedWrite["doc"]> };
      const doc = await (table === undefined ? db.get(id) : db.get(table, id));
      own.set(`${frame.component}\u0000${id}`, {
        write: { component: frame.component, table, id, doc },
        created: frame.inserted.has(id),
      });
    }
    if (nested && parent !== undefined) {
      // Another component's mutation: hand the caller what it wrote.
      mergeResolved(parent, frame.resolved);
      mergeResolved(parent, own);
      return result;
    }
    mergeResolved(frame, own);
    const writes: RecordedWrite[] = [];
    for (const { write, created } of frame.resolved.values()) {
      if (!(write.doc === null && created)) {
        writes.push(write);
      }
    }
    recorder.record(writes);
    return result;
  };
}

/** Later read-backs win; a document created earlier in the transaction stays "created". */
function mergeResolved(
  frame: WriteFrame,
  from: Map<string, { write: RecordedWrite; created: boolean }>,
): void {
  for (const [key, { write, created }] of from) {
    const earlier = frame.resolved.get(key);
    frame.resolved.set(key, { write, created: created || (earlier?.created ?? false) });
  }
}

function isConvexValue(result: unknown): boolean {
  try {
    convexToJson((result === undefined ? null : result) as Value);
    return true;
  } catch {
    return false;
  }
}

function noteWrite(frame: WriteFrame, id: string, table: string | undefined) {
  if (!frame.written.has(id) || frame.written.get(id) === undefined) {
    frame.written.set(id, table);
  }
}

const WRITES = new Set(["insert", "patch", "replace", "delete"]);

/**
 * Wraps `ctx.db` (or a `ctx.db.table(name)` writer, when `table` is given) so
 * each successful write is noted in `frame`. Everything else passes through.
 */
function recordingWriter<W extends object>(
  writer: W,
  frame: WriteFrame,
  table?: string,
): W {
  return new Proxy(writer, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "table" && table === undefined) {
        return (name: string) =>
          recordingWriter((target as any).table(name), frame, name);
      }
      if (typeof prop !== "string" || !WRITES.has(prop)) {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (...args: any[]) => {
        const returned = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (prop === "insert") {
          const id = returned as string;
          noteWrite(frame, id, table ?? args[0]);
          frame.inserted.add(id);
        } else if (table !== undefined) {
          // table writer: (id, ...)
          noteWrite(frame, args[0], table);
        } else {
          // db: (id, ...) or (table, id, ...), told apart like convex/server
          // does: the table form has one more argument.
          const tableForm =
            prop === "delete" ? args[1] !== undefined : args[2] !== undefined;
          noteWrite(
            frame,
            tableForm ? args[1] : args[0],
            tableForm ? args[0] : undefined,
          );
        }
        return returned;
      };
    },
  });
}
