"""Engines and workspace-scoped transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.compiled import run_driver_sql
from migrationkit.adapters.postgres.database_url import normalize_database_url
from migrationkit.adapters.postgres.errors import translated_errors

WORKSPACE_SETTING = "app.workspace_id"
_SET_WORKSPACE = f"SELECT set_config('{WORKSPACE_SETTING}', %s, true)"


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for a PostgreSQL URL.

    No pre-ping by default: it costs a round trip per call. A connection
    that breaks is invalidated when a statement fails on it, so the pool
    heals after a server restart; callers that must ride through restarts
    retry (the worker does), or pass ``pool_pre_ping=True``.
    """
    return create_engine(normalize_database_url(url), **options)


@contextmanager
def workspace_transaction(engine: Engine, workspace_id: str) -> Iterator[Connection]:
    """A transaction in which row-level security sees only ``workspace_id``.

    ``set_config(..., true)`` is transaction-local: when the connection goes
    back to the pool the setting is gone, so one tenant's scope can never leak
    into the next borrower's transaction.
    """
    with translated_errors(), engine.begin() as conn:
        run_driver_sql(conn, _SET_WORKSPACE, (workspace_id,))
        yield conn
