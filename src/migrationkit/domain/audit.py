"""The audit log: who changed what, one entry per write, in the write's own transaction.

The actor comes from the caller, never from a guess: a service sets it for
the work it does on someone's behalf, and every write inside sees it::

    with audit_context(actor="user:42", ip="203.0.113.9", user_agent="app/1.2"):
        repo.upsert("acme", {...})

The setting is a ``ContextVar``: it follows the call into the adapters
(same thread or task) without being threaded through the ports, and it
never leaks into another request's thread. A write outside any
``audit_context`` still gets its entry, with ``actor`` (and ``ip``,
``user_agent``) ``None``: "not given", which is the truth, rather than a
default such as the process user that would look like an answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from migrationkit.domain.entity import Entity
from migrationkit.domain.ids import EntityId, WorkspaceId, new_id
from migrationkit.errors import ValidationFailed

__all__ = [
    "AuditAction",
    "AuditContext",
    "AuditEntry",
    "audit_context",
    "current_audit_context",
]

#: Longest actor and user agent kept: both come from outside (a header, a
#: token claim), so they are bounded before they reach either store.
MAX_ACTOR = 256
MAX_USER_AGENT = 1024


class AuditAction(StrEnum):
    #: The entity did not exist in the store before.
    CREATE = "create"
    #: It existed (a soft-deleted one brought back included).
    UPDATE = "update"
    #: A soft delete.
    DELETE = "delete"


def _clean_text(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError(f"{what} holds a NUL character (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds a lone surrogate") from None
    if not value.strip():
        raise ValueError(f"{what} is blank: pass None when it is not known")
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return value


class _WhoFields(BaseModel):
    """Who made a write and from where: the part of an entry the caller gives."""

    actor: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    @field_validator("actor")
    @classmethod
    def _actor(cls, value: str | None) -> str | None:
        return _clean_text(value, "actor", MAX_ACTOR)

    @field_validator("user_agent")
    @classmethod
    def _user_agent(cls, value: str | None) -> str | None:
        return _clean_text(value, "user_agent", MAX_USER_AGENT)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        # An address, normalized (IPv6 compressed), so both stores hold the
        # same text for the same client and queries by ip match.
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError(f"ip {value!r} is not an IPv4 or IPv6 address") from None


class AuditContext(_WhoFields):
    """What ``audit_context`` holds; an empty one means "not given"."""

    model_config = ConfigDict(frozen=True, extra="forbid")


_NOT_GIVEN = AuditContext()
_CURRENT: ContextVar[AuditContext] = ContextVar("migrationkit_audit_context", default=_NOT_GIVEN)


@contextmanager
def audit_context(
    actor: str | None = None, *, ip: str | None = None, user_agent: str | None = None
) -> Iterator[AuditContext]:
    """Attribute every write made inside the block to ``actor`` (from ``ip``, with ``user_agent``).

    Bad values raise ``ValidationFailed`` here, at the edge, rather than
    failing a write later. Blocks nest; the inner one wins until it ends.
    """
    try:
        context = AuditContext(actor=actor, ip=ip, user_agent=user_agent)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic("audit context", exc) from None
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def current_audit_context() -> AuditContext:
    """The innermost ``audit_context`` of the caller, or an empty one."""
    return _CURRENT.get()


class AuditEntry(_WhoFields):
    """One write, as the audit log keeps it.

    ``before`` and ``after`` are the entity in the kit's JSON shape
    (``Entity.model_dump(mode="json")``): ``before`` is ``None`` for a
    create, and for a soft delete ``after`` is the row with ``deleted_at``
    set. ``at`` is the write's own timestamp (the entity's ``updated_at``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: EntityId = Field(default_factory=new_id)
    workspace_id: WorkspaceId
    action: AuditAction
    resource_type: str = Field(min_length=1, max_length=64)
    resource_id: EntityId
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    at: datetime

    @field_validator("at")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a time zone")
        return value.astimezone(UTC)

    @classmethod
    def for_write(
        cls,
        before: Entity | None,
        after: Entity,
        action: AuditAction,
        context: AuditContext | None = None,
    ) -> AuditEntry:
        """The entry for a write that took ``before`` (None: absent) to ``after``."""
        who = context if context is not None else current_audit_context()
        return cls.model_construct(
            id=new_id(),
            workspace_id=after.workspace_id,
            actor=who.actor,
            ip=who.ip,
            user_agent=who.user_agent,
            action=action,
            resource_type=type(after).entity_name,
            resource_id=after.id,
            before=None if before is None else before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
            at=after.updated_at,
        )

    @classmethod
    def parse(cls, data: Any, what: str = "audit entry") -> AuditEntry:
        """Validate ``data`` (a mapping in the JSON shape), raising ``ValidationFailed``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed.from_pydantic(what, exc) from None
