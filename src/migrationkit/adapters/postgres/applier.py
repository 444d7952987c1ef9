"""PostgresApplier: the sink that applies batches of changes to PostgreSQL.

One call is one transaction. The batch is sorted by (entity, workspace, id)
and cut into chunks of at most ``chunk_size`` changes (smaller towards the
end, see ``chunk_bounds``). Each chunk is checked in
Python (an unknown entity, data the model refuses, a NUL: a typed error
naming the event), COPYed into a temporary staging table, and applied with
one set-based statement per entity table (see ``_apply_statements`` for the
SQL and why it is safe under duplicates and reordering). That statement is
sent without waiting for it: the server applies one chunk while Python
checks the next, so on two cores the two halves of the work overlap
instead of taking turns. A bad change in any chunk rolls the whole batch
back. Purges go last, after every chunk's writes. Each event id is recorded
in ``processed_events`` for this consumer in the same transaction, so a
replayed batch changes nothing.

What is stored is a copy of the source's row: its version, timestamps and
fields, with no version bump and no outbox row (an outbox row would carry
the change back to the store it came from).

The audit entry a change carries (the source's record of the write) goes
into ``audit_logs`` in the same transaction, whether or not the version
guard lets the row through: the history holds every write. It is inserted
by id with ``ON CONFLICT DO NOTHING``, so a replay adds nothing. No audit
entry is made for the replication itself: it is not a new write.

Errors: bad input raises ``ValidationFailed`` or ``UnknownEntity`` (a poison
event: retry the changes one by one, dead-letter the one that fails); the
database unreachable or the connection lost raises ``StoreUnavailable`` (an
outage: retry the batch later); a lost race (deadlock, serialization)
raises ``Conflict`` (retry the batch).

Row-level security: one statement writes rows of every workspace in the
batch, which no ``app.workspace_id`` scope allows. Run the applier as a role
that bypasses RLS (the worker's role, with ``BYPASSRLS``), never as the
application's role, under which the writes would fail the policies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, Engine, bindparam, column, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres._apply_statements import EntityStatements
from migrationkit.adapters.postgres._staging import (
    EntityStage,
    StagedBatch,
    StageRow,
    in_key_order,
    stage_changes,
)
from migrationkit.adapters.postgres.compiled import (
    CompiledStatement,
    InFlight,
    driver_errors,
    run_driver_sql,
)
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.domain.change import Change
from migrationkit.errors import Conflict, ValidationFailed
from migrationkit.ports.changes import ApplyResult
from migrationkit.schema.audit_tables import audit_logs_table
from migrationkit.schema.metadata import metadata

__all__ = ["CHUNK_SIZE", "PostgresApplier"]

#: Changes per chunk of a batch: the server applies one chunk while the
#: next is checked in Python.
CHUNK_SIZE = 250
_SMALLEST_TAIL = 32


class PostgresApplier:
    """Applies changes to PostgreSQL; ``consumer`` names its inbox."""

    def __init__(
        self, engine: Engine, *, consumer: str = "postgres", chunk_size: int = CHUNK_SIZE
    ) -> None:
        if not isinstance(consumer, str) or not consumer.strip() or "\x00" in consumer:
            raise ValidationFailed(f"invalid consumer name {consumer!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValidationFailed(f"chunk_size must be a positive integer, not {chunk_size!r}")
        self.chunk_size = chunk_size
        self.engine = engine
        self.consumer = consumer
        self.name = consumer
        self._statements: dict[EntityStage, EntityStatements] = {}
        self._insert_audits = audit_insert(engine)

    def apply(self, changes: Sequence[Change]) -> ApplyResult:
        staged: list[StagedBatch] = []
        try:
            claimed, changed = self._apply_chunks(in_key_order(changes), staged)
        except Conflict as exc:
            clash = self._convex_id_clash(staged) if _is_unique_violation(exc) else None
            if clash is not None:
                raise clash from exc
            raise
        fresh = sum(batch.staged for batch in staged)
        repeated = sum(batch.repeated for batch in staged)
        return ApplyResult(
            applied=changed, duplicates=repeated + fresh - claimed, stale=claimed - changed
        )

    def _statements_for(self, stage: EntityStage) -> EntityStatements:
        statements = self._statements.get(stage)
        if statements is None:
            statements = self._statements[stage] = EntityStatements(self.engine, stage)
        return statements

    def _apply_chunks(
        self, ordered: list[tuple[int, Change]], staged: list[StagedBatch]
    ) -> tuple[int, int]:
        """Stage and apply ``ordered`` in one transaction; ``staged`` collects the chunks.

        Each chunk's statement is sent without waiting for it, and the next
        chunk is checked while the server runs it: the server's work and
        the Python checks overlap instead of taking turns.
        """
        seen: set[str] = set()
        chunks = [ordered[start:end] for start, end in chunk_bounds(len(ordered), self.chunk_size)]
        staged.append(stage_changes(chunks[0], seen))
        if len(chunks) == 1 and not staged[0].staged:
            return 0, 0
        with translated_errors(), self.engine.begin() as conn:
            session = _ApplySession(self, conn)
            try:
                session.write(staged[0], 0)
                for chunk in chunks[1:]:
                    staged.append(stage_changes(chunk, seen))
                    session.write(staged[-1], chunk[0][0])
                return session.finish(staged)
            except BaseException:
                session.discard()  # the connection must be idle for the rollback
                raise

    def _copy(self, conn: Connection, statements: EntityStatements, rows: list[StageRow]) -> None:
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        with driver_errors(conn), driver.cursor() as cursor:
            # JSON columns arrive as JSON text already (pydantic's).
            set_json_dumps(_as_is, cursor)
            with cursor.copy(statements.copy) as copy:
                copy.set_types(statements.copy_types)
                for row in rows:
                    copy.write_row(row)

    def _convex_id_clash(self, staged: list[StagedBatch]) -> ValidationFailed | None:
        """The change whose ``convex_id`` another entity holds, if that is what failed.

        Only run when the batch failed on a uniqueness violation, so the
        common path pays nothing for it.
        """
        with translated_errors(), self.engine.connect() as conn:
            for name, (stage, rows) in sorted(_merged(b.writes for b in staged).items()):
                owners: dict[str, tuple[str, str]] = {}
                claims: list[tuple[str, str, tuple[str, str]]] = []
                for row in rows:
                    event_id, convex_id, workspace_id, entity_id = stage.identity(row)
                    if convex_id is None or workspace_id is None:  # purges name no entity
                        continue
                    owner = (workspace_id, entity_id)
                    if owners.setdefault(convex_id, owner) != owner:
                        return ValidationFailed(
                            f"change {event_id}: convex_id {convex_id!r} names another"
                            f" {name} earlier in the batch"
                        )
                    claims.append((event_id, convex_id, owner))
                table = stage.target
                found = conn.execute(
                    select(table.c.convex_id, table.c.workspace_id, table.c.id).where(
                        table.c.convex_id.in_(sorted(owners))
                    )
                )
                holders = {row.convex_id: (row.workspace_id, row.id) for row in found}
                for event_id, convex_id, owner in claims:
                    holder = holders.get(convex_id)
                    if holder is not None and holder != owner:
                        return ValidationFailed(
                            f"change {event_id}: convex_id {convex_id!r} already belongs to"
                            f" {name} {holder[1]} in workspace {holder[0]}"
                        )
        return None


def chunk_bounds(count: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of each chunk of a batch of ``count``: ``size`` each, then a shrinking tail.

    The last chunk's statement is the one nothing overlaps (the commit
    waits for it), so the end of the batch goes in halves, down to about
    ``_SMALLEST_TAIL`` changes: the server's last wait is for a small chunk.
    """
    bounds: list[tuple[int, int]] = []
    start = 0
    while count - start > 2 * size:
        bounds.append((start, start + size))
        start += size
    while count - start > size or count - start > 2 * _SMALLEST_TAIL:
        piece = min((count - start) // 2, size)
        bounds.append((start, start + piece))
        start += piece
    bounds.append((start, count))
    return bounds


class _ApplySession:
    """One transaction's work: staging tables, chunks applied, counts."""

    def __init__(self, applier: PostgresApplier, conn: Connection) -> None:
        self.applier = applier
        self.conn = conn
        self.params: dict[str, Any] = {"consumer": applier.consumer}
        self.filled: set[EntityStage] = set()
        self.in_flight: InFlight | None = None
        self.claimed = 0
        self.changed = 0

    def write(self, batch: StagedBatch, first: int) -> None:
        """Stage one chunk's upserts and soft deletes and send their statements.

        ``first`` is the chunk's first number. The last statement's result
        is left to read: the caller checks the next chunk while the server
        runs it.
        """
        params = {**self.params, "first": first}
        for _, (stage, rows) in sorted(batch.writes.items()):
            self.collect()
            statements = self._stage(stage, rows)
            self.in_flight = statements.writes.send(self.conn, params)

    def finish(self, staged: list[StagedBatch]) -> tuple[int, int]:
        """Apply every chunk's purges, after all writes; return (claimed, changed).

        A purge must see the soft delete that precedes it in the same batch.
        """
        self.collect()
        for _, (stage, rows) in sorted(_merged(batch.purges for batch in staged).items()):
            statements = self._stage(stage, rows)
            self._count(statements.purges.execute(self.conn, self.params).fetchone())
        audits = [entry.model_dump(mode="json") for batch in staged for entry in batch.audits]
        if audits:
            self.applier._insert_audits.execute(self.conn, {"rows": audits})
        return self.claimed, self.changed

    def collect(self) -> None:
        """Read the result of the statement in flight, if any, and count it."""
        sent, self.in_flight = self.in_flight, None
        if sent is not None:
            self._count(sent.result())

    def discard(self) -> None:
        sent, self.in_flight = self.in_flight, None
        if sent is not None:
            sent.discard()

    def _stage(self, stage: EntityStage, rows: list[StageRow]) -> EntityStatements:
        """Add ``rows`` to the entity's staging table."""
        statements = self.applier._statements_for(stage)
        if stage not in self.filled:
            # Lives for one transaction (ON COMMIT DROP), shared by its chunks.
            run_driver_sql(self.conn, statements.create)
            self.filled.add(stage)
        self.applier._copy(self.conn, statements, rows)
        return statements

    def _count(self, counts: Sequence[Any] | None) -> None:
        assert counts is not None  # an aggregate returns one row
        self.claimed += int(counts[0])
        self.changed += int(counts[1])


def _merged(
    parts: Iterable[dict[str, tuple[EntityStage, list[StageRow]]]],
) -> dict[str, tuple[EntityStage, list[StageRow]]]:
    merged: dict[str, tuple[EntityStage, list[StageRow]]] = {}
    for part in parts:
        for name, (stage, rows) in part.items():
            merged.setdefault(name, (stage, []))[1].extend(rows)
    return merged


def audit_insert(engine: Engine) -> CompiledStatement:
    """One statement for a batch's audit entries, sent as one JSON array.

    Sorted by key, as the entity rows are: two appliers inserting the same
    entries take their index locks in the same order.
    """
    table = audit_logs_table(metadata)
    rows = (
        func.jsonb_to_recordset(bindparam("rows"))
        .table_valued(*(column(c.name, c.type) for c in table.columns))
        .render_derived(name="r", with_types=True)
    )
    names = [c.name for c in table.columns]
    statement = (
        pg_insert(table)
        .from_select(
            names,
            select(*(rows.c[n] for n in names)).order_by(
                rows.c.workspace_id.collate("C"), rows.c.id.collate("C")
            ),
        )
        .on_conflict_do_nothing()
    )
    return CompiledStatement(statement, engine.dialect, frozenset({"rows"}))


def _as_is(json_text: bytes) -> bytes:
    return json_text


def _is_unique_violation(error: Conflict) -> bool:
    cause = error.__cause__
    while cause is not None and not isinstance(cause, psycopg.Error):
        cause = cause.__cause__
    return isinstance(cause, psycopg.errors.UniqueViolation)
