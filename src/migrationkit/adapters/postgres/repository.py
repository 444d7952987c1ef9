"""The PostgreSQL repository: SQLAlchemy Core over psycopg 3.

Each call is one transaction that first scopes row-level security to the
call's workspace. A write, its outbox event and its audit entry share that
transaction, so all three commit or none does.

The audit entry needs the row as it was. A write therefore first reads the
row ``FOR UPDATE``: from then until commit no other writer can change it,
so the ``before`` it records is exactly what this write replaced, and the
version it then writes is the next one. (A row that does not exist yet
cannot be locked: creating it is ``INSERT ... ON CONFLICT DO NOTHING``, and
if a concurrent writer created it first the write starts over and finds
it.)
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres.compiled import CompiledStatement
from migrationkit.adapters.postgres.engine import workspace_transaction
from migrationkit.adapters.postgres.row_codec import RowCodec
from migrationkit.domain.audit import AuditAction, AuditEntry
from migrationkit.domain.clock import SystemClock
from migrationkit.domain.cursor import decode_cursor
from migrationkit.domain.entity import Entity
from migrationkit.domain.ids import check_entity_id, check_workspace_id
from migrationkit.domain.lead import Lead
from migrationkit.domain.outbox import Operation, OutboxEvent, event_fields
from migrationkit.domain.query import ListQuery, Page, SegmentQuery, page_of
from migrationkit.domain.writes import check_expected_version, check_query, prepare_upsert
from migrationkit.errors import Conflict, NotFound
from migrationkit.ports.clock import Clock
from migrationkit.schema.audit_tables import audit_logs_table
from migrationkit.schema.metadata import entity_table, metadata
from migrationkit.schema.outbox_tables import outbox_table

E = TypeVar("E", bound=Entity)
#: Runs inside a write's transaction before it writes; raises to refuse it.
Guard = Callable[[Connection], None]

_IMMUTABLE_ON_UPDATE = frozenset({"id", "workspace_id", "created_at", "version", "convex_id"})
#: A write that keeps losing the race to create its row gives up after this many tries.
_CREATE_ATTEMPTS = 3


class PostgresRepository(Generic[E]):
    def __init__(self, engine: Engine, model: type[E], clock: Clock | None = None) -> None:
        self.engine = engine
        self.model = model
        self.table: Table = entity_table(model)
        self.outbox: Table = outbox_table(metadata)
        self.audit: Table = audit_logs_table(metadata)
        self._codec = RowCodec(model)
        self._clock: Clock = clock or SystemClock()
        self._live = self.table.c.deleted_at.is_(None)
        self._build_statements()

    def _build_statements(self) -> None:
        t = self.table
        dialect = self.engine.dialect
        json_columns = frozenset(c.name for c in t.columns if isinstance(c.type, JSONB))
        changed = [c.name for c in t.columns if c.name not in _IMMUTABLE_ON_UPDATE]
        ins = pg_insert(t)
        # A write returns only what the store decided; the rest is the input.
        stamped = (t.c.version, t.c.created_at)

        def compiled(stmt: Any, json: frozenset[str] = json_columns) -> CompiledStatement:
            return CompiledStatement(stmt, dialect, json)

        self._columns = [c.name for c in t.columns]
        self._insert_new = compiled(ins.on_conflict_do_nothing().returning(*stamped))
        key = and_(t.c.workspace_id == bindparam("key_workspace_id"), t.c.id == bindparam("key_id"))
        self._update_expected = compiled(
            update(t)
            .where(key, t.c.version == bindparam("expected_version"))
            .values({c: bindparam(c) for c in changed})
            .values(version=t.c.version + 1)
            .returning(*stamped)
        )
        self._get = compiled(select(t).where(key, self._live))
        # Deleted rows too: an upsert over one brings it back, and the audit
        # entry records it as it was.
        self._lock = compiled(select(t).where(key).with_for_update())
        self._soft_delete = compiled(
            update(t)
            .where(key, self._live)
            .values(
                deleted_at=bindparam("now"), updated_at=bindparam("now"), version=t.c.version + 1
            )
            .returning(t)
        )
        # The event and the audit row in one statement (one round trip). Only
        # the event's own fields: the claim columns take their server defaults.
        event_values: dict[str, Any] = {n: bindparam(n) for n in OutboxEvent.model_fields}
        audit_values: dict[str, Any] = {
            c.name: bindparam(f"audit_{c.name}") for c in self.audit.columns
        }
        audit_insert = insert(self.audit).values(audit_values).cte("audit_row")
        self._record_write = compiled(
            insert(self.outbox).values(event_values).add_cte(audit_insert),
            frozenset({"payload", "audit", "audit_before", "audit_after"}),
        )
        self._audit_entries = compiled(
            select(self.audit)
            .where(
                self.audit.c.workspace_id == bindparam("workspace_id"),
                self.audit.c.resource_type == bindparam("resource_type"),
            )
            .order_by(self.audit.c.at, self.audit.c.id)
        )

    def _entity(self, row: Sequence[Any]) -> E:
        return self._codec.from_row(dict(zip(self._columns, row, strict=True)))

    # -- reads -------------------------------------------------------------

    def get(self, workspace_id: str, id: str) -> E | None:
        workspace, entity_id = check_workspace_id(workspace_id), check_entity_id(id)
        with workspace_transaction(self.engine, workspace) as conn:
            cursor = self._get.execute(conn, {"key_workspace_id": workspace, "key_id": entity_id})
            row = cursor.fetchone()
        return None if row is None else self._entity(row)

    def list(self, workspace_id: str, query: ListQuery | None = None) -> Page[E]:
        workspace = check_workspace_id(workspace_id)
        q: ListQuery = check_query(query, ListQuery)
        return self._page(workspace, q.cursor, q.limit, q.filters(), [])

    def _page(
        self,
        workspace: str,
        cursor: str | None,
        limit: int,
        filters: dict[str, Any],
        conditions: Sequence[ColumnElement[bool]],
    ) -> Page[E]:
        name = self.model.entity_name
        after = decode_cursor(cursor, workspace, name, filters)
        t = self.table
        where = [t.c.workspace_id == workspace, self._live, *conditions]
        if after is not None:
            where.append(t.c.id > after)
        # One row more than asked tells whether another page exists.
        stmt = select(t).where(*where).order_by(t.c.id).limit(limit + 1)
        with workspace_transaction(self.engine, workspace) as conn:
            rows = conn.execute(stmt).mappings().all()
        return page_of(
            rows, limit, self._codec.from_row, workspace_id=workspace, entity=name, filters=filters
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
        guard: Guard | None = None,
    ) -> E:
        """``upsert``, returning the entity as stored (version and timestamps stamped).

        ``guard`` runs first inside the write's transaction and may refuse it
        (the cutover fence uses it). The audit entry's actor, ip and user
        agent come from the caller's ``audit_context`` (``None`` outside one).
        """
        entity = prepare_upsert(self.model, workspace_id, data)
        expected = check_expected_version(expected_version)
        now = self._clock.now()
        row = self._codec.to_row(entity)
        row.update(version=1, created_at=now, updated_at=now, deleted_at=None, convex_id=None)
        with workspace_transaction(self.engine, entity.workspace_id) as conn:
            if guard is not None:
                guard(conn)
            before, stored = self._write_row(conn, entity, row, expected)
            saved = entity.model_copy(
                update={
                    "version": stored[0],
                    "created_at": stored[1].astimezone(UTC),
                    "updated_at": now,
                    "deleted_at": None,
                }
            )
            action = AuditAction.CREATE if before is None else AuditAction.UPDATE
            self._record(conn, saved, Operation.UPSERT, AuditEntry.for_write(before, saved, action))
        return saved

    def _write_row(
        self, conn: Connection, entity: E, row: dict[str, Any], expected: int | None
    ) -> tuple[E | None, Sequence[Any]]:
        """Insert or update the entity's row: (the row before, or None; its version, created_at)."""
        key = {"key_workspace_id": entity.workspace_id, "key_id": entity.id}
        for _ in range(_CREATE_ATTEMPTS):
            current = None if expected == 0 else self._lock.execute(conn, key).fetchone()
            if current is not None:
                before = self._entity(current)
                if expected is not None and before.version != expected:
                    raise self._conflict(entity, expected)
                changes = {k: v for k, v in row.items() if k not in _IMMUTABLE_ON_UPDATE}
                # The row is locked: the stored version is the one just read.
                updated = self._update_expected.execute(
                    conn, {**changes, **key, "expected_version": before.version}
                ).fetchone()
                assert updated is not None
                return before, updated
            if expected not in (None, 0):
                raise self._conflict(entity, expected)
            created = self._insert_new.execute(conn, row).fetchone()
            if created is not None:
                return None, created
            if expected == 0:
                raise self._conflict(entity, expected)
            # A concurrent writer created it since the read: lock it now.
        raise Conflict(
            f"{self.model.entity_name} {entity.id}: created concurrently by another writer"
            f" {_CREATE_ATTEMPTS} times in a row; try again"
        )

    def _conflict(self, entity: E, expected: int | None) -> Conflict:
        return Conflict(
            f"{self.model.entity_name} {entity.id}: expected version {expected}"
            " is not the stored version"
        )

    def _record(self, conn: Connection, entity: E, operation: Operation, audit: AuditEntry) -> None:
        """The write's outbox event, carrying its audit entry, and the audit row itself."""
        params = event_fields(entity, operation, audit)
        params.update({f"audit_{k}": v for k, v in audit_row(audit).items()})
        self._record_write.execute(conn, params)

    def delete(self, workspace_id: str, id: str) -> bool:
        return self.delete_entity(workspace_id, id) is not None

    def delete_entity(self, workspace_id: str, id: str, *, guard: Guard | None = None) -> E | None:
        """``delete``, returning the entity as deleted (``None`` if it already was)."""
        workspace, entity_id = check_workspace_id(workspace_id), check_entity_id(id)
        key = {"key_workspace_id": workspace, "key_id": entity_id}
        with workspace_transaction(self.engine, workspace) as conn:
            if guard is not None:
                guard(conn)
            current = self._lock.execute(conn, key).fetchone()
            if current is None:
                raise NotFound(f"{self.model.entity_name} {entity_id} not found in {workspace}")
            before = self._entity(current)
            if before.is_deleted:
                return None
            stored = self._soft_delete.execute(conn, {**key, "now": self._clock.now()}).fetchone()
            assert stored is not None  # locked and live
            deleted = self._entity(stored)
            audit = AuditEntry.for_write(before, deleted, AuditAction.DELETE)
            self._record(conn, deleted, Operation.DELETE, audit)
        return deleted

    # -- the audit log, as operators and tests read it ------------------------

    def audit_entries(self, workspace_id: str) -> builtins.list[AuditEntry]:
        """The workspace's audit entries about this entity type, oldest first."""
        workspace = check_workspace_id(workspace_id)
        params = {"workspace_id": workspace, "resource_type": self.model.entity_name}
        with workspace_transaction(self.engine, workspace) as conn:
            cursor = self._audit_entries.execute(conn, params)
            names = [c.name for c in self.audit.columns]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        return [AuditEntry.model_validate(r) for r in rows]


def audit_row(audit: AuditEntry) -> dict[str, Any]:
    """An entry as the parameters of an ``audit_logs`` insert."""
    row = audit.model_dump()
    row["action"] = audit.action.value
    return row


class PostgresLeadRepository(PostgresRepository[Lead]):
    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        super().__init__(engine, Lead, clock)

    def list_by_segment(self, workspace_id: str, query: SegmentQuery) -> Page[Lead]:
        workspace = check_workspace_id(workspace_id)
        q: SegmentQuery = check_query(query, SegmentQuery)
        t = self.table
        conditions: list[ColumnElement[bool]] = []
        if q.segment is not None:
            conditions.append(t.c.segment == q.segment.value)
        if q.email_domain is not None:
            # The domain is what follows the last '@' (a quoted local part may
            # hold another); compared case-insensitively, as DNS does.
            domain = func.lower(func.regexp_replace(t.c.email, "^.*@", ""))
            conditions.append(domain == q.email_domain)
        if q.created_after is not None:
            conditions.append(t.c.created_at > q.created_after)
        return self._page(workspace, q.cursor, q.limit, q.filters(), conditions)
