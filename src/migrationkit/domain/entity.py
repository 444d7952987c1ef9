"""The base every entity model derives from.

A model is the single source of truth for an entity: the PostgreSQL table,
the Convex schema and the validation of every write all come from it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from migrationkit.domain.clock import utc_now
from migrationkit.domain.ids import EntityId, WorkspaceId, new_id
from migrationkit.errors import ValidationFailed

#: Fields the store manages; values a caller passes for them are replaced.
MANAGED_FIELDS = frozenset({"version", "created_at", "updated_at", "deleted_at"})

#: Validation context for data read back from a store the kit wrote: the
#: checks that are costly and already passed on the way in are skipped
#: (email syntax, unstorable characters); types and shapes are still checked.
TRUSTED_STORE = {"trusted_store": True}


def _from_trusted_store(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("trusted_store"))


@functools.lru_cache(maxsize=65_536)
def _normalized_email(value: str) -> tuple[str, str | None]:
    """(normalized address, problem): cached, since checking an address costs
    tens of microseconds and the same one recurs in every write of an entity."""
    try:
        # Normalizes the domain (lower case, IDNA); the local part is kept.
        return validate_email(value, check_deliverability=False).normalized, None
    except EmailNotValidError as exc:
        return value, f"not a valid email address: {exc}"


def _check_email(value: str, info: ValidationInfo) -> str:
    if _from_trusted_store(info):
        return value
    normalized, problem = _normalized_email(value)
    if problem is not None:
        raise ValueError(problem)
    return normalized


Email = Annotated[
    str,
    AfterValidator(_check_email),
    WithJsonSchema({"type": "string", "format": "email"}),
]


@dataclass(frozen=True)
class IndexSpec:
    """A secondary index declared on a model.

    Every query is scoped to a workspace, so each index leads with
    ``workspace_id``; ``fields`` are the columns after it.
    """

    fields: tuple[str, ...]
    name: str | None = None


_CONVEX_FIELD_NAME = re.compile(r"^[\x20-\x7e]{1,1024}$")


def is_convex_field_name(key: str) -> bool:
    """Convex takes non-empty names of at most 1024 printable ASCII characters,
    not starting with '$'."""
    return bool(_CONVEX_FIELD_NAME.match(key)) and not key.startswith("$")


def _unstorable(value: Any, path: str) -> str | None:
    """Why ``value`` (or something inside it) cannot be stored in every store."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} holds a NUL character (U+0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path} holds a lone surrogate"
        return None
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            problem = _unstorable(getattr(value, name), f"{path}.{name}")
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            # Map keys become Convex field names, which have rules of their own.
            if not isinstance(key, str) or not is_convex_field_name(key):
                return (
                    f"{path} has the key {key!r}: keys must be 1-1024 printable ASCII"
                    " characters, not starting with '$'"
                )
            problem = _unstorable(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _unstorable(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


class Entity(BaseModel):
    """Identity, tenancy, versioning and soft deletion shared by all entities.

    Subclasses set ``entity_name`` (singular, used in event topics) and
    ``table_name``, and may declare ``indexes``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    entity_name: ClassVar[str]
    table_name: ClassVar[str]
    indexes: ClassVar[tuple[IndexSpec, ...]] = ()

    id: EntityId = Field(default_factory=new_id)
    workspace_id: WorkspaceId
    version: int = Field(default=0, ge=0)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    deleted_at: datetime | None = None

    @field_validator("created_at", "updated_at", "deleted_at")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        # Naive datetimes are ambiguous once they cross a process boundary.
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a time zone")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _storable_strings(self, info: ValidationInfo) -> Self:
        # PostgreSQL text and JSONB cannot hold U+0000, no store takes a lone
        # surrogate, and Convex restricts object keys; refusing all of them
        # here keeps every adapter in agreement about what can be stored.
        if _from_trusted_store(info):
            return self
        for name in type(self).model_fields:
            problem = _unstorable(getattr(self, name), name)
            if problem:
                raise ValueError(problem)
        return self

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate ``data`` (a mapping or an instance), raising ``ValidationFailed``."""
        try:
            if isinstance(data, cls):
                return cls.model_validate(data.model_dump())
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed.from_pydantic(cls.entity_name, exc) from None
