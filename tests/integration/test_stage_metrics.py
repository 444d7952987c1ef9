"""The worker's /metrics shows the cutover stage of each scope."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine

from migrationkit.cutover.stages import Stage
from migrationkit.cutover.store import PostgresStageStore
from migrationkit.observability.stage_metrics import StageCollector

pytestmark = pytest.mark.postgres


def test_each_scope_s_stage_is_a_gauge(clean_postgres: Engine) -> None:
    store = PostgresStageStore(clean_postgres)
    store.set(Stage.SHADOW_READ, by="test")
    store.set(Stage.PG_PRIMARY, entity="lead", workspace="ws-1", by="test")
    registry = CollectorRegistry()
    registry.register(StageCollector(clean_postgres))
    stages = {
        (s.labels["entity"], s.labels["workspace"]): s.value
        for family in registry.collect()
        if family.name == "migrationkit_cutover_stage"
        for s in family.samples
    }
    assert stages == {("*", "*"): 2.0, ("lead", "ws-1"): 4.0}
    text = generate_latest(registry).decode()
    assert (
        'migrationkit_cutover_stage_info{entity="lead",stage="pg_primary",workspace="ws-1"} 1.0'
        in text
    )


def test_a_database_that_does_not_answer_gives_no_stage_and_no_error() -> None:
    from sqlalchemy import create_engine

    registry = CollectorRegistry()
    registry.register(StageCollector(create_engine("postgresql+psycopg://x@127.0.0.1:1/x")))
    assert "migrationkit_cutover_stage{" not in generate_latest(registry).decode()
