"""verify of the kit's own entity table (leads) and the cutover gate that asks for it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.cutover.control import CutoverControl, GateRefused
from migrationkit.cutover.gates import Thresholds
from migrationkit.cutover.stages import Stage
from migrationkit.cutover.store import PostgresStageStore
from migrationkit.domain.lead import Lead
from migrationkit.outbox.worker import Backoff, PollInterval, Worker, WorkerConfig
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.verify.records import PostgresVerifications
from migrationkit.verify.runner import VerifyReport, verify
from migrationkit.verify.targets import entity_target
from tests.integration.conftest import convex_leads, postgres_leads, running, wait_until

pytestmark = pytest.mark.postgres

FAST = WorkerConfig(batch_size=50, poll=PollInterval(0.01, 0.05), backoff=Backoff(0.01, 0.1))


@pytest.fixture
def replicated(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> Iterator[ConvexLeadRepository]:
    """Leads written to Convex and carried to PostgreSQL by a running worker."""
    repo = ConvexLeadRepository(clean_convex)
    for n in range(40):
        workspace = ("acme", "globex")[n % 2]
        repo.upsert(workspace, {"email": f"lead{n}@{workspace}.example", "score": float(n)})
    worker = Worker(
        ConvexOutboxSource(clean_convex),
        PostgresApplier(clean_postgres),
        DeadLetterStore(clean_postgres),
        config=FAST,
    )
    with running(worker):
        assert wait_until(lambda: convex_leads(clean_convex) == postgres_leads(clean_postgres))
        yield repo


def run_verify(client: ConvexClient, engine: Engine, **options: Any) -> VerifyReport:
    return verify(engine, client, [entity_target(Lead)], scope="lead", **options)


def test_equal_entity_tables_pass(
    clean_convex: ConvexClient, clean_postgres: Engine, replicated: ConvexLeadRepository
) -> None:
    report = run_verify(clean_convex, clean_postgres, settle=5)
    assert report.passed, [d.describe() for d in report.tables[0].differences]
    (leads,) = report.tables
    assert leads.convex_rows == leads.postgres_rows == 40
    assert set(leads.workspaces) == {"acme", "globex"}


def test_a_changed_entity_field_and_a_lost_row_are_named(
    clean_convex: ConvexClient, clean_postgres: Engine, replicated: ConvexLeadRepository
) -> None:
    with clean_postgres.begin() as conn:
        changed = conn.execute(
            text("UPDATE leads SET score = -1 WHERE id = (SELECT min(id) FROM leads) RETURNING id")
        ).scalar_one()
        lost = conn.execute(
            text("DELETE FROM leads WHERE id = (SELECT max(id) FROM leads) RETURNING id")
        ).scalar_one()
    report = run_verify(clean_convex, clean_postgres, settle=1)
    found = {(d.key[1], d.kind, d.fields) for d in report.tables[0].differences}
    assert found == {(changed, "differs", ("score",)), (lost, "missing", ())}


def control(engine: Engine, client: ConvexClient, max_age: float = 3600) -> CutoverControl:
    return CutoverControl(
        PostgresStageStore(engine),
        {"convex": ConvexOutboxSource(client), "postgres": PgOutboxSource(engine, owner="gate")},
        Thresholds(max_backlog=0, max_lag_seconds=30, max_verify_age_seconds=max_age),
        verifications=PostgresVerifications(engine),
    )


def test_the_gate_refuses_pg_reads_without_a_recent_passing_verify_of_the_scope(
    clean_convex: ConvexClient, clean_postgres: Engine, replicated: ConvexLeadRepository
) -> None:
    gate = control(clean_postgres, clean_convex)
    gate.move(Stage.SHADOW_WRITE, entity="lead", by="test")
    gate.move(Stage.SHADOW_READ, entity="lead", by="test")  # no verify needed yet
    with pytest.raises(GateRefused, match="no passing verify of entity lead"):
        gate.move(Stage.PG_READS, entity="lead", by="test")
    # A verify of one workspace covers that workspace, not every one.
    assert run_verify(clean_convex, clean_postgres, workspace="acme", settle=5).passed
    with pytest.raises(GateRefused, match="no passing verify"):
        gate.move(Stage.PG_READS, entity="lead", by="test")
    gate.move(Stage.PG_READS, entity="lead", workspace="acme", by="test")
    # A failing verify opens nothing.
    with clean_postgres.begin() as conn:
        conn.execute(text("UPDATE leads SET score = -5 WHERE workspace_id = 'globex'"))
    assert not run_verify(clean_convex, clean_postgres, settle=0).passed
    with pytest.raises(GateRefused, match="no passing verify"):
        gate.move(Stage.PG_READS, entity="lead", workspace="globex", by="test")


def test_a_passing_verify_opens_the_gate_until_it_is_too_old(
    clean_convex: ConvexClient, clean_postgres: Engine, replicated: ConvexLeadRepository
) -> None:
    gate = control(clean_postgres, clean_convex, max_age=600)
    gate.move(Stage.SHADOW_WRITE, entity="lead", by="test")
    gate.move(Stage.SHADOW_READ, entity="lead", by="test")
    assert run_verify(clean_convex, clean_postgres, settle=5).passed
    # A run over every entity covers a move of every entity ("*").
    assert PostgresVerifications(clean_postgres, ["lead"]).passed_age("*", "*") is not None
    assert PostgresVerifications(clean_postgres, ["lead", "invoice"]).passed_age("*", "*") is None
    gate.move(Stage.PG_READS, entity="lead", by="test")
    gate.move(Stage.SHADOW_READ, entity="lead", by="test")  # backwards: never gated on verify
    with clean_postgres.begin() as conn:
        conn.execute(text("UPDATE verify_runs SET finished_at = now() - interval '2 hours'"))
    with pytest.raises(GateRefused, match=r"is \d+s old \(at most 600s\)"):
        gate.move(Stage.PG_READS, entity="lead", by="test")
    gate.move(Stage.PG_READS, entity="lead", by="test", force=True, reason="verified by hand")
    with clean_postgres.connect() as conn:
        forced = conn.execute(
            text(
                "SELECT forced FROM cutover_history WHERE to_stage = 'pg_reads'"
                " ORDER BY id DESC LIMIT 1"
            )
        ).scalar_one()
    assert forced is True


def test_the_cli_verifies_with_json_and_its_exit_code(
    convex_backend: LocalConvexBackend,
    clean_convex: ConvexClient,
    clean_postgres: Engine,
    replicated: ConvexLeadRepository,
) -> None:
    url = clean_postgres.url.render_as_string(hide_password=False)
    env = os.environ | {
        "MIGRATIONKIT_DATABASE_URL": url,
        "CONVEX_URL": convex_backend.url,
        "CONVEX_DEPLOY_KEY": convex_backend.admin_key,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "verify", "--entity", "lead", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    equal = cli("--json")
    assert equal.returncode == 0, equal.stderr
    document = json.loads(equal.stdout)
    assert document["passed"] is True
    assert document["tables"][0]["convex_rows"] == 40
    # Not a terminal: progress is plain lines on stderr, stdout stays JSON.
    assert re.search(r"^lead: done, 40 rows, [\d,]+ rows/s$", equal.stderr, re.M), equal.stderr
    with clean_postgres.begin() as conn:
        conn.execute(
            text("UPDATE leads SET email = 'x@y.example' WHERE id = (SELECT min(id) FROM leads)")
        )
    differs = cli("--settle", "0")
    assert differs.returncode == 1
    assert "differs in email" in differs.stdout
    assert convex_backend.admin_key not in differs.stdout + differs.stderr
