"""Entities <-> Convex documents, by the rules in ``schema.convex_fields``.

The same rules made the TypeScript validators, so a document this module
writes is one the generated functions accept, and a document they stored
reads back into the same entity.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from migrationkit.domain.entity import TRUSTED_STORE, Entity
from migrationkit.errors import BadReply
from migrationkit.schema.convex_fields import ConvexType, camel_case, convex_type

E = TypeVar("E", bound=Entity)

SYSTEM_FIELDS = ("_id", "_creationTime")


def ms_from_datetime(moment: datetime) -> float:
    # Whole milliseconds as a float: exact, since the kit's clock keeps ms.
    return float(round(moment.timestamp() * 1000))


def datetime_from_ms(ms: float) -> datetime:
    seconds, millis = divmod(round(ms), 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


def _to_convex(value: Any, shape: ConvexType) -> Any:
    if value is None:
        return None
    kind = shape.kind
    if kind == "nullable":
        assert shape.item is not None
        return _to_convex(value, shape.item)
    if kind == "timestamp":
        return ms_from_datetime(value)
    if kind in ("int", "number"):
        return float(value)
    if kind == "literal":
        return str(getattr(value, "value", value))
    if kind == "array":
        assert shape.item is not None
        return [_to_convex(v, shape.item) for v in value]
    if kind == "record":
        assert shape.item is not None
        return {k: _to_convex(v, shape.item) for k, v in value.items()}
    if kind == "object":
        assert shape.model is not None
        return model_to_convex(value, shape.model)
    return value


def _from_convex(value: Any, shape: ConvexType) -> Any:
    if value is None:
        return None
    kind = shape.kind
    if kind == "nullable":
        assert shape.item is not None
        return _from_convex(value, shape.item)
    if kind == "timestamp":
        return datetime_from_ms(value)
    if kind == "int":
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if kind == "array":
        assert shape.item is not None
        return [_from_convex(v, shape.item) for v in value]
    if kind == "record":
        assert shape.item is not None
        return {k: _from_convex(v, shape.item) for k, v in value.items()}
    if kind == "object":
        assert shape.model is not None
        return model_from_convex(value, shape.model)
    return value


@functools.cache
def _shapes(model: type[BaseModel]) -> dict[str, tuple[str, ConvexType]]:
    """Per field: its Convex name and shape (worked out once per model)."""
    return {
        name: (camel_case(name), convex_type(info.annotation))
        for name, info in model.model_fields.items()
    }


def model_to_convex(
    instance: BaseModel, model: type[BaseModel], exclude: frozenset[str] = frozenset()
) -> dict[str, Any]:
    return {
        convex_name: _to_convex(getattr(instance, name), shape)
        for name, (convex_name, shape) in _shapes(model).items()
        if name not in exclude
    }


def model_from_convex(document: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Field values by model name; fields absent from the document are left out,
    so the model's defaults apply."""
    return {
        name: _from_convex(document[convex_name], shape)
        for name, (convex_name, shape) in _shapes(model).items()
        if convex_name in document
    }


class DocumentCodec(Generic[E]):
    """One entity type's conversion to and from Convex documents."""

    def __init__(self, model: type[E]) -> None:
        self.model = model

    def to_document(self, entity: E, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        return model_to_convex(entity, self.model, exclude)

    def from_document(self, document: Mapping[str, Any]) -> E:
        """The entity in a stored document; system fields (``_id``...) are ignored."""
        fields = model_from_convex(document, self.model)
        try:
            return self.model.model_validate(fields, context=TRUSTED_STORE)
        except ValidationError as exc:
            raise BadReply(
                f"a stored {self.model.entity_name} document does not fit the model:"
                f" {exc.error_count()} problem(s), first at"
                f" {'.'.join(str(p) for p in exc.errors()[0]['loc'])}"
            ) from None
