"""The worker end to end: Convex (local backend) -> PostgreSQL and back,
with crashes, faults, poison events and several workers at once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
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
from migrationkit.adapters.postgres.migrations import upgrade
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.adapters.postgres.repository import PostgresLeadRepository
from migrationkit.observability.http import MetricsServer
from migrationkit.outbox.worker import Backoff, PollInterval, Worker, WorkerConfig
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.testing.databases import embedded_server, throwaway_database
from tests.integration.conftest import convex_leads, postgres_leads, running, wait_until

FAST = dict(poll=PollInterval(0.01, 0.1), backoff=Backoff(base=0.01, cap=0.2))


def convex_to_pg_worker(client: ConvexClient, engine: Engine, **config: Any) -> Worker:
    settings = {"batch_size": 50, "max_attempts": 3, **FAST, **config}
    return Worker(
        ConvexOutboxSource(client),
        PostgresApplier(engine),
        DeadLetterStore(engine),
        config=WorkerConfig(**settings),
    )


def write_history(repo: ConvexLeadRepository, count: int, seed: int = 1) -> None:
    """Inserts, updates and soft deletes over three workspaces."""
    rng = random.Random(seed)
    ids: list[tuple[str, str]] = []
    for n in range(count):
        workspace = f"ws{n % 3}"
        roll = rng.random()
        if roll < 0.5 or not ids:
            ids.append((workspace, repo.upsert(workspace, {"email": f"l{n}@example.com"})))
        elif roll < 0.9:
            ws, lead_id = rng.choice(ids)
            repo.upsert(ws, {"id": lead_id, "email": f"u{n}@example.com", "score": float(n)})
        else:
            ws, lead_id = rng.choice(ids)
            repo.delete(ws, lead_id)


def pending_in_convex(client: ConvexClient) -> int:
    return int(client.query("outbox:stats", {"limit": 10000.0})["pending"])


def in_step(client: ConvexClient, engine: Engine) -> bool:
    return postgres_leads(engine) == convex_leads(client)


def test_worker_carries_every_convex_write_to_postgres(
    clean_convex: ConvexClient, clean_postgres: Engine, write_audit: Callable[[], list[Any]]
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    write_history(repo, 120)
    worker = convex_to_pg_worker(clean_convex, clean_postgres)
    with running(worker):
        assert wait_until(lambda: in_step(clean_convex, clean_postgres))
        write_history(repo, 60, seed=2)  # live traffic while it runs
        assert wait_until(lambda: in_step(clean_convex, clean_postgres))
        assert wait_until(lambda: pending_in_convex(clean_convex) == 0)
    writes = write_audit()
    assert len(writes) == len(set(writes)), "some (id, version) was written twice"


def test_duplicated_and_reordered_batches_end_at_the_latest_version(
    clean_convex: ConvexClient, clean_postgres: Engine, write_audit: Callable[[], list[Any]]
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    write_history(repo, 80)
    source = ConvexOutboxSource(clean_convex)
    changes = source.fetch(10_000).changes
    shuffled = changes * 2  # every event twice
    random.Random(3).shuffle(shuffled)
    applier = PostgresApplier(clean_postgres)
    for start in range(0, len(shuffled), 17):
        applier.apply(shuffled[start : start + 17])
    assert postgres_leads(clean_postgres) == convex_leads(clean_convex)
    writes = write_audit()
    assert len(writes) == len(set(writes))


def test_poison_event_is_dead_lettered_and_replayed_once_after_a_fix(
    clean_convex: ConvexClient,
    clean_postgres: Engine,
    migrationkit_database_url: URL,
    convex_backend: LocalConvexBackend,
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    # PostgreSQL refuses one value, as an out-of-date schema might.
    with clean_postgres.begin() as conn:
        conn.execute(
            text("ALTER TABLE leads ADD CONSTRAINT no_poison CHECK (email <> 'poison@example.com')")
        )
    try:
        poison_id = repo.upsert("ws", {"email": "poison@example.com"})
        good = [repo.upsert("ws", {"email": f"good{n}@example.com"}) for n in range(20)]
        worker = convex_to_pg_worker(clean_convex, clean_postgres)
        dead_letters = DeadLetterStore(clean_postgres)
        with running(worker):
            assert wait_until(lambda: dead_letters.count() == 1)
            assert wait_until(lambda: pending_in_convex(clean_convex) == 0)
        pg = postgres_leads(clean_postgres)
        assert {lead_id for (_, lead_id) in pg} == set(good)  # the rest kept flowing
        (letter,) = dead_letters.list()
        assert letter.entity_id == poison_id and letter.attempts == 3
        assert "no_poison" in letter.error or "check" in letter.error.lower()
    finally:
        with clean_postgres.begin() as conn:  # the fix
            conn.execute(text("ALTER TABLE leads DROP CONSTRAINT IF EXISTS no_poison"))

    env = os.environ | {
        "MIGRATIONKIT_DATABASE_URL": migrationkit_database_url.render_as_string(
            hide_password=False
        ),
        "CONVEX_URL": convex_backend.url,
        "CONVEX_DEPLOY_KEY": convex_backend.admin_key,
    }
    command = [sys.executable, "-m", "migrationkit.cli", "dlq"]
    listed = subprocess.run([*command, "list"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and letter.event_id in listed.stdout
    for _ in range(2):  # replaying twice applies it once
        replay = subprocess.run(
            [*command, "replay", "--all"], env=env, capture_output=True, text=True
        )
        assert replay.returncode == 0, replay.stderr
    assert postgres_leads(clean_postgres)[("ws", poison_id)][0] == 1
    assert dead_letters.count() == 0 and dead_letters.count(include_replayed=True) == 1
    with clean_postgres.connect() as conn:
        inbox = conn.execute(
            text("SELECT count(*) FROM processed_events WHERE event_id = :e"),
            {"e": letter.event_id},
        ).scalar_one()
    assert inbox == 1


def test_several_workers_at_once_apply_nothing_twice(
    clean_convex: ConvexClient, clean_postgres: Engine, write_audit: Callable[[], list[Any]]
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    workers = [convex_to_pg_worker(clean_convex, clean_postgres, batch_size=20) for _ in range(3)]
    stops = []
    threads = []
    for worker in workers:
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        stops.append(stop)
        threads.append(thread)
    try:
        write_history(repo, 150, seed=5)
        assert wait_until(lambda: in_step(clean_convex, clean_postgres))
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(timeout=60)
    writes = write_audit()
    assert len(writes) == len(set(writes)), "an event was applied twice"
    # the trigger refuses a version going down, so none did


def test_pg_outbox_to_convex_with_several_leased_workers(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    pg_repo = PostgresLeadRepository(clean_postgres)
    rng = random.Random(9)
    ids = []
    for n in range(90):
        if n % 3 == 2 and ids:
            pg_repo.upsert("ws", {"id": rng.choice(ids), "email": f"u{n}@example.com"})
        else:
            ids.append(pg_repo.upsert("ws", {"email": f"p{n}@example.com"}))
    pg_repo.delete("ws", ids[0])
    workers = [
        Worker(
            PgOutboxSource(clean_postgres, owner=f"w{i}", lease_seconds=5),
            ConvexApplier(clean_convex),
            DeadLetterStore(clean_postgres),
            config=WorkerConfig(batch_size=10, **FAST),
        )
        for i in range(3)
    ]
    stops = [threading.Event() for _ in workers]
    threads = [
        threading.Thread(target=w.run, args=(s,), daemon=True)
        for w, s in zip(workers, stops, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: convex_leads(clean_convex) == postgres_leads(clean_postgres))
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(timeout=60)
    with clean_postgres.connect() as conn:
        statuses = Counter(
            r[0] for r in conn.execute(text("SELECT status FROM outbox_events")).all()
        )
    assert statuses == {"done": 91}
    # Applying to Convex recorded no new outbox events there: nothing echoes back.
    assert pending_in_convex(clean_convex) == 0


class FaultyTransport(httpx.BaseTransport):
    """Injects faults in front of the local backend: 503s and dropped
    connections before the request is sent, and timeouts after it was."""

    def __init__(self, rate: float, seed: int = 11) -> None:
        self.inner = httpx.HTTPTransport()
        self.rate = rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            roll = self.rng.random()
        if roll < self.rate / 3:
            self.injected["503"] += 1
            return httpx.Response(503, json={"code": "Overloaded", "message": "injected"})
        if roll < 2 * self.rate / 3:
            self.injected["connect"] += 1
            raise httpx.ConnectError("injected: connection refused", request=request)
        response = self.inner.handle_request(request)
        if roll < self.rate:
            response.read()
            self.injected["timeout"] += 1
            raise httpx.ReadTimeout("injected: reply lost", request=request)
        return response


def test_worker_converges_through_convex_faults(
    convex_backend: LocalConvexBackend, clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    write_history(repo, 100, seed=4)
    transport = FaultyTransport(rate=0.4)
    with httpx.Client(transport=transport) as http:
        faulty = ConvexClient(
            convex_backend.url, admin_key=convex_backend.admin_key, http=http, retry_deadline=2.0
        )
        worker = convex_to_pg_worker(faulty, clean_postgres, batch_size=15)
        with running(worker):
            assert wait_until(lambda: in_step(clean_convex, clean_postgres), timeout=120)
            assert wait_until(lambda: pending_in_convex(clean_convex) == 0, timeout=60)
    assert min(transport.injected.values()) > 0 and len(transport.injected) == 3
    assert DeadLetterStore(clean_postgres).count() == 0  # an outage never dead-letters


def test_metrics_and_health_are_served_with_bounded_labels(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    ids = [repo.upsert("ws", {"email": f"m{n}@example.com"}) for n in range(10)]
    worker = convex_to_pg_worker(clean_convex, clean_postgres)
    server = MetricsServer(
        worker.metrics.registry, port=0, healthy=lambda: worker.seconds_since_beat() < 5
    ).start()
    try:
        with running(worker):
            assert wait_until(lambda: in_step(clean_convex, clean_postgres))
            time.sleep(1.2)  # one backlog observation
            body = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
            health = httpx.get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        server.stop()
    assert health.status_code == 200
    for name in (
        "migrationkit_replication_lag_seconds",
        "migrationkit_outbox_backlog",
        "migrationkit_outbox_oldest_pending_age_seconds",
        "migrationkit_events_total",
        "migrationkit_retries_total",
        "migrationkit_dead_letters_total",
        "migrationkit_batch_duration_seconds_bucket",
    ):
        assert name in body, name
    assert 'migrationkit_events_total{result="applied",sink="postgres"} 10.0' in body or (
        'migrationkit_events_total{sink="postgres",result="applied"} 10.0' in body
    )
    assert not any(lead_id in body for lead_id in ids), "an entity id leaked into a label"


# -- the real entrypoint, as a process --------------------------------------------


@pytest.fixture
def worker_env(
    migrationkit_database_url: URL, convex_backend: LocalConvexBackend, clean_postgres: Engine
) -> Iterator[dict[str, str]]:
    yield os.environ | {
        "MIGRATIONKIT_DATABASE_URL": migrationkit_database_url.render_as_string(
            hide_password=False
        ),
        "CONVEX_URL": convex_backend.url,
        "CONVEX_DEPLOY_KEY": convex_backend.admin_key,
        "MIGRATIONKIT_METRICS_PORT": "-1",
        "MIGRATIONKIT_BATCH_SIZE": "5",
        "MIGRATIONKIT_POLL_MIN": "0.01",
    }


def start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrationkit.worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigkill_mid_batch_then_restart_converges_without_double_apply(
    clean_convex: ConvexClient,
    clean_postgres: Engine,
    worker_env: dict[str, str],
    write_audit: Callable[[], list[Any]],
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    write_history(repo, 300, seed=6)
    first = start_worker(worker_env)
    try:
        # Killed while it is part-way through: some applied, not all.
        assert wait_until(lambda: len(postgres_leads(clean_postgres)) >= 20, every=0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert not in_step(clean_convex, clean_postgres), "finished before the kill"
    finally:
        if first.poll() is None:
            first.kill()
    second = start_worker(worker_env)
    try:
        assert wait_until(lambda: in_step(clean_convex, clean_postgres), timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    writes = write_audit()
    assert len(writes) == len(set(writes)), "an event was applied twice"
    assert second.returncode == 0


def test_sigterm_finishes_the_batch_and_exits_cleanly(
    clean_convex: ConvexClient, clean_postgres: Engine, worker_env: dict[str, str]
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    write_history(repo, 40)
    process = start_worker(worker_env)
    assert wait_until(lambda: in_step(clean_convex, clean_postgres))
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "stopped cleanly" in output


def test_bad_settings_are_refused_clearly(worker_env: dict[str, str]) -> None:
    for change, message in (
        ({"MIGRATIONKIT_DIRECTION": "sideways"}, "MIGRATIONKIT_DIRECTION"),
        ({"MIGRATIONKIT_DIRECTION": "pg_to_convex"}, "does not feed"),
        ({"MIGRATIONKIT_BATCH_SIZE": "0"}, "MIGRATIONKIT_BATCH_SIZE"),
        ({"CONVEX_URL": "ftp://nowhere"}, "URL"),
    ):
        env = worker_env | change
        result = subprocess.run(
            [sys.executable, "-m", "migrationkit.worker"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 2, (change, result.stderr)
        assert message in result.stderr, (change, result.stderr)
        assert worker_env["CONVEX_DEPLOY_KEY"] not in result.stderr
    missing = {k: v for k, v in worker_env.items() if k != "MIGRATIONKIT_DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "migrationkit.worker"], env=missing, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: MIGRATIONKIT_DATABASE_URL is not set"]


def test_worker_rides_through_a_postgresql_restart(clean_convex: ConvexClient) -> None:
    # A server of its own: this test restarts it under the worker.
    with embedded_server() as server, throwaway_database(server.admin_url, "mk_restart") as url:
        assert server.restart is not None
        upgrade(url)
        engine = make_engine(url, pool_pre_ping=True)
        repo = ConvexLeadRepository(clean_convex)
        write_history(repo, 60)
        worker = convex_to_pg_worker(clean_convex, engine)
        try:
            with running(worker):
                assert wait_until(lambda: in_step(clean_convex, engine))
                # Writes keep arriving while PostgreSQL goes down and comes back.
                writer = threading.Thread(target=write_history, args=(repo, 120, 8))
                writer.start()
                time.sleep(0.2)
                server.restart()
                writer.join(timeout=120)
                assert wait_until(lambda: in_step(clean_convex, engine), timeout=120)
        finally:
            engine.dispose()


def test_pg_outbox_poison_counts_attempts_durably_and_is_buried(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    pg_repo = PostgresLeadRepository(clean_postgres)
    good = pg_repo.upsert("ws", {"email": "fine@example.com"})
    poison = pg_repo.upsert("ws", {"email": "soon-broken@example.com"})
    with clean_postgres.begin() as conn:  # a payload no store would accept
        conn.execute(
            text(
                "UPDATE outbox_events SET payload = jsonb_set(payload, '{email}', '\"nope\"')"
                " WHERE entity_id = :i"
            ),
            {"i": poison},
        )

    def worker(owner: str) -> Worker:
        return Worker(
            PgOutboxSource(clean_postgres, owner=owner, lease_seconds=5),
            ConvexApplier(clean_convex),
            DeadLetterStore(clean_postgres),
            config=WorkerConfig(batch_size=10, max_attempts=2, **FAST),
        )

    first = worker("first")
    assert first.run_once() == (2, False)  # attempt 1 fails; the good one is applied
    assert ConvexLeadRepository(clean_convex).get("ws", good) is not None
    assert DeadLetterStore(clean_postgres).count() == 0
    with clean_postgres.begin() as conn:  # make the retry due now
        conn.execute(text("UPDATE outbox_events SET next_attempt_at = now()"))
    # A new process: the outbox row remembers the first attempt.
    second = worker("second")
    fetched, _ = second.run_once()
    assert fetched >= 1
    (letter,) = DeadLetterStore(clean_postgres).list()
    assert letter.entity_id == poison and letter.attempts == 2
    with clean_postgres.connect() as conn:
        statuses = dict(conn.execute(text("SELECT entity_id, status FROM outbox_events")).all())
    assert statuses == {good: "done", poison: "dead"}


def test_dlq_commands_refuse_bad_input_clearly(worker_env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "migrationkit.cli", "dlq"]
    nothing = subprocess.run([*command, "replay"], env=worker_env, capture_output=True, text=True)
    assert nothing.returncode == 2 and "--all" in nothing.stderr
    unknown = subprocess.run(
        [*command, "replay", "01NOTANEVENT"], env=worker_env, capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "no dead letter with id 01NOTANEVENT" in unknown.stderr
    empty = subprocess.run([*command, "list"], env=worker_env, capture_output=True, text=True)
    assert empty.returncode == 0 and "no dead letters" in empty.stdout
    assert worker_env["CONVEX_DEPLOY_KEY"] not in unknown.stderr + empty.stdout
