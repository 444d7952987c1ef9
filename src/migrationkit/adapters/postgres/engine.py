"""Engines and workspace-scoped transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, func, select
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.database_url import normalize_database_url
from migrationkit.adapters.postgres.errors import translated_errors

WORKSPACE_SETTING = "app.workspace_id"


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for a PostgreSQL URL, with pre-ping so restarts are survived."""
    options.setdefault("pool_pre_ping", True)
    return create_engine(normalize_database_url(url), **options)


@contextmanager
def workspace_transaction(engine: Engine, workspace_id: str) -> Iterator[Connection]:
    """A transaction in which row-level security sees only ``workspace_id``.

    ``set_config(..., true)`` is transaction-local: when the connection goes
    back to the pool the setting is gone, so one tenant's scope can never leak
    into the next borrower's transaction.
    """
    with translated_errors(), engine.begin() as conn:
        conn.execute(select(func.set_config(WORKSPACE_SETTING, workspace_id, True)))
        yield conn
