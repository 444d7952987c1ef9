"""The set-based statements that apply a staged batch to one entity table.

Two statements per table, each a chain of data-modifying CTEs, so a batch
costs a handful of round trips whatever its size:

``writes`` (upserts and soft deletes)::

    claimed  INSERT the batch's event ids into the inbox, ON CONFLICT DO NOTHING,
             RETURNING the ids that were not there: the fresh events
    winners  per (workspace_id, id), the fresh event with the highest version
    written  INSERT the winners, ON CONFLICT DO UPDATE ... WHERE stored version
             < incoming version

``purges`` (hard deletes named by Convex id)::

    claimed  as above, for the purges
    purged   DELETE the row with that convex_id if deleted_at IS NOT NULL

Why this is correct under duplicates and reordering:

* The inbox insert comes first and decides, per event, whether it is fresh.
  Its primary key (consumer, event_id) makes that decision atomic: of two
  transactions inserting one event id, the second waits for the first and
  then skips it (or, if the first rolled back, takes it). So an event is
  applied by exactly one committed transaction, and a replay is a no-op.
* Only the newest fresh change per entity is written (``DISTINCT ON``
  ordered by incarnation, then version, descending): an older one would be
  overwritten by it anyway, and ``ON CONFLICT DO UPDATE`` must not touch a
  row twice in one statement.
* The version guard is the ``WHERE`` of ``DO UPDATE``: the stored row's
  ``version`` against the change's (the entity's own counter, which the
  staging step checked equals ``data["version"]``), whichever path the
  change came by. It is evaluated on the conflicting row after locking it,
  against its latest committed version (read committed re-checks a row a
  concurrent transaction changed). A row
  is therefore only ever replaced by a strictly higher version: the stored
  version is the maximum of every version applied, whatever order they
  came in. A soft delete is such a row with ``deleted_at`` set, so an older
  upsert arriving after it loses the comparison and cannot resurrect it.
* The recreated-id rule: the comparison is of (incarnation, version), the
  incarnation being ``created_at`` to the millisecond. An id purged (hard
  deleted) and then created again starts a new life at version 1 with a
  later ``created_at``; it wins over whatever the old life left here (its
  tombstone at version N, or a late change of it), and an old life's
  change never overwrites the new one. ``created_at`` is set once per life
  and copied unchanged by every write and every store, so within one life
  this is the plain version comparison.
* Nothing here bumps ``version`` or writes an outbox row: the row is a
  copy of the source's, and an outbox row would echo it back to its source.
* Purges run after every write of the batch (a separate statement sees the
  writes; sibling CTEs would not), so a soft delete and the purge that
  follows it in the feed work in one batch. ``deleted_at IS NOT NULL`` is
  re-checked on the locked row: a purge never removes a live row.

Rows are fed in (workspace_id, id) and event-id order, and a batch's
chunks in key order too, so concurrent appliers lock rows in the same
order; a deadlock that still happens is a ``Conflict`` the worker retries.
A batch's chunks share the staging table (each statement reads its own
chunk's rows) and one
transaction: a later chunk's inbox claim sees an earlier chunk's, and its
version guard the rows an earlier chunk wrote.
"""

from __future__ import annotations

from typing import Any

from psycopg import postgres
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    Select,
    bindparam,
    delete,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable

from migrationkit.adapters.postgres._staging import (
    CONVEX_ID,
    EVENT_ID,
    KIND,
    ORD,
    VERSION,
    EntityStage,
)
from migrationkit.adapters.postgres.compiled import CompiledStatement, SentStatement
from migrationkit.errors import ConfigurationError
from migrationkit.schema.metadata import metadata
from migrationkit.schema.outbox_tables import processed_events_table

_INBOX_COLUMNS = ["consumer", "event_id", "workspace_id", "entity", "entity_id", "version"]


def _incarnation(created_at: Any) -> Any:
    """Which life of an id a row is: its ``created_at``, to the millisecond
    (what both stores keep: Convex holds float milliseconds)."""
    return func.date_trunc("milliseconds", created_at)


def _builtin_oid(column: Column[Any], dialect: Dialect) -> int:
    """The oid of a column's type; the schema generator only uses built-in types."""
    name = column.type.compile(dialect=dialect).lower().split(" collate ")[0]
    info = postgres.types.get(name)
    if info is None:
        raise ConfigurationError(f"column {column.name}: type {name} is not a built-in type")
    return info.oid


