"""``retention run``: archive, then delete, in short batches.

Each batch is one transaction and one statement (data-modifying CTEs)::

    due       up to batch_size keys of due rows, FOR UPDATE SKIP LOCKED
    gone      DELETE them from the table, RETURNING the whole rows
    archived  INSERT the rows into <table>_archive, with archived_at (archive steps)
    queued    INSERT their lives into retention_purges (rows leaving an entity table)

Why the locks stay short and nothing is lost:

* A batch locks only its own rows, for the one statement: no table lock,
  no lock held across batches, so the application's writes wait at most
  one batch, on a row nobody is likely to write (a tombstone, a delivered
  event). ``SKIP LOCKED`` passes over a row someone holds instead of
  queueing behind it; the next run takes it.
* READ COMMITTED re-checks ``due`` on a row that changed since the
  statement's snapshot (a tombstone brought back to life by a write, an
  event claimed again) before locking it, and drops it if it no longer
  matches: a live row is never archived, a pending event never touched.
* The move is one statement: a row is in the archive or in the table,
  never in neither. A row archived twice (a replicated tombstone that came
  back after its archive) keeps its newest version in the archive.
* The rows' lives go into ``retention_purges`` in the same statement, and
  Convex is told afterwards (``drain``), from that durable queue: Convex
  down means the queue waits, never a row that PostgreSQL forgot and
  Convex still has.

Runs across every workspace: an operator's role that bypasses row-level
security, as for the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.domain.clock import SystemClock
from migrationkit.domain.entity import Entity
from migrationkit.errors import ValidationFailed
from migrationkit.ports.clock import Clock
from migrationkit.retention.policy import RetentionPolicy, entity_models
from migrationkit.retention.replica import Removed, Replica
from migrationkit.retention.report import RetentionReport
from migrationkit.retention.steps import Step, steps
from migrationkit.schema.metadata import current_metadata
from migrationkit.schema.retention_tables import retention_purges_table

__all__ = ["DEFAULT_BATCH_SIZE", "RetentionRunner"]

log = logging.getLogger("migrationkit.retention")

DEFAULT_BATCH_SIZE = 1000

#: ``progress(step, rows so far, done)``
StepProgress = Callable[[str, int, bool], None]
MAX_BATCH_SIZE = 50_000


class RetentionRunner:
    """Applies ``policy`` to PostgreSQL, then tells ``replica`` (Convex) what left.

    Without a replica the removed lives stay queued in ``retention_purges``
    (the plan counts them) until a run with one drains them.
    """

    def __init__(
        self,
        engine: Engine,
        policy: RetentionPolicy,
        *,
        clock: Clock | None = None,
        replica: Replica | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ValidationFailed(f"batch_size must be an integer, not {batch_size!r}")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValidationFailed(f"batch_size must be from 1 to {MAX_BATCH_SIZE}")
        self.engine = engine
        self.policy = policy
        self.clock: Clock = clock or SystemClock()
        self.replica = replica
        self.batch_size = batch_size
        #: Batches committed by the last run (each one short transaction).
        self.batches = 0

    def run(
        self, now: datetime | None = None, progress: StepProgress | None = None
    ) -> RetentionReport:
        """Every step of the policy as of ``now`` (default: the clock), then the drain.

        ``progress(step, rows, done)`` hears of each batch committed.
        """
        moment = now if now is not None else self.clock.now()
        report = RetentionReport(now=moment)
        self.batches = 0
        for step in steps(self.policy, moment):
            self._run_step(step, moment, report, progress)
        if self.replica is not None:
            report.convex_purged = self.drain()
        report.convex_queue = self._queued()
        return report

    def _run_step(
        self,
        step: Step,
        now: datetime,
        report: RetentionReport,
        progress: StepProgress | None = None,
    ) -> None:
        statement = _batch_statement(step, now, self.batch_size)
        label = f"{step.name} ({step.action.value})"
        done_rows = 0
        while True:
            with self._transaction() as conn:
                counts = conn.execute(statement).all()
            self.batches += 1
            moved = 0
            for workspace, rows, *_ in counts:
                report.rows[(step.name, workspace, step.action)] += int(rows)
                moved += int(rows)
            done_rows += moved
            finished = moved < self.batch_size
            if progress is not None:
                progress(label, done_rows, finished)
            # Fewer than a full batch: nothing more is due, or the rest is
            # locked by someone else (the next run takes it).
            if finished:
                return

    # -- the other store ------------------------------------------------------

    def drain(self) -> int:
        """Tell the replica about every queued removal; return the lives it still had.

        A page of the queue is locked (SKIP LOCKED: two runs share the work),
        sent, and deleted from the queue in one transaction: if the replica
        fails, the page stays queued for the next run.
        """
        if self.replica is None:
            return 0
        queue = retention_purges_table(current_metadata())
        purged = 0
        for model, _ in entity_models(self.policy):
            page_query = (
                select(queue.c.workspace_id, queue.c.id, queue.c.created_at)
                .where(queue.c.entity == model.entity_name)
                .order_by(queue.c.removed_at)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            while True:
                with self._transaction() as conn:
                    page = [Removed(*row) for row in conn.execute(page_query)]
                    if page:
                        purged += self.replica.purge(model, page)
                        _unqueue(conn, model, page)
                if len(page) < self.batch_size:
                    break
        return purged

    def _queued(self) -> int:
        queue = retention_purges_table(current_metadata())
        with self._transaction() as conn:
            return int(conn.execute(select(func.count()).select_from(queue)).scalar_one())

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        # READ COMMITTED whatever the engine's default: SKIP LOCKED and the
        # re-check of changed rows are what keep batches short and safe.
        with translated_errors(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn


def _unqueue(conn: Connection, model: type[Entity], page: list[Removed]) -> None:
    queue = retention_purges_table(current_metadata())
    keys = [(r.workspace_id, r.id, r.created_at) for r in page]
    conn.execute(
        delete(queue).where(
            queue.c.entity == model.entity_name,
            tuple_(queue.c.workspace_id, queue.c.id, queue.c.created_at).in_(keys),
        )
    )


def _batch_statement(step: Step, now: datetime, limit: int) -> Select[Any]:
    """One batch of ``step``: returns (workspace_id, rows) for the rows that left."""
    t = step.table
    key = list(t.primary_key.columns)
    due = select(*key).where(*step.due).limit(limit).with_for_update(skip_locked=True).cte("due")
    gone = delete(t).where(*(c == due.c[c.name] for c in key)).returning(*t.columns).cte("gone")
    at = literal(now, TIMESTAMP(timezone=True))
    extra: list[Any] = []
    if step.archive is not None:
        extra.append(_archive(step, gone, at))
    if step.entity is not None:
        extra.append(_queue(step.entity, gone, at))
    # Data-modifying CTEs run whether or not the result reads them, but
    # SQLAlchemy renders only the CTEs a statement refers to: each is
    # counted once here, so it is part of the statement.
    touched = [select(func.count()).select_from(cte).scalar_subquery() for cte in extra]
    return select(gone.c.workspace_id, func.count(), *touched).group_by(gone.c.workspace_id)


def _archive(step: Step, gone: Any, at: Any) -> Any:
    archive = step.archive
    assert archive is not None
    columns = [c.name for c in step.table.columns]
    insert = pg_insert(archive).from_select(
        [*columns, "archived_at"], select(*(gone.c[c] for c in columns), at)
    )
    key = [c.name for c in archive.primary_key.columns]
    if "version" in archive.c:
        # The same life archived again (its tombstone replicated back after
        # the first archive): the archive keeps the newer version of it.
        insert = insert.on_conflict_do_update(
            index_elements=key,
            set_={c: insert.excluded[c] for c in [*columns, "archived_at"] if c not in key},
            where=archive.c.version < insert.excluded.version,
        )
    else:
        insert = insert.on_conflict_do_nothing(index_elements=key)
    return insert.returning(archive.c[key[0]]).cte("archived")


def _queue(model: type[Entity], gone: Any, at: Any) -> Any:
    queue = retention_purges_table(current_metadata())
    rows = select(
        literal(model.entity_name),
        gone.c.workspace_id,
        gone.c.id,
        gone.c.created_at,
        gone.c.version,
        gone.c.convex_id,
        at,
    )
    insert = pg_insert(queue).from_select(
        ["entity", "workspace_id", "id", "created_at", "version", "convex_id", "removed_at"], rows
    )
    return insert.on_conflict_do_nothing().returning(queue.c.id).cte("queued")
