"""Workspace deletion: request, grace period, notices, cancel, purge.

``request`` records a deletion due ``grace_period_days`` later; until then
``cancel`` stops it and nothing is deleted. ``tick`` (which ``retention
run`` calls) sends the notices whose time has come and, once a request is
due, purges the workspace from both stores and writes an audit entry.

The lifecycle, one row of ``workspace_deletions`` per request::

    pending --cancel (before due)--> cancelled
    pending --tick (at due)--> purging --both stores empty--> purged

``cancel`` and the purge's first step are each one guarded ``UPDATE`` of
that row (``status = 'pending'`` and the due time on the right side of
``now``), so of a cancel and a purge racing at the deadline exactly one
wins: the row lock orders them and the loser matches nothing.

**Notices** are events in ``workspace_events``, topics
``workspace.deletion_requested``, ``workspace.deletion_notice`` (at each of
``notice_days_before``), ``workspace.deletion_cancelled`` and
``workspace.purged``, each written in the transaction of the change it
announces (an outbox). Each has a ``dedupe_key`` (a notice's names its
request and its day), so a tick run twice, or by two processes, sends
nothing twice. A notice whose window passed unseen (no tick ran between
7 and 3 days before) is skipped rather than sent late beside the next.

Why not ``outbox_events``: that table is the replication queue. Its
consumer (``PgOutboxSource``) reads each row as a write of a registered
entity (``<entity>.<upsert|delete>``) and marks anything else dead as
unreadable; and a workspace purge deletes the workspace's outbox rows,
where ``workspace.purged`` must outlive it. So notices have their own
table, which the replication worker never reads; whoever sends mail or
webhooks consumes it with ``publish``.

**The purge** deletes every row of the workspace from every tenant table
in PostgreSQL (entity tables and their archives, the outbox and its
archive, the inbox, dead letters, the retention queue, mirror tables that
carry a ``workspace_id``), in short batches, and, through ``Replica``,
every document and outbox event of it in Convex. Replication still in
flight when the purge starts could bring a row back behind it, so the
purge goes round both stores until a round finds nothing. The audit log is
kept: its entries outlive the workspace by their own rule (``audit_logs.
keep_days``), and the purge adds one (action ``delete``, resource
``workspace``, the request's id, by the one who requested it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.domain.audit import AuditAction, AuditEntry
from migrationkit.domain.clock import SystemClock
from migrationkit.domain.ids import check_workspace_id, new_id
from migrationkit.errors import Conflict, NotFound, ValidationFailed
from migrationkit.ports.clock import Clock
from migrationkit.retention.policy import WorkspaceDeletionRule
from migrationkit.retention.replica import Replica
from migrationkit.retention.steps import AUDIT_TABLE
from migrationkit.schema.identifiers import quote_ident
from migrationkit.schema.metadata import current_metadata
from migrationkit.schema.retention_tables import workspace_deletions_table, workspace_events_table

__all__ = [
    "CANCELLED",
    "NOTICE",
    "PURGED",
    "REQUESTED",
    "DeletionRequest",
    "TickReport",
    "WorkspaceDeletions",
    "WorkspaceEvent",
]

REQUESTED = "workspace.deletion_requested"
NOTICE = "workspace.deletion_notice"
CANCELLED = "workspace.deletion_cancelled"
PURGED = "workspace.purged"

#: Rounds of the purge over both stores before it gives up on quiet.
MAX_ROUNDS = 5
_MAX_ACTOR = 256


@dataclass(frozen=True)
class DeletionRequest:
    id: str
    workspace: str
    status: str
    requested_by: str
    requested_at: datetime
    due_at: datetime
    cancelled_by: str | None = None
    cancelled_at: datetime | None = None
    purged_at: datetime | None = None
    purged_rows: dict[str, dict[str, int]] | None = None


@dataclass(frozen=True)
class WorkspaceEvent:
    event_id: str
    workspace: str
    deletion_id: str
    topic: str
    occurred_at: datetime
    payload: dict[str, Any]


@dataclass
class TickReport:
    notices: list[WorkspaceEvent] = field(default_factory=list)
    purged: list[DeletionRequest] = field(default_factory=list)


def _actor(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ACTOR:
        raise ValidationFailed(f"{what} must be a non-empty string of at most {_MAX_ACTOR}")
    if "\x00" in value:
        raise ValidationFailed(f"{what} holds a NUL character (U+0000)")
    return value


class WorkspaceDeletions:
    """Deletion requests of workspaces, kept in PostgreSQL.

    ``replica`` is the other store (Convex) to purge as well; ``None`` once
    Convex is retired. The engine must bypass row-level security (an
    operator's role): a purge spans tables under every tenant's policy.
    """

    def __init__(
        self,
        engine: Engine,
        rule: WorkspaceDeletionRule,
        *,
        clock: Clock | None = None,
        replica: Replica | None = None,
        batch_size: int = 1000,
    ) -> None:
        self.engine = engine
        self.rule = rule
        self.clock: Clock = clock or SystemClock()
        self.replica = replica
        self.batch_size = batch_size
        md = current_metadata()
        self.requests: Table = workspace_deletions_table(md)
        self.events: Table = workspace_events_table(md)

    # -- requests -------------------------------------------------------------

    def request(
        self, workspace: str, requested_by: str, now: datetime | None = None
    ) -> DeletionRequest:
        """Ask for ``workspace`` to be deleted once the grace period is over.

        A workspace already waiting for deletion keeps its request (and its
        due date): the same request is returned.
        """
        ws = check_workspace_id(workspace)
        by = _actor(requested_by, "requested_by")
        at = now or self.clock.now()
        r = self.requests
        row = {
            "id": new_id(),
            "workspace": ws,
            "status": "pending",
            "requested_by": by,
            "requested_at": at,
            "due_at": at + self.rule.grace_period,
        }
        with self._transaction() as conn:
            made = conn.execute(
                pg_insert(r)
                .values(row)
                .on_conflict_do_nothing(
                    index_elements=[r.c.workspace],
                    index_where=r.c.status.in_(["pending", "purging"]),
                )
                .returning(*r.c)
            ).first()
            if made is None:
                found = self._open(conn, ws)
                assert found is not None  # the conflict was with it
                return found
            request = _request(made._mapping)
            self._emit(conn, request, REQUESTED, at, REQUESTED)
        return request

    def cancel(self, workspace: str, by: str, now: datetime | None = None) -> DeletionRequest:
        """Stop a pending deletion, inside its grace period only."""
        ws = check_workspace_id(workspace)
        who = _actor(by, "by")
        at = now or self.clock.now()
        r = self.requests
        with self._transaction() as conn:
            done = conn.execute(
                update(r)
                .where(r.c.workspace == ws, r.c.status == "pending", r.c.due_at > at)
                .values(status="cancelled", cancelled_by=who, cancelled_at=at)
                .returning(*r.c)
            ).first()
            if done is None:
                found = self._open(conn, ws)
                if found is None:
                    raise NotFound(f"workspace {ws} has no deletion waiting")
                raise Conflict(
                    f"workspace {ws}: the grace period ended at {found.due_at.isoformat()};"
                    " the deletion can no longer be cancelled"
                )
            request = _request(done._mapping)
            self._emit(conn, request, CANCELLED, at, CANCELLED)
        return request

    def current(self, workspace: str) -> DeletionRequest | None:
        """The workspace's latest request, whatever its status."""
        ws = check_workspace_id(workspace)
        r = self.requests
        with self._transaction() as conn:
            row = conn.execute(
                select(r).where(r.c.workspace == ws).order_by(r.c.requested_at.desc()).limit(1)
            ).first()
        return None if row is None else _request(row._mapping)

    # -- time passing ----------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickReport:
        """Send the notices now due, and purge the workspaces whose time has come."""
        at = now or self.clock.now()
        report = TickReport()
        r = self.requests
        with self._transaction() as conn:
            waiting = [
                _request(row._mapping)
                for row in conn.execute(
                    select(r).where(r.c.status.in_(["pending", "purging"])).order_by(r.c.due_at)
                )
            ]
            for request in waiting:
                if request.status == "pending" and at < request.due_at:
                    notice = self._notice(conn, request, at)
                    if notice is not None:
                        report.notices.append(notice)
        for request in waiting:
            if at >= request.due_at:
                purged = self._purge(request, at)
                if purged is not None:
                    report.purged.append(purged)
        return report

    def _notice(
        self, conn: Connection, request: DeletionRequest, at: datetime
    ) -> WorkspaceEvent | None:
        # The notice whose window ``at`` is in: from its day up to the next
        # (smaller) one. Days are largest first.
        days = self.rule.notice_days_before
        for index, day in enumerate(days):
            opens = request.due_at - timedelta(days=day)
            closes = (
                request.due_at - timedelta(days=days[index + 1])
                if index + 1 < len(days)
                else request.due_at
            )
            if opens <= at < closes:
                return self._emit(
                    conn, request, NOTICE, at, f"{NOTICE}:{day}", {"days_before": day}
                )
        return None

    def _purge(self, request: DeletionRequest, at: datetime) -> DeletionRequest | None:
        r = self.requests
        with self._transaction() as conn:
            # Closes the grace period for good: a cancel from now on matches nothing.
            claimed = conn.execute(
                update(r)
                .where(
                    r.c.id == request.id, r.c.status.in_(["pending", "purging"]), r.c.due_at <= at
                )
                .values(status="purging")
                .returning(r.c.id)
            ).first()
        if claimed is None:
            return None  # cancelled in between
        removed: dict[str, dict[str, int]] = {"postgres": {}, "convex": {}}
        for _ in range(MAX_ROUNDS):
            found = 0
            if self.replica is not None:
                for table, rows in self.replica.purge_workspace(request.workspace).items():
                    removed["convex"][table] = removed["convex"].get(table, 0) + rows
                    found += rows
            for table, rows in self._purge_postgres(request.workspace).items():
                removed["postgres"][table] = removed["postgres"].get(table, 0) + rows
                found += rows
            if not found:
                break
        with self._transaction() as conn:
            done = conn.execute(
                update(r)
                .where(r.c.id == request.id)
                .values(status="purged", purged_at=at, purged_rows=removed)
                .returning(*r.c)
            ).one()
            purged = _request(done._mapping)
            self._emit(conn, purged, PURGED, at, PURGED, {"purged_rows": removed})
            self._audit(conn, purged, at)
        return purged

    def _purge_postgres(self, workspace: str) -> dict[str, int]:
        """Every row of ``workspace`` in every tenant table but the audit log."""
        counts: dict[str, int] = {}
        for table in current_metadata().sorted_tables:
            if "workspace_id" not in table.c or table.name == AUDIT_TABLE:
                continue
            name = quote_ident(table.name)
            if table.schema:
                name = f"{quote_ident(table.schema)}.{name}"
            # By ctid, a page at a time: each transaction short, each page
            # found through the TID scan rather than a scan per row. Plain
            # FOR UPDATE (not SKIP LOCKED): a row a writer holds is waited
            # for, not left behind.
            statement = text(
                f"DELETE FROM {name} WHERE ctid = ANY(ARRAY("  # noqa: S608  identifiers from the schema
                f"SELECT ctid FROM {name} WHERE workspace_id = :ws LIMIT :n FOR UPDATE))"
            )
            total = 0
            while True:
                with self._transaction() as conn:
                    rows = conn.execute(statement, {"ws": workspace, "n": self.batch_size}).rowcount
                total += rows
                if rows < self.batch_size:
                    break
            if total:
                counts[table.name] = total
        return counts

    # -- events ---------------------------------------------------------------

    def _emit(
        self,
        conn: Connection,
        request: DeletionRequest,
        topic: str,
        at: datetime,
        dedupe: str,
        extra: Mapping[str, Any] | None = None,
    ) -> WorkspaceEvent | None:
        payload = {
            "workspace": request.workspace,
            "deletion_id": request.id,
            "requested_by": request.requested_by,
            "requested_at": request.requested_at.isoformat(),
            "due_at": request.due_at.isoformat(),
            **(extra or {}),
        }
        event = WorkspaceEvent(new_id(), request.workspace, request.id, topic, at, payload)
        e = self.events
        written = conn.execute(
            pg_insert(e)
            .values(
                event_id=event.event_id,
                workspace=event.workspace,
                deletion_id=event.deletion_id,
                topic=topic,
                occurred_at=at,
                dedupe_key=f"{request.id}:{dedupe}",
                payload=payload,
            )
            .on_conflict_do_nothing(index_elements=[e.c.dedupe_key])
            .returning(e.c.event_id)
        ).first()
        return event if written is not None else None

    def publish(self, send: Callable[[WorkspaceEvent], None], limit: int = 100) -> int:
        """Hand pending events to ``send``, oldest first, and mark them done.

        One transaction: the events are locked (SKIP LOCKED, so several
        publishers share them) and marked only if ``send`` returned for all;
        if it raises, they stay pending and go again next time (a consumer
        sees an event at least once, and can dedupe on ``event_id``).
        """
        e = self.events
        with self._transaction() as conn:
            rows = conn.execute(
                select(e)
                .where(e.c.status == "pending")
                .order_by(e.c.occurred_at, e.c.event_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                m = row._mapping
                send(
                    WorkspaceEvent(
                        m["event_id"],
                        m["workspace"],
                        m["deletion_id"],
                        m["topic"],
                        m["occurred_at"],
                        dict(m["payload"]),
                    )
                )
            if rows:
                conn.execute(
                    update(e)
                    .where(e.c.event_id.in_([row.event_id for row in rows]))
                    .values(status="done", published_at=self.clock.now())
                )
        return len(rows)

    def _audit(self, conn: Connection, request: DeletionRequest, at: datetime) -> None:
        audit = current_metadata().tables.get(AUDIT_TABLE)
        if audit is None:
            return  # a schema without the audit log: the purged event is the record
        entry = AuditEntry(
            workspace_id=request.workspace,
            actor=request.requested_by,
            action=AuditAction.DELETE,
            resource_type="workspace",
            resource_id=request.id,
            before={
                "workspace": request.workspace,
                "requested_by": request.requested_by,
                "requested_at": request.requested_at.isoformat(),
                "due_at": request.due_at.isoformat(),
            },
            after={"purged_at": at.isoformat(), "purged_rows": request.purged_rows},
            at=at,
        )
        conn.execute(insert(audit).values(entry.model_dump()))

    def _open(self, conn: Connection, workspace: str) -> DeletionRequest | None:
        r = self.requests
        row = conn.execute(
            select(r).where(r.c.workspace == workspace, r.c.status.in_(["pending", "purging"]))
        ).first()
        return None if row is None else _request(row._mapping)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with translated_errors(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn


def _request(row: Mapping[Any, Any]) -> DeletionRequest:
    return DeletionRequest(
        id=row["id"],
        workspace=row["workspace"],
        status=row["status"],
        requested_by=row["requested_by"],
        requested_at=row["requested_at"],
        due_at=row["due_at"],
        cancelled_by=row["cancelled_by"],
        cancelled_at=row["cancelled_at"],
        purged_at=row["purged_at"],
        purged_rows=row["purged_rows"],
    )
