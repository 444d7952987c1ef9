"""Convex value types, as introspection reads them: a small tree.

A deployment describes its tables in JSON Schema (``/api/json_schemas``) and
an export ZIP in its own shape lines; both are read into this one form, from
which the models, the columns and the value checks are made. Kinds follow
Convex's validators (``v.string()`` is ``string``, ``v.number()``
``float64``, ``v.int64()`` ``int64``, ``v.id("t")`` ``id`` with ``table``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ConvexType",
    "FieldType",
    "TableSchema",
]

Kind = Literal[
    "string",
    "float64",
    "int64",
    "boolean",
    "bytes",
    "null",
    "id",
    "literal",
    "array",
    "object",
    "record",
    "union",
    "any",
]

LiteralValue = str | int | float | bool


@dataclass(frozen=True)
class ConvexType:
    """One Convex type; only the attributes of its ``kind`` are set."""

    kind: Kind
    #: ``id``: the table the id points into.
    table: str | None = None
    #: ``literal``: the value.
    value: LiteralValue | None = None
    #: ``array``: the element type; ``record``: the value type.
    items: ConvexType | None = None
    #: ``object``: its fields, in name order.
    fields: tuple[FieldType, ...] = ()
    #: ``union``: its members.
    members: tuple[ConvexType, ...] = ()

    def without_null(self) -> tuple[ConvexType, bool]:
        """The type with ``null`` taken out of a union, and whether it was there."""
        if self.kind == "null":
            return self, True
        if self.kind != "union":
            return self, False
        rest = tuple(m for m in self.members if m.kind != "null")
        if len(rest) == len(self.members):
            return self, False
        if len(rest) == 1:
            return rest[0], True
        return ConvexType("union", members=rest), True

    def string_literals(self) -> tuple[str, ...] | None:
        """The values of a literal (or a union of literals) that are all strings."""
        if self.kind == "literal" and isinstance(self.value, str):
            return (self.value,)
        if self.kind == "union" and self.members:
            values: list[str] = []
            for member in self.members:
                if member.kind != "literal" or not isinstance(member.value, str):
                    return None
                values.append(member.value)
            return tuple(values)
        return None


@dataclass(frozen=True)
class FieldType:
    """A top-level (or nested object) field: ``v.optional(...)`` makes it optional."""

    name: str
    type: ConvexType
    optional: bool = False


@dataclass(frozen=True)
class TableSchema:
    """One table of a deployment, with its fields, or the reason it has none.

    ``fallback`` is set when the table's documents have no single object
    shape: ``NoSchemaForExport`` (no schema, or nothing inferable) or
    ``UnsupportedSchemaForExport`` (e.g. a union of objects). Such a table
    is kept whole in one ``jsonb`` document column.
    """

    name: str
    component: str = ""
    fields: tuple[FieldType, ...] = ()
    fallback: str | None = None
    #: Anything the reader wants the user to see in the generated module.
    notes: tuple[str, ...] = field(default=())

    @property
    def qualified_name(self) -> str:
        """``table`` for the app's own tables, ``component/table`` for a component's."""
        return f"{self.component}/{self.name}" if self.component else self.name
