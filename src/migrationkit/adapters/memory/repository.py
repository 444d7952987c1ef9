"""An in-memory repository with the same semantics as the real stores.

It is a real implementation of the port, not a mock: versions, soft
deletes, keyset pagination, the outbox and the audit log all behave as in
PostgreSQL, so unit tests written against it keep holding when the store
changes.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from migrationkit.domain.audit import AuditAction, AuditEntry
from migrationkit.domain.clock import SystemClock
from migrationkit.domain.cursor import decode_cursor
from migrationkit.domain.entity import Entity
from migrationkit.domain.ids import check_entity_id, check_workspace_id
from migrationkit.domain.lead import Lead
from migrationkit.domain.outbox import Operation, OutboxEvent
from migrationkit.domain.query import ListQuery, Page, SegmentQuery, page_of
from migrationkit.domain.writes import check_expected_version, check_query, prepare_upsert
from migrationkit.errors import Conflict, NotFound
from migrationkit.ports.clock import Clock

E = TypeVar("E", bound=Entity)


class MemoryRepository(Generic[E]):
    """Entities, their outbox and audit log held in memory, guarded by one lock."""

    def __init__(self, model: type[E], clock: Clock | None = None) -> None:
        self.model = model
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._rows: dict[tuple[str, str], E] = {}
        self._outbox: list[OutboxEvent] = []
        self._audit: list[AuditEntry] = []

    # -- reads -------------------------------------------------------------

    def get(self, workspace_id: str, id: str) -> E | None:
        key = (check_workspace_id(workspace_id), check_entity_id(id))
        with self._lock:
            row = self._rows.get(key)
        return None if row is None or row.is_deleted else row.model_copy(deep=True)

    def list(self, workspace_id: str, query: ListQuery | None = None) -> Page[E]:
        workspace = check_workspace_id(workspace_id)
        q: ListQuery = check_query(query, ListQuery)
        return self._page(workspace, q.cursor, q.limit, q.filters(), lambda _: True)

    def _page(
        self,
        workspace: str,
        cursor: str | None,
        limit: int,
        filters: dict[str, Any],
        keep: Any,
    ) -> Page[E]:
        name = self.model.entity_name
        after = decode_cursor(cursor, workspace, name, filters)
        with self._lock:
            candidates = sorted(
                (row for (ws, _), row in self._rows.items() if ws == workspace),
                key=lambda row: row.id,
            )
        live = [
            row
            for row in candidates
            if not row.is_deleted and (after is None or row.id > after) and keep(row)
        ]
        return page_of(
            live,
            limit,
            lambda row: row.model_copy(deep=True),
            workspace_id=workspace,
            entity=name,
            filters=filters,
        )

    # -- writes ------------------------------------------------------------

    def upsert(
        self,
        workspace_id: str,
        data: E | Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> str:
        return self.upsert_entity(workspace_id, data, expected_version=expected_version).id

    def upsert_entity(
        self,
        workspace_id: str,
        data: E | Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> E:
        """``upsert``, returning the entity as stored."""
        entity = prepare_upsert(self.model, workspace_id, data)
        expected = check_expected_version(expected_version)
        key = (entity.workspace_id, entity.id)
        with self._lock:
            now = self._clock.now()
            current = self._rows.get(key)
            current_version = current.version if current else 0
            if expected is not None and expected != current_version:
                raise Conflict(
                    f"{self.model.entity_name} {entity.id}: expected version {expected},"
                    f" found {current_version}"
                )
            stored = entity.model_copy(
                update={
                    "version": current_version + 1,
                    "created_at": current.created_at if current else now,
                    "updated_at": now,
                    "deleted_at": None,
                },
                deep=True,
            )
            self._rows[key] = stored
            action = AuditAction.CREATE if current is None else AuditAction.UPDATE
            self._record(stored, Operation.UPSERT, AuditEntry.for_write(current, stored, action))
        return stored.model_copy(deep=True)

    def delete(self, workspace_id: str, id: str) -> bool:
        return self.delete_entity(workspace_id, id) is not None

    def delete_entity(self, workspace_id: str, id: str) -> E | None:
        """``delete``, returning the entity as deleted (``None`` if it already was)."""
        key = (check_workspace_id(workspace_id), check_entity_id(id))
        with self._lock:
            current = self._rows.get(key)
            if current is None:
                raise NotFound(f"{self.model.entity_name} {key[1]} not found in {key[0]}")
            if current.is_deleted:
                return None
            now = self._clock.now()
            stored = current.model_copy(
                update={"version": current.version + 1, "updated_at": now, "deleted_at": now}
            )
            self._rows[key] = stored
            self._record(
                stored, Operation.DELETE, AuditEntry.for_write(current, stored, AuditAction.DELETE)
            )
        return stored.model_copy(deep=True)

    def _record(self, entity: E, operation: Operation, audit: AuditEntry) -> None:
        self._outbox.append(OutboxEvent.for_write(entity, operation, audit))
        self._audit.append(audit)

    # -- for tests and the pipeline -----------------------------------------

    def outbox_events(self, workspace_id: str | None = None) -> builtins.list[OutboxEvent]:
        """Recorded events in write order, optionally for one workspace."""
        with self._lock:
            return [e for e in self._outbox if workspace_id in (None, e.workspace_id)]

    def audit_entries(self, workspace_id: str) -> builtins.list[AuditEntry]:
        """The workspace's audit entries, oldest first."""
        workspace = check_workspace_id(workspace_id)
        with self._lock:
            return [a.model_copy(deep=True) for a in self._audit if a.workspace_id == workspace]


class MemoryLeadRepository(MemoryRepository[Lead]):
    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(Lead, clock)

    def list_by_segment(self, workspace_id: str, query: SegmentQuery) -> Page[Lead]:
        workspace = check_workspace_id(workspace_id)
        q: SegmentQuery = check_query(query, SegmentQuery)

        def keep(lead: Lead) -> bool:
            if q.segment is not None and lead.segment != q.segment:
                return False
            if q.email_domain is not None and email_domain(lead.email) != q.email_domain:
                return False
            created = lead.created_at
            return q.created_after is None or (created is not None and created > q.created_after)

        return self._page(workspace, q.cursor, q.limit, q.filters(), keep)


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()
