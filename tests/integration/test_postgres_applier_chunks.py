"""PostgresApplier applying a batch in chunks, on a real PostgreSQL.

A large batch is checked and applied chunk by chunk in one transaction,
each chunk's statement running on the server while the next chunk is
checked. These tests use tiny chunks, so that paths crossing a chunk
boundary are taken: versions and duplicates of one entity in different
chunks, a purge staged before the soft delete it needs, and a connection
lost with a statement in flight. (A bad change or a refused clash in a
later chunk, two appliers racing in chunks, and the property over chunk
sizes are in ``test_postgres_applier``, beside the one-chunk cases.)
"""

from __future__ import annotations

from unittest import mock

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres import applier as applier_module
from migrationkit.adapters.postgres import make_engine
from migrationkit.adapters.postgres.applier import CHUNK_SIZE, PostgresApplier
from migrationkit.domain.ids import new_id
from migrationkit.errors import StoreUnavailable, ValidationFailed
from migrationkit.ports.changes import ApplyResult
from tests.integration.test_postgres_applier import (
    change_of,
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
