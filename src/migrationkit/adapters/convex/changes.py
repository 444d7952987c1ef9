"""Convex documents and outbox rows -> ``Change``s, in the kit's JSON shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrationkit.adapters.convex.documents import DocumentCodec, datetime_from_ms
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.entity import Entity
from migrationkit.domain.outbox import OutboxEvent
from migrationkit.domain.registry import model_for


def outbox_event(row: Mapping[str, Any], codec: DocumentCodec[Any]) -> OutboxEvent:
    """A Convex outbox row as the kit's ``OutboxEvent``, payload in the kit's shape."""
    return OutboxEvent.model_validate(
        {
            "event_id": row["eventId"],
            "workspace_id": row["workspaceId"],
            "topic": row["topic"],
            "entity": row["entity"],
            "entity_id": row["entityId"],
            "version": int(row["version"]),
            "occurred_at": datetime_from_ms(row["occurredAt"]),
            "dedupe_key": row["dedupeKey"],
            "payload": codec.from_document(row["payload"]).model_dump(mode="json"),
        }
    )


class ChangeDecoder:
    """Decodes per entity, with one codec per model, made on first use."""

    def __init__(self) -> None:
        self._codecs: dict[str, DocumentCodec[Entity]] = {}

    def codec(self, entity_or_table: str) -> DocumentCodec[Entity]:
        model = model_for(entity_or_table)
        codec = self._codecs.get(model.entity_name)
        if codec is None:
            codec = self._codecs[model.entity_name] = DocumentCodec(model)
        return codec

    def from_outbox_row(self, row: Mapping[str, Any]) -> Change:
        """A Convex outbox row (``outbox:pending``) as a change."""
        event = outbox_event(row, self.codec(row["entity"]))
        return Change.from_event(event, convex_id=row["payload"].get("_id"))

    def from_delta_row(
        self, table: str, convex_id: str, ts: int, document: Mapping[str, Any]
    ) -> Change:
        """A change-feed revision of an entity table as a change.

        Its event id is derived from the revision (table, ``_id``, ``_ts``),
        so replaying a page after a crash yields the same ids and the sink's
        inbox recognises them.
        """
        event_id = f"convex:{table}:{convex_id}:{ts}"
        model = model_for(table)
        if not document:  # a hard delete: the feed names only the _id
            return Change(
                event_id=event_id,
                entity=model.entity_name,
                kind=ChangeKind.PURGE,
                workspace_id=None,
                entity_id=None,
                version=0,
                data=None,
                occurred_at=datetime_from_ms(ts / 1_000_000),
                convex_id=convex_id,
            )
        entity = self.codec(table).from_document(document)
        return Change(
            event_id=event_id,
            entity=entity.entity_name,
            kind=ChangeKind.DELETE if entity.is_deleted else ChangeKind.UPSERT,
            workspace_id=entity.workspace_id,
            entity_id=entity.id,
            version=entity.version,
            data=entity.model_dump(mode="json"),
            occurred_at=entity.updated_at,
            convex_id=convex_id,
        )
