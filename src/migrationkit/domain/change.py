"""Changes: one committed write, as the pipeline carries it between stores.

Whatever the source (a Convex outbox row, a Convex change-feed revision, a
PostgreSQL outbox row), a write becomes a ``Change`` whose ``data`` is the
entity in the kit's JSON shape (``Entity.model_dump(mode="json")``), so a
sink never needs to know where it came from.

Which version a sink compares: ``version``, the entity's own counter, bumped
by one in the primary store's transaction on every write (deletes included).
It is the same number whether the change came from an outbox event or from
the change feed, so both paths order writes the same way. A sink applies a
change only if its version is newer than the stored one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from migrationkit.domain.outbox import OutboxEvent
from migrationkit.errors import ValidationFailed


class ChangeKind(StrEnum):
    UPSERT = "upsert"
    #: A soft delete: ``data`` holds the entity with ``deleted_at`` set.
    DELETE = "delete"
    #: A hard delete seen in Convex's change feed, which names only the
    #: Convex ``_id``; only an already soft-deleted row is removed.
    PURGE = "purge"


@dataclass(frozen=True)
class Change:
    event_id: str
    entity: str
    kind: ChangeKind
    workspace_id: str | None
    entity_id: str | None
    version: int
    data: dict[str, Any] | None
    occurred_at: datetime
    convex_id: str | None = None
    #: The write's audit entry (``AuditEntry`` in JSON shape), when the
    #: source recorded one: the sink adds it to its own audit log.
    audit: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind is ChangeKind.PURGE:
            if not self.convex_id:
                raise ValidationFailed(f"change {self.event_id}: a purge needs the Convex id")
            return
        if not (self.workspace_id and self.entity_id and isinstance(self.data, dict)):
            raise ValidationFailed(
                f"change {self.event_id}: an {self.kind.value} needs workspace, id and data"
            )
        if not isinstance(self.version, int) or self.version < 1:
            raise ValidationFailed(f"change {self.event_id}: version must be a positive integer")

    @classmethod
    def from_event(cls, event: OutboxEvent, convex_id: str | None = None) -> Change:
        return cls(
            event_id=event.event_id,
            entity=event.entity,
            kind=ChangeKind(event.operation.value),
            workspace_id=event.workspace_id,
            entity_id=event.entity_id,
            version=event.version,
            data=dict(event.payload),
            occurred_at=event.occurred_at,
            convex_id=convex_id,
            audit=None if event.audit is None else dict(event.audit),
        )
