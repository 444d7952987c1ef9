"""PostgresApplier on a real PostgreSQL: inbox, version guard, tombstones,
purges, bad input, and a property over random histories.

Every change here is built from a real ``Lead`` (``model_dump(mode="json")``),
as the sources build them; the stored rows are read back with SQL and
compared with the entity the latest version describes.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres import make_engine
from migrationkit.adapters.postgres.applier import CHUNK_SIZE, PostgresApplier
from migrationkit.adapters.postgres.row_codec import RowCodec
from migrationkit.domain import Lead
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.ids import new_id
from migrationkit.errors import (
    Conflict,
    PermissionDenied,
    StoreUnavailable,
    UnknownEntity,
    ValidationFailed,
)
from migrationkit.ports.changes import ApplyResult, ChangeSink
from migrationkit.schema import rls
from migrationkit.schema.metadata import entity_table, metadata
from migrationkit.schema.outbox_tables import outbox_table, processed_events_table

pytestmark = pytest.mark.postgres

WS = "ws-applier"
LEADS = entity_table(Lead)
INBOX = processed_events_table(metadata)
OUTBOX = outbox_table(metadata)
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CODEC = RowCodec(Lead)


# -- building changes ------------------------------------------------------------


def lead_version(lead_id: str, version: int, *, workspace: str = WS, deleted: bool = False) -> Lead:
    """Version ``version`` of one lead: every field says which version it is."""
    at = BASE + timedelta(seconds=version)
    return Lead(
        id=lead_id,
        workspace_id=workspace,
        version=version,
        created_at=BASE,
        updated_at=at,
        deleted_at=at if deleted else None,
        email=f"v{version}.{lead_id[-6:].lower()}@example.com",
        segment="enterprise" if version % 2 else "smb",
        score=version + 0.25,
        tags=[f"v{version}", "t"],
        profile={"company": f"Acme {version}", "links": ["https://example.com"]},
    )


def change_of(
    lead: Lead,
    *,
    kind: ChangeKind | None = None,
    convex_id: str | None = None,
    event_id: str | None = None,
) -> Change:
    if kind is None:
        kind = ChangeKind.DELETE if lead.is_deleted else ChangeKind.UPSERT
    return Change(
        event_id=event_id or new_id(),
        entity="lead",
        kind=kind,
        workspace_id=lead.workspace_id,
        entity_id=lead.id,
        version=lead.version,
        data=lead.model_dump(mode="json"),
        occurred_at=lead.updated_at,
        convex_id=convex_id,
    )


def purge(convex_id: str) -> Change:
    return Change(new_id(), "lead", ChangeKind.PURGE, None, None, 0, None, BASE, convex_id)


# -- reading the store -----------------------------------------------------------


def stored(engine: Engine, workspace: str = WS) -> dict[str, tuple[Lead, str | None]]:
    """id -> (the row as a Lead, its convex_id), soft-deleted rows included."""
    with engine.connect() as conn:
        rows = conn.execute(select(LEADS).where(LEADS.c.workspace_id == workspace)).mappings()
        return {r["id"]: (CODEC.from_row(r), r["convex_id"]) for r in rows}


def inbox(engine: Engine, consumer: str = "postgres") -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(INBOX.c.event_id).where(INBOX.c.consumer == consumer))
        return sorted(r[0] for r in rows)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def applier(clean_postgres: Engine) -> PostgresApplier:
    return PostgresApplier(clean_postgres)


# -- the basics ------------------------------------------------------------------


def test_is_a_change_sink_named_after_its_consumer(clean_postgres: Engine) -> None:
    sink = PostgresApplier(clean_postgres, consumer="pg-mirror")
    assert isinstance(sink, ChangeSink)
    assert sink.name == "pg-mirror"


def test_an_empty_batch_does_nothing(applier: PostgresApplier, clean_postgres: Engine) -> None:
    assert applier.apply([]) == ApplyResult()
    assert count(clean_postgres, INBOX) == 0


def test_stores_the_change_as_is_and_records_it_in_the_inbox(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead = lead_version(new_id(), 7)
    change = change_of(lead, convex_id="cx-7")

    assert applier.apply([change]) == ApplyResult(applied=1)

    row, convex_id = stored(clean_postgres)[lead.id]
    # Replication, not a new write: version and timestamps are the source's.
    assert row == lead
    assert convex_id == "cx-7"
    with clean_postgres.connect() as conn:
        recorded = conn.execute(select(INBOX)).mappings().one()
    assert {k: recorded[k] for k in ("consumer", "event_id", "workspace_id", "entity")} == {
        "consumer": "postgres",
        "event_id": change.event_id,
        "workspace_id": WS,
        "entity": "lead",
    }
    assert (recorded["entity_id"], recorded["version"]) == (lead.id, 7)


def test_writes_no_outbox_row(applier: PostgresApplier, clean_postgres: Engine) -> None:
    lead_id = new_id()
    applier.apply([change_of(lead_version(lead_id, 1)), change_of(lead_version(lead_id, 2))])
    applier.apply([change_of(lead_version(lead_id, 3, deleted=True))])

    assert stored(clean_postgres)[lead_id][0].version == 3
    # An outbox row would carry the change back to the store it came from.
    assert count(clean_postgres, OUTBOX) == 0


# -- duplicates and replays ------------------------------------------------------


def test_replaying_a_batch_changes_nothing(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    ids = [new_id() for _ in range(5)]
    batch = [change_of(lead_version(i, v)) for i in ids for v in (1, 2)]
    first = applier.apply(batch)
    before = stored(clean_postgres)

    replay = applier.apply(batch)

    assert first == ApplyResult(applied=5, stale=5)
    assert replay == ApplyResult(duplicates=10)
    assert stored(clean_postgres) == before
    assert inbox(clean_postgres) == sorted(c.event_id for c in batch)


def test_a_replayed_old_event_does_not_roll_a_newer_row_back(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    v1 = change_of(lead_version(lead_id, 1))
    applier.apply([v1])
    applier.apply([change_of(lead_version(lead_id, 2))])

    assert applier.apply([v1]) == ApplyResult(duplicates=1)
    assert stored(clean_postgres)[lead_id][0] == lead_version(lead_id, 2)


def test_the_same_event_twice_in_a_batch_counts_once_applied_once_duplicate(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    change = change_of(lead_version(new_id(), 1))

    assert applier.apply([change, change]) == ApplyResult(applied=1, duplicates=1)
    assert inbox(clean_postgres) == [change.event_id]


# -- ordering ----------------------------------------------------------------------


def test_only_the_highest_version_in_a_batch_wins(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    batch = [change_of(lead_version(lead_id, v)) for v in (2, 5, 1, 4, 3)]

    assert applier.apply(batch) == ApplyResult(applied=1, stale=4)
    assert stored(clean_postgres)[lead_id][0] == lead_version(lead_id, 5)
    # Every event was seen, winners and losers alike.
    assert inbox(clean_postgres) == sorted(c.event_id for c in batch)


def test_an_older_version_is_stale_and_still_recorded(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    applier.apply([change_of(lead_version(lead_id, 3))])
    old = change_of(lead_version(lead_id, 2))
    same = change_of(lead_version(lead_id, 3))  # another event for the stored version

    assert applier.apply([old, same]) == ApplyResult(stale=2)
    assert stored(clean_postgres)[lead_id][0] == lead_version(lead_id, 3)
    assert {old.event_id, same.event_id} <= set(inbox(clean_postgres))


def test_shuffled_events_end_at_the_latest_version(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    rng = random.Random(20260301)
    histories = {new_id(): rng.randint(1, 8) for _ in range(12)}
    events = [
        change_of(lead_version(i, v, deleted=(v == n and n % 3 == 0)))
        for i, n in histories.items()
        for v in range(1, n + 1)
    ]
    rng.shuffle(events)
    cuts = sorted(rng.sample(range(1, len(events)), 4))
    totals = ApplyResult()
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        result = applier.apply(events[start:end])
        totals.applied += result.applied
        totals.stale += result.stale
        totals.duplicates += result.duplicates

    rows = stored(clean_postgres)
    assert {i: rows[i][0] for i in histories} == {
        i: lead_version(i, n, deleted=(n % 3 == 0)) for i, n in histories.items()
    }
    assert totals.duplicates == 0
    assert totals.applied + totals.stale == len(events)


def test_an_older_upsert_after_a_tombstone_does_not_resurrect_it(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    tombstone = lead_version(lead_id, 3, deleted=True)
    applier.apply([change_of(tombstone)])

    late = [change_of(lead_version(lead_id, 2)), change_of(lead_version(lead_id, 1))]
    assert applier.apply(late) == ApplyResult(stale=2)
    row = stored(clean_postgres)[lead_id][0]
    assert row == tombstone
    assert row.deleted_at is not None


def test_a_newer_upsert_after_a_tombstone_restores_the_row(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    applier.apply([change_of(lead_version(lead_id, 2, deleted=True))])

    assert applier.apply([change_of(lead_version(lead_id, 3))]) == ApplyResult(applied=1)
    assert stored(clean_postgres)[lead_id][0].deleted_at is None


# -- convex_id and purges ----------------------------------------------------------


def test_convex_id_is_set_when_given_and_kept_when_absent(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    applier.apply([change_of(lead_version(lead_id, 1), convex_id="cx-a")])
    applier.apply([change_of(lead_version(lead_id, 2))])  # from PostgreSQL's outbox: no _id
    assert stored(clean_postgres)[lead_id] == (lead_version(lead_id, 2), "cx-a")

    other = new_id()
    applier.apply([change_of(lead_version(other, 1))])
    applier.apply([change_of(lead_version(other, 2), convex_id="cx-b")])
    assert stored(clean_postgres)[other][1] == "cx-b"


def test_purge_removes_only_a_soft_deleted_row(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    live, dead = new_id(), new_id()
    applier.apply(
        [
            change_of(lead_version(live, 1), convex_id="cx-live"),
            change_of(lead_version(dead, 2, deleted=True), convex_id="cx-dead"),
        ]
    )

    assert applier.apply([purge("cx-live")]) == ApplyResult(stale=1)
    found = purge("cx-dead")
    assert applier.apply([found]) == ApplyResult(applied=1)
    nowhere = purge("cx-nowhere")
    assert applier.apply([nowhere]) == ApplyResult(stale=1)

    assert set(stored(clean_postgres)) == {live}
    # The inbox names the row a purge found, and nothing when it found none.
    with clean_postgres.connect() as conn:
        recorded = {
            r.event_id: (r.workspace_id, r.entity_id)
            for r in conn.execute(select(INBOX).where(INBOX.c.entity == "lead"))
        }
    assert recorded[found.event_id] == (WS, dead)
    assert recorded[nowhere.event_id] == (None, None)


def test_a_soft_delete_and_its_purge_work_in_one_batch(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    applier.apply([change_of(lead_version(lead_id, 1), convex_id="cx-1")])

    batch = [purge("cx-1"), change_of(lead_version(lead_id, 2, deleted=True))]
    assert applier.apply(batch) == ApplyResult(applied=2)
    assert stored(clean_postgres) == {}
    assert applier.apply(batch) == ApplyResult(duplicates=2)


def test_a_replayed_upsert_after_a_purge_does_not_bring_the_row_back(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    lead_id = new_id()
    created = change_of(lead_version(lead_id, 1), convex_id="cx-1")
    applier.apply([created])
    applier.apply([change_of(lead_version(lead_id, 2, deleted=True), convex_id="cx-1")])
    applier.apply([purge("cx-1")])

    # No row is left to compare versions with: only the inbox stops it.
    assert applier.apply([created]) == ApplyResult(duplicates=1)
    assert stored(clean_postgres) == {}


@pytest.mark.parametrize("chunk_size", [CHUNK_SIZE, 1], ids=["one-chunk", "chunks-of-1"])
def test_a_convex_id_another_row_holds_fails_the_batch_naming_the_event(
    clean_postgres: Engine, chunk_size: int
) -> None:
    # In chunks of one, the server refuses the clash in the batch's last
    # chunk (its id is the newest), after the first was applied.
    applier = PostgresApplier(clean_postgres, chunk_size=chunk_size)
    applier.apply([change_of(lead_version(new_id(), 1), convex_id="cx-taken")])
    fine = change_of(lead_version(new_id(), 1))
    clash = change_of(lead_version(new_id(), 1), convex_id="cx-taken")

    with pytest.raises(ValidationFailed, match=clash.event_id):
        applier.apply([fine, clash])
    assert fine.event_id not in inbox(clean_postgres)
    assert len(stored(clean_postgres)) == 1


def test_two_entities_claiming_one_convex_id_in_a_batch_fail_it_naming_the_event(
    applier: PostgresApplier, clean_postgres: Engine
) -> None:
    first = change_of(lead_version(new_id(), 1), convex_id="cx-twice")
    second = change_of(lead_version(new_id(), 1), convex_id="cx-twice")

    with pytest.raises(ValidationFailed, match=second.event_id):
        applier.apply([first, second])
    assert stored(clean_postgres) == {}
    assert inbox(clean_postgres) == []


# -- bad input ---------------------------------------------------------------------


def _bad(kind: str) -> Change:
    lead = lead_version(new_id(), 2)
    data = lead.model_dump(mode="json")
    entity = "lead"
    change_kind = ChangeKind.UPSERT
    if kind == "unknown entity":
        entity = "invoice"
    elif kind == "invalid data":
        data["email"] = "not an address"
    elif kind == "wrong type":
        data["score"] = "high"
    elif kind == "NUL in a string":
        data["tags"] = ["ok", "bad\x00tag"]
    elif kind == "NUL in a nested string":
        data["profile"] = {"company": "A\x00B"}
    elif kind == "version differs from the data's":
        data["version"] = 3
    elif kind == "id differs from the data's":
        data["id"] = new_id()
    elif kind == "delete without deleted_at":
        change_kind = ChangeKind.DELETE
    return Change(new_id(), entity, change_kind, WS, lead.id, 2, data, BASE)


@pytest.mark.parametrize("chunk_size", [CHUNK_SIZE, 1], ids=["one-chunk", "chunks-of-1"])
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("unknown entity", UnknownEntity),
        ("invalid data", ValidationFailed),
        ("wrong type", ValidationFailed),
        ("NUL in a string", ValidationFailed),
        ("NUL in a nested string", ValidationFailed),
        ("version differs from the data's", ValidationFailed),
        ("id differs from the data's", ValidationFailed),
        ("delete without deleted_at", ValidationFailed),
    ],
)
def test_a_bad_change_fails_the_whole_batch_naming_its_event(
    clean_postgres: Engine, kind: str, error: type[Exception], chunk_size: int
) -> None:
    # In chunks of one, a bad lead (the newest id) is checked in the last
    # chunk, after the others were sent: they must be undone.
    applier = PostgresApplier(clean_postgres, chunk_size=chunk_size)
    existing = new_id()
    applier.apply([change_of(lead_version(existing, 1))])
    good = [change_of(lead_version(existing, 2)), change_of(lead_version(new_id(), 1))]
    bad = _bad(kind)

    with pytest.raises(error, match=bad.event_id):
        applier.apply([*good, bad])

    assert stored(clean_postgres)[existing][0].version == 1
    assert len(stored(clean_postgres)) == 1
    assert not {c.event_id for c in good} & set(inbox(clean_postgres))
    # The connection went back to the pool idle: the next batch applies.
    assert applier.apply(good) == ApplyResult(applied=2)


def test_a_nul_in_the_event_id_is_refused(applier: PostgresApplier) -> None:
    with pytest.raises(ValidationFailed, match="event id"):
        applier.apply([change_of(lead_version(new_id(), 1), event_id="ev\x00il")])


# -- consumers ---------------------------------------------------------------------


def test_two_consumers_have_independent_inboxes(clean_postgres: Engine) -> None:
    mirror = PostgresApplier(clean_postgres, consumer="mirror")
    audit = PostgresApplier(clean_postgres, consumer="audit")
    lead_id = new_id()
    batch = [change_of(lead_version(lead_id, 1)), change_of(lead_version(lead_id, 2))]

    assert mirror.apply(batch) == ApplyResult(applied=1, stale=1)
    # The other consumer has seen none of these events: not duplicates, but
    # stale, since the row already holds version 2.
    assert audit.apply(batch) == ApplyResult(stale=2)
    assert mirror.apply(batch) == ApplyResult(duplicates=2)

    expected = sorted(c.event_id for c in batch)
    assert inbox(clean_postgres, "mirror") == inbox(clean_postgres, "audit") == expected


# -- failures of the database --------------------------------------------------------


def test_a_lost_connection_is_store_unavailable_and_the_next_call_recovers(
    clean_postgres: Engine, migrationkit_database_url: URL
) -> None:
    engine = make_engine(migrationkit_database_url, pool_size=1, max_overflow=0)
    try:
        applier = PostgresApplier(engine)
        applier.apply([change_of(lead_version(new_id(), 1))])
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with clean_postgres.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        lost = change_of(lead_version(new_id(), 1))
        with pytest.raises(StoreUnavailable):
            applier.apply([lost])
        assert lost.event_id not in inbox(clean_postgres)

        assert applier.apply([lost]) == ApplyResult(applied=1)
    finally:
        engine.dispose()


def test_an_unreachable_server_is_store_unavailable(migrationkit_database_url: URL) -> None:
    engine = make_engine(migrationkit_database_url.set(host="127.0.0.1", port=1))
    try:
        with pytest.raises(StoreUnavailable):
            PostgresApplier(engine).apply([change_of(lead_version(new_id(), 1))])
    finally:
        engine.dispose()


def test_a_role_subject_to_rls_is_refused(
    clean_postgres: Engine, migrationkit_database_url: URL
) -> None:
    # The applier writes every workspace in one statement: only a role that
    # bypasses RLS may run it. Under the application's role it is refused.
    login = "mk_applier_app"
    with clean_postgres.begin() as conn:
        conn.execute(
            text(
                f"""
                DO $$ BEGIN
                    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login}') THEN
                        CREATE ROLE {login} LOGIN PASSWORD '{login}' NOSUPERUSER NOBYPASSRLS;
                    END IF;
                END $$
                """
            )
        )
        conn.execute(text(f"GRANT {rls.APP_ROLE} TO {login}"))
    engine = make_engine(migrationkit_database_url.set(username=login, password=login))
    try:
        with pytest.raises(PermissionDenied):
            PostgresApplier(engine).apply([change_of(lead_version(new_id(), 1))])
    finally:
        engine.dispose()
    assert count(clean_postgres, LEADS) == count(clean_postgres, INBOX) == 0


# -- concurrency ---------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [CHUNK_SIZE, 4], ids=["one-chunk", "chunks-of-4"])
def test_two_appliers_racing_on_overlapping_batches_apply_each_event_once(
    clean_postgres: Engine, migrationkit_database_url: URL, chunk_size: int
) -> None:
    rng = random.Random(7)
    histories = {new_id(): rng.randint(1, 6) for _ in range(80)}
    events = [change_of(lead_version(i, v)) for i, n in histories.items() for v in range(1, n + 1)]
    results: list[ApplyResult] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    # Were an applier to wait for the server holding the GIL, the other
    # could never finish the transaction it waits on and the process would
    # hang; the lock timeout turns that into a failure.
    engine = make_engine(migrationkit_database_url, connect_args={"options": "-c lock_timeout=15s"})

    def worker(seed: int) -> None:
        local = random.Random(seed)
        mine = events[:]
        local.shuffle(mine)
        applier = PostgresApplier(engine, chunk_size=chunk_size)
        try:
            for start in range(0, len(mine), 15):
                while True:
                    try:
                        result = applier.apply(mine[start : start + 15])
                        break
                    except Conflict:  # a deadlock between the two: retry, as the worker does
                        continue
                with lock:
                    results.append(result)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,), daemon=True) for seed in (1, 2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        engine.dispose()
    assert not any(t.is_alive() for t in threads), "the appliers hung"
    assert failures == []

    rows = stored(clean_postgres)
    assert {i: rows[i][0] for i in histories} == {
        i: lead_version(i, n) for i, n in histories.items()
    }
    # Each event was fresh for exactly one of the two, a duplicate for the other.
    assert sum(r.applied + r.stale for r in results) == len(events)
    assert sum(r.duplicates for r in results) == len(events)
    assert inbox(clean_postgres) == sorted(c.event_id for c in events)


# -- any registered entity -------------------------------------------------------------

_ANY_ENTITY_PROGRAM = """
import os, sys
from datetime import UTC, datetime
from typing import Any, ClassVar
from pydantic import Field
from sqlalchemy import select
from migrationkit.adapters.postgres import make_engine
from migrationkit.adapters.postgres.applier import CHUNK_SIZE, PostgresApplier
from migrationkit.adapters.postgres.row_codec import RowCodec
from migrationkit.domain import Entity, Lead, register
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.ids import new_id
from migrationkit.schema.metadata import entity_table

