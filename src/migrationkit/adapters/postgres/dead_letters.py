"""Dead letters: changes that kept failing, set aside so the rest keep flowing.

A dead letter keeps the whole change (kind, data, Convex id, version), so an
operator can read it, fix the cause and replay it exactly; replaying is
harmless because sinks are idempotent and version-guarded.

The table has forced row-level security and a purge change has no
workspace at all, so the store runs as a role that bypasses RLS (the
operator's or the worker's), like ``PgOutboxSource``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.errors import ValidationFailed
from migrationkit.schema.metadata import metadata
from migrationkit.schema.pipeline_tables import dead_letters_table

__all__ = ["MAX_ERROR_LENGTH", "DeadLetter", "DeadLetterStore", "scrub_error"]

#: Longer error texts are cut: a traceback or a server reply quoted whole
#: would bloat the table and the operator's screen without saying more.
MAX_ERROR_LENGTH = 2000
MAX_LIST_LIMIT = 10_000

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # The password in a URL's userinfo: scheme://user:password@host
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), r"\1***@"),
    # key=value and key: value forms (libpq DSNs, headers, JSON, log lines).
    (
        re.compile(
            r"(?i)([\"']?\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
            r"|deploy[_-]?key|admin[_-]?key|authorization)\b[\"']?\s*[=:]\s*)"
            r"(?:(?:bearer|basic|convex)\s+)?[\"']?[^\s\"',;&}]+[\"']?"
        ),
        r"\1***",
    ),
    # Authorization schemes quoted without their header name.
    (re.compile(r"(?i)\b(bearer|basic|convex)\s+[A-Za-z0-9._~+/=|:-]{12,}"), r"\1 ***"),
    # Convex deploy and admin keys: "prod:happy-animal-123|eyJ..." and the like.
    (re.compile(r"\b(?:prod|dev|preview|project):[A-Za-z0-9_-]+\|[A-Za-z0-9+/=_.-]+"), "***"),
)


def scrub_error(error: str | BaseException, limit: int = MAX_ERROR_LENGTH) -> str:
    """An error text fit to store: secrets masked, NULs replaced, length bounded.

    An exception is rendered as ``"TypeName: message"``. PostgreSQL's text
    type cannot hold NUL, so an error quoting binary data would otherwise
    make the very write that records the failure fail too.
    """
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = text.replace("\x00", "\ufffd")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    if len(text) > limit:
        marker = " ... [truncated]"
        text = text[: max(0, limit - len(marker))] + marker
    return text or "unknown error"


@dataclass(frozen=True)
class DeadLetter:
    """One row of ``dead_letters``."""

    event_id: str
    consumer: str
    source: str
    entity: str
    kind: ChangeKind
    workspace_id: str | None
    entity_id: str | None
    convex_id: str | None
    version: int
    occurred_at: datetime
    data: dict[str, Any] | None
    error: str
    attempts: int
    failed_at: datetime
    replayed_at: datetime | None
    #: The write's audit entry, when the change carried one: a replay adds it.
    audit: dict[str, Any] | None = None

    @property
    def change(self) -> Change:
        """The change exactly as it failed, ready to replay."""
        return Change(
            event_id=self.event_id,
            entity=self.entity,
            kind=self.kind,
            workspace_id=self.workspace_id,
            entity_id=self.entity_id,
            version=self.version,
            data=None if self.data is None else dict(self.data),
            occurred_at=self.occurred_at,
            convex_id=self.convex_id,
            audit=None if self.audit is None else dict(self.audit),
        )

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> DeadLetter:
        replayed_at = row["replayed_at"]
        return cls(
            event_id=row["event_id"],
            consumer=row["consumer"],
            source=row["source"],
            entity=row["entity"],
            kind=ChangeKind(row["kind"]),
            workspace_id=row["workspace_id"],
            entity_id=row["entity_id"],
            convex_id=row["convex_id"],
            version=row["version"],
            occurred_at=row["occurred_at"].astimezone(UTC),
            data=row["data"],
            error=row["error"],
            attempts=row["attempts"],
            failed_at=row["failed_at"].astimezone(UTC),
            replayed_at=None if replayed_at is None else replayed_at.astimezone(UTC),
            audit=row["audit"],
        )


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{what} must be a non-empty string")
    return value


class DeadLetterStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = dead_letters_table(metadata)
        self._not_replayed = self.table.c.replayed_at.is_(None)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with translated_errors(), self.engine.begin() as conn:
            yield conn

    def add(
        self,
        change: Change,
        *,
        consumer: str,
        source: str,
        error: str | BaseException,
        attempts: int,
    ) -> None:
        """Record ``change`` as dead; adding the same event again refreshes it.

        A second add (the replayed change failed again) updates the error, the
        attempt count and ``failed_at``, and clears ``replayed_at``: the
        change is dead again and shows in the default listing once more.
        """
        if not isinstance(change, Change):
            raise ValidationFailed("a dead letter records a Change")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValidationFailed("attempts must be a non-negative integer")
        t = self.table
        stmt = pg_insert(t).values(
            event_id=change.event_id,
            consumer=_name(consumer, "consumer"),
            source=_name(source, "source"),
            entity=change.entity,
            kind=change.kind.value,
            workspace_id=change.workspace_id,
            entity_id=change.entity_id,
            convex_id=change.convex_id,
            version=change.version,
            occurred_at=change.occurred_at,
            # SQL NULL, not the JSON null the JSONB type would store for None.
            data=null() if change.data is None else change.data,
            audit=null() if change.audit is None else change.audit,
            error=scrub_error(error),
            attempts=attempts,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.event_id],
            set_={
                "error": stmt.excluded.error,
                "attempts": stmt.excluded.attempts,
                "failed_at": func.now(),
                "replayed_at": null(),
            },
        )
        with self._transaction() as conn:
            conn.execute(stmt)

    def list(self, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest failure first."""
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not (1 <= limit <= MAX_LIST_LIMIT)
        ):
            raise ValidationFailed(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
        t = self.table
        stmt = select(t).order_by(t.c.failed_at, t.c.event_id).limit(limit)
        if not include_replayed:
            stmt = stmt.where(self._not_replayed)
        with self._transaction() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [DeadLetter.from_row(r) for r in rows]

    def get(self, event_id: str) -> DeadLetter | None:
        t = self.table
        with self._transaction() as conn:
            row = conn.execute(select(t).where(t.c.event_id == event_id)).mappings().first()
        return None if row is None else DeadLetter.from_row(row)

    def mark_replayed(self, event_ids: Collection[str]) -> int:
        """Mark dead letters as replayed (hidden from the default listing);
        returns how many were newly marked."""
        ids = _ids(event_ids)
        if not ids:
            return 0
        t = self.table
        stmt = (
            update(t)
            .where(t.c.event_id.in_(ids), self._not_replayed)
            .values(replayed_at=func.now())
            .returning(t.c.event_id)
        )
        with self._transaction() as conn:
            return len(conn.execute(stmt).all())

    def count(self, include_replayed: bool = False) -> int:
        stmt = select(func.count()).select_from(self.table)
        if not include_replayed:
            stmt = stmt.where(self._not_replayed)
        with self._transaction() as conn:
            return int(conn.execute(stmt).scalar_one())


def _ids(event_ids: Collection[str]) -> list[str]:
    if isinstance(event_ids, str):
        raise ValidationFailed("event_ids must be a collection of ids, not one string")
    ids = list(dict.fromkeys(event_ids))
    if not all(isinstance(i, str) and i for i in ids):
        raise ValidationFailed("event ids must be non-empty strings")
    return ids
