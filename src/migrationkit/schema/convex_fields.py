"""How a model's fields look in a Convex document.

Convex code names fields in camelCase, keeps times as float milliseconds and
has one number type (Float64), so a model field maps to a Convex field by
these rules, shared by the TypeScript codegen and the Python codec:

* names: ``workspace_id`` -> ``workspaceId`` (nested models too; the keys of
  a ``dict`` field are data and stay as they are);
* ``datetime`` -> ``v.number()`` of milliseconds since the epoch;
* ``int`` and ``float`` -> ``v.number()`` (integers stay exact up to 2**53);
* an enum -> a union of its values as literals;
* ``list[X]`` -> ``v.array(X)``; ``dict[str, X]`` -> ``v.record(v.string(), X)``;
* a nested model -> ``v.object({...})``;
* ``X | None`` -> ``v.union(X, v.null())``; a field with a default may be
  absent from a document (``v.optional``), as older documents often are.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo


def camel_case(name: str) -> str:
    """``workspace_id`` -> ``workspaceId``; names without underscores are unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class ConvexType:
    """A field's Convex shape, and how its values convert."""

    kind: str  # string|boolean|number|int|timestamp|literal|array|record|object|nullable
    item: ConvexType | None = None  # array items, record values, the non-null side
    model: type[BaseModel] | None = None  # for objects
    literals: tuple[str, ...] = ()

    def validator(self, indent: int = 0) -> str:
        """The ``v`` expression; nested objects are laid out one field a line."""
        simple = {
            "string": "v.string()",
            "boolean": "v.boolean()",
            "number": "v.number()",
            "int": "v.number()",
            "timestamp": "v.number()",
        }
        if self.kind in simple:
            return simple[self.kind]
        if self.kind == "literal":
            return "v.union(" + ", ".join(f'v.literal("{x}")' for x in self.literals) + ")"
        assert self.item is not None or self.model is not None
        if self.kind == "array":
            assert self.item is not None
            return f"v.array({self.item.validator(indent)})"
        if self.kind == "record":
            assert self.item is not None
            return f"v.record(v.string(), {self.item.validator(indent)})"
        if self.kind == "nullable":
            assert self.item is not None
            if self.item.kind == "literal":  # one flat union reads better
                options = [f'v.literal("{x}")' for x in self.item.literals]
                return "v.union(" + ", ".join([*options, "v.null()"]) + ")"
            return f"v.union({self.item.validator(indent)}, v.null())"
        assert self.model is not None
        return "v.object({\n" + fields_source(self.model, indent + 2) + " " * indent + "})"


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) != len(get_args(annotation))
    return annotation, False


def convex_type(annotation: Any) -> ConvexType:
    inner, nullable = _strip_optional(annotation)
    base = _convex_type_of(inner)
    return ConvexType("nullable", item=base) if nullable else base


def _convex_type_of(annotation: Any) -> ConvexType:
    origin = get_origin(annotation)
    if origin is list:
        (item_annotation,) = get_args(annotation) or (Any,)
        return ConvexType("array", item=convex_type(item_annotation))
    if origin is dict:
        key, value_annotation = get_args(annotation)
        if key is not str:
            raise TypeError(f"Convex records need string keys, not {key!r}")
        return ConvexType("record", item=convex_type(value_annotation))
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return ConvexType("literal", literals=tuple(str(m.value) for m in annotation))
        for python_type, kind in (
            (bool, "boolean"),
            (int, "int"),
            (float, "number"),
            (datetime, "timestamp"),
            (str, "string"),
        ):
            if issubclass(annotation, python_type):
                return ConvexType(kind)
        if issubclass(annotation, BaseModel):
            return ConvexType("object", model=annotation)
    raise TypeError(f"no Convex type for annotation {annotation!r}")


# The entity base's own fields are always present in a stored document.
_ALWAYS_PRESENT = frozenset(
    {"id", "workspace_id", "version", "created_at", "updated_at", "deleted_at"}
)


def may_be_absent(name: str, info: FieldInfo) -> bool:
    """A field with a default may be missing from an older stored document."""
    return name not in _ALWAYS_PRESENT and not info.is_required()


def fields_source(model: type[BaseModel], indent: int, names: list[str] | None = None) -> str:
    """``name: validator,`` lines for a model's fields (or the named subset)."""
    lines = []
    for name in names if names is not None else list(model.model_fields):
        info = model.model_fields[name]
        validator = convex_type(info.annotation).validator(indent)
        if may_be_absent(name, info):
            validator = f"v.optional({validator})"
        lines.append(f"{' ' * indent}{camel_case(name)}: {validator},\n")
    return "".join(lines)
