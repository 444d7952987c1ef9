"""MirrorWriter on a real PostgreSQL: the _ts guard, tombstones, checks, one transaction."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field
from sqlalchemy import Engine, text

from migrationkit.errors import UnknownEntity, ValidationFailed
from migrationkit.mirror import ConvexJson, MirrorDocument, MirrorTable, RefersTo
from migrationkit.mirror.model import register_mirror, unregister_mirrors
from migrationkit.mirror.rows import MirrorRevision
from migrationkit.mirror.writer import MirrorWriter
from migrationkit.schema.metadata import current_metadata, metadata

pytestmark = pytest.mark.postgres

SCHEMA = "mk_writer_test"


class Member(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(
        convex_table="members", pg_table="members", pg_schema=SCHEMA, workspace_field="teamId"
    )

    name: str
    team_id: str = Field(alias="teamId")
    credits: int
    score: float | None = None
    avatar: bytes | None = None
    role: Literal["admin", "member"]
    profile: Annotated[Any, ConvexJson()]
    manager: Annotated[str, RefersTo("members")] | None = None


@pytest.fixture
def writer(migrationkit_engine: Engine) -> Iterator[MirrorWriter]:
    register_mirror(Member)
    table = current_metadata().tables[f"{SCHEMA}.members"]
    with migrationkit_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        table.create(conn)
    yield MirrorWriter(migrationkit_engine)
    unregister_mirrors([Member])
    metadata.remove(table)
    with migrationkit_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))


def doc(convex_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "_id": convex_id,
        "_creationTime": 1795367142625.125,
        "name": "Ada",
        "teamId": "team-a",
        "credits": 2**62 + 1,
        "role": "admin",
        "profile": {"visits": 3, "key": b"\x00\xff", "ratio": 0.5, "tags": ["x"]},
    }
    return base | fields


def upsert(convex_id: str, ts: int, **fields: Any) -> MirrorRevision:
    return MirrorRevision("members", convex_id, ts, False, doc(convex_id, **fields))


def delete(convex_id: str, ts: int) -> MirrorRevision:
    return MirrorRevision("members", convex_id, ts, True, {})


def rows(engine: Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        found = conn.execute(
            text(f"SELECT _id, _ts, _deleted, name, workspace_id FROM {SCHEMA}.members")
        ).all()
    return {r[0]: tuple(r[1:]) for r in found}


def test_values_are_stored_losslessly(writer: MirrorWriter) -> None:
    writer.write([upsert("m1", 10, avatar=b"\x01\x02", score=-0.0)])
    with writer.engine.connect() as conn:
        row = conn.execute(text(f"SELECT * FROM {SCHEMA}.members")).mappings().one()
    assert row["credits"] == 2**62 + 1
    assert row["_creation_time_ms"] == 1795367142625.125
    assert row["_creation_time"].isoformat() == "2026-11-22T17:05:42.625125+00:00"
    assert row["avatar"] == b"\x01\x02"
    assert row["workspace_id"] == "team-a"
    # Inside jsonb, Int64 and bytes keep Convex's encoded JSON.
    assert row["profile"] == {
        "visits": {"$integer": "AwAAAAAAAAA="},
        "key": {"$bytes": "AP8="},
        "ratio": 0.5,
        "tags": ["x"],
    }


def test_an_older_revision_never_overwrites_a_newer_one(writer: MirrorWriter) -> None:
    writer.write([upsert("m1", 20, name="new")])
    result = writer.write([upsert("m1", 10, name="old"), upsert("m1", 20, name="replayed")])
    assert result.applied == 0
    assert rows(writer.engine)["m1"] == (20, False, "new", "team-a")


def test_a_delete_leaves_a_tombstone_that_a_late_insert_cannot_undo(writer: MirrorWriter) -> None:
    writer.write([upsert("m1", 10)])
    writer.write([delete("m1", 30), delete("ghost", 31)])
    writer.write([upsert("m1", 20, name="late")])
    state = rows(writer.engine)
    assert state["m1"] == (30, True, None, None)
    assert state["ghost"] == (31, True, None, None)


# The test empties the table itself for each example.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 40)), max_size=30))
def test_any_order_and_any_duplicates_end_at_the_latest_revision(
    writer: MirrorWriter, revisions: list[tuple[str, int]]
) -> None:
    with writer.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {SCHEMA}.members"))
    events = [delete(i, ts) if ts % 4 == 0 else upsert(i, ts, name=f"v{ts}") for i, ts in revisions]
    shuffled = events * 2
    random.Random(len(events)).shuffle(shuffled)
    for start in range(0, len(shuffled), 7):
        writer.write(shuffled[start : start + 7])
    expected: dict[str, tuple[Any, ...]] = {}
    for revision in sorted(events, key=lambda r: r.ts):
        if revision.deleted:
            expected[revision.id] = (revision.ts, True, None, None)
        else:
            expected[revision.id] = (revision.ts, False, f"v{revision.ts}", "team-a")
    assert rows(writer.engine) == expected


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"credits": "12"}, "credits", "expected an int64, got a string"),
        ({"credits": 1.0}, "credits", "expected an int64, got a float64"),
        ({"role": "owner"}, "role", "expected one of"),
        ({"name": None}, "name", "is missing"),
        ({"name": "a\x00b"}, "name", "NUL"),
        ({"avatar": "AAEC"}, "avatar", "expected bytes"),
        ({"profile": {"k": "a\x00"}}, "profile", "NUL"),
    ],
)
def test_a_value_that_does_not_fit_is_named_and_nothing_is_written(
    writer: MirrorWriter, fields: dict[str, Any], field: str, problem: str
) -> None:
    writer.write([upsert("keep", 5)])
    with pytest.raises(ValidationFailed) as caught:
        writer.write(
            [upsert("ok", 10), upsert("bad", 11, **fields)], where=lambda i: f"line {i + 1}"
        )
    message = str(caught.value)
    assert "table members: document bad (line 2)" in message
    assert f"field {field!r}" in message
    assert problem in message
    assert set(rows(writer.engine)) == {"keep"}


def test_unknown_fields_and_unknown_tables_are_refused(writer: MirrorWriter) -> None:
    with pytest.raises(ValidationFailed, match="fields the model does not know: surprise"):
        writer.write([upsert("m1", 10, surprise=1)])
    with pytest.raises(UnknownEntity, match="no mirror model for Convex table 'nope'"):
        writer.write([MirrorRevision("nope", "x", 1, False, {"_id": "x"})])
    assert rows(writer.engine) == {}


def test_the_after_hook_commits_with_the_rows_or_not_at_all(writer: MirrorWriter) -> None:
    def fail(_conn: object) -> None:
        raise RuntimeError("crash between the rows and the cursor")

    with pytest.raises(RuntimeError):
        writer.write([upsert("m1", 10)], after=fail)
    assert rows(writer.engine) == {}
