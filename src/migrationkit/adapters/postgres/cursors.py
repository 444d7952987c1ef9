"""Where a change-feed consumer keeps its position between runs.

Convex delta cursors are nanosecond timestamps, well above 2^53: they are
kept in a BIGINT and handled as Python ints end to end, never as floats (a
float would round them and resume the feed at the wrong place).

A consumer saves its cursor after the batch it read has been applied; a
crash in between replays that batch, which the sink's inbox and version
guard make harmless. Saving first would lose the batch instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.errors import ValidationFailed
from migrationkit.schema.metadata import metadata
from migrationkit.schema.pipeline_tables import sync_cursors_table

__all__ = ["CursorStore"]

_BIGINT_MAX = 2**63 - 1
_MAX_NAME_LENGTH = 200


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME_LENGTH:
        raise ValidationFailed(f"a cursor name is a non-empty string of at most {_MAX_NAME_LENGTH}")
    return name


def _check_cursor(cursor: Any) -> int:
    # bool is an int subclass, and a float would already have lost precision.
    if isinstance(cursor, bool) or not isinstance(cursor, int):
        raise ValidationFailed(f"a cursor is an integer, not {type(cursor).__name__}")
    if not 0 <= cursor <= _BIGINT_MAX:
        raise ValidationFailed(f"a cursor must be between 0 and {_BIGINT_MAX}")
    return cursor


class CursorStore:
    """Named cursors in ``sync_cursors`` (no tenant data: not under RLS)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = sync_cursors_table(metadata)

    def load(self, name: str) -> int | None:
        t = self.table
        with translated_errors(), self.engine.begin() as conn:
            value = conn.execute(select(t.c.cursor).where(t.c.name == _check_name(name))).first()
        return None if value is None else int(value[0])

    def save(self, name: str, cursor: int) -> None:
        with translated_errors(), self.engine.begin() as conn:
            self.save_in(conn, name, cursor)

    def save_in(self, conn: Connection, name: str, cursor: int) -> None:
        """Save inside a transaction the caller holds, e.g. with the rows it covers."""
        t = self.table
        stmt = pg_insert(t).values(name=_check_name(name), cursor=_check_cursor(cursor))
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.name],
            set_={"cursor": stmt.excluded.cursor, "updated_at": func.now()},
        )
        conn.execute(stmt)

    def delete(self, name: str) -> bool:
        """Forget a cursor (the consumer then starts from a fresh snapshot)."""
        t = self.table
        with translated_errors(), self.engine.begin() as conn:
            deleted = conn.execute(
                delete(t).where(t.c.name == _check_name(name)).returning(t.c.name)
            ).first()
        return deleted is not None
