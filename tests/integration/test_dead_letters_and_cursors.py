"""DeadLetterStore and CursorStore on a real PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.dead_letters import (
    MAX_ERROR_LENGTH,
    DeadLetter,
    DeadLetterStore,
    scrub_error,
)
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.ids import new_id
from migrationkit.errors import ValidationFailed
from migrationkit.ports.cursors import CursorStore as CursorStorePort

pytestmark = pytest.mark.postgres

WS = "ws-dlq"
T0 = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)


def _upsert(**overrides: object) -> Change:
    entity_id = new_id()
    fields: dict[str, object] = {
        "event_id": new_id(),
        "entity": "lead",
        "kind": ChangeKind.UPSERT,
        "workspace_id": WS,
        "entity_id": entity_id,
        "version": 7,
        "data": {
            "id": entity_id,
            "workspace_id": WS,
            "email": "ünïcode@example.com",
            "score": 0.1,
            "big": 2**60 + 1,
            "tags": ["a", "b"],
            "profile": {"verified": True, "address": None, "notes": {"k": "v ✓"}},
        },
        "occurred_at": T0,
        "convex_id": "jd7abc123def456",
    }
    fields.update(overrides)
    return Change(**fields)  # type: ignore[arg-type]


def _delete() -> Change:
    change = _upsert(kind=ChangeKind.DELETE, version=8, convex_id=None)
    assert change.data is not None
    return replace(change, data={**change.data, "deleted_at": "2026-03-01T12:31:00.000Z"})


def _purge() -> Change:
    return Change(
        event_id=new_id(),
        entity="lead",
        kind=ChangeKind.PURGE,
        workspace_id=None,
        entity_id=None,
        version=9,
        data=None,
        occurred_at=T0 + timedelta(seconds=1),
        convex_id="jd7purged000001",
    )


@pytest.fixture
def store(clean_postgres: Engine) -> DeadLetterStore:
    return DeadLetterStore(clean_postgres)


# -- dead letters --------------------------------------------------------------


def test_dead_letters_rebuild_the_change_exactly(
    clean_postgres: Engine, store: DeadLetterStore
) -> None:
    audited = _upsert(
        audit={
            "id": new_id(),
            "workspace_id": WS,
            "actor": "user:1",
            "action": "create",
            "resource_type": "lead",
            "resource_id": "x",
            "before": None,
            "after": {"email": "a@example.com"},
            "at": "2026-03-01T12:30:00Z",
            "ip": None,
            "user_agent": None,
        }
    )
    changes = [_upsert(), _delete(), _purge(), audited]
    for n, change in enumerate(changes):
        store.add(change, consumer="postgres", source="convex_outbox", error=f"e{n}", attempts=n)

    for n, change in enumerate(changes):
        letter = store.get(change.event_id)
        assert isinstance(letter, DeadLetter)
        assert letter.change == change
        assert (letter.consumer, letter.source, letter.error, letter.attempts) == (
            "postgres",
            "convex_outbox",
            f"e{n}",
            n,
        )
        assert letter.kind is change.kind
        assert letter.occurred_at.tzinfo is not None
        assert letter.replayed_at is None
    upsert = store.get(changes[0].event_id)
    assert upsert is not None and upsert.data is not None
    assert upsert.data["big"] == 2**60 + 1 and isinstance(upsert.data["score"], float)
    # The audit entry rides along, so a replay adds it to the audit log too.
    kept = store.get(audited.event_id)
    assert kept is not None and kept.change.audit == audited.audit
    assert upsert.audit is None

    # A purge has no data: stored as SQL NULL, not as JSON null.
    with clean_postgres.begin() as conn:
        is_null = conn.execute(
            text("SELECT data IS NULL FROM dead_letters WHERE event_id = :id"),
            {"id": changes[2].event_id},
        ).scalar_one()
    assert is_null is True
    assert store.get(new_id()) is None


def test_list_is_oldest_failure_first_and_limited(store: DeadLetterStore) -> None:
    changes = [_upsert() for _ in range(4)]
    for change in changes:
        store.add(change, consumer="c", source="s", error="boom", attempts=5)
        time.sleep(0.002)
    assert [d.event_id for d in store.list()] == [c.event_id for c in changes]
    assert [d.event_id for d in store.list(limit=2)] == [c.event_id for c in changes[:2]]
    with pytest.raises(ValidationFailed):
        store.list(limit=0)


def test_adding_the_same_event_again_updates_it_in_place(store: DeadLetterStore) -> None:
    change = _upsert()
    store.add(change, consumer="c", source="s", error="first", attempts=5)
    first = store.get(change.event_id)
    time.sleep(0.01)
    store.add(change, consumer="c", source="s", error="second", attempts=9)
    second = store.get(change.event_id)

    assert store.count() == 1
    assert first is not None and second is not None
    assert (second.error, second.attempts) == ("second", 9)
    assert second.failed_at > first.failed_at
    assert second.change == change


def test_mark_replayed_hides_from_the_default_listing_until_it_fails_again(
    store: DeadLetterStore,
) -> None:
    replayed, waiting = _upsert(), _purge()
    for change in (replayed, waiting):
        store.add(change, consumer="c", source="s", error="boom", attempts=5)

    assert store.mark_replayed([replayed.event_id, new_id()]) == 1
    assert store.mark_replayed([replayed.event_id]) == 0
    assert [d.event_id for d in store.list()] == [waiting.event_id]
    assert store.count() == 1
    assert store.count(include_replayed=True) == 2
    listed = {d.event_id: d for d in store.list(include_replayed=True)}
    assert set(listed) == {replayed.event_id, waiting.event_id}
    assert listed[replayed.event_id].replayed_at is not None

    # The replay failed after all: dead again, listed again.
    store.add(replayed, consumer="c", source="s", error="still broken", attempts=6)
    again = store.get(replayed.event_id)
    assert again is not None and again.replayed_at is None
    assert store.count() == 2


def test_errors_are_stored_without_secrets_and_bounded(store: DeadLetterStore) -> None:
    secrets = [
        "s3cr3t-pw",
        "hunter2",
        "eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "prod:happy-animal-123|eyJ2MiI6ImFiYyJ9",
        "sk_live_abcdef",
    ]
    error = (
        "could not connect to postgresql://app:s3cr3t-pw@db.internal:5432/app;"
        " dsn password=hunter2; header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig;"
        ' deploy key prod:happy-animal-123|eyJ2MiI6ImFiYyJ9 {"api_key": "sk_live_abcdef"}'
        " nul:\x00 " + "x" * 10_000
    )
    change = _upsert()
    store.add(change, consumer="c", source="s", error=error, attempts=1)
    letter = store.get(change.event_id)
    assert letter is not None
    for secret in secrets:
        assert secret not in letter.error
    assert "db.internal:5432" in letter.error and "could not connect" in letter.error
    assert len(letter.error) <= MAX_ERROR_LENGTH
    assert letter.error.endswith("[truncated]")
    assert "\x00" not in letter.error

    other = _upsert()
    store.add(other, consumer="c", source="s", error=KeyError("token=abc123"), attempts=1)
    stored = store.get(other.event_id)
    assert stored is not None
    assert stored.error.startswith("KeyError:") and "abc123" not in stored.error


def test_scrub_error_keeps_an_ordinary_message_as_it_is() -> None:
    message = "lead 01J...: version 3 is older than stored version 5 (ValidationFailed)"
    assert scrub_error(message) == message


def test_dead_letter_input_is_checked(store: DeadLetterStore) -> None:
    with pytest.raises(ValidationFailed):
        store.add(_upsert(), consumer="", source="s", error="e", attempts=1)
    with pytest.raises(ValidationFailed):
        store.add(_upsert(), consumer="c", source="s", error="e", attempts=-1)
    with pytest.raises(ValidationFailed):
        store.mark_replayed("01JABCDEFGHJKMNPQRSTVWXYZ0")
    assert store.count(include_replayed=True) == 0


# -- cursors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        2**53 + 1,  # the first integer a float cannot hold
        1_772_368_215_123_456_789,  # a Convex nanosecond timestamp
        2**63 - 1,
        0,
    ],
)
def test_cursor_round_trips_exactly(clean_postgres: Engine, cursor: int) -> None:
    cursors = CursorStore(clean_postgres)
    assert cursors.load("convex_deltas") is None
    cursors.save("convex_deltas", cursor)
    loaded = cursors.load("convex_deltas")
    assert loaded == cursor and type(loaded) is int
    # Exact in the database too, not only after the way back.
    with clean_postgres.begin() as conn:
        stored = conn.execute(
            text("SELECT cursor::text FROM sync_cursors WHERE name = 'convex_deltas'")
        ).scalar_one()
    assert stored == str(cursor)


def test_cursor_save_overwrites_and_delete_forgets(clean_postgres: Engine) -> None:
    cursors = CursorStore(clean_postgres)
    assert isinstance(cursors, CursorStorePort)
    cursors.save("a", 2**53 + 1)
    cursors.save("a", 2**53 + 3)
    cursors.save("b", 5)
    assert (cursors.load("a"), cursors.load("b")) == (2**53 + 3, 5)
    with clean_postgres.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM sync_cursors")).scalar_one() == 2
    assert cursors.delete("a") is True
    assert cursors.delete("a") is False
    assert cursors.load("a") is None and cursors.load("b") == 5


@pytest.mark.parametrize("bad", [1.0e18, True, -1, 2**63, "123", None])
def test_cursor_values_that_would_not_be_exact_are_refused(
    clean_postgres: Engine, bad: object
) -> None:
    cursors = CursorStore(clean_postgres)
    with pytest.raises(ValidationFailed):
        cursors.save("x", bad)  # type: ignore[arg-type]
    assert cursors.load("x") is None


def test_cursor_names_are_checked(clean_postgres: Engine) -> None:
    cursors = CursorStore(clean_postgres)
    with pytest.raises(ValidationFailed):
        cursors.save("", 1)
    with pytest.raises(ValidationFailed):
        cursors.load("   ")
