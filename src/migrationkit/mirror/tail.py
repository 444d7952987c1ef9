"""The change-feed tail of the mirror tables, run by the worker.

Each round reads one ``document_deltas`` page from the saved cursor, writes
the revisions of mirrored tables and saves the page's cursor in the same
transaction: a crash keeps both or neither, so the tail neither skips nor
repeats a page (a repeat would be harmless: the ``_ts`` guard). Rows of
tables that are not mirrored are passed over. The cursor is set by the
backfill (its snapshot timestamp); a tail without one refuses to start
rather than guess where the feed begins.

A revision that does not fit its table (a field the model does not know,
after the app's schema changed) stops the tail with that error: re-run
``migrationkit introspect`` and migrate, then start it again. An expired
cursor is ``ResyncRequired``: backfill again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Connection, Engine

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.errors import (
    ConfigurationError,
    PermissionDenied,
    ResyncRequired,
    StoreUnavailable,
)
from migrationkit.mirror.backfill import TAIL_CURSOR
from migrationkit.mirror.feed import revision_from_export
from migrationkit.mirror.model import MirrorDocument
from migrationkit.mirror.writer import MirrorWriter
from migrationkit.observability.metrics import PipelineMetrics
from migrationkit.outbox.worker import Backoff, PollInterval

__all__ = ["MirrorTail"]

log = logging.getLogger("migrationkit.mirror.tail")

_FATAL = (ConfigurationError, PermissionDenied, ResyncRequired)


class MirrorTail:
    name = "convex_mirror"

    def __init__(
        self,
        client: ConvexClient,
        engine: Engine,
        models: Sequence[type[MirrorDocument]],
        *,
        cursor_name: str = TAIL_CURSOR,
        metrics: PipelineMetrics | None = None,
        poll: PollInterval | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.cursors = CursorStore(engine)
        self.writer = MirrorWriter(engine)
        self.tables = {m.mirror.qualified_convex_name for m in models}
        self.cursor_name = cursor_name
        self.metrics = metrics or PipelineMetrics()
        self.poll = poll or PollInterval()
        self.backoff = backoff or Backoff()
        self.last_beat = time.time()

    def seconds_since_beat(self) -> float:
        return time.time() - self.last_beat

    def run_once(self) -> tuple[int, bool]:
        """One page: (revisions applied, more waiting)."""
        cursor = self.cursors.load(self.cursor_name)
        if cursor is None:
            raise ConfigurationError(
                f"the mirror tail {self.cursor_name!r} has no cursor: run `migrationkit"
                " backfill` first (it starts the tail at its snapshot)"
            )
        page = self.client.document_deltas(cursor=cursor)
        revisions = [
            revision
            for revision in map(revision_from_export, page.values)
            if revision.table in self.tables
        ]
        if revisions or page.cursor != cursor:
            started = time.monotonic()
            result = self.writer.write(revisions, after=lambda conn: self._save(conn, page.cursor))
            self.metrics.batch_seconds.labels(self.name).observe(time.monotonic() - started)
            self.metrics.events.labels(self.name, "applied").inc(result.applied)
            self.metrics.events.labels(self.name, "stale").inc(result.received - result.applied)
        if revisions:
            newest = max(r.ts for r in revisions) / 1e9
            self.metrics.lag_seconds.labels(self.name).set(max(0.0, time.time() - newest))
        elif not page.has_more:
            self.metrics.lag_seconds.labels(self.name).set(0.0)
        self.last_beat = time.time()
        self.metrics.last_loop.set(self.last_beat)
        return len(revisions), page.has_more

    def run(self, stop: threading.Event) -> None:
        """Tail until ``stop`` is set; outages are retried with backoff."""
        while not stop.is_set():
            try:
                fetched, more = self.run_once()
            except _FATAL:
                raise
            except StoreUnavailable as exc:
                delay = self.backoff.next_delay()
                self.metrics.retries.labels(self.name, "unavailable").inc()
                log.warning("store unavailable (%s); retrying in %.2fs", exc, delay)
                stop.wait(delay)
                continue
            self.backoff.reset()
            delay = self.poll.after(fetched, more)
            if delay:
                stop.wait(delay)

    def _save(self, conn: Connection, cursor: int) -> None:
        self.cursors.save_in(conn, self.cursor_name, cursor)
