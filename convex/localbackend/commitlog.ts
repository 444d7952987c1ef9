/**
 * The commit log: what the local backend serves streaming export from.
 *
 * convex-test has no change feed, so every committed mutation is recorded
 * here (see `_generated/server.ts`) as one transaction: a commit timestamp
 * and the final value, or deletion, of each document it wrote. Keeping every
 * revision of every document lets `list_snapshot` read any timestamp inside
 * the retention window (a pinned snapshot stays the same while writes go
 * on) and lets `document_deltas` replay changes in commit order.
 *
 * Timestamps are int64 nanoseconds since the epoch, like the real backend's:
 * wall-clock milliseconds times 10^6, bumped by one when the clock has not
 * moved, so they are strictly increasing and well above 2^53.
 *
 * Everything is in memory and kept until `/_test/reset`; nothing is pruned.
 */
import { CommitTsPlaceholder, type Value } from "convex/values";
import { badRequest } from "./http.ts";

export type Doc = Record<string, Value>;

/** A table: its component path ("" for the app) and its name. */
export interface TableRef {
  component: string;
  table: string;
}

export interface Write extends TableRef {
  id: string;
  /** The committed value; null for a delete. */
  doc: Doc | null;
}

export interface Transaction {
  ts: bigint;
  /** Ordered by (component, table, id), the order the real backend reads them in. */
  writes: Write[];
}

interface Revision {
  ts: bigint;
  doc: Doc | null;
}

/** Hands out commit and read timestamps, strictly after any handed out. */
export class Clock {
  private last = 0n;

  private nowNs(): bigint {
    return BigInt(Date.now()) * 1_000_000n;
  }

  /** A timestamp for a new commit: later than every earlier one. */
  commitTs(): bigint {
    const now = this.nowNs();
    this.last = now > this.last ? now : this.last + 1n;
    return this.last;
  }

  /**
   * A timestamp to read at: "now". Later commits get a larger timestamp, so
   * every commit at or below it is already in the log.
   */
  readTs(): bigint {
    const now = this.nowNs();
    if (now > this.last) {
      this.last = now;
    }
    return this.last;
  }

  /** The start of the retention window for a window of `retentionMs`. */
  windowStart(retentionMs: number): bigint {
    return this.nowNs() - BigInt(Math.round(retentionMs)) * 1_000_000n;
  }
}

export interface SnapshotPage {
  documents: Array<TableRef & { ts: bigint; doc: Doc }>;
  snapshot: bigint;
  cursor: string | null;
  hasMore: boolean;
}

export interface DeltasPage {
  rows: Array<TableRef & { ts: bigint; id: string; doc: Doc | null }>;
  cursor: bigint;
  hasMore: boolean;
}

/** Page sizes of the real backend: rows read per page. */
export const SNAPSHOT_PAGE_LIMIT = 1024;
export const DELTAS_PAGE_LIMIT = 128;

