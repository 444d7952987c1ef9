"""The composition root: the only place that names concrete adapters.

It turns ``WorkerSettings`` into a running pipeline (source, sink, dead
letters) and owns the connections it opens.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine

from migrationkit.adapters.convex.applier import ConvexApplier
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.delta_source import ConvexDeltaSource
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.mirror.app_outbox_tail import AppOutboxTail
from migrationkit.mirror.config import load_config
from migrationkit.mirror.loading import selected_models
from migrationkit.mirror.reverse import ConvexMirrorApplier, RoutingSink
from migrationkit.mirror.tail import MirrorTail
from migrationkit.observability.metrics import PipelineMetrics
from migrationkit.outbox.settings import MIRROR_SOURCES, WorkerSettings
from migrationkit.outbox.worker import Backoff, PollInterval, Worker, WorkerConfig
from migrationkit.ports.changes import ChangeSink, ChangeSource


class Runner(Protocol):
    """What the worker process runs: the outbox worker or the mirror tail."""

    name: str
    metrics: PipelineMetrics

    def run(self, stop: threading.Event) -> None: ...

    def seconds_since_beat(self) -> float: ...


@dataclass
class Pipeline:
    engine: Engine
    convex: ConvexClient
    runner: Runner
    #: The outbox worker's parts; None for the mirror tail.
    worker: Worker | None = None
    source: ChangeSource | None = None
    sink: ChangeSink | None = None
    dead_letters: DeadLetterStore | None = None


def build_pipeline(settings: WorkerSettings, stack: ExitStack) -> Pipeline:
    """Everything a worker needs; ``stack`` closes it all."""
    # Pre-ping here, unlike the repository default: a worker outlives
    # database restarts and should find out on checkout, not mid-batch.
    engine = make_engine(settings.database_url.get_secret_value(), pool_pre_ping=True)
    stack.callback(engine.dispose)
    assert settings.convex_url is not None  # checked by the settings
    key = settings.convex_deploy_key.get_secret_value() if settings.convex_deploy_key else None
    convex = stack.enter_context(ConvexClient(settings.convex_url, admin_key=key))

    if settings.source in MIRROR_SOURCES:
        assert settings.mirror_config is not None  # checked by the settings
        models = selected_models(load_config(settings.mirror_config))
        poll = PollInterval(settings.poll_min, settings.poll_max)
        tail: MirrorTail
        if settings.source == "convex_app_outbox":
            tail = AppOutboxTail(
                convex,
                engine,
                models,
                batch_size=settings.batch_size,
                metrics=PipelineMetrics(),
                poll=poll,
            )
        else:
            tail = MirrorTail(convex, engine, models, metrics=PipelineMetrics(), poll=poll)
        return Pipeline(engine, convex, runner=tail)

    source: ChangeSource
    sink: ChangeSink
    if settings.direction == "convex_to_pg":
        if settings.source == "convex_deltas":
            source = ConvexDeltaSource(convex, CursorStore(engine))
        else:
            source = ConvexOutboxSource(convex)
        sink = PostgresApplier(engine, consumer=settings.consumer)
    else:
        source = PgOutboxSource(
            engine,
            owner=settings.worker_id,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
        )
        sink = ConvexApplier(convex)
        if settings.mirror_config is not None:
            # An existing app's mirror tables too (the rollback window):
            # their captured writes share the outbox with the kit's entities.
            models = selected_models(load_config(settings.mirror_config))
            sink = RoutingSink(mirror=ConvexMirrorApplier(convex, models), entities=sink)
    dead_letters = DeadLetterStore(engine)
    config = WorkerConfig(
        batch_size=settings.batch_size,
        max_attempts=settings.max_attempts,
        consumer=settings.consumer,
        poll=PollInterval(settings.poll_min, settings.poll_max),
        backoff=Backoff(),
    )
    worker = Worker(source, sink, dead_letters, config=config, metrics=PipelineMetrics())
    return Pipeline(engine, convex, worker, worker, source, sink, dead_letters)
