"""The Convex change feed as the worker's source: commit order, purges, the
cursor persisted after each applied page, and an expired cursor."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.delta_source import ConvexDeltaSource
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.convex.streaming_export import StreamingExport
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.errors import ConfigurationError, ResyncRequired
from migrationkit.outbox.worker import Backoff, PollInterval, Worker, WorkerConfig
from migrationkit.testing.convex_backend import LocalConvexBackend
from tests.integration.conftest import convex_leads, postgres_leads, running, wait_until


def delta_worker(client: ConvexClient, engine: Engine) -> tuple[Worker, ConvexDeltaSource]:
    source = ConvexDeltaSource(client, CursorStore(engine))
    worker = Worker(
        source,
        PostgresApplier(engine),
        DeadLetterStore(engine),
        config=WorkerConfig(poll=PollInterval(0.01, 0.1), backoff=Backoff(0.01, 0.2)),
    )
    return worker, source


def test_feed_from_the_start_reproduces_convex_purges_included(
    clean_convex: ConvexClient, clean_postgres: Engine, write_audit: Callable[[], list[Any]]
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    start = StreamingExport(clean_convex)
    list(start.snapshot())  # an empty deployment: the feed starts at this cut
    assert start.snapshot_ts is not None
    worker, source = delta_worker(clean_convex, clean_postgres)
    source.start_at(start.snapshot_ts)
    ids = [repo.upsert("ws", {"email": f"d{n}@example.com"}) for n in range(40)]
    for lead_id in ids[:10]:
        repo.upsert("ws", {"id": lead_id, "email": "changed@example.com"})
    for lead_id in ids[10:15]:
        repo.delete("ws", lead_id)
    for lead_id in ids[10:13]:  # retention's hard delete: the feed names only the _id
        clean_convex.mutation("leads:purge", {"workspaceId": "ws", "id": lead_id})
    with running(worker):
        assert wait_until(lambda: postgres_leads(clean_postgres) == convex_leads(clean_convex))
    pg = postgres_leads(clean_postgres)
    assert len(pg) == 37 and all(("ws", lead_id) not in pg for lead_id in ids[10:13])
    saved = CursorStore(clean_postgres).load(source.name)
    assert saved is not None and saved > start.snapshot_ts
    writes = write_audit()
    assert len(writes) == len(set(writes))


def test_a_restarted_feed_resumes_from_the_saved_cursor(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    start = StreamingExport(clean_convex)
    list(start.snapshot())
    assert start.snapshot_ts is not None
    worker, source = delta_worker(clean_convex, clean_postgres)
    source.start_at(start.snapshot_ts)
    first = [repo.upsert("ws", {"email": f"a{n}@example.com"}) for n in range(10)]
    while worker.run_once()[0]:
        pass
    cursor = CursorStore(clean_postgres).load(source.name)
    second = [repo.upsert("ws", {"email": f"b{n}@example.com"}) for n in range(10)]
    resumed, _ = delta_worker(clean_convex, clean_postgres)  # a new process, same table
    fetched = resumed.source.fetch(100).changes
    assert {c.entity_id for c in fetched} == set(second)  # nothing before the cursor again
    assert cursor is not None
    assert {lead_id for (_, lead_id) in postgres_leads(clean_postgres)} == set(first)


def test_without_a_cursor_the_feed_refuses_to_guess(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    worker, _ = delta_worker(clean_convex, clean_postgres)
    with pytest.raises(ConfigurationError, match="backfill first"):
        worker.run_once()


def test_an_expired_cursor_stops_the_worker_with_a_resync_message(
    migrationkit_database_url: URL, clean_postgres: Engine
) -> None:
    with (
        LocalConvexBackend() as backend,
        ConvexClient(backend.url, admin_key=backend.admin_key) as client,
    ):
        repo = ConvexLeadRepository(client)
        start = StreamingExport(client)
        list(start.snapshot())
        assert start.snapshot_ts is not None
        worker, source = delta_worker(client, clean_postgres)
        source.start_at(start.snapshot_ts)
        repo.upsert("ws", {"email": "x@example.com"})
        backend.set_retention(0)
        repo.upsert("ws", {"email": "y@example.com"})
        with pytest.raises(ResyncRequired), running(worker):
            wait_until(lambda: False, timeout=2)
        env = os.environ | {
            "MIGRATIONKIT_DATABASE_URL": migrationkit_database_url.render_as_string(
                hide_password=False
            ),
            "CONVEX_URL": backend.url,
            "CONVEX_DEPLOY_KEY": backend.admin_key,
            "MIGRATIONKIT_SOURCE": "convex_deltas",
            "MIGRATIONKIT_METRICS_PORT": "-1",
        }
        result = subprocess.run(
            [sys.executable, "-m", "migrationkit.worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 3, result.stderr
    assert "resync" in result.stderr.lower()
    assert backend.admin_key not in result.stderr


def test_the_feed_carries_each_write_s_audit_entry_into_postgres(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    from migrationkit.adapters.postgres.repository import PostgresLeadRepository
    from migrationkit.domain.audit import AuditAction, audit_context

    repo = ConvexLeadRepository(clean_convex)
    start = StreamingExport(clean_convex)
    list(start.snapshot())
    assert start.snapshot_ts is not None
    worker, source = delta_worker(clean_convex, clean_postgres)
    source.start_at(start.snapshot_ts)
    with audit_context(actor="user:7", ip="203.0.113.9", user_agent="crm/2"):
        lead_id = repo.upsert("ws", {"email": "a@example.com"})
        repo.upsert("ws", {"id": lead_id, "email": "b@example.com"})
        repo.delete("ws", lead_id)
    pg = PostgresLeadRepository(clean_postgres)
    with running(worker):
        assert wait_until(lambda: len(pg.audit_entries("ws")) == 3)
    # The same entries as Convex's, once each, replays included.
    assert [e.model_dump() for e in pg.audit_entries("ws")] == [
        e.model_dump() for e in repo.audit_entries("ws")
    ]
    entries = pg.audit_entries("ws")
    assert [e.action for e in entries] == [
        AuditAction.CREATE,
        AuditAction.UPDATE,
        AuditAction.DELETE,
    ]
    assert entries[1].before is not None and entries[1].before["email"] == "a@example.com"
    assert entries[1].after is not None and entries[1].after["email"] == "b@example.com"
    assert {e.actor for e in entries} == {"user:7"}
    CursorStore(clean_postgres).save(source.name, start.snapshot_ts)  # the whole feed again
    with running(worker):
        assert wait_until(
            lambda: (CursorStore(clean_postgres).load(source.name) or 0) > start.snapshot_ts
        )
    assert len(pg.audit_entries("ws")) == 3
