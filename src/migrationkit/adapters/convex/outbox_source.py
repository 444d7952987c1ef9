"""The Convex outbox as a change source.

The generated functions keep pending events under a ``status`` index; the
source reads the oldest pending ones and marks them processed only after
the sink has committed them. It never polls by "id greater than the last
seen", which would skip an event whose mutation committed late.

Several workers reading at once may both get an event before either marks
it: the sink's inbox makes the second application a no-op.
"""

from __future__ import annotations

import time

from migrationkit.adapters.convex.changes import ChangeDecoder
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.domain.query import MAX_LIMIT
from migrationkit.ports.changes import ChangeBatch


class ConvexOutboxSource:
    def __init__(self, client: ConvexClient, *, name: str = "convex_outbox") -> None:
        self.client = client
        self.name = name
        self._decoder = ChangeDecoder()
        self._oldest_ms: float | None = None

    def fetch(self, limit: int) -> ChangeBatch:
        rows = self.client.query("outbox:pending", {"limit": float(min(limit, MAX_LIMIT))})
        changes = [self._decoder.from_outbox_row(row) for row in rows]
        return ChangeBatch(
            changes=changes, token=[c.event_id for c in changes], more=len(changes) >= limit
        )

    def ack(self, batch: ChangeBatch) -> None:
        if batch.token:
            # Marking is idempotent, so a retry after a lost reply is safe.
            self.client.mutation(
                "outbox:markProcessed", {"eventIds": list(batch.token)}, idempotent=True
            )

    def backlog(self) -> int | None:
        pending, oldest_ms = self.stats()
        self._oldest_ms = oldest_ms
        return pending

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest pending event, as of the last ``backlog()``."""
        if self._oldest_ms is None:
            return None
        return max(0.0, time.time() - self._oldest_ms / 1000)

    def stats(self) -> tuple[int, float | None]:
        """Pending events (counted up to the query limit) and the oldest one's time (ms)."""
        result = self.client.query("outbox:stats", {"limit": float(MAX_LIMIT)})
        oldest = result["oldestOccurredAt"]
        return int(result["pending"]), None if oldest is None else float(oldest)
