"""Mirror rows -> Convex documents: what PostgreSQL holds, in Convex's terms.

The inverse of ``rows.RowMaker``: a live row read back becomes the document
it was made from (decoded Convex values, ``_id`` and ``_creationTime``
included, optional fields that were absent left out), so PostgreSQL and
Convex can be compared document by document.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Engine, select

from migrationkit.adapters.convex.codec import decode_value
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.mirror.columns import DOCUMENT, mirror_columns
from migrationkit.mirror.model import MirrorDocument
from migrationkit.schema.metadata import current_metadata
from migrationkit.schema.mirror_tables import mirror_table_for

__all__ = ["document_from_row", "live_documents"]


def _json(value: Any) -> Any:
    # psycopg hands jsonb back parsed (a JSON string is a str); Convex's
    # encoded JSON inside is then decoded.
    return decode_value(value)


def document_from_row(model: type[MirrorDocument], row: Mapping[Any, Any]) -> dict[str, Any]:
    """The Convex document a live mirror row holds."""
    document: dict[str, Any] = {"_id": row["_id"], "_creationTime": row["_creation_time_ms"]}
    if model.mirror.document_only:
        document.update(_json(row[DOCUMENT]))
        return document
    for column in mirror_columns(model):
        value = row[column.column]
        if value is None:
            continue  # an optional field that was absent (or null)
        if column.kind == "json":
            value = _json(value)
        elif column.kind == "bytes":
            value = bytes(value)
        document[column.convex_name] = value
    return document


def live_documents(engine: Engine, model: type[MirrorDocument]) -> Iterator[dict[str, Any]]:
    """Every live (not deleted) document of the model's mirror table, by ``_id``."""
    table = mirror_table_for(model, current_metadata())
    query = select(table).where(table.c._deleted.is_(False)).order_by(table.c._id)
    with translated_errors(), engine.connect() as conn:
        for row in conn.execute(query).mappings():
            yield document_from_row(model, row)
