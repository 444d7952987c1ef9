"""The migrationkit pytest plugin (loaded automatically once the kit is installed).

Fixtures:

* ``migrationkit_database_url`` (session): a fresh database on a real
  PostgreSQL server (see ``migrationkit.testing.databases``), migrated to head.
* ``migrationkit_engine`` (session): an engine on it.
* ``clean_postgres``: empties every kit table before the test.
* ``lead_harness``: parametrized (through ``migrationkit_adapter``) over
  the adapters, so every test that takes it runs once per adapter.
  ``--migrationkit-adapters=memory,postgres`` narrows the set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.migrations import upgrade
from migrationkit.schema.metadata import metadata
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.testing.databases import TestServer, test_server, throwaway_database
from migrationkit.testing.harness import ConvexHarness, LeadHarness, MemoryHarness, PostgresHarness

ALL_ADAPTERS = ("memory", "postgres", "convex")
_SERVER_KEY = pytest.StashKey[TestServer]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("migrationkit")
    group.addoption(
        "--migrationkit-adapters",
        default=",".join(ALL_ADAPTERS),
        help="comma-separated adapters the contract suite runs on (default: all)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrize the adapter name, not the harness: a test class that brings
    # its own ``lead_harness`` fixture then runs once, on its own adapter.
    if "migrationkit_adapter" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--migrationkit-adapters").split(",")
        unknown = set(chosen) - set(ALL_ADAPTERS)
        if unknown:
            raise pytest.UsageError(f"unknown adapters {sorted(unknown)}; known: {ALL_ADAPTERS}")
        metafunc.parametrize("migrationkit_adapter", chosen, indirect=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    server = config.stash.get(_SERVER_KEY, None)
    if server is not None:
        terminalreporter.write_line(f"migrationkit: PostgreSQL for tests was {server.describe()}")


@pytest.fixture(scope="session")
def migrationkit_server(request: pytest.FixtureRequest) -> Iterator[TestServer]:
    with test_server() as server:
        request.config.stash[_SERVER_KEY] = server
        yield server


@pytest.fixture(scope="session")
def migrationkit_database_url(migrationkit_server: TestServer) -> Iterator[URL]:
    with throwaway_database(migrationkit_server.admin_url) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def migrationkit_engine(migrationkit_database_url: URL) -> Iterator[Engine]:
    engine = make_engine(migrationkit_database_url, pool_size=8, max_overflow=8)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def convex_backend() -> Iterator[LocalConvexBackend]:
    """The local Convex backend (Node, ``convex/localbackend``), one per session."""
    with LocalConvexBackend() as backend:
        yield backend


@pytest.fixture(scope="session")
def convex_client(convex_backend: LocalConvexBackend) -> Iterator[ConvexClient]:
    with ConvexClient(convex_backend.url, admin_key=convex_backend.admin_key) as client:
        yield client


@pytest.fixture
def clean_convex(convex_backend: LocalConvexBackend, convex_client: ConvexClient) -> ConvexClient:
    """A client on an emptied local backend."""
    convex_backend.reset()
    return convex_client


def truncate_all(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names}"))


@pytest.fixture
def clean_postgres(migrationkit_engine: Engine) -> Engine:
    truncate_all(migrationkit_engine)
    return migrationkit_engine


@pytest.fixture
def migrationkit_adapter(request: pytest.FixtureRequest) -> str:
    """The adapter under test; parametrized by ``pytest_generate_tests``."""
    return str(request.param)


@pytest.fixture
def lead_harness(migrationkit_adapter: str, request: pytest.FixtureRequest) -> LeadHarness:
    adapter = migrationkit_adapter
    if adapter == "memory":
        return MemoryHarness()
    if adapter == "postgres":
        engine: Engine = request.getfixturevalue("clean_postgres")
        return PostgresHarness(engine)
    if adapter == "convex":
        client: ConvexClient = request.getfixturevalue("clean_convex")
        return ConvexHarness(client)
    raise pytest.UsageError(f"unknown adapter {adapter!r}")
