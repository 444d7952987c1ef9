"""Outbox events: the record every write leaves in the store it writes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from migrationkit.domain.audit import AuditEntry
from migrationkit.domain.entity import Entity
from migrationkit.domain.ids import new_id


class Operation(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class OutboxEvent(BaseModel):
    """One committed write, as a consumer will apply it to the other store.

    ``payload`` is the whole entity after the write (JSON-ready), deletes
    included, so a consumer never has to read the source back.
    ``dedupe_key`` is unique per (entity, workspace, id, version): a write can
    be recorded once only. ``audit`` is the write's audit entry
    (``AuditEntry`` in JSON shape), carried so the other store's copy of the
    audit log fills from the same event: one event per write, still.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    workspace_id: str
    topic: str
    entity: str
    entity_id: str
    version: int
    occurred_at: datetime
    dedupe_key: str
    payload: dict[str, Any]
    audit: dict[str, Any] | None = None

    @property
    def operation(self) -> Operation:
        return Operation(self.topic.rsplit(".", 1)[1])

    @classmethod
    def for_write(
        cls, entity: Entity, operation: Operation, audit: AuditEntry | None = None
    ) -> OutboxEvent:
        return cls.model_construct(**event_fields(entity, operation, audit))


def event_fields(
    entity: Entity, operation: Operation, audit: AuditEntry | None = None
) -> dict[str, Any]:
    """The fields of the event recording ``operation`` on ``entity`` (already stamped)."""
    name = type(entity).entity_name
    return {
        "event_id": new_id(),
        "workspace_id": entity.workspace_id,
        "topic": f"{name}.{operation.value}",
        "entity": name,
        "entity_id": entity.id,
        "version": entity.version,
        "occurred_at": entity.updated_at,
        "dedupe_key": dedupe_key(name, entity.workspace_id, entity.id, entity.version),
        "payload": entity.model_dump(mode="json"),
        "audit": None if audit is None else audit.model_dump(mode="json"),
    }


def dedupe_key(entity: str, workspace_id: str, entity_id: str, version: int) -> str:
    return f"{entity}:{workspace_id}:{entity_id}:{version}"
