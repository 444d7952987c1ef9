"""Both stores' documents, whole, for a comparison document by document.

Reads everything: fine for tests, the demo and small tables; ``verify``
compares large ones by checksums instead. Absent optional fields and
explicit nulls are alike here, as PostgreSQL stores both as NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Engine

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.mirror.documents import live_documents
from migrationkit.mirror.feed import revision_from_export
from migrationkit.mirror.model import MirrorDocument

__all__ = ["Documents", "comparable", "convex_documents", "postgres_documents"]

#: ``_id`` -> document, per qualified Convex table name.
Documents = dict[str, dict[str, dict[str, Any]]]


def comparable(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document without null fields (PostgreSQL keeps absent and null alike)."""
    return {key: value for key, value in document.items() if value is not None}


def convex_documents(client: ConvexClient, tables: Iterable[str]) -> Documents:
    """Every live document of ``tables`` (``t`` or ``component/t``), at one snapshot."""
    out: Documents = {table: {} for table in tables}
    snapshot: int | None = None
    cursor: str | None = None
    while True:
        # No selection: every table of every component, one cut.
        page = client.list_snapshot(snapshot=snapshot, cursor=cursor)
        snapshot, cursor = page.snapshot, page.cursor
        for value in page.values:
            revision = revision_from_export(value)
            if revision.table in out:
                out[revision.table][revision.id] = comparable(revision.document)
        if not page.has_more:
            return out


def postgres_documents(engine: Engine, models: Iterable[type[MirrorDocument]]) -> Documents:
    """Every live row of the models' mirror tables, as Convex documents."""
    return {
        model.mirror.qualified_convex_name: {
            document["_id"]: comparable(document) for document in live_documents(engine, model)
        }
        for model in models
    }
