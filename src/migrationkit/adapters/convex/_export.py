"""Pages of Convex's streaming export: ``list_snapshot`` and ``document_deltas``.

Timestamps (``snapshot``, the deltas ``cursor``, each row's ``_ts``) are
int64 nanoseconds, well above 2**53: they arrive as bare JSON integers and
stay Python ``int`` here, never passing through a float. Every other field
is decoded as a Convex value (:func:`~migrationkit.adapters.convex.codec.decode_value`),
so ``_creationTime`` is a float and user fields keep their types. Unknown
``_``-prefixed metadata is kept as it came: new fields may appear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrationkit.adapters.convex.codec import decode_at, format_path
from migrationkit.errors import BadReply

__all__ = ["DeltaPage", "SnapshotPage", "parse_delta_page", "parse_snapshot_page"]

Document = dict[str, Any]


@dataclass(frozen=True)
class SnapshotPage:
    """One page of a consistent snapshot: at most 1024 documents of one table.

    Pass ``snapshot`` back on every later page so all pages read one cut, and
    ``cursor`` to continue; stop when ``has_more`` is false. The final
    ``snapshot`` is where ``document_deltas`` starts (no gap, no overlap).
    """

    values: list[Document]
    snapshot: int
    cursor: str | None
    has_more: bool


@dataclass(frozen=True)
class DeltaPage:
    """Revisions with ``_ts`` above the cursor asked for, in commit order.

    A row with ``_deleted`` true carries only ``_id`` and metadata. A page
    may be empty while ``has_more`` is true: loop on ``has_more``, and
    persist ``cursor`` only after applying the page.
    """

    values: list[Document]
    cursor: int
    has_more: bool


# ``fail(problem)`` builds the BadReply that names the call and the reply.
Fail = Callable[[str], BadReply]


def parse_snapshot_page(payload: object, fail: Fail) -> SnapshotPage:
    body = _object(payload, fail)
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise fail("'cursor' is neither a string nor null")
    return SnapshotPage(
        values=_rows(body, fail, deltas=False),
        snapshot=_timestamp(body.get("snapshot"), "snapshot", fail),
        cursor=cursor,
        has_more=_has_more(body, fail),
    )


def parse_delta_page(payload: object, fail: Fail) -> DeltaPage:
    body = _object(payload, fail)
    return DeltaPage(
        values=_rows(body, fail, deltas=True),
        cursor=_timestamp(body.get("cursor"), "cursor", fail),
        has_more=_has_more(body, fail),
    )


def _object(payload: object, fail: Fail) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise fail("not a JSON object")
    return payload


def _has_more(body: dict[str, Any], fail: Fail) -> bool:
    has_more = body.get("hasMore")
    if not isinstance(has_more, bool):
        raise fail("'hasMore' is not a boolean")
    return has_more


def _timestamp(value: object, where: str, fail: Fail) -> int:
    # A float here would already have lost the low bits of a nanosecond
    # timestamp: refuse it rather than round a cursor.
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{where} is not an integer timestamp")
    if value < 0:
        raise fail(f"{where} is negative")
    return value


def _rows(body: dict[str, Any], fail: Fail, *, deltas: bool) -> list[Document]:
    raw_values = body.get("values")
    if not isinstance(raw_values, list):
        raise fail("'values' is not a list")
    rows: list[Document] = []
    for index, raw in enumerate(raw_values):
        where = format_path(("values", index))
        if not isinstance(raw, dict):
            raise fail(f"{where} is not an object")
        if not isinstance(raw.get("_id"), str):
            raise fail(f"{where}._id is not a string")
        if deltas and not isinstance(raw.get("_deleted"), bool):
            raise fail(f"{where}._deleted is not a boolean")
        ts = _timestamp(raw.get("_ts"), f"{where}._ts", fail)
        row: Document = {}
        for key, value in raw.items():
            row[key] = ts if key == "_ts" else decode_at(value, ("values", index, key))
        rows.append(row)
    return rows
