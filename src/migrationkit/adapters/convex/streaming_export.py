"""Convex streaming export: one consistent snapshot, then the changes after it.

``snapshot()`` walks ``list_snapshot`` pages, passing the first page's
``snapshot`` timestamp back on every later page so all pages read the same
cut, however many writes land meanwhile. ``changes(cursor)`` then walks
``document_deltas`` from that timestamp: deltas are exclusive of the cursor,
so snapshot + deltas have no gap and no overlap. It loops on ``hasMore``,
not on an empty page: the backend counts rows *read*, so a page can be empty
while more follow.

Deletes in the delta feed carry only ``_id``: a consumer maps them back to
its own row by the Convex id it stored (PostgreSQL's ``convex_id``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from migrationkit.adapters.convex.client import ConvexClient

# Metadata every exported row carries; anything else starting with "_" other
# than the document's own system fields is ignored, as new ones may appear.
_METADATA = ("_table", "_ts", "_deleted", "_component")
_DOCUMENT_SYSTEM_FIELDS = ("_id", "_creationTime")


@dataclass(frozen=True)
class ExportedRow:
    """One document revision from the export."""

    table: str
    id: str
    ts: int
    deleted: bool
    document: dict[str, Any] = field(default_factory=dict)  # empty for deletes


@dataclass(frozen=True)
class ChangePage:
    """The rows of one ``document_deltas`` page and the cursor to persist after applying them."""

    rows: list[ExportedRow]
    cursor: int


def exported_row(value: dict[str, Any]) -> ExportedRow:
    document = {
        key: item
        for key, item in value.items()
        if not key.startswith("_") or key in _DOCUMENT_SYSTEM_FIELDS
    }
    return ExportedRow(
        table=str(value["_table"]),
        id=str(value["_id"]),
        ts=int(value["_ts"]),
        deleted=bool(value.get("_deleted", False)),
        document={} if value.get("_deleted") else document,
    )


class StreamingExport:
    """Reads one table (or all) of a deployment through streaming export."""

    def __init__(
        self,
        client: ConvexClient,
        *,
        table_name: str | None = None,
        extra_params: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.extra_params = extra_params
        #: The timestamp of the cut ``snapshot()`` read, once it has started.
        self.snapshot_ts: int | None = None

    def snapshot(self) -> Iterator[ExportedRow]:
        """Every live document as of one timestamp, page by page."""
        cursor: str | None = None
        while True:
            page = self.client.list_snapshot(
                snapshot=self.snapshot_ts,
                cursor=cursor,
                table_name=self.table_name,
                extra_params=self.extra_params,
            )
            if self.snapshot_ts is None:
                self.snapshot_ts = page.snapshot
            for value in page.values:
                yield exported_row(value)
            if not page.has_more:
                return
            cursor = page.cursor

    def changes(self, cursor: int) -> Iterator[ChangePage]:
        """Pages of revisions committed after ``cursor``, until caught up.

        Persist each page's ``cursor`` only after its rows are applied: a
        crash in between then replays the page instead of skipping it.
        """
        while True:
            page = self.client.document_deltas(
                cursor=cursor, table_name=self.table_name, extra_params=self.extra_params
            )
            rows = [exported_row(value) for value in page.values]
            cursor = page.cursor
            yield ChangePage(rows=rows, cursor=cursor)
            if not page.has_more:
                return


class Replica:
    """An in-memory copy built from export rows: ``_id -> document``.

    The reference consumer, and what any sink must end up with: it keeps the
    newest ``_ts`` per id (tombstones included), so a revision that arrives
    late or twice changes nothing.
    """

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self._newest: dict[str, int] = {}

    def apply(self, rows: list[ExportedRow]) -> None:
        for row in rows:
            if row.ts <= self._newest.get(row.id, -1):
                continue
            self._newest[row.id] = row.ts
            if row.deleted:
                self.documents.pop(row.id, None)
            else:
                self.documents[row.id] = row.document
