"""Domain models: entities, queries, outbox events. No I/O here."""

from migrationkit.domain.entity import MANAGED_FIELDS, Entity, IndexSpec
from migrationkit.domain.ids import EntityId, WorkspaceId, new_id
from migrationkit.domain.lead import Address, Lead, Profile, Segment
from migrationkit.domain.outbox import Operation, OutboxEvent
from migrationkit.domain.query import MAX_LIMIT, ListQuery, Page, SegmentQuery
from migrationkit.domain.registry import model_for, register, registered_models

__all__ = [
    "MANAGED_FIELDS",
    "MAX_LIMIT",
    "Address",
    "Entity",
    "EntityId",
    "IndexSpec",
    "Lead",
    "ListQuery",
    "Operation",
    "OutboxEvent",
    "Page",
    "Profile",
    "Segment",
    "SegmentQuery",
    "WorkspaceId",
    "model_for",
    "new_id",
    "register",
    "registered_models",
]
