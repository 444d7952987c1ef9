"""The PostgreSQL repository: SQLAlchemy Core over psycopg 3.

Each call is one transaction that first scopes row-level security to the
call's workspace. A write and its outbox event share that transaction, so
either both commit or neither does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Engine, Table, and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres.engine import workspace_transaction
from migrationkit.adapters.postgres.row_codec import RowCodec
from migrationkit.domain.clock import SystemClock
from migrationkit.domain.cursor import decode_cursor, encode_cursor
from migrationkit.domain.entity import Entity
from migrationkit.domain.ids import check_entity_id, check_workspace_id
from migrationkit.domain.lead import Lead
from migrationkit.domain.outbox import Operation, OutboxEvent
from migrationkit.domain.query import ListQuery, Page, SegmentQuery
from migrationkit.domain.writes import check_expected_version, check_query, prepare_upsert
from migrationkit.errors import Conflict, NotFound
from migrationkit.ports.clock import Clock
from migrationkit.schema.metadata import entity_table, metadata
from migrationkit.schema.outbox_tables import outbox_table

E = TypeVar("E", bound=Entity)

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

    def _key(self, workspace_id: str, entity_id: str) -> ColumnElement[bool]:
        return and_(self.table.c.workspace_id == workspace_id, self.table.c.id == entity_id)

    # -- reads -------------------------------------------------------------

    def get(self, workspace_id: str, id: str) -> E | None:
        workspace, entity_id = check_workspace_id(workspace_id), check_entity_id(id)
        stmt = select(self.table).where(self._key(workspace, entity_id), self._live)
        with workspace_transaction(self.engine, workspace) as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else self._codec.from_row(row)

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
        items = [self._codec.from_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(items[-1].id, workspace, name, filters)
        return Page(items=items, next_cursor=next_cursor)

    # -- writes ------------------------------------------------------------

    def upsert(
        self,
        workspace_id: str,
        data: E | Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> str:
        entity = prepare_upsert(self.model, workspace_id, data)
        expected = check_expected_version(expected_version)
        now = self._clock.now()
        row = self._codec.to_row(entity)
        row.update(version=1, created_at=now, updated_at=now, deleted_at=None)
        t = self.table
        changed = {c: row[c] for c in row if c not in _IMMUTABLE_ON_UPDATE}

        stmt: Any
        if expected is None:
            # ON CONFLICT takes the row lock, so concurrent upserts of one
            # entity serialize and each sees the version the last one wrote.
            ins = pg_insert(t).values(row)
            stmt = ins.on_conflict_do_update(
                index_elements=[t.c.workspace_id, t.c.id],
                set_={**changed, "version": t.c.version + 1},
            )
        elif expected == 0:
            stmt = pg_insert(t).values(row).on_conflict_do_nothing()
        else:
            stmt = (
                update(t)
                .where(self._key(entity.workspace_id, entity.id), t.c.version == expected)
                .values(**changed, version=t.c.version + 1)
            )
        with workspace_transaction(self.engine, entity.workspace_id) as conn:
            stored = conn.execute(stmt.returning(t)).mappings().first()
            if stored is None:
                raise Conflict(
                    f"{self.model.entity_name} {entity.id}: expected version {expected}"
                    " is not the stored version"
                )
            saved = self._codec.from_row(stored)
            conn.execute(insert(self.outbox), [self._event_row(saved, Operation.UPSERT)])
        return saved.id

    def delete(self, workspace_id: str, id: str) -> bool:
        workspace, entity_id = check_workspace_id(workspace_id), check_entity_id(id)
        now = self._clock.now()
        t = self.table
        stmt = (
            update(t)
            .where(self._key(workspace, entity_id), self._live)
            .values(deleted_at=now, updated_at=now, version=t.c.version + 1)
            .returning(t)
        )
        with workspace_transaction(self.engine, workspace) as conn:
            stored = conn.execute(stmt).mappings().first()
            if stored is None:
                exists = conn.execute(
                    select(func.count()).select_from(t).where(self._key(workspace, entity_id))
                ).scalar_one()
                if not exists:
                    raise NotFound(f"{self.model.entity_name} {entity_id} not found in {workspace}")
                return False
            deleted = self._codec.from_row(stored)
            conn.execute(insert(self.outbox), [self._event_row(deleted, Operation.DELETE)])
        return True

    @staticmethod
    def _event_row(entity: Entity, operation: Operation) -> dict[str, Any]:
        return OutboxEvent.for_write(entity, operation).model_dump()


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
