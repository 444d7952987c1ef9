"""The PostgreSQL outbox as a change source: rows are claimed, not tailed.

Why no cursor: an event id (and ``occurred_at``) is assigned inside the
writer's transaction, long before it commits. A reader that remembers "the
last id seen" skips every row whose transaction started before, but
committed after, a row it already passed. Here each row carries its own
state (``pending`` -> ``processing`` -> ``done`` | ``dead``): a row that
commits late is simply pending when it becomes visible, and is claimed then.

A claim is a lease: owner, fencing token and expiry, all written on the row.
A worker that stalls or dies loses its rows when the lease expires and
another worker takes them over; the stale worker can then no longer settle
them (ack, retry, bury), because every settlement checks the fencing token.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Interval,
    Text,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from migrationkit.adapters.postgres.dead_letters import scrub_error
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.domain.change import Change
from migrationkit.domain.outbox import OutboxEvent
from migrationkit.errors import Conflict, ValidationFailed
from migrationkit.ports.changes import ChangeBatch
from migrationkit.schema.metadata import metadata
from migrationkit.schema.outbox_tables import outbox_table

__all__ = ["LeaseLost", "OutboxClaim", "PgOutboxSource"]

logger = logging.getLogger(__name__)

MAX_FETCH_LIMIT = 10_000
_EVENT_FIELDS = tuple(OutboxEvent.model_fields)
_MAX_OWNER_LENGTH = 200


def _status(value: str) -> ColumnElement[Any]:
    # Inline literals, not bound parameters: the claimable partial index is
    # defined by ``status IN ('pending', 'processing')``, and a generic plan
    # (psycopg prepares statements it sees repeatedly) can only prove a
    # query matches that predicate when the values are in the SQL text.
    return literal_column(f"'{value}'", Text())


_PENDING = _status("pending")
_PROCESSING = _status("processing")
_DONE = _status("done")
_DEAD = _status("dead")


class LeaseLost(Conflict):
    """Some rows of a claim are no longer held by it: the lease expired and
    another owner claimed them (and may have finished them), or this claim
    already retried or buried them. Nothing was done to those rows; the rows
    still held were settled as asked. ``event_ids`` names the rows lost."""

    def __init__(self, action: str, lost_event_ids: Sequence[str], claimed: int) -> None:
        self.action = action
        self.event_ids: tuple[str, ...] = tuple(lost_event_ids)
        self.lost = len(self.event_ids)
        super().__init__(
            f"outbox {action}: {self.lost} of {claimed} rows are no longer held by this claim"
            " (taken over by another owner after the lease expired, or already settled);"
            " left untouched"
        )


@dataclass(frozen=True)
class OutboxClaim:
    """The token of a batch from ``PgOutboxSource.fetch``: which rows, under which lease."""

    owner: str
    #: Fencing token, new for every claim: tells this claim from an earlier
    #: or later one by the same owner.
    fence: str
    event_ids: tuple[str, ...]
    #: Claims of each row so far, this one included (1 on a first delivery).
    attempts: dict[str, int] = field(default_factory=dict)
    #: The last error a previous attempt recorded, per row that has one.
    last_errors: dict[str, str] = field(default_factory=dict)
    #: When the lease runs out (database clock); ``None`` for an empty claim.
    lease_expires_at: datetime | None = None
    #: Rows claimed but unreadable (changed behind the kit's back): already
    #: marked ``dead`` with the reason in ``last_error``; not in the batch.
    rejected: tuple[str, ...] = ()

    @property
    def lease_owner(self) -> str:
        """The value this claim wrote to ``lease_owner`` on each row."""
        return f"{self.owner}/{self.fence}"


class PgOutboxSource:
    """Changes from the PostgreSQL ``outbox_events`` table, claimed under leases.

    The worker loop: ``batch = source.fetch(n)``, apply it to the sink, then
    ``source.ack(batch)``; a change that failed goes to ``retry`` (or, once
    ``source.exhausted(batch)`` names it, to the dead letters and ``bury``).
    Several sources (threads, processes, hosts) may fetch at once: each row
    is claimed by one of them only.

    The outbox has forced row-level security and this source reads every
    workspace, so its engine must log in as a role that bypasses RLS
    (``BYPASSRLS``, or a superuser): the worker's or operator's role, never
    the application's. Under an RLS-bound role it would see no rows at all.

    All lease times come from the database clock (``now()``), never the
    worker's: workers on several hosts then agree on when a lease expires.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        owner: str,
        lease_seconds: float = 30.0,
        max_attempts: int = 5,
        name: str = "pg_outbox",
    ) -> None:
        if not isinstance(owner, str) or not owner.strip() or len(owner) > _MAX_OWNER_LENGTH:
            raise ValidationFailed(
                f"owner must be a non-empty string of at most {_MAX_OWNER_LENGTH} characters"
            )
        if not _positive(lease_seconds):
            raise ValidationFailed("lease_seconds must be a positive number")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValidationFailed("max_attempts must be a positive integer")
        self.engine = engine
        self.owner = owner
        self.lease_seconds = float(lease_seconds)
        self.max_attempts = max_attempts
        self.name = name
        self.table = outbox_table(metadata)
        self._build_statements()

    def _build_statements(self) -> None:
        t = self.table
        now = func.now()
        in_queue = t.c.status.in_([_PENDING, _PROCESSING])
        event_columns = [t.c[n] for n in OutboxEvent.model_fields]

        # Why this claim is safe with many concurrent claimers:
        #
        # * The inner SELECT locks each row it returns (FOR UPDATE) and SKIP
        #   LOCKED passes over rows another claimer has locked instead of
        #   queueing behind it, so concurrent claimers split the queue
        #   between them without waiting for each other. Locked rows are
        #   skipped before LIMIT counts, so a claim still fills its batch.
        # * If a row was claimed and committed by someone else after this
        #   statement's snapshot was taken, locking it finds the newer row
        #   version and PostgreSQL re-checks the WHERE clause against it
        #   (READ COMMITTED's EvalPlanQual): it is now ``processing`` under a
        #   live lease, fails the check, and is dropped. A row therefore
        #   reaches the UPDATE only while it is claimable and locked by us;
        #   the lock is held until commit, when it already carries our lease.
        # * MATERIALIZED makes the CTE run exactly once; the UPDATE joins to
        #   its frozen result, never re-running the selection.
        # * Rows a writer has not committed yet are invisible here and hold
        #   no lock we could wait on; they are pending when they appear.
        #
        # ``next_attempt_at <= now()`` holds for every expired lease too (a
        # row is only claimed once due), and gives the partial index
        # ix_outbox_events_claimable a range to scan in due order.
        claimable = (
            select(t.c.event_id)
            .where(
                in_queue,
                t.c.next_attempt_at <= now,
                or_(t.c.status == _PENDING, t.c.lease_expires_at <= now),
            )
            .order_by(t.c.next_attempt_at, t.c.event_id)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
            .cte("claimable")
            .prefix_with("MATERIALIZED")
        )
        self._claim = (
            update(t)
            .where(t.c.event_id == claimable.c.event_id)
            .values(
                status=_PROCESSING,
                attempts=t.c.attempts + 1,
                lease_owner=bindparam("held_by"),
                lease_expires_at=now + bindparam("lease_for", type_=Interval()),
            )
            .returning(*event_columns, t.c.attempts, t.c.last_error, t.c.lease_expires_at)
        )
        self._reject = (
            update(t)
            .where(t.c.event_id == any_(bindparam("ids", type_=ARRAY(Text()))))
            .values(status=_DEAD, last_error=bindparam("error"), lease_expires_at=null())
        )

        # Settling (ack, retry, bury) is fenced: it touches a row only while
        # ``lease_owner`` still names this very claim (owner and fencing
        # token). A takeover always rewrites ``lease_owner``, so a worker
        # whose lease ran out and was claimed by another can no longer
        # change the row, whatever its own clock says. The check and the
        # write are one UPDATE, which holds the row lock: a concurrent
        # takeover either commits first (then this WHERE re-checks against
        # the new owner and fails) or waits and then finds the row settled
        # (no longer claimable). The expiry time is deliberately not
        # checked: a lease that ran out but was not taken over is still
        # this claim's, and settling it saves a redelivery.
        held = and_(
            t.c.event_id == any_(bindparam("ids", type_=ARRAY(Text()))),
            t.c.lease_owner == bindparam("held_by"),
        )
        # A second ack of the same claim finds its rows already done under
        # its own lease and succeeds again: acking is idempotent.
        self._ack = (
            update(t)
            .where(held, t.c.status.in_([_PROCESSING, _DONE]))
            .values(status=_DONE, lease_expires_at=null())
            .returning(t.c.event_id)
        )
        self._retry = (
            update(t)
            .where(held, t.c.status == _PROCESSING)
            .values(
                status=_PENDING,
                next_attempt_at=now + bindparam("delay", type_=Interval()),
                # NULL keeps the error an earlier attempt recorded (release).
                last_error=func.coalesce(bindparam("error", type_=Text()), t.c.last_error),
                lease_owner=null(),
                lease_expires_at=null(),
            )
            .returning(t.c.event_id)
        )
        # The owner stays on a buried row: it records who gave up on it.
        self._bury = (
            update(t)
            .where(held, t.c.status == _PROCESSING)
            .values(status=_DEAD, last_error=bindparam("error"), lease_expires_at=null())
            .returning(t.c.event_id)
        )
        self._backlog = select(func.count()).select_from(t).where(in_queue)
        self._oldest_age = select(func.extract("epoch", now - func.min(t.c.occurred_at))).where(
            in_queue
        )

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        # READ COMMITTED whatever the engine's default: the claim relies on
        # its re-check of rows changed since the snapshot; under REPEATABLE
        # READ or SERIALIZABLE the same race is a serialization error.
        with translated_errors(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn

    # -- ChangeSource ------------------------------------------------------

    def fetch(self, limit: int) -> ChangeBatch:
        """Claim up to ``limit`` due rows, oldest due first, under a fresh lease.

        Due rows are ``pending`` ones whose ``next_attempt_at`` has come and
        ``processing`` ones whose lease expired. The batch's changes are in
        ``occurred_at`` order; its token is an ``OutboxClaim``.
        """
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not (1 <= limit <= MAX_FETCH_LIMIT)
        ):
            raise ValidationFailed(f"limit must be an integer from 1 to {MAX_FETCH_LIMIT}")
        fence = uuid.uuid4().hex
        lease_owner = f"{self.owner}/{fence}"
        params = {
            "limit": limit,
            "held_by": lease_owner,
            "lease_for": timedelta(seconds=self.lease_seconds),
        }
        changes: list[Change] = []
        attempts: dict[str, int] = {}
        last_errors: dict[str, str] = {}
        rejected: dict[str, str] = {}
        expires: datetime | None = None
        with self._transaction() as conn:
            rows = conn.execute(self._claim, params).mappings().all()
            for row in rows:
                event_id = row["event_id"]
                try:
                    event = OutboxEvent.model_validate({n: row[n] for n in _EVENT_FIELDS})
                    change = Change.from_event(event)
                except (ValidationError, ValueError) as exc:
                    rejected[event_id] = scrub_error(f"unreadable outbox row: {exc}")
                    continue
                changes.append(change)
                attempts[event_id] = row["attempts"]
                if row["last_error"] is not None:
                    last_errors[event_id] = row["last_error"]
                expires = row["lease_expires_at"]
            # A row that cannot be read never will be: bury it in the same
            # transaction instead of letting it come back forever.
            for event_id, error in rejected.items():
                conn.execute(self._reject, {"ids": [event_id], "error": error})
        if rejected:
            logger.warning("outbox rows marked dead as unreadable: %s", ", ".join(sorted(rejected)))
        changes.sort(key=lambda c: (c.occurred_at, c.event_id))
        claim = OutboxClaim(
            owner=self.owner,
            fence=fence,
            event_ids=tuple(c.event_id for c in changes),
            attempts=attempts,
            last_errors=last_errors,
            lease_expires_at=None if expires is None else expires.astimezone(UTC),
            rejected=tuple(sorted(rejected)),
        )
        # A full batch suggests more is due: the worker fetches again at once.
        return ChangeBatch(changes=changes, token=claim, more=len(rows) >= limit)

    def ack(
        self, batch: ChangeBatch | OutboxClaim, *, event_ids: Collection[str] | None = None
    ) -> None:
        """Mark the batch's rows (or ``event_ids`` among them) ``done``.

        Rows this claim no longer holds are left alone and reported by a
        ``LeaseLost`` raised after the rows still held are marked.
        """
        self._settle("ack", self._ack, batch, event_ids, {})

    def backlog(self) -> int:
        """Rows not yet delivered: ``pending`` plus ``processing``."""
        with self._transaction() as conn:
            return int(conn.execute(self._backlog).scalar_one())

    # -- beyond the port -------------------------------------------------

    def retry(
        self,
        batch: ChangeBatch | OutboxClaim,
        error: str | BaseException,
        delay_seconds: float,
        *,
        event_ids: Collection[str] | None = None,
    ) -> None:
        """Give rows back: ``pending`` again, due ``delay_seconds`` from now,
        with ``error`` recorded and the lease cleared (held rows only)."""
        self._retry_rows(batch, scrub_error(error), delay_seconds, event_ids)

    def _retry_rows(
        self,
        batch: ChangeBatch | OutboxClaim,
        error: str | None,
        delay_seconds: float,
        event_ids: Collection[str] | None,
    ) -> None:
        if not (_positive(delay_seconds) or delay_seconds == 0):
            raise ValidationFailed("delay_seconds must be a non-negative number")
        params = {"delay": timedelta(seconds=float(delay_seconds)), "error": error}
        self._settle("retry", self._retry, batch, event_ids, params)

    def release(self, batch: ChangeBatch | OutboxClaim, delay_seconds: float) -> None:
        """Give the whole batch back, due after ``delay_seconds``, keeping
        each row's last recorded error (held rows only)."""
        self._retry_rows(batch, None, delay_seconds, None)

    def bury(
        self,
        batch: ChangeBatch | OutboxClaim,
        error: str | BaseException,
        *,
        event_ids: Collection[str] | None = None,
    ) -> None:
        """Give up on rows: status ``dead`` (held rows only).

        Copy them to the dead letters first: a crash in between then leaves
        a dead letter whose row is redelivered, never a row lost from both.
        """
        self._settle("bury", self._bury, batch, event_ids, {"error": scrub_error(error)})

    def exhausted(self, batch: ChangeBatch | OutboxClaim) -> list[str]:
        """Event ids of the batch that have used all ``max_attempts`` claims:
        if this attempt fails too, bury them instead of retrying."""
        claim = _claim_of(batch)
        return [i for i in claim.event_ids if claim.attempts.get(i, 0) >= self.max_attempts]

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest undelivered write (pending or processing)
        occurred; ``None`` when nothing is waiting."""
        with self._transaction() as conn:
            age = conn.execute(self._oldest_age).scalar_one()
        # occurred_at is stamped by the writer's clock; skew must not make
        # the age negative.
        return None if age is None else max(0.0, float(age))

    def _settle(
        self,
        action: str,
        statement: Any,
        batch: ChangeBatch | OutboxClaim,
        event_ids: Collection[str] | None,
        params: Mapping[str, Any],
    ) -> None:
        claim = _claim_of(batch)
        ids = list(claim.event_ids) if event_ids is None else _subset(claim, event_ids)
        if not ids:
            return
        with self._transaction() as conn:
            done = conn.execute(
                statement, {**params, "ids": ids, "held_by": claim.lease_owner}
            ).scalars()
            settled = set(done)
        lost = [i for i in ids if i not in settled]
        if lost:
            raise LeaseLost(action, lost, len(ids))


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _claim_of(batch: ChangeBatch | OutboxClaim) -> OutboxClaim:
    claim = batch.token if isinstance(batch, ChangeBatch) else batch
    if not isinstance(claim, OutboxClaim):
        raise ValidationFailed("this batch was not fetched from a PgOutboxSource")
    return claim


def _subset(claim: OutboxClaim, event_ids: Collection[str]) -> list[str]:
    if isinstance(event_ids, str):
        raise ValidationFailed("event_ids must be a collection of ids, not one string")
    ids = list(dict.fromkeys(event_ids))
    foreign = set(ids) - set(claim.event_ids)
    if foreign:
        raise ValidationFailed(f"{len(foreign)} event ids are not part of this claim")
    return ids
