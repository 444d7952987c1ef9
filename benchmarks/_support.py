"""Shared set-up for benchmarks: a migrated throwaway database on a real server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.migrations import upgrade
from migrationkit.testing.databases import test_server, throwaway_database


@contextlib.contextmanager
def migrated_database() -> Iterator[tuple[URL, str]]:
    """A fresh, migrated database and a description of the server it is on.

    The server is chosen as for the tests: MIGRATIONKIT_TEST_DATABASE_URL,
    else a container, else the embedded server.
    """
    with test_server() as server, throwaway_database(server.admin_url, "mk_bench") as url:
        upgrade(url)
        yield url, server.describe()


def psycopg_conninfo(url: URL) -> str:
    """The libpq connection string for a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
