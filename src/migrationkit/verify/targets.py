"""What is compared for one table: its key, its version, its content columns,
and how a Convex document becomes a row of it.

Two kinds of table are verified the same way:

* an entity table (``leads``): keyed by ``(workspace_id, id)``, ordered by
  the entity's ``version``; a Convex document becomes the row the kit's
  codecs would store;
* a mirror table: keyed by ``_id``, ordered by ``_ts``; a document becomes
  the row ``RowMaker`` stores (tombstones are not rows here: only live
  documents are compared).

Content columns leave out what depends on the path a row took rather than
on the document: ``_ts`` (0 for rows imported from a ZIP) and the
timestamptz copy of ``_creationTime`` (its raw float is compared).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table

from migrationkit.adapters.convex.documents import DocumentCodec
from migrationkit.adapters.postgres.row_codec import RowCodec
from migrationkit.domain.entity import Entity
from migrationkit.mirror.feed import revision_from_export
from migrationkit.mirror.model import MirrorDocument
from migrationkit.mirror.rows import row_maker
from migrationkit.mirror.writer import copy_types
from migrationkit.schema.metadata import current_metadata, entity_table
from migrationkit.schema.mirror_tables import mirror_table_for
from migrationkit.schema.tables import snake_case

__all__ = ["VerifyTarget", "entity_target", "mirror_target"]


@dataclass(frozen=True)
class VerifyTarget:
    """One table to verify, and how to read its Convex side."""

    #: The scope's name: the entity (``lead``) or the Convex table (``users``,
    #: ``ratelimiter/limits``).
    name: str
    table: Table
    convex_table: str
    component: str
    key: tuple[str, ...]
    version: str
    workspace: str | None
    #: Columns whose values are compared (the key and version included).
    compared: tuple[str, ...]
    #: The columns a staging row holds, in order, and their COPY types.
    staged: tuple[str, ...]
    copy_types: tuple[str, ...]
    #: SQL: which PostgreSQL rows exist as documents (tombstones do not).
    live: str
    #: SQL with ``:cut``: rows written after the Convex cut (not comparable).
    changed_after: str
    #: The cut as the ``:cut`` parameter: nanoseconds, or a timestamp.
    cut_value: Callable[[int], Any]
    row_of: Callable[[Mapping[str, Any], str | None], tuple[Any, ...] | None]


def mirror_target(model: type[MirrorDocument]) -> VerifyTarget:
    spec = model.mirror
    table = mirror_table_for(model, current_metadata())
    maker = row_maker(model)
    names = maker.column_names
    skipped = {"_creation_time", "_ts", "_deleted"}
    compared = tuple(n for n in names if n not in skipped)
    index = {n: i for i, n in enumerate(names)}

    def row_of(value: Mapping[str, Any], workspace: str | None) -> tuple[Any, ...] | None:
        revision = revision_from_export(value)
        row = maker.row(revision)
        if workspace is not None and row[index["workspace_id"]] != workspace:
            return None
        return row

    return VerifyTarget(
        name=spec.qualified_convex_name,
        table=table,
        convex_table=spec.convex_table,
        component=spec.component,
        key=("_id",),
        version="_ts",
        workspace="workspace_id" if spec.workspace_field else None,
        compared=compared,
        staged=tuple(names),
        # The row maker hands jsonb over in jsonb's binary form, as bytes.
        copy_types=tuple(copy_types(table, names, jsonb_as_bytes=True)),
        live="NOT _deleted",
        changed_after="_ts > :cut",
        cut_value=lambda cut: cut,
        row_of=row_of,
    )


def entity_target(model: type[Entity]) -> VerifyTarget:
    table = entity_table(model)
    codec = DocumentCodec(model)
    rows = RowCodec(model)
    # The model's fields. Not convex_id: a row created in PostgreSQL (from
    # pg_primary on) learns no Convex id, though Convex gives its copy one.
    staged = tuple(snake_case(name) for name in model.model_fields)

    def row_of(value: Mapping[str, Any], workspace: str | None) -> tuple[Any, ...] | None:
        document = {k: v for k, v in value.items() if not k.startswith("_") or k == "_id"}
        if workspace is not None and document.get("workspaceId") != workspace:
            return None
        entity = codec.from_document(document)
        row = rows.to_row(entity)
        return tuple(row[c] for c in staged)

    return VerifyTarget(
        name=model.entity_name,
        table=table,
        convex_table=model.table_name,
        component="",
        key=("workspace_id", "id"),
        version="version",
        workspace="workspace_id",
        compared=staged,
        staged=staged,
        copy_types=tuple(copy_types(table, staged, jsonb_as_bytes=False)),
        live="TRUE",  # soft-deleted entities are rows in both stores
        # The entity's own clock: a write after the cut carries a later updated_at.
        changed_after="updated_at > :cut",
        cut_value=lambda cut: datetime.fromtimestamp(cut / 1e9, UTC),
        row_of=row_of,
    )
