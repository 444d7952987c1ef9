"""Core statements compiled once and executed on the psycopg cursor.

SQLAlchemy Core writes every statement; this module only skips the
per-call work SQLAlchemy would redo on the hot paths (get, upsert, delete):
cache-key generation, and for ``INSERT ... ON CONFLICT DO UPDATE``, which
SQLAlchemy 2.0 does not cache, a full compile on every call. The SQL text
and the bound-parameter names come from SQLAlchemy's own compiler.
"""

from __future__ import annotations

import contextlib
import selectors
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg import pq
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


@contextlib.contextmanager
def driver_errors(conn: Connection) -> Iterator[None]:
    """psycopg's errors, raised inside, as the kit's; a broken connection is dropped."""
    try:
        yield
    except psycopg.OperationalError as exc:
        conn.invalidate(exc)  # a broken connection must not go back to the pool
        raise translate_driver_error(exc) from exc
    except psycopg.Error as exc:
        raise translate_driver_error(exc) from exc


def run_driver_sql(
    conn: Connection, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None
) -> psycopg.Cursor[Any]:
    """Run SQL on the psycopg connection under ``conn``, in its transaction."""
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    cursor = driver.cursor()
    with driver_errors(conn):
        cursor.execute(sql, params)
    return cursor


class SentStatement:
    """A statement sent without waiting, its one-row result read later.

    psycopg's ``execute`` waits for the server; libpq's asynchronous API
    (``PGconn.send_query_params`` / ``get_result``, which psycopg exposes
    for this) does not, so the caller can do its own work, such as checking
    the next changes, while the server runs the statement. One statement at
    a time: libpq takes no other command on the connection until the result
    is read. It must be sent inside a transaction psycopg has begun.

    Parameters go as text: they are a few names and small integers.

    Waiting is done on the socket, as psycopg does, never inside libpq:
    libpq would block holding the GIL and stop every thread of the
    process, one of which may hold the row lock the statement waits for.
    """

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        # The same dialect, writing $1, $2 as libpq wants them.
        numbered = type(dialect)(paramstyle="numeric_dollar")  # type: ignore[call-arg]
        compiled = statement.compile(dialect=numbered)  # type: ignore[attr-defined]
        self.sql: bytes = str(compiled).encode()
        self._order: list[str] = list(compiled.positiontup or [])
        self._constants = {k: v for k, v in compiled.params.items() if v is not None}

    def send(self, conn: Connection, params: Mapping[str, Any]) -> InFlight:
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        if driver.pgconn.transaction_status != pq.TransactionStatus.INTRANS:
            raise RuntimeError("a statement is sent only inside a transaction psycopg began")
        bound = {**self._constants, **params}
        values = [None if bound[n] is None else str(bound[n]).encode() for n in self._order]
        with driver_errors(conn):
            pgconn = driver.pgconn
            pgconn.send_query_params(self.sql, values)
            # psycopg's connections are non-blocking: libpq may keep part
            # of the query until the socket takes it.
            while pgconn.flush() != 0:
                if _wait(pgconn.socket, write=True):
                    pgconn.consume_input()
        return InFlight(conn, driver)


class InFlight:
    """A sent statement whose result has not been read."""

    def __init__(self, conn: Connection, driver: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._driver: psycopg.Connection[Any] | None = driver

    def result(self) -> tuple[Any, ...]:
        """The statement's one row (as text), or its error, translated."""
        driver, self._driver = self._driver, None
        if driver is None:
            raise RuntimeError("the result was read already")
        with driver_errors(self._conn):
            results = []
            while (result := _next_result(driver.pgconn)) is not None:
                results.append(result)
            if driver.pgconn.status != pq.ConnStatus.OK or not results:
                raise psycopg.OperationalError(
                    driver.pgconn.get_error_message() or "the connection was lost"
                )
            first = results[0]
            if first.status != pq.ExecStatus.TUPLES_OK:
                raise psycopg.errors.error_from_result(first, encoding=driver.info.encoding)
            return tuple(first.get_value(0, i) for i in range(first.nfields))

    def discard(self) -> None:
        """Read and drop the result: the transaction is failing anyway."""
        driver, self._driver = self._driver, None
        if driver is not None:
            with contextlib.suppress(psycopg.Error):
                while _next_result(driver.pgconn) is not None:
                    pass


def _wait(fileno: int, *, write: bool = False) -> bool:
    """Wait, without the GIL, until the socket is readable (or writable); True if readable."""
    with selectors.DefaultSelector() as selector:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        selector.register(fileno, events)
        ready = selector.select()
    return any(mask & selectors.EVENT_READ for _, mask in ready)


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result of the statement, or None after the last; waits on the socket."""
    pgconn.consume_input()
    while pgconn.is_busy():
        _wait(pgconn.socket)
        pgconn.consume_input()
    return pgconn.get_result()
