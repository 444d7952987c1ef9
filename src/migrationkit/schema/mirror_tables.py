"""Mirror models -> SQLAlchemy tables (alembic autogenerate reads them).

A mirror table is keyed by Convex's ``_id`` and holds, besides the model's
columns: ``_creation_time`` (timestamptz) with ``_creation_time_ms`` (the
raw float, so no fraction of a millisecond is lost), ``_ts`` (the commit
timestamp of the revision stored, int64 nanoseconds: the version guard
compares it), ``_deleted`` (a tombstone: the document was deleted at
``_ts``), and ``workspace_id`` when the model names a workspace field.

Every model column is nullable in the table, because a tombstone of a
document never seen has no values; one CHECK keeps the required ones
non-null on every live row. See docs/mirror-tables.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.types import TypeEngine

from migrationkit.mirror.columns import (
    CREATION_TIME,
    CREATION_TIME_MS,
    DELETED,
    DOCUMENT,
    ID,
    SYSTEM_COLUMNS,
    TS,
    WORKSPACE,
    MirrorColumn,
    mirror_columns,
)
from migrationkit.mirror.model import MirrorDocument, mirror_model_for
from migrationkit.schema.identifiers import quote_ident

__all__ = ["mirror_table_for", "sql_type"]


def sql_type(column: MirrorColumn) -> TypeEngine[Any]:
    types: dict[str, TypeEngine[Any]] = {
        "text": Text(),
        "id": Text(),
        "enum": Text(),
        "float64": Double(),
        "int64": BigInteger(),
        "boolean": Boolean(),
        "bytes": LargeBinary(),
        "json": JSONB(),
    }
    return types[column.kind]


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def mirror_table_for(model: type[MirrorDocument], metadata: MetaData) -> Table:
    """Build (once per metadata) the table that mirrors ``model``'s Convex table."""
    spec = model.mirror
    key = f"{spec.pg_schema}.{spec.pg_table}" if spec.pg_schema else spec.pg_table
    if key in metadata.tables:
        return metadata.tables[key]
    name = spec.pg_table
    columns: list[Any] = [
        Column(ID, Text(), primary_key=True),
        Column(CREATION_TIME, TIMESTAMP(timezone=True), nullable=True),
        Column(CREATION_TIME_MS, Double(), nullable=True),
        Column(TS, BigInteger(), nullable=False),
        Column(DELETED, Boolean(), nullable=False, server_default=text("false")),
    ]
    constraints: list[Any] = []
    indexes: list[tuple[str, list[str]]] = []
    if spec.workspace_field is not None:
        columns.append(Column(WORKSPACE, Text(), nullable=True))
        indexes.append((f"ix_{name}_{WORKSPACE}", [WORKSPACE]))
    own = mirror_columns(model)
    taken = {c.name for c in columns}
    if spec.document_only:
        columns.append(Column(DOCUMENT, JSONB(), nullable=True))
        required = [DOCUMENT]
    else:
        required = []
        for column in own:
            if column.column in taken or column.column in SYSTEM_COLUMNS:
                raise ValueError(
                    f"{model.__name__}.{column.column}: the column name is taken by a system"
                    " column; rename it in the mirror config"
                )
            args: list[Any] = []
            ref = column.refers_to
            if ref is not None and ref.foreign_key:
                target = mirror_model_for(ref.table).mirror
                target_key = (
                    f"{target.pg_schema}.{target.pg_table}" if target.pg_schema else target.pg_table
                )
                # Deferred: a backfill writes tables in any order, and the
                # change feed may deliver the referrer before its target.
                args.append(ForeignKey(f"{target_key}.{ID}", deferrable=True, initially="DEFERRED"))
            columns.append(Column(column.column, sql_type(column), *args, nullable=True))
            if column.enum_values:
                allowed = ", ".join(_quote_literal(v) for v in column.enum_values)
                constraints.append(
                    CheckConstraint(
                        f"{quote_ident(column.column)} IN ({allowed})",
                        name=f"{column.column}_allowed",
                    )
                )
            if ref is not None:
                indexes.append((f"ix_{name}_{column.column}", [column.column]))
            if not column.nullable:
                required.append(column.column)
    if required:
        live = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in required)
        constraints.append(CheckConstraint(f"{DELETED} OR ({live})", name="live_required"))
    table = Table(name, metadata, *columns, *constraints, schema=spec.pg_schema)
    for index_name, index_columns in indexes:
        Index(index_name, *(table.c[c] for c in index_columns))
    return table
