"""The Grafana dashboard only charts metrics the kit exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine

from migrationkit.observability.metrics import CutoverMetrics, PipelineMetrics
from migrationkit.observability.stage_metrics import StageCollector
from migrationkit.observability.verify_metrics import VerifyCollector

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "migrationkit.json"
PROMQL_WORDS = {"sum", "max", "by", "rate", "increase", "histogram_quantile", "time", "le"}


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    PipelineMetrics(registry)
    CutoverMetrics(registry)
    # No database behind it: the collector still describes its families.
    nowhere = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/x")
    registry.register(VerifyCollector(nowhere))
    registry.register(StageCollector(nowhere))
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{s}" for s in ("bucket", "sum", "count"))
    return names


def test_every_panel_charts_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported_names()
    charted = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            words = set(re.findall(r"[a-z_][a-z0-9_]*", target["expr"])) - PROMQL_WORDS
            metrics = {w for w in words if w.startswith("migrationkit_")}
            assert metrics, f"{panel['title']}: {target['expr']}"
            assert metrics <= known, f"{panel['title']}: not exported: {metrics - known}"
            charted |= metrics
    # Lag, backlog, applied/s, dead letters, shadow-read mismatches, fenced
    # writes, the stage per scope and the verify results are all on it.
    for needed in (
        "migrationkit_replication_lag_seconds",
        "migrationkit_outbox_backlog",
        "migrationkit_events_total",
        "migrationkit_dead_letters_total",
        "migrationkit_shadow_reads_total",
        "migrationkit_fenced_writes_total",
        "migrationkit_cutover_stage",
        "migrationkit_row_count_diff",
        "migrationkit_verify_mismatches",
        "migrationkit_verify_passed",
    ):
        assert needed in charted
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
