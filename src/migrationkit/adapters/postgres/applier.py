"""PostgresApplier: the sink that applies batches of changes to PostgreSQL.

One call is one transaction: the batch is checked in Python (an unknown
entity, data the model refuses, a NUL: a typed error naming the event, and
nothing is sent), COPYed into a temporary staging table, then applied with a
few set-based statements per entity table (see ``_apply_statements`` for the
SQL and why it is safe under duplicates and reordering). Each event id is
recorded in ``processed_events`` for this consumer in the same transaction,
so a replayed batch changes nothing.

What is stored is a copy of the source's row: its version, timestamps and
fields, with no version bump and no outbox row (an outbox row would carry
the change back to the store it came from).

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

from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, Engine, select

from migrationkit.adapters.postgres._apply_statements import EntityStatements
from migrationkit.adapters.postgres._staging import (
    EntityStage,
    StagedBatch,
    StageRow,
    stage_changes,
)
from migrationkit.adapters.postgres.compiled import run_driver_sql
from migrationkit.adapters.postgres.errors import translate_driver_error, translated_errors
from migrationkit.domain.change import Change
from migrationkit.errors import Conflict, ValidationFailed
from migrationkit.ports.changes import ApplyResult

__all__ = ["PostgresApplier"]


class PostgresApplier:
    """Applies changes to PostgreSQL; ``consumer`` names its inbox."""

    def __init__(self, engine: Engine, *, consumer: str = "postgres") -> None:
        if not isinstance(consumer, str) or not consumer.strip() or "\x00" in consumer:
            raise ValidationFailed(f"invalid consumer name {consumer!r}")
        self.engine = engine
        self.consumer = consumer
        self.name = consumer
        self._statements: dict[EntityStage, EntityStatements] = {}

    def apply(self, changes: Sequence[Change]) -> ApplyResult:
        batch = stage_changes(changes)
        result = ApplyResult(duplicates=batch.repeated)
        if not batch.staged:
            return result
        try:
            claimed, changed = self._apply_staged(batch)
        except Conflict as exc:
            clash = self._convex_id_clash(batch) if _is_unique_violation(exc) else None
            if clash is not None:
                raise clash from exc
            raise
        result.applied = changed
        result.duplicates += batch.staged - claimed
        result.stale = claimed - changed
        return result

    def _statements_for(self, stage: EntityStage) -> EntityStatements:
        statements = self._statements.get(stage)
        if statements is None:
            statements = self._statements[stage] = EntityStatements(self.engine, stage)
        return statements

    def _apply_staged(self, batch: StagedBatch) -> tuple[int, int]:
        claimed = changed = 0
        params = {"consumer": self.consumer}
        # Entities in name order, and every entity's writes before any purge:
        # a purge must see the soft delete that precedes it in the same
        # batch, and concurrent appliers should take their locks in one order.
        entities = sorted(batch.rows.items())
        steps = [(stage, "writes") for name, (stage, _) in entities if name in batch.writes]
        steps += [(stage, "purges") for name, (stage, _) in entities if name in batch.purges]
        with translated_errors(), self.engine.begin() as conn:
            for stage, rows in (entry for _, entry in entities):
                statements = self._statements_for(stage)
                run_driver_sql(conn, statements.create)
                self._copy(conn, statements, rows)
            for stage, step in steps:
                statement = getattr(self._statements_for(stage), step)
                counts = statement.execute(conn, params).fetchone()
                claimed += counts[0]
                changed += counts[1]
        return claimed, changed

    def _copy(self, conn: Connection, statements: EntityStatements, rows: list[StageRow]) -> None:
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        try:
            with driver.cursor() as cursor:
                # JSON columns arrive as JSON text already (pydantic's).
                set_json_dumps(_as_is, cursor)
                with cursor.copy(statements.copy) as copy:
                    copy.set_types(statements.copy_types)
                    for row in rows:
                        copy.write_row(row)
        except psycopg.OperationalError as exc:
            # A broken connection must not go back to the pool.
            conn.invalidate(exc)
            raise translate_driver_error(exc) from exc
        except psycopg.Error as exc:
            raise translate_driver_error(exc) from exc

    def _convex_id_clash(self, batch: StagedBatch) -> ValidationFailed | None:
        """The change whose ``convex_id`` another entity holds, if that is what failed.

        Only run when the batch failed on a uniqueness violation, so the
        common path pays nothing for it.
        """
        with translated_errors(), self.engine.connect() as conn:
            for name, (stage, rows) in sorted(batch.rows.items()):
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


def _as_is(json_text: bytes) -> bytes:
    return json_text


def _is_unique_violation(error: Conflict) -> bool:
    cause = error.__cause__
    while cause is not None and not isinstance(cause, psycopg.Error):
        cause = cause.__cause__
    return isinstance(cause, psycopg.errors.UniqueViolation)
