"""Prometheus metrics of the pipeline.

Labels stay bounded: a source or sink name, a result, a reason. Never an
entity id, a workspace or an error text, which would grow without limit.
Each worker has its own registry, so several can live in one process (as
in tests) without clashing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.lag_seconds = Gauge(
            "migrationkit_replication_lag_seconds",
            "Seconds between a write in the source store and its application to the sink.",
            ["source"],
            registry=r,
        )
        self.backlog = Gauge(
            "migrationkit_outbox_backlog",
            "Changes waiting at the source (where the source can count them).",
            ["source"],
            registry=r,
        )
        self.oldest_pending_age = Gauge(
            "migrationkit_outbox_oldest_pending_age_seconds",
            "Age of the oldest change waiting at the source.",
            ["source"],
            registry=r,
        )
        self.events = Counter(
            "migrationkit_events_total",
            "Changes handled by the sink, by result.",
            ["sink", "result"],  # applied | duplicate | stale | dead_lettered
            registry=r,
        )
        self.retries = Counter(
            "migrationkit_retries_total",
            "Batches or changes retried, by reason.",
            ["source", "reason"],  # unavailable | failing_change
            registry=r,
        )
        self.dead_letters = Counter(
            "migrationkit_dead_letters_total",
            "Changes moved to the dead-letter table.",
            ["source"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "migrationkit_batch_duration_seconds",
            "Time to apply one batch to the sink.",
            ["sink"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.last_loop = Gauge(
            "migrationkit_worker_last_loop_timestamp_seconds",
            "When the worker last completed a loop (fetch, apply, acknowledge).",
            registry=r,
        )


class CutoverMetrics:
    """What the routing repository counts; labelled by entity, never by id."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.shadow_reads = Counter(
            "migrationkit_shadow_reads_total",
            "Shadow reads compared with the authoritative answer, by result.",
            ["entity", "result"],  # match | mismatch | error
            registry=r,
        )
        self.shadow_write_failures = Counter(
            "migrationkit_shadow_write_failures_total",
            "Inline writes to the non-authoritative store that failed (left to the outbox).",
            ["entity", "store"],
            registry=r,
        )
        self.fenced_writes = Counter(
            "migrationkit_fenced_writes_total",
            "Writes refused by a cutover fence and retried once the stage settled.",
            ["entity"],
            registry=r,
        )
        self.read_fallbacks = Counter(
            "migrationkit_read_fallbacks_total",
            "Hybrid reads that PostgreSQL could not answer and Convex did.",
            ["entity"],
            registry=r,
        )
