"""End-to-end replication lag at a steady write rate through the local backend.

Writes leads through the Convex repository at a fixed rate while a worker
(Convex outbox -> PostgreSQL) runs; the lag of each write is the time from
its commit in Convex (the event's ``occurredAt``) to the commit of the
PostgreSQL transaction that applied it (``processed_events.processed_at``).
As a reference measured in the same run, it also prints the latency of the
write calls themselves.

    python benchmarks/e2e_lag.py [--rate 40] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

from sqlalchemy import text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.outbox.worker import PollInterval, Worker, WorkerConfig
from migrationkit.testing.convex_backend import LocalConvexBackend

from _support import migrated_database


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=40.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()

    with migrated_database() as (url, where), LocalConvexBackend() as backend:
        engine = make_engine(url, pool_pre_ping=True)
        client = ConvexClient(backend.url, admin_key=backend.admin_key)
        repo = ConvexLeadRepository(client)
        worker = Worker(
            ConvexOutboxSource(client),
            PostgresApplier(engine),
            DeadLetterStore(engine),
            config=WorkerConfig(batch_size=200, poll=PollInterval(0.01, 0.1)),
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()

        call_latency: list[float] = []
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        end = next_at + args.seconds
        ids: list[str] = []
        n = 0
        while time.monotonic() < end:
            start = time.monotonic()
            if n % 3 == 2:
                repo.upsert("lag", {"id": ids[n // 3], "email": f"u{n}@example.com"})
            else:
                ids.append(repo.upsert("lag", {"email": f"l{n}@example.com"}))
            call_latency.append(time.monotonic() - start)
            n += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + 60
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                done = conn.execute(text("SELECT count(*) FROM processed_events")).scalar_one()
                if done >= n:
                    break
                time.sleep(0.05)
                conn.rollback()
            applied = dict(
                conn.execute(
                    text("SELECT event_id, extract(epoch FROM processed_at) FROM processed_events")
                ).all()
            )
        stop.set()
        thread.join(timeout=30)
        events = client.query("outbox:forWorkspace", {"workspaceId": "lag", "limit": 10001.0})
        lags = [
            float(applied[e["eventId"]]) - e["occurredAt"] / 1000
            for e in events
            if e["eventId"] in applied
        ]
        client.close()
        engine.dispose()

    result = {
        "writes": n,
        "applied": len(lags),
        "rate_per_s": args.rate,
        "lag_p50_ms": round(percentile(lags, 0.5) * 1000, 1),
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
        "lag_max_ms": round(max(lags) * 1000, 1),
        "write_call_p50_ms": round(statistics.median(call_latency) * 1000, 1),
        "write_call_p99_ms": round(percentile(call_latency, 0.99) * 1000, 1),
    }
    print(f"server: {where}")
    print(
        f"{n} writes at {args.rate:.0f}/s: lag p50 {result['lag_p50_ms']} ms,"
        f" p99 {result['lag_p99_ms']} ms, max {result['lag_max_ms']} ms"
        f" (the write call itself: p50 {result['write_call_p50_ms']} ms,"
        f" p99 {result['write_call_p99_ms']} ms)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
