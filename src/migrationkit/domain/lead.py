"""The example entity: a sales lead.

Nested objects and arrays are the point of the example: Convex documents are
free-form, PostgreSQL rows are not, and the kit must carry both exactly.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from migrationkit.domain.entity import Email, Entity, IndexSpec
from migrationkit.domain.registry import register


class Segment(StrEnum):
    STARTUP = "startup"
    ENTERPRISE = "enterprise"
    SMB = "smb"


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    street: str | None = None
    city: str | None = None
    country: str | None = None


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company: str | None = None
    title: str | None = None
    verified: bool = False
    links: list[str] = Field(default_factory=list)
    address: Address | None = None
    notes: dict[str, str] = Field(default_factory=dict)


@register
class Lead(Entity):
    entity_name = "lead"
    table_name = "leads"
    indexes = (
        IndexSpec(("segment",)),
        IndexSpec(("created_at",)),
    )

    email: Email
    segment: Segment | None = None
    score: float = Field(default=0.0, allow_inf_nan=False)
    tags: list[str] = Field(default_factory=list)
    profile: Profile | None = None
