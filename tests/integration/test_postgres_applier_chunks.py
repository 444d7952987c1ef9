"""PostgresApplier applying a batch in chunks, on a real PostgreSQL.

A large batch is checked and applied chunk by chunk in one transaction,
each chunk's statement running on the server while the next chunk is
checked. These tests use tiny chunks, so that every path that crosses a
chunk boundary is taken: duplicates and versions of one entity in
different chunks, a purge staged before the soft delete it needs, a bad
change or a server-side refusal after earlier chunks were sent, a
connection lost with a statement in flight, and appliers racing.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres import applier as applier_module
from migrationkit.adapters.postgres import make_engine
from migrationkit.adapters.postgres.applier import CHUNK_SIZE, PostgresApplier
from migrationkit.domain import Lead
from migrationkit.domain.change import Change
from migrationkit.domain.ids import new_id
from migrationkit.errors import Conflict, StoreUnavailable, ValidationFailed
from migrationkit.ports.changes import ApplyResult
from tests.integration.test_postgres_applier import (
    INBOX,
    _bad,
    _batches,
    change_of,
    histories,
    inbox,
    lead_version,
    purge,
    stored,
)

pytestmark = pytest.mark.postgres


def test_chunk_size_must_be_a_positive_integer(clean_postgres: Engine) -> None:
    for bad in (0, -1, 2.5, "10"):
        with pytest.raises(ValidationFailed, match="chunk_size"):
            PostgresApplier(clean_postgres, chunk_size=bad)  # type: ignore[arg-type]
    assert PostgresApplier(clean_postgres).chunk_size == CHUNK_SIZE


def test_versions_and_duplicates_across_chunks_end_at_the_latest(clean_postgres: Engine) -> None:
    applier = PostgresApplier(clean_postgres, chunk_size=1)
    lead_id = new_id()
    versions = [change_of(lead_version(lead_id, v)) for v in (1, 2, 3)]
    # One change per chunk, the same event three times among them.
    batch = [versions[2], versions[0], versions[2], versions[1], versions[2]]

    result = applier.apply(batch)

    assert stored(clean_postgres)[lead_id][0] == lead_version(lead_id, 3)
    assert result.duplicates == 2
    assert result.applied + result.stale == 3
    assert inbox(clean_postgres) == sorted(c.event_id for c in versions)


def test_a_purge_staged_before_its_soft_delete_still_sees_it(clean_postgres: Engine) -> None:
    applier = PostgresApplier(clean_postgres, chunk_size=1)
    lead_id = new_id()
    applier.apply([change_of(lead_version(lead_id, 1), convex_id="cx-1")])

    # A purge names no workspace or id and sorts into the first chunk; it
    # is applied after every chunk's writes all the same.
    batch = [change_of(lead_version(lead_id, 2, deleted=True)), purge("cx-1")]
    assert applier.apply(batch) == ApplyResult(applied=2)
    assert stored(clean_postgres) == {}


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("invalid data", ValidationFailed),
        ("wrong type", ValidationFailed),
        ("NUL in a nested string", ValidationFailed),
        ("version differs from the data's", ValidationFailed),
    ],
)
def test_a_bad_change_in_a_later_chunk_undoes_the_chunks_sent_before_it(
    clean_postgres: Engine, kind: str, error: type[Exception]
) -> None:
    applier = PostgresApplier(clean_postgres, chunk_size=1)
    existing = new_id()
    applier.apply([change_of(lead_version(existing, 1))])
    good = [change_of(lead_version(existing, 2)), change_of(lead_version(new_id(), 1))]
    bad = _bad(kind)  # a lead with the newest id: it sorts into the last chunk

    with pytest.raises(error, match=bad.event_id):
        applier.apply([bad, *good])

    assert stored(clean_postgres)[existing][0].version == 1
    assert len(stored(clean_postgres)) == 1
    assert not {c.event_id for c in good} & set(inbox(clean_postgres))
    # The connection went back to the pool idle: the next batch applies.
    assert applier.apply(good) == ApplyResult(applied=2)


def test_a_convex_id_clash_refused_by_the_server_in_a_later_chunk_names_the_event(
    clean_postgres: Engine,
) -> None:
    applier = PostgresApplier(clean_postgres, chunk_size=1)
    applier.apply([change_of(lead_version(new_id(), 1), convex_id="cx-taken")])
    fine = change_of(lead_version(new_id(), 1))
    clash = change_of(lead_version(new_id(), 1), convex_id="cx-taken")

    with pytest.raises(ValidationFailed, match=clash.event_id):
        applier.apply([clash, fine])
    assert fine.event_id not in inbox(clean_postgres)
    assert len(stored(clean_postgres)) == 1


def test_a_connection_lost_with_a_statement_in_flight_is_store_unavailable(
    clean_postgres: Engine, migrationkit_database_url: URL
) -> None:
    engine = make_engine(migrationkit_database_url, pool_size=1, max_overflow=0)
    try:
        applier = PostgresApplier(engine, chunk_size=2)
        batch = [change_of(lead_version(new_id(), 1)) for _ in range(6)]
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

        real_stage = applier_module.stage_changes
        calls = 0

        def stage_then_lose_the_server(*args: object, **kwargs: object) -> object:
            # Fault injection: the first chunk's statement has been sent when
            # the second chunk is checked; the server goes away then.
            nonlocal calls
            calls += 1
            if calls == 2:
                with clean_postgres.connect() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            return real_stage(*args, **kwargs)  # type: ignore[arg-type]

        with (
            mock.patch.object(applier_module, "stage_changes", stage_then_lose_the_server),
            pytest.raises(StoreUnavailable),
        ):
            applier.apply(batch)
        assert calls >= 2
        assert inbox(clean_postgres) == []

        assert applier.apply(batch) == ApplyResult(applied=6)
        assert len(stored(clean_postgres)) == 6
    finally:
        engine.dispose()


def test_two_appliers_racing_in_small_chunks_apply_each_event_once(
    clean_postgres: Engine, migrationkit_database_url: URL
) -> None:
    lead_ids = [new_id() for _ in range(40)]
    events = [change_of(lead_version(i, v)) for i in lead_ids for v in (1, 2, 3)]
    results: list[ApplyResult] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    # If a thread waited for the server while holding the GIL, the other
    # could never finish the transaction it waits on: the whole process
    # would hang. The lock timeout turns that hang into a failure.
    engine = make_engine(migrationkit_database_url, connect_args={"options": "-c lock_timeout=15s"})

    def run(order: Sequence[Change]) -> None:
        applier = PostgresApplier(engine, chunk_size=4)
        try:
            for start in range(0, len(order), 30):
                while True:
                    try:
                        result = applier.apply(order[start : start + 30])
                        break
                    except Conflict:  # a deadlock between the two: retry, as the worker does
                        continue
                with lock:
                    results.append(result)
        except BaseException as exc:
            failures.append(exc)

    orders = [random.Random(seed).sample(events, len(events)) for seed in (1, 2)]
    threads = [threading.Thread(target=run, args=(order,), daemon=True) for order in orders]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        engine.dispose()
    assert not any(thread.is_alive() for thread in threads), "the appliers hung"
    assert failures == []

    rows = stored(clean_postgres)
    assert {i: rows[i][0] for i in lead_ids} == {i: lead_version(i, 3) for i in lead_ids}
    assert sum(r.applied + r.stale for r in results) == len(events)
    assert sum(r.duplicates for r in results) == len(events)
    assert inbox(clean_postgres) == sorted(c.event_id for c in events)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=histories())
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_any_order_duplicates_batching_and_chunking_end_at_the_latest_versions(
    migrationkit_engine: Engine,
    chunk_size: int,
    case: tuple[dict[str, list[Lead]], list[Change], list[int]],
) -> None:
    leads, stream, cuts = case
    consumer = f"chunks-{new_id().lower()}"
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
