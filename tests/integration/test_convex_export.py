"""Streaming export against the local backend: one consistent cut while
writes continue, and snapshot + deltas reproducing the final state exactly."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.convex.streaming_export import Replica, StreamingExport
from migrationkit.errors import ResyncRequired
from migrationkit.testing.convex_backend import LocalConvexBackend

# Small pages (a stand-in extension) so a snapshot spans many requests.
SMALL_PAGES = {"pageSize": 7}


def _all_documents(client: ConvexClient) -> dict[str, dict[str, Any]]:
    export = StreamingExport(client)
    return {row.id: row.document for row in export.snapshot()}


def _write_traffic(
    repo: ConvexLeadRepository, stop: threading.Event, ids: list[str], rounds: int = 400
) -> None:
    """Inserts, updates, soft deletes and hard deletes (purges) until stopped."""
    for n in range(rounds):
        if stop.is_set():
            return
        step = n % 10
        if step in (0, 3, 6) or not ids:
            ids.append(repo.upsert("ws", {"email": f"n{n}@example.com", "score": float(n)}))
        elif step == 9:
            victim = ids.pop(0)
            repo.delete("ws", victim)
            repo.client.mutation("leads:purge", {"workspaceId": "ws", "id": victim})
        else:
            target = ids[n % len(ids)]
            repo.upsert("ws", {"id": target, "email": f"u{n}@example.com", "score": float(n)})


def test_snapshot_is_one_consistent_cut_while_writes_continue(
    clean_convex: ConvexClient,
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    ids = [repo.upsert("ws", {"email": f"seed{n}@example.com"}) for n in range(30)]
    stop = threading.Event()
    writer = threading.Thread(target=_write_traffic, args=(repo, stop, list(ids)))
    writer.start()
    try:
        export = StreamingExport(clean_convex, extra_params=SMALL_PAGES)
        rows = list(export.snapshot())
    finally:
        stop.set()
        writer.join(timeout=120)
    assert export.snapshot_ts is not None
    assert all(row.ts <= export.snapshot_ts for row in rows)
    assert len({row.id for row in rows}) == len(rows), "a document appeared twice"

    # A lead and its outbox events are written by one mutation, so a
    # consistent cut holds, for each lead at version v, exactly the events
    # 1..v of that lead.
    leads = {r.document["id"]: r.document for r in rows if r.table == "leads"}
    events: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        if row.table == "outbox":
            events[row.document["entityId"]].add(int(row.document["version"]))
    for lead_id, lead in leads.items():
        assert events[lead_id] == set(range(1, int(lead["version"]) + 1)), lead_id


def test_snapshot_then_deltas_reproduce_the_final_state_exactly(
    clean_convex: ConvexClient,
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    ids = [repo.upsert("ws", {"email": f"seed{n}@example.com"}) for n in range(20)]
    replica = Replica()
    export = StreamingExport(clean_convex, extra_params=SMALL_PAGES)
    stop = threading.Event()
    writer = threading.Thread(target=_write_traffic, args=(repo, stop, list(ids)))
    writer.start()
    try:
        replica.apply(list(export.snapshot()))
    finally:
        stop.set()
        writer.join(timeout=120)
    # More after the cut, hard deletes among them, then the changes until caught up.
    stop.clear()
    _write_traffic(repo, stop, ids, rounds=30)
    assert export.snapshot_ts is not None
    cursor = export.snapshot_ts
    deleted_seen = 0
    for page in export.changes(cursor):
        replica.apply(page.rows)
        deleted_seen += sum(row.deleted for row in page.rows)
        assert page.cursor >= cursor
        cursor = page.cursor
    final = _all_documents(clean_convex)
    assert replica.documents == final
    assert deleted_seen > 0, "the traffic purged nothing: deletes were not exercised"


def test_deltas_are_in_commit_order_and_never_split_a_mutation(
    clean_convex: ConvexClient,
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    start = StreamingExport(clean_convex)
    list(start.snapshot())
    assert start.snapshot_ts is not None
    for n in range(25):
        repo.upsert("ws", {"email": f"d{n}@example.com"})
    pages = list(StreamingExport(clean_convex, extra_params=SMALL_PAGES).changes(start.snapshot_ts))
    rows = [row for page in pages for row in page.rows]
    assert [r.ts for r in rows] == sorted(r.ts for r in rows)
    for page in pages:
        # Every upsert writes a lead, its audit row and its event at one
        # timestamp: a page holds all three or none.
        by_ts: dict[int, list[str]] = defaultdict(list)
        for row in page.rows:
            by_ts[row.ts].append(row.table)
        expected = ["auditLogs", "leads", "outbox"]
        assert all(sorted(tables) == expected for tables in by_ts.values())
    assert sum(len(page.rows) for page in pages) == 75


def test_a_cursor_past_retention_asks_for_a_resync() -> None:
    # A backend of its own: this test shrinks the retention window.
    with (
        LocalConvexBackend() as backend,
        ConvexClient(backend.url, admin_key=backend.admin_key) as client,
    ):
        repo = ConvexLeadRepository(client)
        repo.upsert("ws", {"email": "old@example.com"})
        export = StreamingExport(client)
        list(export.snapshot())
        assert export.snapshot_ts is not None
        backend.set_retention(1)
        time.sleep(0.01)
        repo.upsert("ws", {"email": "new@example.com"})
        with pytest.raises(ResyncRequired, match="resync"):
            list(export.changes(export.snapshot_ts))
