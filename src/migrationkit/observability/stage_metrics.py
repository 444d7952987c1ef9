"""The cutover stage of each scope, as a Prometheus gauge read at scrape time.

The stage lives in ``cutover_stages`` (one row per scope); this collector
reads it when Prometheus scrapes, so the worker's ``/metrics`` shows it:

    migrationkit_cutover_stage{entity, workspace}   the stage's position:
        0 convex_only, 1 shadow_write, 2 shadow_read, 3 pg_reads,
        4 pg_primary, 5 pg_only
    migrationkit_cutover_stage_info{entity, workspace, stage}   1, for a
        table panel that shows the stage by name

Scopes are entity and workspace names, with ``*`` for all; a scope with no
row is at ``convex_only`` (and is not listed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

from migrationkit.cutover.stages import Stage

__all__ = ["StageCollector"]

log = logging.getLogger("migrationkit.observability")

_STAGES = text("SELECT scope_entity, scope_workspace, stage FROM cutover_stages")


class StageCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        position = GaugeMetricFamily(
            "migrationkit_cutover_stage",
            "The cutover stage of the scope: 0 convex_only .. 5 pg_only.",
            labels=["entity", "workspace"],
        )
        info = GaugeMetricFamily(
            "migrationkit_cutover_stage_info",
            "1 for the cutover stage each scope is at, by name.",
            labels=["entity", "workspace", "stage"],
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(_STAGES).all()
        except Exception as exc:  # a scrape must never fail for this
            log.warning("could not read cutover_stages: %s", type(exc).__name__)
            rows = []
        for entity, workspace, stage in rows:
            try:
                at = Stage(stage)
            except ValueError:
                continue  # the table's CHECK keeps this from happening
            position.add_metric([entity, workspace], float(at.position))
            info.add_metric([entity, workspace, at.value], 1.0)
        yield from (position, info)