class EntityStatements:
    """The SQL that stages and applies one entity's changes.

    ``writes`` and ``purges`` each return one row: (events claimed in the
    inbox, rows changed).
    """

    def __init__(self, engine: Engine, stage: EntityStage) -> None:
        dialect = engine.dialect
        quote = dialect.identifier_preparer.quote
        self.create = str(CreateTable(stage.table).compile(dialect=dialect))
        columns = ", ".join(quote(c.name) for c in stage.table.columns)
        # Binary COPY: psycopg sends ints, floats and timestamps in the
        # server's own format, which the server stores without parsing text.
        self.copy = f"COPY {quote(stage.table.name)} ({columns}) FROM STDIN (FORMAT BINARY)"
        self.copy_types = [_builtin_oid(c, dialect) for c in stage.table.columns]
        entity = stage.model.entity_name
        # Sent without waiting: the applier checks the next chunk meanwhile.
        self.writes = SentStatement(self._writes(stage, entity), dialect)
        self.purges = CompiledStatement(self._purges(stage, entity), dialect)

    @staticmethod
    def _claim(rows: Select[Any]) -> Any:
        inbox = processed_events_table(metadata)
        return (
            pg_insert(inbox)
            .from_select(_INBOX_COLUMNS, rows)
            .on_conflict_do_nothing(index_elements=[inbox.c.consumer, inbox.c.event_id])
            .returning(inbox.c.event_id)
            .cte("claimed")
        )

    @staticmethod
    def _counts(claimed: Any, changed: Any) -> Select[Any]:
        return select(
            select(func.count()).select_from(claimed).scalar_subquery(),
            select(func.count()).select_from(changed).scalar_subquery(),
        )

    def _writes(self, stage: EntityStage, entity: str) -> Select[Any]:
        s, target = stage.table.c, stage.target
        # This chunk's rows: its numbers are above every earlier chunk's, and
        # no later chunk is staged yet. ">=" rather than a range or a chunk
        # column on purpose: the planner has no statistics for the staging
        # table and guesses a third of its rows pass an inequality, but 0.5%
        # an equality or a range, which makes it join by nested loop.
        first = bindparam("first", type_=Integer())
        claimed = self._claim(
            select(
                bindparam("consumer"),
                s[EVENT_ID],
                s.workspace_id,
                literal(entity),
                s.id,
                s[VERSION],
            )
            .where(s[KIND] != "purge", s[ORD] >= first)
            .order_by(s[EVENT_ID])
        )
        winners = (
            select(stage.table)
            .join(claimed, claimed.c.event_id == s[EVENT_ID])
            .where(s[ORD] >= first)
            .distinct(s.workspace_id.collate("C"), s.id.collate("C"))
            .order_by(
                s.workspace_id.collate("C"),
                s.id.collate("C"),
                _incarnation(s.created_at).desc(),
                s[VERSION].desc(),
                s[ORD],
            )
            .cte("winners")
        )
        data = list(stage.columns.values())
        insert = pg_insert(target).from_select(
            [*data, "convex_id"],
            select(*(winners.c[c] for c in data), winners.c[CONVEX_ID]),
        )
        assignments: dict[str, Any] = {
            c: insert.excluded[c] for c in data if c not in ("workspace_id", "id")
        }
        # A change that does not know the Convex id (one from PostgreSQL's
        # own outbox) keeps the one the row has.
        assignments["convex_id"] = func.coalesce(insert.excluded.convex_id, target.c.convex_id)
        written = (
            insert.on_conflict_do_update(
                index_elements=[target.c.workspace_id, target.c.id],
                set_=assignments,
                where=tuple_(_incarnation(target.c.created_at), target.c.version)
                < tuple_(_incarnation(insert.excluded.created_at), insert.excluded.version),
            )
            .returning(target.c.id)
            .cte("written")
        )
        return self._counts(claimed, written)

    def _purges(self, stage: EntityStage, entity: str) -> Select[Any]:
        s, target = stage.table.c, stage.target
        # A purge names only the Convex id; the inbox records the row it
        # found, or NULLs when there is none.
        found = stage.table.outerjoin(target, target.c.convex_id == s[CONVEX_ID])
        claimed = self._claim(
            select(
                bindparam("consumer"),
                s[EVENT_ID],
                target.c.workspace_id,
                literal(entity),
                target.c.id,
                s[VERSION],
            )
            .select_from(found)
            .where(s[KIND] == "purge")
            .order_by(s[EVENT_ID])
        )
        purged = (
            delete(target)
            .where(
                claimed.c.event_id == s[EVENT_ID],
                target.c.convex_id == s[CONVEX_ID],
                target.c.deleted_at.is_not(None),
            )
            .returning(target.c.id)
            .cte("purged")
        )
        return self._counts(claimed, purged)
