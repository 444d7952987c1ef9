"""Convex's change feed (``document_deltas``) as a change source.

Every committed revision of the entity tables arrives in commit order; the
cursor (a commit timestamp) is persisted only after the sink has applied a
page, so a crash replays the page rather than skipping it. A cursor older
than the deployment keeps history for raises ``ResyncRequired``: the gap
cannot be filled from the feed, and the operator must backfill again.
"""

from __future__ import annotations

from migrationkit.adapters.convex.changes import ChangeDecoder
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.streaming_export import exported_row
from migrationkit.domain.registry import registered_models
from migrationkit.errors import ConfigurationError
from migrationkit.ports.changes import ChangeBatch
from migrationkit.ports.cursors import CursorStore


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
        cursor = self.cursors.load(self.name)
        if cursor is None:
            raise ConfigurationError(
                f"the change feed {self.name!r} has no cursor: backfill first and start"
                " the feed at the backfill's snapshot timestamp"
            )
        # The page size is the backend's to choose; ``limit`` does not apply.
        page = self.client.document_deltas(cursor=cursor)
        changes = []
        for value in page.values:
            row = exported_row(value)
            if row.table in self._tables:  # the outbox table and others are not entities
                changes.append(
                    self._decoder.from_delta_row(row.table, row.id, row.ts, row.document)
                )
        return ChangeBatch(changes=changes, token=page.cursor, more=page.has_more)

    def ack(self, batch: ChangeBatch) -> None:
        cursor = int(batch.token)
        if cursor != self._saved:  # an idle feed need not write on every poll
            self.cursors.save(self.name, cursor)
            self._saved = cursor

    def backlog(self) -> int | None:
        return None  # the feed does not say how much is left
