"""Rows of Convex's streaming export (``list_snapshot``, ``document_deltas``) as revisions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrationkit.errors import BadReply
from migrationkit.mirror.rows import MirrorRevision

__all__ = ["qualified_table", "revision_from_export"]

_DOCUMENT_SYSTEM_FIELDS = ("_id", "_creationTime")


def qualified_table(component: str, table: str) -> str:
    """``table`` for the app's own tables, ``component/table`` for a component's."""
    return f"{component}/{table}" if component else table


def revision_from_export(value: Mapping[str, Any]) -> MirrorRevision:
    """One exported row (already decoded: ``_ts`` an int) as a revision.

    Unknown ``_``-prefixed metadata is dropped: Convex may add more of it.
    """
    table = value.get("_table")
    if not isinstance(table, str):
        raise BadReply(f"an exported row has no '_table' (document {value.get('_id')!r})")
    component = value.get("_component") or ""
    if not isinstance(component, str):
        raise BadReply(f"an exported row of {table} has a non-string '_component'")
    deleted = bool(value.get("_deleted", False))
    document = (
        {}
        if deleted
        else {
            key: item
            for key, item in value.items()
            if not key.startswith("_") or key in _DOCUMENT_SYSTEM_FIELDS
        }
    )
    return MirrorRevision(
        table=qualified_table(component, table),
        id=str(value["_id"]),
        ts=int(value["_ts"]),
        deleted=deleted,
        document=document,
    )
