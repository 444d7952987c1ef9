"""Convex's change feed (``document_deltas``) as a change source.

Every committed revision of the entity tables arrives in commit order; the
cursor (a commit timestamp) is persisted only after the sink has applied a
page, so a crash replays the page rather than skipping it. A cursor older
than the deployment keeps history for raises ``ResyncRequired``: the gap
cannot be filled from the feed, and the operator must backfill again.

A write's ``auditLogs`` row (same mutation, same commit timestamp) rides on
the write's change, so the sink adds it to its own audit log as it does for
an outbox event's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from migrationkit.adapters.convex.changes import ChangeDecoder, audit_entry
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.streaming_export import exported_row
from migrationkit.domain.change import Change
from migrationkit.domain.registry import registered_models
from migrationkit.errors import ConfigurationError
from migrationkit.ports.changes import ChangeBatch
from migrationkit.ports.cursors import CursorStore
from migrationkit.schema.convex_codegen import AUDIT_TABLE


class ConvexDeltaSource:
    def __init__(
        self,
        client: ConvexClient,
        cursors: CursorStore,
        *,
        name: str = "convex_deltas",
    ) -> None:
        self.client = client
        self.cursors = cursors
        self.name = name
        self._tables = {model.table_name for model in registered_models()}
        self._decoder = ChangeDecoder()
        self._saved: int | None = None

    def start_at(self, cursor: int) -> None:
        """Set where the feed starts, e.g. the snapshot timestamp of a backfill."""
        self.cursors.save(self.name, cursor)

    def fetch(self, limit: int) -> ChangeBatch:
        """The next page of the feed: entity revisions as changes, each with
        the audit entry written in the same mutation."""
        cursor = self.cursors.load(self.name)
        if cursor is None:
            raise ConfigurationError(
                f"the change feed {self.name!r} has no cursor: backfill first and start"
                " the feed at the backfill's snapshot timestamp"
            )
        # The page size is the backend's to choose; ``limit`` does not apply.
        page = self.client.document_deltas(cursor=cursor)
        changes = []
        audits: dict[tuple[int, str], Mapping[str, Any]] = {}
        for value in page.values:
            row = exported_row(value)
            if row.table in self._tables:  # the outbox table and others are not entities
                changes.append(
                    (
                        row.table,
                        row.ts,
                        self._decoder.from_delta_row(row.table, row.id, row.ts, row.document),
                    )
                )
            elif row.table == AUDIT_TABLE and row.document:
                audits[(row.ts, str(row.document.get("resourceId")))] = row.document
        return ChangeBatch(
            changes=[self._with_audit(t, ts, c, audits) for t, ts, c in changes],
            token=page.cursor,
            more=page.has_more,
        )

    def _with_audit(
        self,
        table: str,
        ts: int,
        change: Change,
        audits: Mapping[tuple[int, str], Mapping[str, Any]],
    ) -> Change:
        """The change with the audit row its mutation wrote: same commit
        timestamp (one transaction), same entity. A page holds whole
        transactions (its cursor is a commit timestamp), so the pair is never
        split between pages."""
        if change.entity_id is None:
            return change  # a purge: retention's, not audited as a write
        document = audits.get((ts, change.entity_id))
        if document is None:
            return change
        return replace(change, audit=audit_entry(document, self._decoder.codec(table)))

    def ack(self, batch: ChangeBatch) -> None:
        cursor = int(batch.token)
        if cursor != self._saved:  # an idle feed need not write on every poll
            self.cursors.save(self.name, cursor)
            self._saved = cursor

    def backlog(self) -> int | None:
        return None  # the feed does not say how much is left
