"""Mirror models: a pydantic model per Convex table, in the table's own shape.

The kit's entities (``Entity``) carry ``id``, ``workspace_id`` and
``version`` because the kit wrote them. An existing app's documents carry
none of that: a mirror model describes a table as the app defined it, and
the mirror row is keyed by Convex's ``_id`` and ordered by ``_ts`` (the
commit timestamp of the revision), which every document has.

``migrationkit introspect`` writes these models; they can also be written by
hand. A field's annotation says how it is stored:

    annotation                           column
    -----------------------------------  --------------------------------
    str                                  text
    float                                double precision
    int                                  bigint (Convex Int64)
    bool                                 boolean
    bytes                                bytea
    Annotated[str, RefersTo("users")]    text, indexed (a v.id("users"))
    Literal["a", "b"]                    text with a CHECK
    Annotated[Any, ConvexJson()]         jsonb, values in Convex's encoded JSON
    X | None                             nullable (optional fields too)

A field's ``alias`` is its Convex name; the attribute name is the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from migrationkit.errors import UnknownEntity

__all__ = [
    "ConvexJson",
    "MirrorDocument",
    "MirrorTable",
    "RefersTo",
    "mirror_model_for",
    "register_mirror",
    "registered_mirrors",
]


@dataclass(frozen=True)
class RefersTo:
    """Marks a ``str`` field as a ``v.id(table)`` reference (indexed; a foreign
    key when ``foreign_key`` is set and the target table is mirrored too)."""

    table: str
    foreign_key: bool = False


@dataclass(frozen=True)
class ConvexJson:
    """Marks a field stored as ``jsonb``: nested objects, arrays, other unions.

    Values keep Convex's encoded JSON inside (``{"$integer": ...}`` for an
    Int64, ``{"$bytes": ...}`` for bytes), so nothing is lost.
    """


@dataclass(frozen=True)
class MirrorTable:
    """Where a Convex table comes from and where its mirror goes.

    ``workspace_field`` names the Convex field whose value fills the row's
    ``workspace_id`` column, which row-level security filters on. With
    ``document_only`` the table has no usable schema and each document is
    kept whole in one ``document`` column.
    """

    convex_table: str
    pg_table: str
    component: str = ""
    pg_schema: str | None = None
    workspace_field: str | None = None
    document_only: bool = False
    #: Convex fields left out of the mirror on purpose (config ``exclude``).
    excluded: tuple[str, ...] = ()

    @property
    def qualified_convex_name(self) -> str:
        return f"{self.component}/{self.convex_table}" if self.component else self.convex_table

    @property
    def qualified_pg_name(self) -> str:
        return f"{self.pg_schema}.{self.pg_table}" if self.pg_schema else self.pg_table


class MirrorDocument(BaseModel):
    """Base of every mirror model: the system fields every Convex document has."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    mirror: ClassVar[MirrorTable]

    id: str = Field(alias="_id")
    creation_time: float = Field(alias="_creationTime")


# Keyed by the Convex table's qualified name ("users", "ratelimiter/limits").
_MIRRORS: dict[str, type[MirrorDocument]] = {}


def register_mirror(model: type[MirrorDocument]) -> type[MirrorDocument]:
    """Class decorator: make ``model`` known to the schema layer and the sync."""
    table = getattr(model, "mirror", None)
    if not isinstance(table, MirrorTable):
        raise TypeError(f"{model.__name__} must set the class attribute 'mirror' (a MirrorTable)")
    key = table.qualified_convex_name
    existing = _MIRRORS.get(key)
    if existing is not None and existing.__qualname__ != model.__qualname__:
        raise ValueError(f"Convex table {key!r} is already mirrored by {existing.__name__}")
    # A module imported again (alembic, tests) replaces its own earlier class.
    _MIRRORS[key] = model
    return model


def registered_mirrors() -> list[type[MirrorDocument]]:
    """Every registered mirror model, in registration order."""
    return list(_MIRRORS.values())


def mirror_model_for(qualified_name: str) -> type[MirrorDocument]:
    """The model of a Convex table, by ``table`` or ``component/table``."""
    try:
        return _MIRRORS[qualified_name]
    except KeyError:
        known = ", ".join(sorted(_MIRRORS)) or "none"
        raise UnknownEntity(
            f"no mirror model for Convex table {qualified_name!r} (registered: {known})"
        ) from None


def unregister_mirrors(models: list[type[MirrorDocument]] | None = None) -> None:
    """Forget mirror models (all by default): for tests and reloads."""
    if models is None:
        _MIRRORS.clear()
        return
    for model in models:
        _MIRRORS.pop(model.mirror.qualified_convex_name, None)


def field_annotations(model: type[MirrorDocument]) -> dict[str, Any]:
    """The model's own fields (not the system ones), attribute name -> FieldInfo."""
    base = set(MirrorDocument.model_fields)
    return {name: info for name, info in model.model_fields.items() if name not in base}
