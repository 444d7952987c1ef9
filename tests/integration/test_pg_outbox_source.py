"""PgOutboxSource on a real PostgreSQL: leased claims, fencing, retries, and
rows that commit late.

Leases and due times run on the database clock, so tests that wait for one
sleep for real (well under a second); tests that need an expired lease now
move it into the past with SQL instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, insert, text

from migrationkit.adapters.postgres import PostgresLeadRepository, workspace_transaction
from migrationkit.adapters.postgres.outbox_source import LeaseLost, OutboxClaim, PgOutboxSource
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.clock import utc_now
from migrationkit.domain.ids import new_id
from migrationkit.domain.outbox import dedupe_key
from migrationkit.errors import Conflict, ValidationFailed
from migrationkit.ports.changes import ChangeBatch, ChangeSource
from migrationkit.schema.metadata import metadata
from migrationkit.schema.outbox_tables import outbox_table
from migrationkit.testing.harness import PostgresHarness

pytestmark = pytest.mark.postgres

WS = "ws-outbox"
OUTBOX = outbox_table(metadata)
T = TypeVar("T")


# -- helpers -------------------------------------------------------------------


def _event_row(
    *,
    occurred_at: datetime | None = None,
    topic: str = "lead.upsert",
    workspace: str = WS,
    **claim_columns: Any,
) -> dict[str, Any]:
    entity_id = new_id()
    return {
        "event_id": new_id(),
        "workspace_id": workspace,
        "topic": topic,
        "entity": "lead",
        "entity_id": entity_id,
        "version": 1,
        "occurred_at": occurred_at or utc_now(),
        "dedupe_key": dedupe_key("lead", workspace, entity_id, 1),
        "payload": {"id": entity_id, "workspace_id": workspace, "email": "a@b.example"},
        **claim_columns,
    }


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> list[str]:
    conn.execute(insert(OUTBOX), rows)
    return [r["event_id"] for r in rows]


def _seed(engine: Engine, count: int, **columns: Any) -> list[str]:
    with engine.begin() as conn:
        return _insert(conn, [_event_row(**columns) for _ in range(count)])


def _rows(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.begin() as conn:
        found = conn.execute(text("SELECT * FROM outbox_events")).mappings().all()
    return {r["event_id"]: dict(r) for r in found}


def _claim(batch: ChangeBatch) -> OutboxClaim:
    assert isinstance(batch.token, OutboxClaim)
    return batch.token


def _ids(batch: ChangeBatch) -> list[str]:
    return [c.event_id for c in batch.changes]


def _expire_leases(engine: Engine, event_ids: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE outbox_events SET lease_expires_at = now() - interval '1 second'"
                " WHERE event_id = ANY(:ids)"
            ),
            {"ids": event_ids},
        )


def _within(seconds: float, call: Callable[[], T]) -> T:
    """Run ``call`` on another thread; fail (not hang) if it blocks."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(call).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


@pytest.fixture
def source(clean_postgres: Engine) -> PgOutboxSource:
    return PgOutboxSource(clean_postgres, owner="worker-a")


# -- claiming ------------------------------------------------------------------


