"""The tables of a deployment that refuses json_schemas, read off list_snapshot pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from migrationkit.adapters.convex._export import SnapshotPage
from migrationkit.errors import BadReply, ValidationFailed
from migrationkit.mirror.convex_types import ConvexType, FieldType
from migrationkit.mirror.export_schema import SchemaInference, infer_schema
from migrationkit.mirror.introspect_snapshot import (
    SNAPSHOT_NOTE,
    Refusal,
    tables_from_snapshot,
)

SNAPSHOT = 1_700_000_000_000_000_123


def row(table: str, component: str = "", **fields: Any) -> dict[str, Any]:
    return {
        "_component": component,
        "_table": table,
        "_ts": 1,
        "_id": f"id-{table}",
        "_creationTime": 1.0,
        **fields,
    }


class Pages:
    """list_snapshot over fixed rows, two per page; records every call."""

    def __init__(self, rows: list[dict[str, Any]], *, by_component: bool = False) -> None:
        self.rows = rows
        # A real deployment may list only the app's tables without `component`.
        self.by_component = by_component
        self.calls: list[dict[str, Any]] = []

    def list_snapshot(
        self,
        *,
        snapshot: int | None = None,
        cursor: str | None = None,
        table_name: str | None = None,
        extra_params: Mapping[str, str | int] | None = None,
    ) -> SnapshotPage:
        params = dict(extra_params or {})
        self.calls.append({"snapshot": snapshot, "cursor": cursor, **params})
        wanted = params.get("component", "" if self.by_component else None)
        rows = [r for r in self.rows if wanted is None or r["_component"] == wanted]
        start = int(cursor or 0)
        page = rows[start : start + 2]
        more = start + 2 < len(rows)
        return SnapshotPage(page, SNAPSHOT, str(start + 2) if more else None, more)


def refused(code: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Convex refused json_schemas as a bad request ({code}: {message})",
        [{"loc": (), "msg": message, "type": code}],
    )


def test_the_refusal_codes_and_the_table_their_message_names() -> None:
    unsupported = refused(
        "UnsupportedSchemaForExport",
        'Schema for table "events" contains a union of object types, which is unsupported'
        " for streaming export",
    )
    assert Refusal.of(unsupported) == Refusal("UnsupportedSchemaForExport", "events")
    no_definition = refused(
        "NoTableDefinitionForExport",
        'The table "my table" does not have a schema, which is needed for streaming export.',
    )
    assert Refusal.of(no_definition) == Refusal("NoTableDefinitionForExport", "my table")
    nested = refused(
        "UnsupportedSchemaForExport",
        "Schema contains a union of objects, which is not supported for export",
    )
    assert Refusal.of(nested) == Refusal("UnsupportedSchemaForExport", None)
    no_schema = refused(
        "NoSchemaForExport", "There is no active schema, which is needed for streaming export."
    )
    assert Refusal.of(no_schema) == Refusal("NoSchemaForExport", None)
    assert str(Refusal.of(no_schema)) == "NoSchemaForExport"
    assert str(Refusal("UnsupportedSchemaForExport", "events")) == (
        'UnsupportedSchemaForExport, table "events"'
    )
    assert Refusal.of(refused("BadFormat", "format param must be one of")) is None
    assert Refusal.of(ValidationFailed("no details")) is None


def test_one_pinned_snapshot_each_table_inferred_the_named_table_whole() -> None:
    pages = Pages(
        [
            row("users", name="a", age=1.5),
            row("users", name="b"),
            row("events", kind="click", x=1.0),
            row("events", kind="view", page="/"),
            row("limits", "ratelimiter", key="k", count=3),
            row("_storage", sha256="x"),
        ]
    )
    found = tables_from_snapshot(pages, Refusal("UnsupportedSchemaForExport", "events"))
    assert [t.qualified_name for t in found.tables] == ["events", "ratelimiter/limits", "users"]
    events, limits, users = found.tables
    assert events.fallback == "UnsupportedSchemaForExport" and not events.fields
    assert "union of object types" in events.notes[0]
    assert users.fields == (
        FieldType("age", ConvexType("float64"), optional=True),
        FieldType("name", ConvexType("string")),
    )
    assert users.notes == (SNAPSHOT_NOTE,)
    assert limits.component == "ratelimiter" and limits.fallback is None
    assert found.unseen == []
    # Three pages, one snapshot: the first asks for none, the rest pin its.
    assert [c["snapshot"] for c in pages.calls] == [None, SNAPSHOT, SNAPSHOT]
    assert [c["cursor"] for c in pages.calls] == [None, "2", "4"]


def test_components_the_first_pass_did_not_show_are_listed_one_by_one() -> None:
    pages = Pages(
        [
            row("users", name="a"),
            row("limits", "ratelimiter", key="k"),
            row("jobs", "queue", state="done"),
        ],
        by_component=True,
    )
    found = tables_from_snapshot(
        pages,
        Refusal("NoSchemaForExport"),
        components=["ratelimiter", "queue", "missing"],
        expected=["users", "ratelimiter/limits", "missing/gone"],
    )
    names = [t.qualified_name for t in found.tables]
    assert names == ["missing/gone", "queue/jobs", "ratelimiter/limits", "users"]
    assert [c.get("component") for c in pages.calls] == [None, "missing", "queue", "ratelimiter"]
    assert all(c["snapshot"] == SNAPSHOT for c in pages.calls[1:])
    gone = found.tables[0]
    assert gone.fallback == "NoSchemaForExport" and gone.component == "missing"
    assert found.unseen == ["missing/gone"]


def test_a_named_table_in_no_document_is_still_listed_and_every_namesake_kept_whole() -> None:
    pages = Pages([row("events", kind="a"), row("events", "audit", kind="b")])
    found = tables_from_snapshot(pages, Refusal("NoTableDefinitionForExport", "events"))
    assert [(t.qualified_name, t.fallback) for t in found.tables] == [
        ("audit/events", "NoTableDefinitionForExport"),
        ("events", "NoTableDefinitionForExport"),
    ]
    nothing = tables_from_snapshot(Pages([]), Refusal("UnsupportedSchemaForExport", "events"))
    assert [(t.qualified_name, t.fallback) for t in nothing.tables] == [
        ("events", "UnsupportedSchemaForExport")
    ]
    assert nothing.unseen == ["events"]


def test_a_row_without_its_table_is_a_bad_reply() -> None:
    broken = {"_id": "x", "_ts": 1, "name": "a"}
    with pytest.raises(BadReply, match="_table"):
        tables_from_snapshot(Pages([{**broken, "_component": ""}]), Refusal("NoSchemaForExport"))


def test_incremental_inference_is_infer_schema() -> None:
    documents: list[dict[str, Any]] = [
        {"a": 1, "b": {"c": "x"}, "t": [1.5]},
        {"a": "s", "d": None, "b": {"c": "y", "e": b"\x00"}},
    ]
    inference = SchemaInference("t", "c")
    for document in documents:
        inference.add(document)
    assert inference.schema() == infer_schema("t", "c", documents)
    assert inference.schema("other note").notes == ("other note",)
    with pytest.raises(ValidationFailed, match="table c/t: document 3 is not a JSON object"):
        inference.add([1])  # type: ignore[arg-type]