export class CommitLog {
  /** Nothing before this exists here (the log started, or was reset). */
  readonly startTs: bigint;
  private readonly transactions: Transaction[] = [];
  /** Keyed by component and id: each component numbers its own documents. */
  private readonly revisions = new Map<string, { table: string; revisions: Revision[] }>();
  /** Per table, every id ever written, sorted: the by-id scan order. */
  private readonly idsByTable = new Map<string, { ref: TableRef; number: number; ids: string[] }>();
  /** Per component, the table number the next new table gets. */
  private readonly nextTableNumber = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    schemaTables: readonly TableRef[],
    public retentionMs: number,
  ) {
    this.startTs = clock.readTs();
    for (const ref of schemaTables) {
      this.tableIds(ref);
    }
  }

  /** Records one committed transaction; returns its commit timestamp. */
  append(writes: readonly Write[]): bigint {
    const ts = this.clock.commitTs();
    const sorted = writes
      .map((w) => ({ ...w, doc: w.doc === null ? null : (withCommitTs(w.doc, ts) as Doc) }))
      .sort((a, b) => compareRefs(a, b) || compare(a.id, b.id));
    this.transactions.push({ ts, writes: sorted });
    for (const { component, table, id, doc } of sorted) {
      let entry = this.revisions.get(documentKey(component, id));
      if (entry === undefined) {
        entry = { table, revisions: [] };
        this.revisions.set(documentKey(component, id), entry);
        insertSorted(this.tableIds({ component, table }), id);
      }
      entry.revisions.push({ ts, doc });
    }
    return ts;
  }

  /** The table of a document this log has seen. */
  tableOf(component: string, id: string): string | undefined {
    return this.revisions.get(documentKey(component, id))?.table;
  }

  /** Every table, in (component, table) order: declared or ever written. */
  tables(): TableRef[] {
    return [...this.idsByTable.values()].map(({ ref }) => ref).sort(compareRefs);
  }

  /** The documents of one table as they stand at `ts`, in id order. */
  *documentsAt(ref: TableRef, ts: bigint): Generator<{ ts: bigint; doc: Doc }> {
    for (const id of this.idsByTable.get(tabletOf(ref))?.ids ?? []) {
      const revision = this.revisionAt(ref.component, id, ts);
      if (revision !== undefined && revision.doc !== null) {
        yield { ts: revision.ts, doc: revision.doc };
      }
    }
  }

  /**
   * A table's number: tables are numbered in the order they came to exist
   * in their component (declared ones first, in schema order), from 10001,
   * as the real backend numbers user tables. Undefined for no such table.
   */
  tableNumber(ref: TableRef): number | undefined {
    return this.idsByTable.get(tabletOf(ref))?.number;
  }

  /** The tables of one component, by table number. */
  tablesOf(component: string): Array<TableRef & { number: number }> {
    return [...this.idsByTable.values()]
      .filter(({ ref }) => ref.component === component)
      .map(({ ref, number }) => ({ ...ref, number }))
      .sort((a, b) => a.number - b.number);
  }

  /** "Now", as a read timestamp. */
  readTs(): bigint {
    return this.clock.readTs();
  }

  /** The oldest timestamp still readable. */
  private windowStart(): bigint {
    const byRetention = this.clock.windowStart(this.retentionMs);
    return byRetention > this.startTs ? byRetention : this.startTs;
  }

  /**
   * One page of the documents visible at `snapshot` (default: now), one
   * table per page, in (table, id) order. `cursor` is the opaque string the
   * previous page returned.
   */
  listSnapshot(args: {
    snapshot?: bigint;
    cursor?: string;
    include: (ref: TableRef) => boolean;
    limit: number;
  }): SnapshotPage {
    const now = this.clock.readTs();
    const snapshot = args.snapshot ?? now;
    if (snapshot > now) {
      throw badRequest("SnapshotTooNew", `Snapshot value ${snapshot} is in the future.`);
    }
    if (snapshot < this.windowStart()) {
      throw badRequest(
        "SnapshotTooOld",
        `Snapshot value ${snapshot} is older than the retention window (oldest readable: ` +
          `${this.windowStart()}). Start the snapshot again without \`snapshot\`.`,
      );
    }
    const position = parseSnapshotCursor(args.cursor);
    const tables = this.tables().filter(
      (t) => args.include(t) && (position === undefined || compareRefs(t, position.ref) >= 0),
    );
    const ref = tables[0];
    if (ref === undefined) {
      return { documents: [], snapshot, cursor: null, hasMore: false };
    }
    const after = position !== undefined && compareRefs(position.ref, ref) === 0 ? position.id : "";
    const ids = this.tableIds(ref);
    const documents: SnapshotPage["documents"] = [];
    let cursor: string | null = null;
    for (let i = firstAbove(ids, after); i < ids.length; i++) {
      const id = ids[i]!;
      const revision = this.revisionAt(ref.component, id, snapshot);
      if (revision === undefined || revision.doc === null) {
        continue;
      }
      documents.push({ ...ref, ts: revision.ts, doc: revision.doc });
      if (documents.length >= args.limit) {
        cursor = encodeSnapshotCursor(ref, id);
        break;
      }
    }
    if (cursor === null && tables[1] !== undefined) {
      cursor = encodeSnapshotCursor(tables[1], "");
    }
    return { documents, snapshot, cursor, hasMore: cursor !== null };
  }

  /**
   * Every revision committed after `cursor` (exclusive), in commit order,
   * as the real backend pages them: `limit` counts rows read (of every
   * table), a page always ends on a transaction boundary, and once the log
   * is exhausted the returned cursor is "now".
   */
  documentDeltas(args: { cursor: bigint; include: (ref: TableRef) => boolean; limit: number }): DeltasPage {
    const upper = this.clock.readTs();
    const windowStart = this.windowStart();
    if (args.cursor < windowStart) {
      throw badRequest(
        "InvalidWindowToReadDocuments",
        `Trying to synchronize from timestamp ${args.cursor}, which is older than the ` +
          `database's retention window (oldest readable: ${windowStart}). Please perform a full sync.`,
      );
    }
    const rows: DeltasPage["rows"] = [];
    let rowsRead = 0;
    let newCursor: bigint | undefined;
    let hasMore = false;
    scan: for (let i = firstTransactionAfter(this.transactions, args.cursor); i < this.transactions.length; i++) {
      const { ts, writes } = this.transactions[i]!;
      for (const { component, table, id, doc } of writes) {
        rowsRead++;
        if (newCursor !== undefined && newCursor < ts) {
          hasMore = true;
          break scan;
        }
        if (newCursor === undefined && rowsRead >= args.limit) {
          newCursor = ts;
        }
        if (args.include({ component, table })) {
          rows.push({ component, table, ts, id, doc });
          if (newCursor === undefined && rows.length >= args.limit) {
            newCursor = ts;
          }
        }
      }
    }
    return { rows, cursor: newCursor ?? upper, hasMore };
  }

  private tableIds(ref: TableRef): string[] {
    const key = tabletOf(ref);
    let entry = this.idsByTable.get(key);
    if (entry === undefined) {
      const number = this.nextTableNumber.get(ref.component) ?? 10001;
      this.nextTableNumber.set(ref.component, number + 1);
      entry = { ref: { component: ref.component, table: ref.table }, number, ids: [] };
      this.idsByTable.set(key, entry);
    }
    return entry.ids;
  }

  private revisionAt(component: string, id: string, ts: bigint): Revision | undefined {
    const revisions = this.revisions.get(documentKey(component, id))?.revisions ?? [];
    // Last revision at or before ts.
    let lo = 0;
    let hi = revisions.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (revisions[mid]!.ts <= ts) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo === 0 ? undefined : revisions[lo - 1];
  }
}

