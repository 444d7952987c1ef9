"""``make demo``: a whole Convex -> PostgreSQL migration on embedded defaults.

It starts an embedded PostgreSQL and the local Convex backend, applies the
migrations, writes leads through the Convex repository, runs the real
worker (``python -m migrationkit.worker``) while more writes arrive, and
shows PostgreSQL in step: counts and checksums per workspace, the worker's
lag and backlog from its ``/metrics``, a few rows. Then it walks every
cutover stage forward and back through ``CutoverRouter``, with the reverse
worker running, writing in each stage. Then it does the same for an
existing app the kit did not write (``demo_existing``): introspect,
migrate, backfill under writes, tail. Then it stops everything it
started. Exit code 0 only if both stores agree at the end.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.convex.streaming_export import StreamingExport
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.migrations import upgrade
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.adapters.postgres.repository import PostgresLeadRepository
from migrationkit.cutover.control import CutoverControl
from migrationkit.cutover.fence import ConvexFence, PostgresFence
from migrationkit.cutover.gates import Thresholds, needs_verify
from migrationkit.cutover.router import LeadCutoverRouter
from migrationkit.cutover.stages import Stage
from migrationkit.cutover.store import CachedStages, PostgresStageStore
from migrationkit.demo_existing import existing_app
from migrationkit.domain.lead import Lead
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.testing.databases import embedded_server, throwaway_database
from migrationkit.verify.records import PostgresVerifications
from migrationkit.verify.runner import verify
from migrationkit.verify.targets import entity_target

WORKSPACES = ("acme", "globex", "initech")
SEGMENTS = ("startup", "enterprise", "smb", None)
APPLIED = 'result="applied"'
console = Console()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_leads(
    repo: ConvexLeadRepository, count: int, rng: random.Random
) -> list[tuple[str, str]]:
    written: list[tuple[str, str]] = []
    for n in range(count):
        workspace = WORKSPACES[n % len(WORKSPACES)]
        lead_id = repo.upsert(
            workspace,
            {
                "email": f"lead{n}@{workspace}.example",
                "segment": rng.choice(SEGMENTS),
                "score": round(rng.uniform(0, 100), 2),
                "tags": rng.sample(["vip", "trial", "churn-risk", "partner"], k=rng.randint(0, 2)),
                "profile": {"company": workspace.title(), "links": [], "notes": {"source": "demo"}},
            },
        )
        written.append((workspace, lead_id))
    return written


def _update_and_delete(
    repo: ConvexLeadRepository, leads: list[tuple[str, str]], rng: random.Random
) -> None:
    for workspace, lead_id in rng.sample(leads, k=len(leads) // 4):
        current = repo.get(workspace, lead_id)
        if current is not None:
            repo.upsert(workspace, current.model_dump() | {"score": current.score + 1})
    for workspace, lead_id in rng.sample(leads, k=len(leads) // 10):
        repo.delete(workspace, lead_id)


def _fingerprint(rows: list[tuple[str, str, int, bool]]) -> dict[str, tuple[int, int, str]]:
    """Per workspace: live count, all rows, and a checksum of (id, version, deleted)."""
    by_workspace: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for workspace, lead_id, version, deleted in rows:
        by_workspace[workspace].append((lead_id, version, deleted))
    result = {}
    for workspace, items in by_workspace.items():
        digest = hashlib.sha256(repr(sorted(items)).encode()).hexdigest()[:12]
        live = sum(1 for _, _, deleted in items if not deleted)
        result[workspace] = (live, len(items), digest)
    return result


def _convex_rows(client: ConvexClient) -> list[tuple[str, str, int, bool]]:
    export = StreamingExport(client, table_name="leads")
    return [
        (
            row.document["workspaceId"],
            row.document["id"],
            int(row.document["version"]),
            row.document.get("deletedAt") is not None,
        )
        for row in export.snapshot()
    ]


def _postgres_rows(url: Any) -> list[tuple[str, str, int, bool]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT workspace_id, id, version, deleted_at IS NOT NULL FROM leads")
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1], int(r[2]), bool(r[3])) for r in rows]


def _stop_if_running(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def _metric(metrics_text: str, name: str, label: str = "") -> str:
    """The value on the first sample line of ``name`` that mentions ``label``."""
    for line in metrics_text.splitlines():
        if line.startswith(name) and label in line:
            return line.rsplit(" ", 1)[1]
    return "-"


def main() -> int:
    rng = random.Random(7)
    with ExitStack() as stack:
        console.rule("[bold]migrationkit demo: Convex -> PostgreSQL")
        console.print("starting an embedded PostgreSQL and the local Convex backend ...")
        server = stack.enter_context(embedded_server())
        database_url = stack.enter_context(throwaway_database(server.admin_url, "mk_demo"))
        upgrade(database_url)
        backend = stack.enter_context(LocalConvexBackend())
        client = stack.enter_context(ConvexClient(backend.url, admin_key=backend.admin_key))
        repo = ConvexLeadRepository(client)
        console.print(f"  PostgreSQL: {server.describe()}\n  Convex:     {backend.url}")

        leads = _write_leads(repo, 150, rng)
        console.print(f"wrote {len(leads)} leads to Convex across {len(WORKSPACES)} workspaces")

        metrics_port = _free_port()
        env = os.environ | {
            "MIGRATIONKIT_DATABASE_URL": database_url.render_as_string(hide_password=False),
            "CONVEX_URL": backend.url,
            "CONVEX_DEPLOY_KEY": backend.admin_key,
            "MIGRATIONKIT_METRICS_PORT": str(metrics_port),
            "MIGRATIONKIT_BATCH_SIZE": "100",
        }
        console.print("$ migrationkit doctor --role worker   (the wiring, before anything runs)")
        doctor = subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "doctor", "--role", "worker"], env=env
        )
        console.print("starting the worker: python -m migrationkit.worker")
        worker = subprocess.Popen([sys.executable, "-m", "migrationkit.worker"], env=env)
        stack.callback(_stop_if_running, worker)

        console.print("while it runs: updates, deletes and new leads keep arriving ...")
        _update_and_delete(repo, leads, rng)
        leads += _write_leads(repo, 50, rng)

        deadline = time.monotonic() + 60
        convex_view = _fingerprint(_convex_rows(client))
        postgres_view = _fingerprint(_postgres_rows(database_url))
        while postgres_view != convex_view and time.monotonic() < deadline:
            time.sleep(0.5)
            postgres_view = _fingerprint(_postgres_rows(database_url))
        # The backlog gauge is refreshed about once a second: let it catch up.
        metrics = ""
        for _ in range(20):
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            if _metric(metrics, "migrationkit_outbox_backlog") == "0.0":
                break
            time.sleep(0.25)

        table = Table("workspace", "Convex live/all", "PostgreSQL live/all", "checksum", "in step")
        for workspace in WORKSPACES:
            c = convex_view.get(workspace, (0, 0, "-"))
            p = postgres_view.get(workspace, (0, 0, "-"))
            table.add_row(
                workspace,
                f"{c[0]}/{c[1]}",
                f"{p[0]}/{p[1]}",
                p[2],
                "[green]yes" if c == p else "[red]no",
            )
        console.print(table)
        console.print(
            "worker metrics: lag "
            f"{_metric(metrics, 'migrationkit_replication_lag_seconds')}s, backlog "
            f"{_metric(metrics, 'migrationkit_outbox_backlog')}, applied "
            f"{_metric(metrics, 'migrationkit_events_total', APPLIED)}"
        )
        engine = make_engine(database_url)
        with engine.connect() as conn:
            sample = conn.execute(
                text(
                    "SELECT workspace_id, id, email, segment, version, deleted_at IS NOT NULL"
                    " FROM leads ORDER BY updated_at DESC LIMIT 5"
                )
            ).all()
        engine.dispose()
        rows = Table("workspace", "id", "email", "segment", "version", "deleted")
        for row in sample:
            rows.add_row(*(str(v) for v in row))
        console.print(rows)

        in_step = postgres_view == convex_view
        walked = _walk_stages(client, database_url, env)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        console.print(f"worker stopped on SIGTERM with exit code {code}")
        final = _fingerprint(_convex_rows(client)) == _fingerprint(_postgres_rows(database_url))
        mirrored = existing_app(console, database_url)
        ok = in_step and walked and final and code == 0 and mirrored and doctor.returncode == 0
        console.rule("[green]PostgreSQL is in step with Convex" if ok else "[red]NOT in step")
    return 0 if ok else 1


def _walk_stages(client: ConvexClient, database_url: Any, env: dict[str, str]) -> bool:
    """Every cutover stage forward and back, writing through the router in each."""
    console.rule("[bold]the cutover, one stage at a time")
    engine = make_engine(database_url)
    reverse = subprocess.Popen(
        [sys.executable, "-m", "migrationkit.worker"],
        env=env
        | {
            "MIGRATIONKIT_DIRECTION": "pg_to_convex",
            "MIGRATIONKIT_SOURCE": "pg_outbox",
            "MIGRATIONKIT_METRICS_PORT": "-1",
        },
    )
    try:
        store = PostgresStageStore(engine)
        stages = CachedStages(store, ttl=0.1)
        control = CutoverControl(
            store,
            {
                "convex": ConvexOutboxSource(client),
                "postgres": PgOutboxSource(engine, owner="demo"),
            },
            Thresholds(max_backlog=0, max_lag_seconds=30),
            convex_fence=ConvexFence(client),
            verifications=PostgresVerifications(engine),
        )
        router = LeadCutoverRouter(
            convex=ConvexLeadRepository(client),
            postgres=PostgresLeadRepository(engine),
            stages=stages,
            postgres_fence=PostgresFence(engine),
        )
        table = Table("stage", "writes to", "reads from", "lead written", "read back", "gate")
        path = [*Stage, *reversed(list(Stage)[:-1])]
        for step, stage in enumerate(path):
            gate = "-"
            if step:
                current = control.current()
                if needs_verify(current, stage):
                    # The gate asks for proof that PostgreSQL holds what Convex holds.
                    report = verify(engine, client, [entity_target(Lead)], scope="lead")
                    leads = report.tables[0]
                    console.print(
                        f"verify before {stage.value}: {leads.convex_rows} leads in Convex,"
                        f" {leads.postgres_rows} in PostgreSQL,"
                        f" {leads.settled} in flight at the cut and delivered since,"
                        f" {len(leads.differences)} differences"
                        f" ({'passed' if report.passed else 'FAILED'})"
                    )
                deadline = time.monotonic() + 30
                while not control.gate(current, stage).allowed and time.monotonic() < deadline:
                    time.sleep(0.1)  # as an operator would: wait for the outbox to drain
                control.move(stage, by="demo", reason="make demo")
                stages.invalidate()
                gate = "passed"
            lead_id = router.upsert("acme", {"email": f"stage{step}-{stage.value}@acme.example"})
            found = router.get("acme", lead_id)
            table.add_row(
                stage.value,
                stage.authority.value,
                stage.reads_from.value,
                lead_id[-8:],
                "yes" if found is not None else "not yet (lag)",
                gate,
            )
        console.print(table)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _fingerprint(_convex_rows(client)) == _fingerprint(_postgres_rows(database_url)):
                return True
            time.sleep(0.2)
        return False
    finally:
        reverse.send_signal(signal.SIGTERM)
        reverse.wait(timeout=30)
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
