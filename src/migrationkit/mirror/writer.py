"""MirrorWriter: revisions of Convex documents -> mirror tables, in one transaction.

Per table, the revisions go by binary COPY into a staging table shaped like
the target, then one set-based statement keeps the newest revision per
``_id`` and upserts it, guarded by ``_ts``::

    INSERT INTO t SELECT DISTINCT ON (_id) ... ORDER BY _id, _ts DESC
    ON CONFLICT (_id) DO UPDATE SET ... WHERE t._ts < EXCLUDED._ts

Which version is compared: ``_ts``, the commit timestamp of the revision
(int64 nanoseconds, strictly increasing per document). A revision no newer
than the stored one changes nothing, so a replayed page, a duplicate or a
revision arriving after a newer one is harmless, and any order of delivery
ends at the latest revision. A delete is a tombstone row (``_deleted``,
its ``_ts``, every other column cleared, the workspace too, so the row is
the same whatever order the revisions came in): a late insert of the same
document is then older and is refused, where removing the row would let it
come back.

``after(conn)`` runs in the same transaction, after the rows: a backfill
saves its page cursor there, the tail its feed cursor, so a crash either
keeps both or neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg.adapt import PyFormat
from sqlalchemy import Connection, Engine, Table

from migrationkit.adapters.postgres.compiled import driver_errors
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.errors import ValidationFailed
from migrationkit.mirror.model import MirrorDocument, mirror_model_for
from migrationkit.mirror.rows import MirrorRevision, Row, row_maker
from migrationkit.schema.identifiers import qualified, quote_ident
from migrationkit.schema.metadata import current_metadata
from migrationkit.schema.mirror_tables import mirror_table_for

__all__ = ["MirrorWriter", "WriteResult", "copy_types", "fast_bytea"]

# SQLAlchemy type -> the name psycopg's binary COPY dumps it by.
_COPY_TYPES = {
    "Text": "text",
    "TIMESTAMP": "timestamptz",
    "Double": "float8",
    "BigInteger": "int8",
    "Boolean": "bool",
    "LargeBinary": "bytea",
    "JSONB": "jsonb",
}


def copy_types(table: Table, names: Sequence[str], *, jsonb_as_bytes: bool) -> list[str]:
    """The binary COPY type of each column. ``jsonb_as_bytes``: jsonb values
    come in jsonb's own binary form (``rows.jsonb_value``), as the row maker
    makes them, and go through as bytes with no dumper to call."""
    out = []
    for name in names:
        kind = _COPY_TYPES[type(table.c[name].type).__name__]
        out.append("bytea" if jsonb_as_bytes and kind == "jsonb" else kind)
    return out


@dataclass
class WriteResult:
    #: Rows inserted or replaced by a newer revision.
    applied: int = 0
    #: Revisions received (before keeping the newest per document).
    received: int = 0


def fast_bytea(cursor: psycopg.Cursor[Any]) -> None:
    """COPY bytea (and the jsonb sent as bytes) through psycopg's C dumper.

    By type name, psycopg finds the DB-API ``Binary`` dumper, a Python call
    per value; registering the C dumper of ``bytes`` on this cursor puts it
    in that place.
    """
    cursor.adapters.register_dumper(bytes, psycopg.adapters.get_dumper(bytes, PyFormat.BINARY))


class _TableStatements:
    """The SQL of one mirror table, written once."""

    def __init__(self, model: type[MirrorDocument]) -> None:
        self.model = model
        self.maker = row_maker(model)
        self.table = mirror_table_for(model, current_metadata())
        names = self.maker.column_names
        cols = ", ".join(quote_ident(n) for n in names)
        self.stage = f"mk_mirror_{self.table.name}"[:63]
        target = qualified(self.table)
        self.create_stage = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote_ident(self.stage)}"
            f" (LIKE {target}) ON COMMIT DROP"
        )
        self.copy = f"COPY {quote_ident(self.stage)} ({cols}) FROM STDIN (FORMAT BINARY)"
        self.copy_into_target = f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)"
        # Keeps other writers out (readers in) until the transaction ends.
        self.lock = f"LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE"
        self.is_empty = f"SELECT NOT EXISTS (SELECT FROM {target})"  # noqa: S608
        self.first_duplicate = (
            f"SELECT _id FROM {quote_ident(self.stage)} GROUP BY _id HAVING count(*) > 1 LIMIT 1"  # noqa: S608
        )
        self.copy_types = copy_types(self.table, names, jsonb_as_bytes=True)
        updates = []
        for name in names:
            if name == "_id":
                continue
            updates.append(f"{quote_ident(name)} = EXCLUDED.{quote_ident(name)}")
        # DISTINCT ON keeps one revision per document (the newest): ON
        # CONFLICT may not touch a row twice in one statement.
        self.upsert = (
            f"INSERT INTO {target} AS t ({cols})"  # noqa: S608  (quoted identifiers only)
            f" SELECT DISTINCT ON (_id) {cols} FROM {quote_ident(self.stage)}"
            f" ORDER BY _id, _ts DESC"
            f" ON CONFLICT (_id) DO UPDATE SET {', '.join(updates)}"
            f" WHERE t._ts < EXCLUDED._ts"
        )


class MirrorWriter:
    """Writes revisions of mirrored Convex tables into PostgreSQL.

    Run it as a role that may write every workspace (the worker's role): one
    statement writes rows of many workspaces, which no RLS scope allows.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._statements: dict[type[MirrorDocument], _TableStatements] = {}

    def statements(self, model: type[MirrorDocument]) -> _TableStatements:
        found = self._statements.get(model)
        if found is None:
            found = self._statements[model] = _TableStatements(model)
        return found

    def rows(
        self, revisions: Sequence[MirrorRevision], where: Callable[[int], str] | None = None
    ) -> dict[type[MirrorDocument], list[Row]]:
        """Check and shape ``revisions`` (raises ``ValidationFailed`` or ``UnknownEntity``)."""
        grouped: dict[type[MirrorDocument], list[Row]] = {}
        models: dict[str, type[MirrorDocument]] = {}
        for index, revision in enumerate(revisions):
            model = models.get(revision.table)
            if model is None:
                model = models[revision.table] = mirror_model_for(revision.table)
            rows = grouped.setdefault(model, [])
            rows.append(row_maker(model).row(revision, where(index) if where else ""))
        return grouped

    def write(
        self,
        revisions: Sequence[MirrorRevision],
        *,
        after: Callable[[Connection], None] | None = None,
        where: Callable[[int], str] | None = None,
    ) -> WriteResult:
        """Apply ``revisions`` in one transaction, then ``after(conn)`` in it too."""
        return self.write_rows(self.rows(revisions, where), after=after)

    def write_rows(
        self,
        grouped: dict[type[MirrorDocument], list[Row]],
        *,
        after: Callable[[Connection], None] | None = None,
    ) -> WriteResult:
        with translated_errors(), self.engine.begin() as conn:
            result = self.write_rows_in(conn, grouped)
            if after is not None:
                after(conn)
        return result

    def write_rows_in(
        self, conn: Connection, grouped: dict[type[MirrorDocument], list[Row]]
    ) -> WriteResult:
        """Like ``write_rows``, inside a transaction the caller holds."""
        result = WriteResult()
        # Tables in name order: concurrent writers lock in the same order.
        for model in sorted(grouped, key=lambda m: m.mirror.qualified_convex_name):
            rows = grouped[model]
            if rows:
                result.received += len(rows)
                result.applied += self.load(conn, model, rows)
        return result

    def load(
        self,
        conn: Connection,
        model: type[MirrorDocument],
        rows: Iterable[Row],
        *,
        snapshot: bool = False,
    ) -> int:
        """COPY ``rows`` (already checked) of one table and upsert them; returns rows changed.

        ``rows`` may be a generator: they stream to the server, so a table of
        any size takes the same memory (an import uses this, one table at a time).

        With ``snapshot``, ``rows`` are one cut of the table (an export ZIP):
        each document once, so one twice is a ``ValidationFailed`` (the
        export is damaged), not a choice between them. The table is locked
        against other writers until the transaction ends and, if it holds no
        row, the rows are COPYed into it directly: the end state of the
        upsert into an empty table, for about half the server's work.
        """
        sql = self.statements(model)
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        with driver_errors(conn), driver.cursor() as cursor:
            fast_bytea(cursor)
            # The capture triggers (migration 0008) skip this transaction: a
            # revision from Convex must not be sent back to Convex as new.
            cursor.execute("SELECT set_config('migrationkit.replicating', 'on', true)")
            if snapshot:
                cursor.execute(sql.lock)
                empty = cursor.execute(sql.is_empty).fetchone()
                if empty is not None and empty[0]:
                    return self._copy_into_target(cursor, sql, rows)
            cursor.execute(sql.create_stage)
            cursor.execute(f"TRUNCATE {quote_ident(sql.stage)}")
            with cursor.copy(sql.copy) as copy:
                copy.set_types(sql.copy_types)
                for row in rows:
                    copy.write_row(row)
            if snapshot:
                twice = cursor.execute(sql.first_duplicate).fetchone()
                if twice is not None:
                    raise _twice(sql, f"Key (_id)=({twice[0]}) appears twice.")
            cursor.execute(sql.upsert)
            return cursor.rowcount

    def _copy_into_target(
        self, cursor: psycopg.Cursor[Any], sql: _TableStatements, rows: Iterable[Row]
    ) -> int:
        count = 0
        try:
            with cursor.copy(sql.copy_into_target) as copy:
                copy.set_types(sql.copy_types)
                for row in rows:
                    copy.write_row(row)
                    count += 1
        except psycopg.errors.UniqueViolation as exc:
            raise _twice(sql, exc.diag.message_detail or "") from None
        return count


def _twice(sql: _TableStatements, detail: str) -> ValidationFailed:
    table = sql.maker.table
    return ValidationFailed(
        f"table {table}: the snapshot holds one document twice ({detail})",
        [{"loc": (table, "_id"), "msg": "a document twice in one snapshot", "type": "mirror"}],
    )
