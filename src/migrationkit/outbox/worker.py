"""The worker loop: fetch a batch, apply it, acknowledge it, repeat.

Failure handling, by kind:

* the source or the sink is unavailable (``StoreUnavailable``): nothing is
  acknowledged; the batch is tried again after an exponential backoff with
  jitter, for as long as it takes. An outage never dead-letters anything.
* a change the sink refuses (bad data, an unknown entity, a function
  error...): the batch is split and each change applied on its own, so the
  good ones go through. A change that keeps failing is tried again on later
  rounds; after ``max_attempts`` it moves to the dead-letter table with its
  error and attempt count, and the rest keep flowing.
* a setting is wrong or the feed must be resynced (``ConfigurationError``,
  ``PermissionDenied``, ``ResyncRequired``): the worker stops with the error;
  retrying cannot help.

A batch is acknowledged only when every change in it is applied or
dead-lettered, so a crash at any point replays the batch; the sink's version
guard and inbox make the replay harmless.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from migrationkit.domain.change import Change
from migrationkit.errors import (
    ConfigurationError,
    Conflict,
    MigrationKitError,
    PermissionDenied,
    ResyncRequired,
    StoreUnavailable,
)
from migrationkit.observability.metrics import PipelineMetrics
from migrationkit.ports.changes import ApplyResult, ChangeBatch, ChangeSink, ChangeSource

log = logging.getLogger("migrationkit.worker")

FATAL = (ConfigurationError, PermissionDenied, ResyncRequired)


class DeadLetters(Protocol):
    def add(
        self, change: Change, *, consumer: str, source: str, error: str, attempts: int
    ) -> None: ...


@dataclass
class Backoff:
    """Exponential backoff with full jitter: a random wait up to base * 2**n, capped."""

    base: float = 0.1
    cap: float = 10.0
    failures: int = 0
    rand: Callable[[], float] = random.random

    def next_delay(self) -> float:
        self.failures += 1
        ceiling: float = min(self.cap, self.base * 2 ** (self.failures - 1))
        return self.rand() * ceiling

    def reset(self) -> None:
        self.failures = 0


@dataclass
class PollInterval:
    """How long to wait before the next fetch: doubles while idle, zero under load."""

    minimum: float = 0.05
    maximum: float = 2.0
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.minimum

    def after(self, fetched: int, more: bool) -> float:
        if more:
            self.current = self.minimum
            return 0.0
        if fetched:
            self.current = self.minimum
            return self.minimum
        delay = self.current
        self.current = min(self.maximum, self.current * 2)
        return delay


@dataclass
class WorkerConfig:
    batch_size: int = 500
    max_attempts: int = 5
    consumer: str = "postgres"
    poll: PollInterval = field(default_factory=PollInterval)
    backoff: Backoff = field(default_factory=Backoff)


class Worker:
    def __init__(
        self,
        source: ChangeSource,
        sink: ChangeSink,
        dead_letters: DeadLetters,
        *,
        config: WorkerConfig | None = None,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.source = source
        self.name = source.name
        self.sink = sink
        self.dead_letters = dead_letters
        self.config = config or WorkerConfig()
        self.metrics = metrics or PipelineMetrics()
        self._attempts_seen: dict[str, int] = {}
        self.last_beat = time.time()
        self._backlog_checked = 0.0
        # Set by run(): pauses wait on it, so SIGTERM never waits out a backoff.
        self._stop = threading.Event()

    # -- the loop ------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; the batch under way is finished first."""
        self._stop = stop
        backoff = self.config.backoff
        while not stop.is_set():
            try:
                fetched, more = self.run_once()
            except FATAL:
                raise
            except Conflict as exc:
                # A lease taken over while this batch was applied: another
                # worker owns those changes now (the sink's guard made our
                # writes harmless). Nothing to retry here.
                self.metrics.retries.labels(self.source.name, "lease_lost").inc()
                log.warning("batch not acknowledged: %s", exc)
                continue
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                self.metrics.retries.labels(self.source.name, "unavailable").inc()
                log.warning("store unavailable (%s); retrying in %.2fs", exc, delay)
                stop.wait(delay)
                continue
            backoff.reset()
            delay = self.config.poll.after(fetched, more)
            if delay:
                stop.wait(delay)

    def run_once(self) -> tuple[int, bool]:
        """One fetch-apply-acknowledge round; returns (changes fetched, more waiting)."""
        batch = self.source.fetch(self.config.batch_size)
        buried: list[str] = []
        if batch.changes:
            handled = self._apply(batch, buried)
            if not handled:
                self._release(batch)
                self._beat()
                return len(batch.changes), False
        self._ack(batch, buried)
        self._observe_backlog()
        self._beat()
        return len(batch.changes), batch.more

    def seconds_since_beat(self) -> float:
        return time.time() - self.last_beat

    def _beat(self) -> None:
        self.last_beat = time.time()
        self.metrics.last_loop.set(self.last_beat)

    # -- applying --------------------------------------------------------------

    def _ack(self, batch: ChangeBatch, buried: list[str]) -> None:
        bury = getattr(self.source, "bury", None)
        if buried and callable(bury):
            # A source that keeps its own record marks these dead, not done,
            # and acknowledges the rest.
            bury(batch, "moved to dead_letters", event_ids=buried)
            dead = set(buried)
            rest = [c.event_id for c in batch.changes if c.event_id not in dead]
            if rest:
                self.source.ack(batch, event_ids=rest)  # type: ignore[call-arg]
            return
        self.source.ack(batch)

    def _attempts(self, batch: ChangeBatch, change: Change) -> int:
        """Tries so far, this one included: the source's durable count when it
        keeps one (a PostgreSQL outbox row's claims survive restarts), else
        this process's own."""
        durable = getattr(batch.token, "attempts", None)
        if isinstance(durable, dict) and change.event_id in durable:
            return int(durable[change.event_id])
        return self._attempts_seen.get(change.event_id, 0) + 1

    def _apply(self, batch: ChangeBatch, buried: list[str]) -> bool:
        """Apply the batch; True when every change is applied or dead-lettered."""
        with self.metrics.batch_seconds.labels(self.sink.name).time():
            try:
                result = self.sink.apply(batch.changes)
            except (StoreUnavailable, *FATAL):
                raise
            except Exception as exc:  # some change in the batch is refused
                log.warning(
                    "batch of %d refused (%s); applying one by one", len(batch.changes), exc
                )
                return self._apply_one_by_one(batch, buried)
        self._count(result)
        self._observe_lag(batch.changes)
        for change in batch.changes:
            self._attempts_seen.pop(change.event_id, None)
        return True

    def _apply_one_by_one(self, batch: ChangeBatch, buried: list[str]) -> bool:
        all_handled = True
        changes = batch.changes
        for change in changes:
            try:
                self._count(self.sink.apply([change]))
                self._attempts_seen.pop(change.event_id, None)
            except (StoreUnavailable, *FATAL):
                raise
            except Exception as exc:
                attempts = self._attempts(batch, change)
                self._attempts_seen[change.event_id] = attempts
                error = f"{type(exc).__name__}: {exc}"
                if attempts >= self.config.max_attempts:
                    self.dead_letters.add(
                        change,
                        consumer=self.config.consumer,
                        source=self.source.name,
                        error=error,
                        attempts=attempts,
                    )
                    self._attempts_seen.pop(change.event_id, None)
                    buried.append(change.event_id)
                    self.metrics.dead_letters.labels(self.source.name).inc()
                    self.metrics.events.labels(self.sink.name, "dead_lettered").inc()
                    log.error(
                        "change %s dead-lettered after %d attempts: %s",
                        change.event_id,
                        attempts,
                        error,
                    )
                else:
                    all_handled = False
                    self.metrics.retries.labels(self.source.name, "failing_change").inc()
                    log.warning(
                        "change %s failed (attempt %d): %s", change.event_id, attempts, error
                    )
        self._observe_lag(changes)
        return all_handled

    def _release(self, batch: ChangeBatch) -> None:
        """Give a batch with failing changes back to the source, after a pause."""
        delay = self.config.backoff.next_delay()
        release = getattr(self.source, "release", None)
        if callable(release):
            release(batch, delay)
        else:
            self._stop.wait(delay)

    # -- metrics ---------------------------------------------------------------

    def _count(self, result: ApplyResult) -> None:
        events = self.metrics.events
        events.labels(self.sink.name, "applied").inc(result.applied)
        events.labels(self.sink.name, "duplicate").inc(result.duplicates)
        events.labels(self.sink.name, "stale").inc(result.stale)

    def _observe_lag(self, changes: list[Change]) -> None:
        if changes:
            newest = max(change.occurred_at.timestamp() for change in changes)
            self.metrics.lag_seconds.labels(self.source.name).set(max(0.0, time.time() - newest))

    def _observe_backlog(self) -> None:
        # Counting costs a query: at most once a second, not once a batch.
        if time.monotonic() - self._backlog_checked < 1.0:
            return
        self._backlog_checked = time.monotonic()
        try:
            backlog = self.source.backlog()
            oldest_age = getattr(self.source, "oldest_pending_age", lambda: None)()
        except MigrationKitError as exc:  # a gauge is never worth stopping the worker for
            log.warning("could not read the backlog: %s", exc)
            return
        name = self.source.name
        if backlog is not None:
            self.metrics.backlog.labels(name).set(backlog)
            if backlog == 0:
                self.metrics.lag_seconds.labels(name).set(0.0)
        if backlog is not None or oldest_age is not None:
            self.metrics.oldest_pending_age.labels(name).set(oldest_age or 0.0)
