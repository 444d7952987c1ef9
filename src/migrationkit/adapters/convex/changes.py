"""Convex documents and outbox rows -> ``Change``s, in the kit's JSON shape.

Audit rows too: Convex keeps them as documents (camelCase, times in
milliseconds, ``before``/``after`` as the entity's Convex fields); the kit
as ``AuditEntry`` with ``before``/``after`` in the entity's JSON shape, as
PostgreSQL's ``audit_logs`` holds them. Both directions go through the
entity's own ``DocumentCodec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from migrationkit.adapters.convex.documents import (
    DocumentCodec,
    datetime_from_ms,
    ms_from_datetime,
)
from migrationkit.domain.audit import AuditEntry
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.entity import TRUSTED_STORE, Entity
from migrationkit.domain.outbox import OutboxEvent
from migrationkit.domain.registry import model_for
from migrationkit.errors import BadReply, ValidationFailed


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
            "audit": None if row.get("audit") is None else audit_entry(row["audit"], codec),
        }
    )


def _entity_json(document: Any, codec: DocumentCodec[Any]) -> dict[str, Any] | None:
    return None if document is None else codec.from_document(document).model_dump(mode="json")


def audit_entry(document: Mapping[str, Any], codec: DocumentCodec[Any]) -> dict[str, Any]:
    """A Convex ``auditLogs`` document as an ``AuditEntry`` in JSON shape.

    ``codec`` is the audited entity's; the document says which that is.
    """
    if document.get("resourceType") != codec.model.entity_name:
        raise BadReply(
            f"an audit row about a {document.get('resourceType')!r} came with a"
            f" {codec.model.entity_name} event"
        )
    fields = {
        "id": document.get("id"),
        "workspace_id": document.get("workspaceId"),
        "actor": document.get("actor"),
        "action": document.get("action"),
        "resource_type": document.get("resourceType"),
        "resource_id": document.get("resourceId"),
        "before": _entity_json(document.get("before"), codec),
        "after": _entity_json(document.get("after"), codec),
        "at": datetime_from_ms(document["at"]) if "at" in document else None,
        "ip": document.get("ip"),
        "user_agent": document.get("userAgent"),
    }
    try:
        return AuditEntry.parse(fields).model_dump(mode="json")
    except ValidationFailed as exc:
        raise BadReply(f"a stored audit row does not fit the audit log: {exc}") from None


def audit_document(entry: Mapping[str, Any], codec: DocumentCodec[Any]) -> dict[str, Any]:
    """An ``AuditEntry`` in JSON shape as the ``auditLogs`` document Convex keeps."""
    audit = AuditEntry.parse(entry)
    model = codec.model
    if audit.resource_type != model.entity_name:
        raise ValidationFailed(
            f"an audit entry about a {audit.resource_type!r} cannot go with a"
            f" {model.entity_name} change"
        )

    def document(data: dict[str, Any] | None, what: str) -> dict[str, Any] | None:
        if data is None:
            return None
        try:
            return codec.to_document(model.model_validate(data, context=TRUSTED_STORE))
        except ValidationError as exc:
            raise ValidationFailed.from_pydantic(f"{what} of audit entry {audit.id}", exc) from None

    return {
        "id": audit.id,
        "workspaceId": audit.workspace_id,
        "actor": audit.actor,
        "ip": audit.ip,
        "userAgent": audit.user_agent,
        "action": audit.action.value,
        "resourceType": audit.resource_type,
        "resourceId": audit.resource_id,
        "before": document(audit.before, "before"),
        "after": document(audit.after, "after"),
        "at": ms_from_datetime(audit.at),
    }


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
