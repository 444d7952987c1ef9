"""The registry of entity models the kit knows about.

Table generation, codegen and the CLI iterate it; looking up a name that was
never registered is an ``UnknownEntity`` error, not a ``KeyError``.
"""

from __future__ import annotations

from typing import TypeVar

from migrationkit.domain.entity import Entity
from migrationkit.errors import UnknownEntity

E = TypeVar("E", bound=type[Entity])

_BY_NAME: dict[str, type[Entity]] = {}


def register(model: E) -> E:
    """Class decorator: make ``model`` known to schema generation and the CLI."""
    for attr in ("entity_name", "table_name"):
        if not isinstance(getattr(model, attr, None), str):
            raise TypeError(f"{model.__name__} must set the class attribute {attr!r}")
    existing = _BY_NAME.get(model.entity_name)
    if existing is not None and existing is not model:
        raise ValueError(f"entity name {model.entity_name!r} is already registered")
    _BY_NAME[model.entity_name] = model
    return model


def registered_models() -> list[type[Entity]]:
    """Every registered model, in registration order."""
    return list(_BY_NAME.values())


def model_for(name: str) -> type[Entity]:
    """The model registered under an entity name (``lead``) or table name (``leads``)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    for model in _BY_NAME.values():
        if model.table_name == name:
            return model
    raise UnknownEntity(f"no entity or table named {name!r} is registered")