def test_fetch_claims_pending_rows_as_changes_under_a_lease(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    repo = PostgresLeadRepository(clean_postgres)
    kept = repo.upsert(WS, {"email": "kept@example.com", "score": 1.5})
    gone = repo.upsert(WS, {"email": "gone@example.com"})
    repo.delete(WS, gone)
    events = PostgresHarness(clean_postgres).outbox_events(WS)
    assert isinstance(source, ChangeSource)

    batch = source.fetch(10)

    assert sorted(batch.changes, key=lambda c: c.event_id) == sorted(
        (Change.from_event(e) for e in events), key=lambda c: c.event_id
    )
    assert [c.kind for c in batch.changes].count(ChangeKind.DELETE) == 1
    assert {c.entity_id for c in batch.changes} == {kept, gone}
    claim = _claim(batch)
    assert claim.lease_owner.startswith("worker-a/") and claim.fence
    assert set(claim.event_ids) == {e.event_id for e in events}
    assert claim.attempts == dict.fromkeys(claim.event_ids, 1)
    rows = _rows(clean_postgres)
    assert {r["status"] for r in rows.values()} == {"processing"}
    assert {r["lease_owner"] for r in rows.values()} == {claim.lease_owner}
    assert {r["attempts"] for r in rows.values()} == {1}
    assert claim.lease_expires_at is not None
    for row in rows.values():
        assert row["lease_expires_at"] == claim.lease_expires_at
    remaining = (claim.lease_expires_at - utc_now()).total_seconds()
    assert 25 < remaining <= 31

    # A live lease keeps the rows from everyone else, this owner included.
    assert PgOutboxSource(clean_postgres, owner="worker-b").fetch(10).changes == []
    assert source.fetch(10).changes == []


def test_fetch_takes_the_oldest_due_rows_first_and_says_when_more_wait(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    now = utc_now()
    due = [now - timedelta(minutes=m) for m in (1, 5, 3, 9, 7)]
    with clean_postgres.begin() as conn:
        ids = _insert(conn, [_event_row(next_attempt_at=d) for d in due])
        (later,) = _insert(conn, [_event_row(next_attempt_at=now + timedelta(hours=1))])
    oldest_first = [i for _, i in sorted(zip(due, ids, strict=True))]

    first = source.fetch(2)
    assert set(_ids(first)) == set(oldest_first[:2])
    assert first.more is True
    rest = source.fetch(10)
    assert set(_ids(rest)) == set(oldest_first[2:])
    assert rest.more is False
    assert later not in _ids(rest)  # not due yet


def test_batch_changes_come_in_occurred_at_order(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    now = utc_now()
    with clean_postgres.begin() as conn:
        ids = _insert(conn, [_event_row(occurred_at=now - timedelta(seconds=s)) for s in (1, 3, 2)])
    batch = source.fetch(10)
    assert _ids(batch) == [ids[1], ids[2], ids[0]]


@pytest.mark.parametrize("engine_isolation", ["engine default", "REPEATABLE READ"])
def test_concurrent_fetchers_never_claim_the_same_row(
    clean_postgres: Engine, engine_isolation: str
) -> None:
    all_ids = set(_seed(clean_postgres, 300))
    engine = clean_postgres
    if engine_isolation != "engine default":
        # The source must run its claim at READ COMMITTED whatever the engine says.
        engine = clean_postgres.execution_options(isolation_level=engine_isolation)
    workers = 6
    start = threading.Barrier(workers)
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        source = PgOutboxSource(engine, owner=owner)
        mine: list[str] = []
        try:
            start.wait(timeout=30)
            while True:
                batch = source.fetch(7)
                if not batch.changes:
                    break
                mine.extend(_ids(batch))
                source.ack(batch)
        except BaseException as exc:
            errors.append(exc)
        claimed[owner] = mine

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    every_claim = [i for ids in claimed.values() for i in ids]
    assert len(every_claim) == len(set(every_claim)), "a row was claimed twice"
    assert set(every_claim) == all_ids
    assert sum(1 for ids in claimed.values() if ids) >= 2, "the fetchers did not overlap"
    rows = _rows(clean_postgres)
    assert {r["status"] for r in rows.values()} == {"done"}
    assert {r["attempts"] for r in rows.values()} == {1}


def test_a_row_locked_by_another_claim_is_skipped_not_waited_for(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    ids = _seed(clean_postgres, 5)
    locked = ids[:2]
    # Another claimer's transaction, still open, holding two rows.
    with clean_postgres.connect() as other:
        other.execute(
            text("SELECT 1 FROM outbox_events WHERE event_id = ANY(:ids) FOR UPDATE"),
            {"ids": locked},
        )
        try:
            batch = _within(10, lambda: source.fetch(10))
        finally:
            other.rollback()
        assert set(_ids(batch)) == set(ids[2:])
    assert set(_ids(source.fetch(10))) == set(locked)


# -- rows that commit late ---------------------------------------------------


def test_a_writer_that_commits_late_is_still_delivered(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    repo = PostgresLeadRepository(clean_postgres)
    # Writer A starts first: its event id and occurred_at are assigned now,
    # but its transaction stays open on its own connection.
    with workspace_transaction(clean_postgres, WS) as writer_a:
        (late_id,) = _insert(writer_a, [_event_row()])
        time.sleep(0.01)
        # Writer B, on another connection, starts later and commits first.
        early_commit = repo.upsert(WS, {"email": "b@example.com"})
        (b_event,) = PostgresHarness(clean_postgres).outbox_events(WS)
        assert b_event.entity_id == early_commit

        first = _within(10, lambda: source.fetch(10))
        assert _ids(first) == [b_event.event_id]
        source.ack(first)
        # What a reader that remembers "the last id seen" would now skip:
        assert late_id < b_event.event_id
    # Writer A has committed (the block exited normally).
    late = source.fetch(10)
    assert _ids(late) == [late_id]
    assert late.changes[0].occurred_at < b_event.occurred_at
    source.ack(late)
    assert {r["status"] for r in _rows(clean_postgres).values()} == {"done"}


# -- leases and fencing ------------------------------------------------------


def test_an_expired_lease_is_taken_over_and_the_stale_ack_is_refused(
    clean_postgres: Engine,
) -> None:
    ids = _seed(clean_postgres, 3)
    slow = PgOutboxSource(clean_postgres, owner="slow", lease_seconds=0.5)
    other = PgOutboxSource(clean_postgres, owner="other")
    stale = slow.fetch(10)
    assert set(_ids(stale)) == set(ids)
    assert other.fetch(10).changes == []  # the lease is still live

    time.sleep(0.8)
    taken = other.fetch(10)
    assert set(_ids(taken)) == set(ids)
    assert _claim(taken).attempts == dict.fromkeys(ids, 2)

    with pytest.raises(LeaseLost) as lost:
        slow.ack(stale)
    assert isinstance(lost.value, Conflict)
    assert lost.value.lost == 3 and set(lost.value.event_ids) == set(ids)
    assert "3 of 3" in str(lost.value)
    rows = _rows(clean_postgres)
    assert {r["status"] for r in rows.values()} == {"processing"}
    assert {r["lease_owner"] for r in rows.values()} == {_claim(taken).lease_owner}

    with pytest.raises(LeaseLost):
        slow.retry(stale, "late failure", 0)
    with pytest.raises(LeaseLost):
        slow.bury(stale, "late failure")
    rows = _rows(clean_postgres)
    assert {r["status"] for r in rows.values()} == {"processing"}
    assert {r["last_error"] for r in rows.values()} == {None}

    other.ack(taken)
    assert {r["status"] for r in _rows(clean_postgres).values()} == {"done"}
    # Even after the new owner finished, the stale claim cannot touch the rows.
    with pytest.raises(LeaseLost):
        slow.ack(stale)


def test_a_partial_takeover_acks_the_rows_still_held_and_reports_the_rest(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    ids = _seed(clean_postgres, 3)
    batch = source.fetch(10)
    taken_over = ids[1]
    _expire_leases(clean_postgres, [taken_over])
    other = PgOutboxSource(clean_postgres, owner="other")
    assert _ids(other.fetch(10)) == [taken_over]

    with pytest.raises(LeaseLost) as lost:
        source.ack(batch)
    assert lost.value.event_ids == (taken_over,)
    assert "1 of 3" in str(lost.value)
    rows = _rows(clean_postgres)
    assert rows[taken_over]["status"] == "processing"
    assert rows[taken_over]["lease_owner"].startswith("other/")
    assert {rows[i]["status"] for i in ids if i != taken_over} == {"done"}


def test_an_expired_lease_nobody_took_over_can_still_be_acked(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    ids = _seed(clean_postgres, 2)
    batch = source.fetch(10)
    _expire_leases(clean_postgres, ids)
    source.ack(batch)
    assert {r["status"] for r in _rows(clean_postgres).values()} == {"done"}
    assert PgOutboxSource(clean_postgres, owner="other").fetch(10).changes == []


def test_the_same_owner_reclaiming_gets_a_new_fence(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    (event_id,) = _seed(clean_postgres, 1)
    first = source.fetch(10)
    _expire_leases(clean_postgres, [event_id])
    second = source.fetch(10)
    assert _claim(first).fence != _claim(second).fence
    with pytest.raises(LeaseLost):
        source.ack(first)
    source.ack(second)


def test_ack_twice_is_harmless_and_an_empty_batch_acks_nothing(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    _seed(clean_postgres, 2)
    batch = source.fetch(10)
    source.ack(batch)
    source.ack(batch)
    empty = source.fetch(10)
    assert empty.changes == [] and _claim(empty).event_ids == ()
    source.ack(empty)
    assert {r["status"] for r in _rows(clean_postgres).values()} == {"done"}


# -- retries, attempts, burying ------------------------------------------------


def test_retry_hands_rows_back_only_once_next_attempt_at_has_come(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    failing, fine = _seed(clean_postgres, 2)
    batch = source.fetch(10)
    source.retry(batch, "sink refused: password=hunter2", delay_seconds=0.6, event_ids=[failing])
    source.ack(batch, event_ids=[fine])

    rows = _rows(clean_postgres)
    assert rows[fine]["status"] == "done"
    retried = rows[failing]
    assert retried["status"] == "pending"
    assert retried["lease_owner"] is None and retried["lease_expires_at"] is None
    assert "sink refused" in retried["last_error"] and "hunter2" not in retried["last_error"]
    assert source.fetch(10).changes == []  # not due yet

    time.sleep(0.8)
    again = source.fetch(10)
    assert _ids(again) == [failing]
    assert _claim(again).attempts == {failing: 2}
    assert "sink refused" in _claim(again).last_errors[failing]


def test_retry_with_a_long_delay_sets_next_attempt_at_from_the_database_clock(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    _seed(clean_postgres, 1)
    source.retry(source.fetch(10), "later", delay_seconds=3600)
    with clean_postgres.begin() as conn:
        delay = conn.execute(
            text("SELECT extract(epoch FROM next_attempt_at - now()) FROM outbox_events")
        ).scalar_one()
    assert 3590 < float(delay) <= 3600
    assert source.fetch(10).changes == []


def test_attempts_count_every_claim_and_exhausted_names_rows_at_max_attempts(
    clean_postgres: Engine,
) -> None:
    (event_id,) = _seed(clean_postgres, 1)
    source = PgOutboxSource(clean_postgres, owner="w", max_attempts=3)
    assert source.max_attempts == 3
    for attempt in (1, 2):
        batch = source.fetch(10)
        assert _claim(batch).attempts == {event_id: attempt}
        assert source.exhausted(batch) == []
        source.retry(batch, f"failure {attempt}", 0)
    batch = source.fetch(10)
    assert _claim(batch).attempts == {event_id: 3}
    assert source.exhausted(batch) == [event_id]

    source.bury(batch, "failure 3")
    row = _rows(clean_postgres)[event_id]
    assert (row["status"], row["attempts"], row["last_error"]) == ("dead", 3, "failure 3")
    assert source.fetch(10).changes == []
    assert source.backlog() == 0


def test_release_gives_the_batch_back_and_keeps_the_last_error(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    (event_id,) = _seed(clean_postgres, 1)
    source.retry(source.fetch(10), "first failure", 0)
    source.release(source.fetch(10), 0)
    row = _rows(clean_postgres)[event_id]
    assert (row["status"], row["last_error"], row["attempts"]) == ("pending", "first failure", 2)
    assert _claim(source.fetch(10)).attempts == {event_id: 3}


def test_an_unreadable_row_is_buried_at_once_and_does_not_block_the_rest(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    with clean_postgres.begin() as conn:
        (bad,) = _insert(conn, [_event_row(topic="lead.frobnicate")])
        (good,) = _insert(conn, [_event_row()])
    batch = source.fetch(10)
    assert _ids(batch) == [good]
    assert _claim(batch).rejected == (bad,)
    row = _rows(clean_postgres)[bad]
    assert row["status"] == "dead" and "unreadable" in row["last_error"]
    source.ack(batch)
    assert source.backlog() == 0


# -- backlog ----------------------------------------------------------------


def test_backlog_and_oldest_pending_age(clean_postgres: Engine, source: PgOutboxSource) -> None:
    assert source.backlog() == 0
    assert source.oldest_pending_age() is None

    now = utc_now()
    with clean_postgres.begin() as conn:
        (old,) = _insert(
            conn,
            [
                _event_row(
                    occurred_at=now - timedelta(seconds=120),
                    next_attempt_at=now - timedelta(seconds=120),
                )
            ],
        )
        (recent,) = _insert(
            conn, [_event_row(occurred_at=now - timedelta(seconds=10), next_attempt_at=now)]
        )
        _insert(conn, [_event_row(status="done"), _event_row(status="dead")])
    assert source.backlog() == 2
    age = source.oldest_pending_age()
    assert age is not None and 119 < age < 180

    batch = source.fetch(1)
    assert _ids(batch) == [old]
    assert source.backlog() == 2  # in flight still counts
    source.ack(batch)
    assert source.backlog() == 1
    age = source.oldest_pending_age()
    assert age is not None and 9 < age < 60

    source.bury(source.fetch(10), "given up")
    assert source.backlog() == 0
    assert source.oldest_pending_age() is None
    assert recent in _rows(clean_postgres)


# -- misuse ----------------------------------------------------------------


def test_settling_needs_a_claim_of_this_kind_and_ids_from_it(
    clean_postgres: Engine, source: PgOutboxSource
) -> None:
    _seed(clean_postgres, 1)
    batch = source.fetch(10)
    with pytest.raises(ValidationFailed):
        source.ack(ChangeBatch(changes=list(batch.changes), token="cursor-123"))
    with pytest.raises(ValidationFailed):
        source.retry(batch, "x", 0, event_ids=[new_id()])
    with pytest.raises(ValidationFailed):
        source.retry(batch, "x", -1)
    with pytest.raises(ValidationFailed):
        source.fetch(0)
    source.ack(_claim(batch))  # the claim itself is accepted too
    assert {r["status"] for r in _rows(clean_postgres).values()} == {"done"}


@pytest.mark.parametrize(
    "options",
    [
        {"owner": ""},
        {"owner": "w", "lease_seconds": 0},
        {"owner": "w", "lease_seconds": float("nan")},
        {"owner": "w", "max_attempts": 0},
    ],
)
def test_bad_settings_are_refused(migrationkit_engine: Engine, options: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        PgOutboxSource(migrationkit_engine, **options)


def test_the_claim_uses_the_claimable_partial_index(clean_postgres: Engine) -> None:
    with clean_postgres.begin() as conn:
        _insert(conn, [_event_row(status="done") for _ in range(2000)])
        _insert(conn, [_event_row() for _ in range(5)])
        conn.execute(text("ANALYZE outbox_events"))
    source = PgOutboxSource(clean_postgres, owner="w")
    compiled = source._claim.compile(dialect=clean_postgres.dialect)
    params = {**compiled.params, "limit": 10, "held_by": "w/x", "lease_for": timedelta(1)}
    with clean_postgres.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        plan = driver.execute(f"EXPLAIN {compiled}", params).fetchall()
        conn.rollback()
    assert "ix_outbox_events_claimable" in "\n".join(str(r[0]) for r in plan)
