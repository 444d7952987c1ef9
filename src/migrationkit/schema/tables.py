"""Registered models -> SQLAlchemy tables.

This is the only description of the PostgreSQL schema: alembic's
autogenerate and the adapters read the ``Table`` objects made here. The
mapping is:

* ``str`` -> ``text``; ``int`` -> ``bigint``; ``float`` ->
  ``double precision``; ``bool`` -> ``boolean``; ``datetime`` -> ``timestamptz``
* an enum -> ``text`` with a ``CHECK`` listing its values
* nested models, lists and dicts -> ``jsonb`` (Convex documents nest freely)
* ``X | None`` -> nullable; everything else ``NOT NULL``
* primary key ``(workspace_id, id)``; a unique, nullable ``convex_id`` keeps
  Convex's own ``_id``, which its change feed names deletes by
* each ``IndexSpec`` on the model -> an index led by ``workspace_id``
"""

from __future__ import annotations

import enum
import re
import types
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.types import TypeEngine

from migrationkit.domain.entity import Entity

# Deterministic constraint names keep alembic migrations reproducible.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


def snake_case(name: str) -> str:
    """``createdAt`` -> ``created_at``; already snake_case names are unchanged."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True)
class ColumnKind:
    """How one model field is stored: its SQL type and whether it goes through JSON."""

    sql_type: TypeEngine[Any]
    nullable: bool
    is_json: bool
    enum_values: tuple[str, ...] = ()


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(get_args(annotation))
        if len(args) == 1:
            return args[0], nullable
        return annotation, nullable
    return annotation, False


def column_kind(annotation: Any) -> ColumnKind:
    inner, nullable = _strip_optional(annotation)
    origin = get_origin(inner)
    if origin is not None:  # list[...], dict[...], unions of several types
        return ColumnKind(JSONB(), nullable, is_json=True)
    if isinstance(inner, type):
        if issubclass(inner, enum.Enum):
            values = tuple(str(m.value) for m in inner)
            return ColumnKind(Text(), nullable, is_json=False, enum_values=values)
        if issubclass(inner, bool):
            return ColumnKind(Boolean(), nullable, is_json=False)
        if issubclass(inner, int):
            return ColumnKind(BigInteger(), nullable, is_json=False)
        if issubclass(inner, float):
            return ColumnKind(Double(), nullable, is_json=False)
        if issubclass(inner, datetime):
            return ColumnKind(TIMESTAMP(timezone=True), nullable, is_json=False)
        if issubclass(inner, BaseModel | list | dict):
            return ColumnKind(JSONB(), nullable, is_json=True)
        if issubclass(inner, str):
            return ColumnKind(Text(), nullable, is_json=False)
    raise TypeError(f"no column type for annotation {annotation!r}")


def field_kinds(model: type[Entity]) -> dict[str, ColumnKind]:
    """Column kind per model field name, in declaration order."""
    return {name: column_kind(info.annotation) for name, info in model.model_fields.items()}


def table_for(model: type[Entity], metadata: MetaData) -> Table:
    """Build (once per metadata) the table that stores ``model``."""
    if model.table_name in metadata.tables:
        return metadata.tables[model.table_name]
    columns: list[Any] = []
    constraints: list[Any] = []
    for name, kind in field_kinds(model).items():
        column_name = snake_case(name)
        server_default = None
        if kind.is_json and not kind.nullable:
            default = model.model_fields[name].get_default(call_default_factory=True)
            if isinstance(default, list):
                server_default = text("'[]'::jsonb")
            elif isinstance(default, dict):
                server_default = text("'{}'::jsonb")
        columns.append(
            Column(
                column_name, kind.sql_type, nullable=kind.nullable, server_default=server_default
            )
        )
        if kind.enum_values:
            allowed = ", ".join(f"'{v}'" for v in kind.enum_values)
            constraints.append(
                CheckConstraint(f"{column_name} IN ({allowed})", name=f"{column_name}_allowed")
            )
    columns.append(Column("convex_id", Text(), nullable=True, unique=True))
    constraints.append(PrimaryKeyConstraint("workspace_id", "id"))
    table = Table(model.table_name, metadata, *columns, *constraints)
    for spec in model.indexes:
        names = ["workspace_id", *(snake_case(f) for f in spec.fields)]
        index_name = spec.name or f"ix_{model.table_name}_{'_'.join(names)}"
        Index(index_name, *(table.c[n] for n in names))
    return table
