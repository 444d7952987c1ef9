"""How each field of a mirror model is stored: one ``MirrorColumn`` per field.

Read once from the model's annotations; the table builder and the row
converter both use it, so the columns and the checks cannot disagree.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from migrationkit.mirror.model import ConvexJson, MirrorDocument, RefersTo, field_annotations

__all__ = ["SYSTEM_COLUMNS", "ColumnKindName", "MirrorColumn", "mirror_columns"]

ColumnKindName = Literal["text", "float64", "int64", "boolean", "bytes", "id", "enum", "json"]

#: Columns every mirror table has, before the model's own.
ID, CREATION_TIME, CREATION_TIME_MS, TS, DELETED, WORKSPACE, DOCUMENT = (
    "_id",
    "_creation_time",
    "_creation_time_ms",
    "_ts",
    "_deleted",
    "workspace_id",
    "document",
)
SYSTEM_COLUMNS = (ID, CREATION_TIME, CREATION_TIME_MS, TS, DELETED)


@dataclass(frozen=True)
class MirrorColumn:
    """One model field: its column, its Convex name and what it accepts."""

    column: str
    convex_name: str
    kind: ColumnKindName
    #: Absent or null is allowed (``v.optional`` or a union with ``v.null()``).
    nullable: bool
    enum_values: tuple[str, ...] = ()
    refers_to: RefersTo | None = None


def _unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """``Annotated[T, m...]`` -> (T, (m, ...)); anything else -> (it, ())."""
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:
        return annotation.__origin__, tuple(metadata)
    return annotation, ()


def _kind(annotation: Any, metadata: tuple[Any, ...], where: str) -> MirrorColumn | None:
    inner, extra = _unwrap(annotation)
    metadata = metadata + extra
    if any(isinstance(m, ConvexJson) for m in metadata):
        return MirrorColumn(where, where, "json", False)
    refers = next((m for m in metadata if isinstance(m, RefersTo)), None)
    if refers is not None:
        if inner is not str:
            raise TypeError(f"{where}: RefersTo marks a str field, not {inner!r}")
        return MirrorColumn(where, where, "id", False, refers_to=refers)
    if get_origin(inner) is Literal:
        values = get_args(inner)
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"{where}: only string literals become a text column with a CHECK")
        return MirrorColumn(where, where, "enum", False, enum_values=tuple(values))
    simple: dict[Any, ColumnKindName] = {
        str: "text",
        float: "float64",
        int: "int64",
        bool: "boolean",
        bytes: "bytes",
    }
    if inner in simple:
        return MirrorColumn(where, where, simple[inner], False)
    return None


@functools.cache
def mirror_columns(model: type[MirrorDocument]) -> tuple[MirrorColumn, ...]:
    """The model's own fields as columns, in declaration order."""
    out: list[MirrorColumn] = []
    for name, info in field_annotations(model).items():
        annotation: Any = info.annotation
        nullable = False
        origin = get_origin(annotation)
        if origin is Union or origin is types.UnionType:
            args = [a for a in get_args(annotation) if a is not type(None)]
            nullable = len(args) != len(get_args(annotation))
            if len(args) != 1:
                raise TypeError(
                    f"{model.__name__}.{name}: a union of several types is stored as jsonb:"
                    " annotate it Annotated[Any, ConvexJson()]"
                )
            annotation = args[0]
        found = _kind(annotation, tuple(info.metadata), name)
        if found is None:
            raise TypeError(f"{model.__name__}.{name}: no column type for {annotation!r}")
        out.append(
            MirrorColumn(
                column=name,
                convex_name=info.alias or name,
                kind=found.kind,
                # A JSON column holds null as SQL NULL too; whether the field
                # may be missing is the model's (its default) to say.
                nullable=nullable or not info.is_required(),
                enum_values=found.enum_values,
                refers_to=found.refers_to,
            )
        )
    return tuple(out)
