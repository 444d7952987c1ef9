"""The worker's tail of an app's own outbox (``migrationkit codegen app-outbox``).

For a deployment without streaming export, the app's wrapped mutations
record each write to a tracked table as a row of ``migrationkitOutbox`` in
the write's own transaction. Each round here reads the oldest pending rows,
writes them into the mirror tables in one PostgreSQL transaction, then marks
them processed in Convex. A crash between the two replays the rows, which
changes nothing: a row's ``rev`` is the mirror's ``_ts`` and the writer
keeps only newer revisions, so duplicates and any order end the same.

Which version is compared: ``rev``, made inside the app's mutation as
max(previous rev of the document + 1, the mutation's time in ns). It grows
with every write of a document and is of the same scale as the commit
timestamps a backfill stores, so a backfill and this tail can feed the same
tables.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.errors import BadReply
from migrationkit.mirror.model import MirrorDocument
from migrationkit.mirror.rows import MirrorRevision
from migrationkit.mirror.tail import MirrorTail
from migrationkit.observability.metrics import PipelineMetrics
from migrationkit.outbox.worker import Backoff, PollInterval

__all__ = ["PENDING", "AppOutboxStats", "AppOutboxTail", "revision_from_outbox"]

PENDING = "migrationkit/outbox:pending"
MARK_PROCESSED = "migrationkit/outbox:markProcessed"
STATS = "migrationkit/outbox:stats"


def revision_from_outbox(row: Mapping[str, Any]) -> MirrorRevision:
    """One pending outbox row as a revision; a malformed row is ``BadReply``."""
    try:
        table, doc_id, rev = row["table"], row["id"], row["rev"]
        deleted, document = row["deleted"], row["document"]
    except (KeyError, TypeError):
        raise BadReply(f"an outbox row lacks table/id/rev/deleted/document: {row!r}") from None
    if not (isinstance(table, str) and isinstance(doc_id, str)):
        raise BadReply(f"an outbox row's table and id must be strings: {row!r}")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 1:
        raise BadReply(f"outbox row of {table} {doc_id}: rev must be a positive integer")
    if not isinstance(deleted, bool) or not (document is None or isinstance(document, dict)):
        raise BadReply(f"outbox row of {table} {doc_id}: bad deleted/document")
    if deleted:
        return MirrorRevision(table=table, id=doc_id, ts=rev, deleted=True, document={})
    if document is None:
        raise BadReply(f"outbox row of {table} {doc_id}: a write without its document")
    return MirrorRevision(table=table, id=doc_id, ts=rev, deleted=False, document=document)


class AppOutboxStats:
    """The app outbox's backlog, for the cutover's gates (``cutover set``)."""

    #: The generated query counts at most this many pending rows.
    LIMIT = 1000

    def __init__(self, client: ConvexClient) -> None:
        self.client = client

    def _stats(self) -> Mapping[str, Any]:
        stats = self.client.query(STATS, {"limit": self.LIMIT})
        if not isinstance(stats, dict) or "pending" not in stats:
            raise BadReply(f"{STATS} returned {stats!r}")
        return stats

    def backlog(self) -> int | None:
        return int(self._stats()["pending"])

    def oldest_pending_age(self) -> float | None:
        oldest = self._stats().get("oldestAt")
        return None if oldest is None else max(0.0, time.time() - float(oldest) / 1000)


class AppOutboxTail(MirrorTail):
    """Pending rows of the app's outbox -> the mirror tables, then marked processed."""

    name = "convex_app_outbox"

    def __init__(
        self,
        client: ConvexClient,
        engine: Engine,
        models: Sequence[type[MirrorDocument]],
        *,
        batch_size: int = 500,
        metrics: PipelineMetrics | None = None,
        poll: PollInterval | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(client, engine, models, metrics=metrics, poll=poll, backoff=backoff)
        # The generated query refuses more than 1000 rows a call.
        self.batch_size = min(batch_size, 1000)

    def backlog(self) -> int:
        """Pending rows (counted up to 1000: the query stops there)."""
        return int(AppOutboxStats(self.client).backlog() or 0)

    def run_once(self) -> tuple[int, bool]:
        rows = self.client.query(PENDING, {"limit": self.batch_size})
        if not isinstance(rows, list):
            raise BadReply(f"{PENDING} returned {type(rows).__name__}, not a list")
        if not rows:
            self.metrics.lag_seconds.labels(self.name).set(0.0)
            self._beat()
            return 0, False
        revisions = [revision_from_outbox(row) for row in rows]
        # Rows of tables the mirror leaves out are acknowledged all the same.
        mirrored = [r for r in revisions if r.table in self.tables]
        started = time.monotonic()
        result = self.writer.write(mirrored)
        self.client.mutation(
            MARK_PROCESSED,
            {"eventIds": [str(row["eventId"]) for row in rows]},
            idempotent=True,  # marking twice changes nothing
        )
        self.metrics.batch_seconds.labels(self.name).observe(time.monotonic() - started)
        self.metrics.events.labels(self.name, "applied").inc(result.applied)
        self.metrics.events.labels(self.name, "stale").inc(result.received - result.applied)
        if len(rows) < self.batch_size:
            self.metrics.backlog.labels(self.name).set(0)
        oldest = min(r.ts for r in revisions) / 1e9
        self.metrics.lag_seconds.labels(self.name).set(max(0.0, time.time() - oldest))
        self._beat()
        return len(rows), len(rows) >= self.batch_size

    def _beat(self) -> None:
        self.last_beat = time.time()
        self.metrics.last_loop.set(self.last_beat)
