"""Helpers for pipeline tests: views of both stores, a write audit, a worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.streaming_export import StreamingExport
from migrationkit.outbox.worker import Worker
from migrationkit.testing.convex_backend import LocalConvexBackend, convex_dir
from migrationkit.testing.databases import TestServer, throwaway_database

from .testapp_support import Deployment, seed

LeadState = dict[tuple[str, str], tuple[int, bool, str]]


def postgres_leads(engine: Engine) -> LeadState:
    """(workspace, id) -> (version, deleted, email), as PostgreSQL holds them."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT workspace_id, id, version, deleted_at IS NOT NULL, email FROM leads")
        ).all()
    return {(r[0], r[1]): (int(r[2]), bool(r[3]), r[4]) for r in rows}


def convex_leads(client: ConvexClient) -> LeadState:
    """The same view of Convex, read through streaming export."""
    state: LeadState = {}
    for row in StreamingExport(client, table_name="leads").snapshot():
        doc = row.document
        state[(doc["workspaceId"], doc["id"])] = (
            int(doc["version"]),
            doc.get("deletedAt") is not None,
            doc["email"],
        )
    return state


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


@contextmanager
def running(worker: Worker) -> Iterator[threading.Event]:
    """Run ``worker`` in a thread until the block ends; errors surface at exit."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # re-raised in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=60)
    if failures:
        raise failures[0]


@pytest.fixture(scope="session")
def testapp() -> Iterator[LocalConvexBackend]:
    """The local backend serving convex/testapp: an existing app the kit did not write."""
    with LocalConvexBackend(functions_dir=convex_dir() / "testapp") as backend:
        yield backend


@pytest.fixture
def testapp_client(testapp: LocalConvexBackend) -> Iterator[ConvexClient]:
    """A client on the test app, emptied first."""
    testapp.reset()
    with ConvexClient(testapp.url, admin_key=testapp.admin_key) as client:
        yield client


@pytest.fixture
def write_audit(clean_postgres: Engine) -> Iterator[Callable[[], list[tuple[str, int]]]]:
    """Records every row version written to ``leads``, and refuses regressions.

    A trigger, so it sees every write whatever wrote it: an (id, version)
    written twice means an event was applied twice; a version going down
    fails the write outright.
    """
    with clean_postgres.begin() as conn:
        conn.execute(text("CREATE TABLE lead_writes (id text, version bigint)"))
        conn.execute(
            text(
                """
                CREATE FUNCTION audit_lead_write() RETURNS trigger AS $$
                BEGIN
                    IF TG_OP = 'UPDATE' AND NEW.version < OLD.version THEN
                        RAISE EXCEPTION 'version of % went from % to %',
                            NEW.id, OLD.version, NEW.version;
                    END IF;
                    INSERT INTO lead_writes VALUES (NEW.id, NEW.version);
                    RETURN NULL;
                END $$ LANGUAGE plpgsql
                """
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER audit_lead_write AFTER INSERT OR UPDATE ON leads"
                " FOR EACH ROW EXECUTE FUNCTION audit_lead_write()"
            )
        )

    def writes() -> list[tuple[str, int]]:
        with clean_postgres.connect() as conn:
            return [(r[0], int(r[1])) for r in conn.execute(text("SELECT * FROM lead_writes"))]

    yield writes
    with clean_postgres.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_lead_write ON leads"))
        conn.execute(text("DROP FUNCTION audit_lead_write()"))
        conn.execute(text("DROP TABLE lead_writes"))


@pytest.fixture
def mirror_database(migrationkit_server: TestServer) -> Iterator[URL]:
    """A database of its own, for a test app's mirror tables."""
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_mirror") as url:
        yield url


@pytest.fixture
def deployment(
    testapp: LocalConvexBackend, testapp_client: ConvexClient, mirror_database: URL, tmp_path: Path
) -> Iterator[Deployment]:
    """The test app introspected and migrated as a user would; its data emptied again."""
    # Introspection needs the tables to exist with data, as in a real app.
    seed(testapp_client, users=2, posts=2)
    made = Deployment(testapp, mirror_database, tmp_path)
    testapp.reset()
    yield made
    made.close()
