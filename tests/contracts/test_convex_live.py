"""A subset of the contract, run against a real Convex deployment that has the
kit's functions deployed (`convex/`), when CONVEX_URL and CONVEX_DEPLOY_KEY
are set. Each test writes to a workspace of its own, since a deployment
cannot be reset."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.domain import ListQuery
from migrationkit.domain.ids import new_id
from migrationkit.errors import Conflict, NotFound

URL, KEY = os.environ.get("CONVEX_URL"), os.environ.get("CONVEX_DEPLOY_KEY")

pytestmark = [
    pytest.mark.convex_live,
    pytest.mark.skipif(
        not (URL and KEY),
        reason="CONVEX_URL and CONVEX_DEPLOY_KEY are not set: no live Convex deployment to test",
    ),
]


@pytest.fixture
def live() -> Iterator[tuple[ConvexLeadRepository, str]]:
    assert URL and KEY
    with ConvexClient(URL, admin_key=KEY) as client:
        yield ConvexLeadRepository(client), f"live-{new_id().lower()}"


def test_round_trip_versions_and_outbox(live: tuple[ConvexLeadRepository, str]) -> None:
    repo, ws = live
    lead_id = repo.upsert(ws, {"email": "live@example.com", "tags": ["a", ""], "score": 0.5})
    repo.upsert(ws, {"id": lead_id, "email": "live2@example.com", "profile": {"title": None}})
    stored = repo.get(ws, lead_id)
    assert stored is not None and stored.version == 2 and stored.profile is not None
    assert [(e.topic, e.version) for e in repo.outbox_events(ws)] == [
        ("lead.upsert", 1),
        ("lead.upsert", 2),
    ]


def test_conflict_delete_and_listing(live: tuple[ConvexLeadRepository, str]) -> None:
    repo, ws = live
    ids = sorted(repo.upsert(ws, {"email": f"l{n}@example.com"}) for n in range(3))
    with pytest.raises(Conflict):
        repo.upsert(ws, {"id": ids[0], "email": "x@example.com"}, expected_version=9)
    assert repo.delete(ws, ids[0]) is True and repo.delete(ws, ids[0]) is False
    with pytest.raises(NotFound):
        repo.delete(ws, new_id())
    first = repo.list(ws, ListQuery(limit=1))
    second = repo.list(ws, ListQuery(cursor=first.next_cursor, limit=5))
    assert [x.id for x in first.items + second.items] == ids[1:]
