"""Ids, cursors, queries, the registry and the error tree."""

from __future__ import annotations

from datetime import datetime

import pytest

from migrationkit.domain import Lead, ListQuery, SegmentQuery, model_for, new_id
from migrationkit.domain.clock import utc_now
from migrationkit.domain.cursor import decode_cursor, encode_cursor
from migrationkit.errors import (
    InvalidCursor,
    MigrationKitError,
    UnknownEntity,
    ValidationFailed,
)


def test_new_ids_are_ulids_in_creation_order() -> None:
    first = new_id()
    later = [new_id() for _ in range(3)]
    assert len(first) == 26 and first.isupper()
    assert all(i[:10] >= first[:10] for i in later)  # time prefix never goes back


def test_lowercase_id_is_normalized() -> None:
    lead_id = new_id()
    lead = Lead(id=lead_id.lower(), workspace_id="w", email="a@example.com")
    assert lead.id == lead_id


def test_clock_has_millisecond_precision_in_utc() -> None:
    now = utc_now()
    assert now.microsecond % 1000 == 0 and now.utcoffset() is not None


def test_cursor_round_trip_and_binding() -> None:
    last = new_id()
    cursor = encode_cursor(last, "w1", "lead", {"segment": "smb"})
    assert decode_cursor(cursor, "w1", "lead", {"segment": "smb"}) == last
    for workspace, filters in (("w2", {"segment": "smb"}), ("w1", {"segment": "startup"})):
        with pytest.raises(InvalidCursor):
            decode_cursor(cursor, workspace, "lead", filters)
    assert last not in cursor  # opaque, not the id in clear text


def test_queries_validate_on_construction() -> None:
    assert ListQuery(limit=10_000).limit == 10_000
    for bad in (0, -1, 10_001, 2.5, True, None):
        with pytest.raises(ValidationFailed):
            ListQuery(limit=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        SegmentQuery(created_after=datetime(2020, 1, 1))  # naive
    assert SegmentQuery(email_domain="Example.COM").email_domain == "example.com"


def test_unknown_entity_is_a_typed_error() -> None:
    assert model_for("lead") is Lead and model_for("leads") is Lead
    with pytest.raises(UnknownEntity, match="no entity or table named 'nope'"):
        model_for("nope")


def test_every_error_is_a_migrationkit_error() -> None:
    import migrationkit.errors as errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), MigrationKitError)


def test_validation_error_does_not_echo_the_input() -> None:
    with pytest.raises(ValidationFailed) as caught:
        Lead.parse({"workspace_id": "w", "email": "secret-value-not-an-email"})
    assert "secret-value" not in str(caught.value)
    assert caught.value.errors[0]["loc"] == ("email",)
