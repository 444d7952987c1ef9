"""Input checks shared by every adapter, so they refuse the same things."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from migrationkit.domain.entity import Entity
from migrationkit.domain.ids import check_workspace_id
from migrationkit.errors import ValidationFailed

E = TypeVar("E", bound=Entity)


def prepare_upsert(model: type[E], workspace_id: Any, data: Any) -> E:
    """Validate an upsert's input and return the entity to write.

    The store then stamps the managed fields (version, timestamps); whatever
    the caller put there is ignored.
    """
    workspace = check_workspace_id(workspace_id)
    if isinstance(data, Entity):
        if not isinstance(data, model):
            raise ValidationFailed(
                f"invalid {model.entity_name}: got a {type(data).__name__}",
                [{"loc": (), "msg": f"expected a {model.__name__}"}],
            )
        fields: dict[str, Any] = data.model_dump()
    elif isinstance(data, Mapping):
        fields = dict(data)
    else:
        raise ValidationFailed(
            f"invalid {model.entity_name}: expected a mapping or a {model.__name__},"
            f" got {type(data).__name__}",
            [{"loc": (), "msg": "expected a mapping"}],
        )
    given = fields.get("workspace_id", workspace)
    if given != workspace:
        raise ValidationFailed(
            f"invalid {model.entity_name}: workspace_id in the data differs from the call's",
            [{"loc": ("workspace_id",), "msg": "differs from the workspace of the call"}],
        )
    fields["workspace_id"] = workspace
    return model.parse(fields)


def check_expected_version(expected_version: Any) -> int | None:
    if expected_version is None:
        return None
    if (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or (expected_version < 0)
    ):
        raise ValidationFailed(
            f"invalid expected_version {expected_version!r}: a non-negative integer",
            [{"loc": ("expected_version",), "msg": "a non-negative integer"}],
        )
    return expected_version


def check_query(query: Any, expected: type[Any]) -> Any:
    if query is None:
        return expected()
    if not isinstance(query, expected):
        raise ValidationFailed(
            f"invalid query: expected a {expected.__name__}, got {type(query).__name__}",
            [{"loc": ("query",), "msg": f"expected a {expected.__name__}"}],
        )
    return query
