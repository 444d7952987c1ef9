"""``ConvexApplier``: applies changes to Convex through the generated
``<module>:apply`` mutations (the reverse direction, for the rollback window).

Documents keep their ids, versions and timestamps. The mutation writes a
document only over an older version, so duplicates, replays and reordering
change nothing, and it records no outbox event, so nothing echoes back.
One mutation per entity type per batch: each is one Convex transaction.
The audit entries the changes carry go in the same mutation, each added
once by id (stale changes' too: the history keeps every write); the
mutation makes no audit row of its own for a replicated write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from migrationkit.adapters.convex.changes import ChangeDecoder, audit_document
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.registry import model_for
from migrationkit.errors import ValidationFailed
from migrationkit.ports.changes import ApplyResult
from migrationkit.schema.convex_fields import camel_case


class ConvexApplier:
    def __init__(self, client: ConvexClient, *, name: str = "convex") -> None:
        self.client = client
        self.name = name
        self._decoder = ChangeDecoder()

    def apply(self, changes: Sequence[Change]) -> ApplyResult:
        by_entity: dict[str, list[Change]] = defaultdict(list)
        for change in changes:
            if change.kind is ChangeKind.PURGE:
                raise ValidationFailed(
                    f"change {change.event_id}: purges come from Convex and are not applied to it"
                )
            by_entity[change.entity].append(change)
        result = ApplyResult()
        for entity, group in by_entity.items():
            model = model_for(entity)
            codec = self._decoder.codec(entity)
            documents = []
            audits = []
            for change in group:
                try:
                    documents.append(codec.to_document(model.parse(change.data)))
                    if change.audit is not None:
                        audit = audit_document(change.audit, codec)
                        if (audit["workspaceId"], audit["resourceId"]) != (
                            change.workspace_id,
                            change.entity_id,
                        ):
                            raise ValidationFailed("the audit entry is about another entity")
                        audits.append(audit)
                except ValidationFailed as exc:
                    raise ValidationFailed(f"change {change.event_id}: {exc}") from None
            outcome = self.client.mutation(
                f"{camel_case(model.table_name)}:apply",
                {"documents": documents, "audits": audits},
                idempotent=True,  # version-guarded: running it twice changes nothing
            )
            result.applied += int(outcome["applied"])
            result.stale += int(outcome["stale"])
        return result