@register
class Memo(Entity):
    entity_name: ClassVar[str] = "memo"
    table_name: ClassVar[str] = "applier_memos"
    title: str
    body: str | None = None
    stars: int = 0
    pinned: bool = False
    weight: float = 0.0
    meta: dict[str, Any] = Field(default_factory=dict)

engine = make_engine(os.environ["APPLIER_TEST_URL"])
table = entity_table(Memo)
table.create(engine)
try:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    memo = Memo(
        workspace_id="ws-any", version=2, created_at=at, updated_at=at,
        title='quotes " and \\\\ backslashes, tabs\\tnewlines\\n, é, 漢字, 🙂',
        body=None, stars=2**40, pinned=True, weight=0.1,
        meta={"nested": {"list": [1, "two", None, 3.5]}, "k": "v"},
    )
    older = memo.model_copy(update={"version": 1, "title": "old"})
    lead = Lead(workspace_id="ws-any", version=1, email="x@example.com")
    def change(e, entity):
        return Change(new_id(), entity, ChangeKind.UPSERT, e.workspace_id, e.id, e.version,
                      e.model_dump(mode="json"), at, None)
    applier = PostgresApplier(engine)
    result = applier.apply([change(memo, "applier_memos"), change(lead, "lead"),
                            change(older, "memo")])
    assert (result.applied, result.stale) == (2, 1), result
    with engine.connect() as conn:
        row = conn.execute(select(table)).mappings().one()
        leads = conn.execute(select(entity_table(Lead))).mappings().all()
    assert RowCodec(Memo).from_row(row) == memo, RowCodec(Memo).from_row(row)
    assert [r["id"] for r in leads] == [lead.id]
    print("ok")