/**
 * A field written as `db.vars.commitTs` holds a placeholder until commit;
 * it commits as the transaction's timestamp.
 */
function withCommitTs(value: Value, ts: bigint): Value {
  if (value instanceof CommitTsPlaceholder) {
    return ts;
  }
  if (Array.isArray(value)) {
    return value.map((v) => withCommitTs(v, ts));
  }
  if (value !== null && typeof value === "object" && !(value instanceof ArrayBuffer)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withCommitTs(v as Value, ts)]));
  }
  return value;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The app's tables first, then each component's, each by name. */
export function compareRefs(a: TableRef, b: TableRef): number {
  return compare(a.component, b.component) || compare(a.table, b.table);
}

function documentKey(component: string, id: string): string {
  return `${component}\u0000${id}`;
}

/**
 * A table's name in a snapshot cursor: its name for the app's tables,
 * `component/table` for a component's (table names never hold a `/`).
 */
function tabletOf(ref: TableRef): string {
  return ref.component === "" ? ref.table : `${ref.component}/${ref.table}`;
}

function refOfTablet(tablet: string): TableRef {
  const slash = tablet.lastIndexOf("/");
  return slash < 0
    ? { component: "", table: tablet }
    : { component: tablet.slice(0, slash), table: tablet.slice(slash + 1) };
}

/** Index of the first element of sorted `ids` greater than `id`. */
function firstAbove(ids: readonly string[], id: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid]! <= id) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

function insertSorted(ids: string[], id: string): void {
  // Ids mostly arrive in increasing order: append is the common case.
  if (ids.length === 0 || ids[ids.length - 1]! < id) {
    ids.push(id);
    return;
  }
  ids.splice(firstAbove(ids, id), 0, id);
}

function firstTransactionAfter(transactions: readonly Transaction[], ts: bigint): number {
  let lo = 0;
  let hi = transactions.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (transactions[mid]!.ts <= ts) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// The cursor is opaque to clients; like the real one it is a small JSON
// object naming a table and the last id returned ("" = the table's start).
function encodeSnapshotCursor(ref: TableRef, id: string): string {
  return JSON.stringify({ tablet: tabletOf(ref), id });
}

function parseSnapshotCursor(cursor: string | undefined): { ref: TableRef; id: string } | undefined {
  if (cursor === undefined) {
    return undefined;
  }
  try {
    const parsed = JSON.parse(cursor) as { tablet?: unknown; id?: unknown };
    if (typeof parsed.tablet === "string" && typeof parsed.id === "string") {
      return { ref: refOfTablet(parsed.tablet), id: parsed.id };
    }
  } catch {
    // fall through
  }
  throw badRequest("InvalidCursor", `Invalid list_snapshot cursor: ${JSON.stringify(cursor)}`);
}
