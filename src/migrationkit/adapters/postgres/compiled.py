"""Core statements compiled once and executed on the psycopg cursor.

SQLAlchemy Core writes every statement; this module only skips the
per-call work SQLAlchemy would redo on the hot paths (get, upsert, delete):
cache-key generation, and for ``INSERT ... ON CONFLICT DO UPDATE``, which
SQLAlchemy 2.0 does not cache, a full compile on every call. The SQL text
and the bound-parameter names come from SQLAlchemy's own compiler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable

from migrationkit.adapters.postgres.errors import translate_driver_error


class CompiledStatement:
    """One statement, compiled for a dialect, with its constant parameters."""

    def __init__(
        self, statement: Executable, dialect: Dialect, json_params: frozenset[str] = frozenset()
    ) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql: str = str(compiled)
        # Literals SQLAlchemy turned into parameters (the 1 in version + 1).
        self._constants = {k: v for k, v in compiled.params.items() if v is not None}
        self._json_params = json_params

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> psycopg.Cursor[Any]:
        bound = dict(self._constants)
        for name, value in params.items():
            bound[name] = Jsonb(value) if name in self._json_params and value is not None else value
        return run_driver_sql(conn, self.sql, bound)


def run_driver_sql(
    conn: Connection, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None
) -> psycopg.Cursor[Any]:
    """Run SQL on the psycopg connection under ``conn``, in its transaction."""
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    cursor = driver.cursor()
    try:
        cursor.execute(sql, params)
    except psycopg.OperationalError as exc:
        # A broken connection must not go back to the pool.
        conn.invalidate(exc)
        raise translate_driver_error(exc) from exc
    except psycopg.Error as exc:
        raise translate_driver_error(exc) from exc
    return cursor