finally:
    table.drop(engine)
    engine.dispose()
"""


def test_applies_any_registered_entity_beside_leads(
    clean_postgres: Engine, migrationkit_database_url: URL
) -> None:
    # In a subprocess: registering a model here would change the registry
    # (and the shared metadata) for every other test.
    env = os.environ | {"APPLIER_TEST_URL": migrationkit_database_url.render_as_string(False)}
    result = subprocess.run(
        [sys.executable, "-c", _ANY_ENTITY_PROGRAM],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "ok", result.stderr


# -- the property -----------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, list[Lead]], list[Change], list[int]]:
    """Random histories, their events shuffled with duplicates, and batch cuts."""
    workspace = f"ws-{uuid.uuid4().hex[:12]}"
    leads: dict[str, list[Lead]] = {}
    for _ in range(draw(st.integers(1, 5))):
        lead_id = new_id()
        deletes = draw(st.lists(st.booleans(), min_size=1, max_size=7))
        leads[lead_id] = [
            lead_version(lead_id, v, workspace=workspace, deleted=gone)
            for v, gone in enumerate(deletes, start=1)
        ]
    events = [change_of(lead, convex_id=f"cx-{lead.id}") for h in leads.values() for lead in h]
    repeats = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    stream = draw(st.permutations(events + repeats))
    cuts = draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=5, unique=True))
    return leads, stream, sorted(cuts)


def _batches(stream: Sequence[Change], cuts: list[int]) -> Iterator[Sequence[Change]]:
    bounds = [0, *(c for c in cuts if 0 < c < len(stream)), len(stream)]
    for start, end in itertools.pairwise(bounds):
        yield stream[start:end]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=histories())
@pytest.mark.parametrize("chunk_size", [CHUNK_SIZE, 1, 3])
def test_any_order_duplicates_and_batching_end_at_the_latest_versions(
    migrationkit_engine: Engine,
    chunk_size: int,
    case: tuple[dict[str, list[Lead]], list[Change], list[int]],
) -> None:
    # A fresh workspace and consumer per example: no truncation between them.
    leads, stream, cuts = case
    consumer = f"prop-{uuid.uuid4().hex[:12]}"
    applier = PostgresApplier(migrationkit_engine, consumer=consumer, chunk_size=chunk_size)
    totals = ApplyResult()
    for batch in _batches(stream, cuts):
        result = applier.apply(batch)
        totals.applied += result.applied
        totals.stale += result.stale
        totals.duplicates += result.duplicates

    workspace = next(iter(leads.values()))[0].workspace_id
    rows = stored(migrationkit_engine, workspace)
    assert {i: row for i, (row, _) in rows.items()} == {i: h[-1] for i, h in leads.items()}
    assert all(convex_id == f"cx-{i}" for i, (_, convex_id) in rows.items())

    distinct = {c.event_id for c in stream}
    with migrationkit_engine.connect() as conn:
        recorded = conn.execute(
            select(INBOX.c.event_id, func.count())
            .where(INBOX.c.consumer == consumer)
            .group_by(INBOX.c.event_id)
        ).all()
    assert {r[0] for r in recorded} == distinct
    assert all(r[1] == 1 for r in recorded)
    assert totals.applied + totals.stale == len(distinct)
    assert totals.duplicates == len(stream) - len(distinct)
