"""The cutover, end to end on PostgreSQL and the local Convex backend: every
stage forward and back, shadow reads, per-workspace overrides, a stage
change under concurrent traffic, and the gates."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.applier import ConvexApplier
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.adapters.postgres.repository import PostgresLeadRepository
from migrationkit.cutover.control import CutoverControl, GateRefused
from migrationkit.cutover.fence import ConvexFence, PostgresFence
from migrationkit.cutover.gates import Thresholds
from migrationkit.cutover.router import LeadCutoverRouter
from migrationkit.cutover.stages import Stage, Store
from migrationkit.cutover.store import CachedStages, PostgresStageStore
from migrationkit.domain.change import Change
from migrationkit.errors import StoreUnavailable
from migrationkit.outbox.worker import Backoff, PollInterval, Worker, WorkerConfig
from migrationkit.ports.changes import ApplyResult, ChangeSink
from migrationkit.testing.convex_backend import LocalConvexBackend
from tests.integration.conftest import convex_leads, postgres_leads, running, wait_until

FAST = WorkerConfig(batch_size=50, poll=PollInterval(0.01, 0.05), backoff=Backoff(0.01, 0.1))


class FlakySink:
    """A non-authoritative store that fails a share of inline writes."""

    def __init__(self, inner: ChangeSink, rate: float, seed: int = 3) -> None:
        self.inner = inner
        self.name = inner.name
        self.rate = rate
        self.rng = random.Random(seed)
        self.failed = 0

    def apply(self, changes: Sequence[Change]) -> ApplyResult:
        if self.rng.random() < self.rate:
            self.failed += 1
            raise StoreUnavailable("injected: the non-authoritative store is down")
        return self.inner.apply(changes)


@dataclass
class Cutover:
    router: LeadCutoverRouter
    control: CutoverControl
    stages: CachedStages
    convex: ConvexLeadRepository
    postgres: PostgresLeadRepository
    sinks: dict[Store, FlakySink]

    def move(self, stage: Stage, **scope: str) -> None:
        """As an operator would: wait for the gate, then move."""
        current = self.control.current(**scope)
        assert wait_until(lambda: self.control.gate(current, stage).allowed, timeout=60), (
            self.control.gate(current, stage).reasons
        )
        self.control.move(stage, by="test", **scope)
        self.stages.invalidate()


@contextmanager
def cutover(
    client: ConvexClient, engine: Engine, *, inline: bool = True, flaky: float = 0.0
) -> Iterator[Cutover]:
    """A router on both stores, with workers running in both directions."""
    store = PostgresStageStore(engine)
    stages = CachedStages(store, ttl=0.05)
    sinks = {
        Store.POSTGRES: FlakySink(PostgresApplier(engine), flaky),
        Store.CONVEX: FlakySink(ConvexApplier(client), flaky, seed=4),
    }
    convex_repo = ConvexLeadRepository(client)
    pg_repo = PostgresLeadRepository(engine)
    router = LeadCutoverRouter(
        convex=convex_repo,
        postgres=pg_repo,
        stages=stages,
        shadow_writes="inline" if inline else "outbox",
        sinks=sinks,
        postgres_fence=PostgresFence(engine),
    )
    control = CutoverControl(
        store,
        {
            "convex": ConvexOutboxSource(client),
            "postgres": PgOutboxSource(engine, owner="gate"),
        },
        Thresholds(max_backlog=0, max_lag_seconds=30),
        convex_fence=ConvexFence(client),
    )
    forward = Worker(
        ConvexOutboxSource(client), PostgresApplier(engine), DeadLetterStore(engine), config=FAST
    )
    backward = Worker(
        PgOutboxSource(engine, owner="reverse", lease_seconds=5),
        ConvexApplier(client),
        DeadLetterStore(engine),
        config=FAST,
    )
    with ExitStack() as stack:
        stack.enter_context(running(forward))
        stack.enter_context(running(backward))
        yield Cutover(router, control, stages, convex_repo, pg_repo, sinks)


def in_step(client: ConvexClient, engine: Engine) -> bool:
    return convex_leads(client) == postgres_leads(engine)


def test_walk_through_every_stage_and_back_writing_in_each(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    path = [*Stage, *reversed(list(Stage)[:-1])]  # forward to pg_only, back to convex_only
    expected: dict[str, str] = {}
    with cutover(clean_convex, clean_postgres, flaky=0.3) as c:
        for step, stage in enumerate(path):
            if step:
                c.move(stage)
            assert c.router.stage("acme") is stage
            # Writes in this stage: new leads, updates, a delete. None may fail,
            # whatever the non-authoritative store does.
            new = [c.router.upsert("acme", {"email": f"s{step}n{n}@example.com"}) for n in range(4)]
            for lead_id in new:
                expected[lead_id] = f"s{step}n{new.index(lead_id)}@example.com"
            if len(expected) > 4:
                some_id = sorted(expected)[step % len(expected)]
                current = c.router.get("acme", some_id)
                if current is not None:
                    c.router.upsert(
                        "acme", current.model_dump() | {"email": f"upd{step}@example.com"}
                    )
                    expected[some_id] = f"upd{step}@example.com"
            victim = new[0]
            assert c.router.delete("acme", victim) is True
            expected.pop(victim)
            # Reads see the stage's read store, which has this stage's writes.
            authority = c.router.repos[stage.authority]
            for lead_id in new[1:]:
                assert authority.get("acme", lead_id) is not None
        assert wait_until(lambda: in_step(clean_convex, clean_postgres), timeout=60)
    live = {
        lead_id: email
        for (_, lead_id), (_, deleted, email) in convex_leads(clean_convex).items()
        if not deleted
    }
    assert live == expected
    assert c.sinks[Store.POSTGRES].failed + c.sinks[Store.CONVEX].failed > 0


def test_a_write_in_pg_primary_is_in_convex_after_rollback(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    with cutover(clean_convex, clean_postgres, inline=False) as c:
        for stage in list(Stage)[1:5]:
            c.move(stage)
        assert c.router.stage("acme") is Stage.PG_PRIMARY
        lead_id = c.router.upsert("acme", {"email": "written-in-pg-primary@example.com"})
        assert c.postgres.get("acme", lead_id) is not None
        # Rolling back needs Convex to have every PostgreSQL write: the gate
        # waits for PostgreSQL's outbox to drain.
        assert wait_until(lambda: c.control.gate(Stage.PG_PRIMARY, Stage.PG_READS).allowed)
        rolled = c.control.rollback(by="test")
        c.stages.invalidate()
        assert rolled is Stage.PG_READS
        in_convex = c.convex.get("acme", lead_id)
        assert in_convex is not None and in_convex.email == "written-in-pg-primary@example.com"
        assert c.router.stage("acme").authority is Store.CONVEX


def test_shadow_read_mismatch_is_counted_and_logged_and_the_caller_gets_convex(
    clean_convex: ConvexClient, clean_postgres: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with cutover(clean_convex, clean_postgres) as c:
        c.move(Stage.SHADOW_WRITE)
        c.move(Stage.SHADOW_READ)
        lead_id = c.router.upsert("acme", {"email": "real@example.com", "score": 1.0})
        assert wait_until(lambda: c.postgres.get("acme", lead_id) is not None)
        assert c.router.get("acme", lead_id) is not None
        metrics = c.router.metrics.shadow_reads
        assert metrics.labels("lead", "match")._value.get() >= 1
        with clean_postgres.begin() as conn:  # behind the kit's back
            conn.execute(
                text("UPDATE leads SET email = 'changed@example.com', score = 2 WHERE id = :i"),
                {"i": lead_id},
            )
        with caplog.at_level(logging.WARNING, logger="migrationkit.cutover"):
            answer = c.router.get("acme", lead_id)
        assert answer is not None and answer.email == "real@example.com"  # authoritative
        assert metrics.labels("lead", "mismatch")._value.get() == 1
        logged = caplog.text
        assert "email: 'real@example.com' != 'changed@example.com'" in logged
        assert "score: 1.0 != 2.0" in logged


def test_shadow_read_errors_never_reach_the_caller(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    dead = make_engine(
        "postgresql://nobody@127.0.0.1:1/nothing", connect_args={"connect_timeout": 1}
    )
    store = PostgresStageStore(clean_postgres)
    store.set(Stage.SHADOW_READ, by="test")
    router = LeadCutoverRouter(
        convex=ConvexLeadRepository(clean_convex),
        postgres=PostgresLeadRepository(dead),
        stages=CachedStages(store, ttl=60),
    )
    lead_id = router.upsert("acme", {"email": "ok@example.com"})
    got = router.get("acme", lead_id)
    assert got is not None and got.email == "ok@example.com"
    assert router.metrics.shadow_reads.labels("lead", "error")._value.get() == 1


def test_a_workspace_override_moves_one_tenant_while_others_stay(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    with cutover(clean_convex, clean_postgres, inline=False) as c:
        c.move(Stage.SHADOW_WRITE)
        for stage in (Stage.SHADOW_READ, Stage.PG_READS, Stage.PG_PRIMARY):
            c.move(stage, workspace="early")
        assert c.router.stage("early") is Stage.PG_PRIMARY
        assert c.router.stage("late") is Stage.SHADOW_WRITE
        early = c.router.upsert("early", {"email": "e@example.com"})
        late = c.router.upsert("late", {"email": "l@example.com"})
        with clean_postgres.connect() as conn:
            pg_events = {r[0] for r in conn.execute(text("SELECT entity_id FROM outbox_events"))}
        assert pg_events == {early}  # only the early tenant wrote to PostgreSQL first
        convex_events = {e.entity_id for e in c.convex.outbox_events("late")}
        assert convex_events == {late} and c.convex.outbox_events("early") == []
        assert wait_until(lambda: in_step(clean_convex, clean_postgres))


@pytest.mark.parametrize("shadow_writes", ["outbox", "inline"])
def test_stage_changes_under_concurrent_traffic_fail_no_call_and_lose_nothing(
    clean_convex: ConvexClient, clean_postgres: Engine, shadow_writes: str
) -> None:
    # The authority switches twice while three writers keep going; the fence
    # makes the old authority refuse writes until the new one has caught up.
    errors: list[BaseException] = []
    last_written: dict[tuple[str, str], str] = {}
    stop = threading.Event()
    with cutover(clean_convex, clean_postgres, inline=shadow_writes == "inline") as c:

        def traffic(worker_no: int) -> None:
            rng = random.Random(worker_no)
            workspace = f"ws{worker_no}"
            mine: list[str] = []
            n = 0
            while not stop.is_set():
                try:
                    if not mine or rng.random() < 0.4:
                        email = f"w{worker_no}n{n}@example.com"
                        lead_id = c.router.upsert(workspace, {"email": email})
                        mine.append(lead_id)
                    else:
                        lead_id = rng.choice(mine)
                        email = f"w{worker_no}u{n}@example.com"
                        c.router.upsert(workspace, {"id": lead_id, "email": email})
                    last_written[(workspace, lead_id)] = email
                    c.router.get(workspace, lead_id)
                except BaseException as exc:
                    errors.append(exc)
                    return
                n += 1

        threads = [threading.Thread(target=traffic, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        try:
            for stage in [*list(Stage)[1:5], *reversed(list(Stage)[:4])]:
                # Forced: traffic never stops, so a gate could wait forever;
                # the point here is that no call fails and nothing is lost.
                c.control.move(stage, by="test", force=True)
                wait_until(lambda: False, timeout=0.4)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        assert not errors, errors
        assert wait_until(lambda: in_step(clean_convex, clean_postgres), timeout=60)
        assert c.router.metrics.fenced_writes.labels("lead")._value.get() > 0, (
            "no write met the fence"
        )
    final = {key: email for key, (_, _, email) in convex_leads(clean_convex).items()}
    assert final == last_written


def test_forward_gate_refuses_while_behind_and_allows_when_caught_up(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    store = PostgresStageStore(clean_postgres)
    convex_outbox = ConvexOutboxSource(clean_convex)
    control = CutoverControl(
        store,
        {"convex": convex_outbox, "postgres": PgOutboxSource(clean_postgres, owner="gate")},
        Thresholds(max_backlog=5, max_lag_seconds=30),
        convex_fence=ConvexFence(clean_convex),
        drain_timeout=0.5,
    )
    control.move(Stage.SHADOW_WRITE, by="test")
    control.move(Stage.SHADOW_READ, by="test")
    repo = ConvexLeadRepository(clean_convex)
    for n in range(20):  # PostgreSQL is 20 changes behind: no worker runs yet
        repo.upsert("acme", {"email": f"g{n}@example.com"})
    with pytest.raises(GateRefused, match="20 changes"):
        control.move(Stage.PG_READS, by="test")
    assert control.current() is Stage.SHADOW_READ
    worker = Worker(
        convex_outbox, PostgresApplier(clean_postgres), DeadLetterStore(clean_postgres), config=FAST
    )
    with running(worker):
        assert wait_until(lambda: control.gate(Stage.SHADOW_READ, Stage.PG_READS).allowed)
    control.move(Stage.PG_READS, by="test")
    assert control.current() is Stage.PG_READS
    # Forcing past the thresholds is possible, and the history says so.
    control.move(Stage.SHADOW_READ, by="test")  # backwards: no gate
    for n in range(10):
        repo.upsert("acme", {"email": f"h{n}@example.com"})
    control.move(Stage.PG_READS, by="test", force=True, reason="drill")
    with clean_postgres.connect() as conn:
        history = conn.execute(
            text("SELECT to_stage, forced, reason FROM cutover_history ORDER BY id")
        ).all()
    assert history[-1] == ("pg_reads", True, "drill")
    assert [h[1] for h in history[:-1]] == [False, False, False, False]
    # Switching the authority is never forced past an undrained outbox: the
    # fence is undone and Convex keeps taking writes.
    with pytest.raises(GateRefused, match="did not drain"):
        control.move(Stage.PG_PRIMARY, by="test", force=True)
    assert control.current() is Stage.PG_READS
    repo.upsert("acme", {"email": "still-writable@example.com"})


def test_cli_status_set_and_rollback(
    clean_convex: ConvexClient,
    clean_postgres: Engine,
    migrationkit_database_url: URL,
    convex_backend: LocalConvexBackend,
) -> None:
    env = os.environ | {
        "MIGRATIONKIT_DATABASE_URL": migrationkit_database_url.render_as_string(
            hide_password=False
        ),
        "CONVEX_URL": convex_backend.url,
        "CONVEX_DEPLOY_KEY": convex_backend.admin_key,
        "USER": "operator-test",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "cutover", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert "everything is at convex_only" in cli("status").stdout
    moved = cli("set", "shadow_write", "--reason", "start")
    assert moved.returncode == 0 and "convex_only -> shadow_write" in moved.stdout
    scoped = cli("set", "shadow_read", "--workspace", "acme")
    assert scoped.returncode == 0, scoped.stderr
    status = cli("status")
    assert "shadow_write" in status.stdout and "acme" in status.stdout
    assert "operator-test" in status.stdout and "convex outbox: 0 pending" in status.stdout
    back = cli("rollback", "--workspace", "acme")
    assert back.returncode == 0 and "shadow_read -> shadow_write" in back.stdout
    unknown = cli("set", "sideways")
    assert unknown.returncode == 2 and "unknown stage 'sideways'" in unknown.stderr
    assert convex_backend.admin_key not in unknown.stderr + status.stdout
    store = PostgresStageStore(clean_postgres)
    assert store.stage_for("lead", "acme") is Stage.SHADOW_WRITE
