"""Mirror tables back to Convex: the rollback window of an existing app.

While PostgreSQL is the primary store, an application's writes to mirror
tables are captured as outbox events (migration 0008's triggers; entity
``mirror:<convex table>``, payload the row as ``to_jsonb`` gives it).
``ConvexMirrorApplier`` turns each into the Convex document and sends a
batch to the app's ``migrationkit/outbox:apply`` mutation (written by
``migrationkit codegen app-outbox``), one Convex transaction per batch.

Which version is compared: ``rev`` = the event's version = the row's
``_ts``, nanoseconds, bumped past the last one and the clock on every write.
The mutation applies a change only over an older recorded revision, so a
replay or an out-of-order delivery changes nothing (counted ``stale``). It
also translates ids: a row made in PostgreSQL (``pg_...``) gets a Convex
document of its own, and the references to it (the app's ``ID_FIELDS``)
are rewritten; a reference Convex cannot resolve yet fails the change,
which the worker retries.

``RoutingSink`` lets one ``pg_to_convex`` worker serve the kit's entities
and the mirror tables from the same outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.errors import BadReply, ConfigurationError, ValidationFailed
from migrationkit.mirror.columns import DOCUMENT, MirrorColumn, mirror_columns
from migrationkit.mirror.documents import document_from_row
from migrationkit.mirror.model import MirrorDocument, mirror_model_for
from migrationkit.ports.changes import ApplyResult, ChangeSink
from migrationkit.schema.mirror_capture import ENTITY_PREFIX

__all__ = ["APPLY_FUNCTION", "ConvexMirrorApplier", "RoutingSink", "document_from_payload"]

APPLY_FUNCTION = "migrationkit/outbox:apply"

# What to_jsonb makes of the float8 values JSON has no number for.
_SPECIAL_FLOATS = {"NaN", "Infinity", "-Infinity"}


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)  # JSON may hold a whole float8 as 3, not 3.0
    if isinstance(value, str) and value in _SPECIAL_FLOATS:
        return float(value)
    raise ValidationFailed(f"expected a number, got {type(value).__name__}")


def _bytea(value: Any) -> bytes:
    # to_jsonb writes bytea in its hex output form: \x0aff...
    if isinstance(value, str) and value.startswith("\\x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise ValidationFailed("expected bytea as hex text (\\x...)")


def _column_value(column: MirrorColumn, value: Any) -> Any:
    """A payload value as the column's driver value (what a SELECT gives)."""
    if value is None:
        return None
    try:
        if column.kind == "float64":
            return _float(value)
        if column.kind == "bytes":
            return _bytea(value)
    except ValidationFailed as exc:
        raise ValidationFailed(f"column {column.column}: {exc}") from None
    return value


def document_from_payload(
    model: type[MirrorDocument], payload: Mapping[str, Any]
) -> dict[str, Any]:
    """The Convex document a captured row holds, in Convex's value types
    (``_id`` and ``_creationTime`` included; the mutation ignores them)."""
    row: dict[str, Any] = {
        "_id": payload.get("_id"),
        "_creation_time_ms": payload.get("_creation_time_ms"),
    }
    if model.mirror.document_only:
        row[DOCUMENT] = payload.get(DOCUMENT) or {}
    else:
        for column in mirror_columns(model):
            row[column.column] = _column_value(column, payload.get(column.column))
    try:
        return document_from_row(model, row)
    except (BadReply, TypeError, ValueError) as exc:
        # A jsonb column holding what is not Convex's encoded JSON (or, for
        # a whole-document table, not an object).
        raise ValidationFailed(f"{type(exc).__name__}: {exc}") from None


def _check_whole(model: type[MirrorDocument]) -> None:
    # The mutation replaces the document: fields the mirror leaves out
    # would be wiped from Convex, not kept.
    if model.mirror.excluded:
        raise ConfigurationError(
            f"mirror table {model.mirror.qualified_convex_name} leaves out the Convex fields"
            f" {', '.join(model.mirror.excluded)} (exclude_fields): writing its rows back to"
            " Convex would drop them; mirror every field of a table written in PostgreSQL"
        )


class ConvexMirrorApplier:
    """Applies captured mirror-table changes to the app's own Convex tables."""

    def __init__(
        self,
        client: ConvexClient,
        models: Sequence[type[MirrorDocument]] = (),
        *,
        name: str = "convex_mirror",
    ) -> None:
        self.client = client
        self.name = name
        # Checked now for the models the worker was started with, so a
        # mirror that cannot go back is known before the first change.
        for model in models:
            _check_whole(model)
        self._checked: set[type[MirrorDocument]] = set(models)

    def _model(self, change: Change) -> type[MirrorDocument]:
        if not change.entity.startswith(ENTITY_PREFIX):
            raise ValidationFailed(f"change {change.event_id}: {change.entity} is no mirror table")
        model = mirror_model_for(change.entity[len(ENTITY_PREFIX) :])
        if model not in self._checked:
            _check_whole(model)
            self._checked.add(model)
        return model

    def _wire(self, change: Change) -> dict[str, Any]:
        if change.kind is ChangeKind.PURGE or change.entity_id is None:
            raise ValidationFailed(
                f"change {change.event_id}: purges come from Convex and are not applied to it"
            )
        model = self._model(change)
        wire: dict[str, Any] = {
            "table": model.mirror.qualified_convex_name,
            "id": change.entity_id,
            "rev": change.version,  # an int: sent as Int64
            "deleted": change.kind is ChangeKind.DELETE,
        }
        if change.kind is ChangeKind.UPSERT:
            try:
                wire["document"] = document_from_payload(model, change.data or {})
            except ValidationFailed as exc:
                raise ValidationFailed(f"change {change.event_id}: {exc}") from None
        return wire

    def apply(self, changes: Sequence[Change]) -> ApplyResult:
        wires = [self._wire(change) for change in changes]
        if not wires:
            return ApplyResult()
        # In the batch's order, in one mutation: a row and one referring to
        # it, made in the same batch, resolve within that transaction.
        outcome = self.client.mutation(
            APPLY_FUNCTION,
            {"changes": wires},
            idempotent=True,  # version-guarded: running it twice changes nothing
        )
        return ApplyResult(applied=int(outcome["applied"]), stale=int(outcome["stale"]))


class RoutingSink:
    """Mirror-table changes to one sink, the kit's own entities to another."""

    def __init__(self, *, mirror: ChangeSink, entities: ChangeSink, name: str = "convex") -> None:
        self.mirror = mirror
        self.entities = entities
        self.name = name

    def apply(self, changes: Sequence[Change]) -> ApplyResult:
        mirrored = [c for c in changes if c.entity.startswith(ENTITY_PREFIX)]
        own = [c for c in changes if not c.entity.startswith(ENTITY_PREFIX)]
        result = ApplyResult()
        for sink, group in ((self.entities, own), (self.mirror, mirrored)):
            if group:
                part = sink.apply(group)
                result.applied += part.applied
                result.duplicates += part.duplicates
                result.stale += part.stale
                result.failed_event_ids += part.failed_event_ids
        return result
