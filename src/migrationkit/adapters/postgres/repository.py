"""The PostgreSQL repository: SQLAlchemy Core over psycopg 3.

Each call is one transaction that first scopes row-level security to the
call's workspace. A write and its outbox event share that transaction, so
either both commit or neither does.
"""

from __future__ import annotations

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
from migrationkit.schema.metadata import entity_table, metadata
from migrationkit.schema.outbox_tables import outbox_table

E = TypeVar("E", bound=Entity)
#: Runs inside a write's transaction before it writes; raises to refuse it.
Guard = Callable[[Connection], None]

_IMMUTABLE_ON_UPDATE = frozenset({"id", "workspace_id", "created_at", "version", "convex_id"})


class PostgresRepository(Generic[E]):
    def __init__(self, engine: Engine, model: type[E], clock: Clock | None = None) -> None:
        self.engine = engine
        self.model = model
        self.table: Table = entity_table(model)
        self.outbox: Table = outbox_table(metadata)
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
        self._upsert_any = compiled(
            ins.on_conflict_do_update(
                index_elements=[t.c.workspace_id, t.c.id],
                set_={**{c: ins.excluded[c] for c in changed}, "version": t.c.version + 1},
            ).returning(*stamped)
        )
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
        self._soft_delete = compiled(
            update(t)
            .where(key, self._live)
            .values(
                deleted_at=bindparam("now"), updated_at=bindparam("now"), version=t.c.version + 1
            )
            .returning(t)
        )
        self._exists = compiled(select(func.count()).select_from(t).where(key))
        # Only the event's own fields: the claim columns take their server defaults.
        event_values: dict[str, Any] = {n: bindparam(n) for n in OutboxEvent.model_fields}
        self._insert_event = compiled(
            insert(self.outbox).values(event_values), frozenset({"payload"})
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
        (the cutover fence uses it).
        """
        entity = prepare_upsert(self.model, workspace_id, data)
        expected = check_expected_version(expected_version)
        now = self._clock.now()
        row = self._codec.to_row(entity)
        row.update(version=1, created_at=now, updated_at=now, deleted_at=None, convex_id=None)

        stmt: CompiledStatement
        if expected is None:
            # ON CONFLICT takes the row lock, so concurrent upserts of one
            # entity serialize and each sees the version the last one wrote.
            stmt = self._upsert_any
        elif expected == 0:
            stmt = self._insert_new
        else:
            stmt = self._update_expected
            row.update(
                key_workspace_id=row.pop("workspace_id"),
                key_id=row.pop("id"),
                expected_version=expected,
            )
            for managed in ("version", "created_at", "convex_id"):
                del row[managed]
        with workspace_transaction(self.engine, entity.workspace_id) as conn:
            if guard is not None:
                guard(conn)
            stored = stmt.execute(conn, row).fetchone()
            if stored is None:
                raise Conflict(
                    f"{self.model.entity_name} {entity.id}: expected version {expected}"
                    " is not the stored version"
                )
            saved = entity.model_copy(
                update={
                    "version": stored[0],
                    "created_at": stored[1].astimezone(UTC),
                    "updated_at": now,
                    "deleted_at": None,
                }
            )
            self._insert_event.execute(conn, event_fields(saved, Operation.UPSERT))
        return saved

    def delete(self, workspace_id: str, id: str) -> bool:
        return self.delete_entity(workspace_id, id) is not None

    def delete_entity(self, workspace_id: str, id: str, *, guard: Guard | None = None) -> E | None:
        """``delete``, returning the entity as deleted (``None`` if it already was)."""
        workspace, entity_id = check_workspace_id(workspace_id), check_entity_id(id)
        key = {"key_workspace_id": workspace, "key_id": entity_id}
        with workspace_transaction(self.engine, workspace) as conn:
            if guard is not None:
                guard(conn)
            stored = self._soft_delete.execute(conn, {**key, "now": self._clock.now()}).fetchone()
            if stored is None:
                found = self._exists.execute(conn, key).fetchone()
                if not found or not found[0]:
                    raise NotFound(f"{self.model.entity_name} {entity_id} not found in {workspace}")
                return None
            deleted = self._entity(stored)
            self._insert_event.execute(conn, event_fields(deleted, Operation.DELETE))
        return deleted


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
