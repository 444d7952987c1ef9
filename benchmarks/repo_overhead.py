"""What the repository costs over hand-written psycopg, in one run.

``PostgresRepository.get`` and ``upsert`` against the same statements
written by hand with psycopg 3 (same transaction, same ``set_config``, the
row read ``FOR UPDATE`` for the audit entry's ``before``, the outbox row and
the audit row in one statement), on the same database, interleaved in rounds so drift in the
machine's load hits both sides alike. Prints per-call medians and the
ratio; the goal is within 1.3x.

    python benchmarks/repo_overhead.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from migrationkit.adapters.postgres import PostgresLeadRepository, make_engine
from migrationkit.domain.ids import new_id

from _support import migrated_database, psycopg_conninfo

WS = "bench-ws"
LEAD = {
    "email": "bench@example.com",
    "segment": "enterprise",
    "score": 42.5,
    "tags": ["a", "b", "c"],
    "profile": {"company": "Acme", "links": ["https://example.com"], "notes": {"k": "v"}},
}

HAND_GET = (
    "SELECT id, workspace_id, version, created_at, updated_at, deleted_at, email, segment,"
    " score, tags, profile, convex_id FROM leads"
    " WHERE workspace_id = %s AND id = %s AND deleted_at IS NULL"
)
HAND_UPSERT = (
    "INSERT INTO leads (id, workspace_id, version, created_at, updated_at, deleted_at, email,"
    " segment, score, tags, profile) VALUES (%s, %s, 1, %s, %s, NULL, %s, %s, %s, %s, %s)"
    " ON CONFLICT (workspace_id, id) DO UPDATE SET updated_at = excluded.updated_at,"
    " deleted_at = NULL, email = excluded.email, segment = excluded.segment,"
    " score = excluded.score, tags = excluded.tags, profile = excluded.profile,"
    " version = leads.version + 1"
    " RETURNING id, workspace_id, version, created_at, updated_at, deleted_at, email, segment,"
    " score, tags, profile, convex_id"
)
# The row as it was, locked: what the audit entry records as `before`.
HAND_LOCK = (
    "SELECT id, workspace_id, version, created_at, updated_at, deleted_at, email, segment,"
    " score, tags, profile, convex_id FROM leads WHERE workspace_id = %s AND id = %s FOR UPDATE"
)
# The event and its audit entry in one statement, as the kit writes them.
HAND_OUTBOX = (
    "WITH audit_row AS (INSERT INTO audit_logs (id, workspace_id, actor, action, resource_type,"
    " resource_id, before, after, at, ip, user_agent)"
    " VALUES (%s, %s, NULL, %s, 'lead', %s, %s, %s, %s, NULL, NULL))"
    " INSERT INTO outbox_events (event_id, workspace_id, topic, entity, entity_id, version,"
    " occurred_at, dedupe_key, payload, audit) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
SET_WS = "SELECT set_config('app.workspace_id', %s, true)"


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with migrated_database() as (url, where):
        engine = make_engine(url, pool_size=1)
        repo = PostgresLeadRepository(engine)
        conn = psycopg.connect(psycopg_conninfo(url))
        lead_id = repo.upsert(WS, LEAD)
        hand_id = new_id()

        def hand_get() -> object:
            with conn.transaction():
                conn.execute(SET_WS, (WS,))
                return conn.execute(HAND_GET, (WS, lead_id)).fetchone()

        def hand_upsert() -> object:
            now = datetime.now(UTC)
            with conn.transaction():
                conn.execute(SET_WS, (WS,))
                before = conn.execute(HAND_LOCK, (WS, hand_id)).fetchone()
                row = conn.execute(
                    HAND_UPSERT,
                    (
                        hand_id,
                        WS,
                        now,
                        now,
                        LEAD["email"],
                        LEAD["segment"],
                        LEAD["score"],
                        Jsonb(LEAD["tags"]),
                        Jsonb(LEAD["profile"]),
                    ),
                ).fetchone()
                assert row is not None
                payload = {
                    "id": row[0],
                    "workspace_id": row[1],
                    "version": row[2],
                    "created_at": row[3].isoformat(),
                    "updated_at": row[4].isoformat(),
                    "deleted_at": None,
                    "email": row[6],
                    "segment": row[7],
                    "score": row[8],
                    "tags": row[9],
                    "profile": row[10],
                }
                before_doc = None
                if before is not None:
                    before_doc = {
                        **payload,
                        "version": before[2],
                        "updated_at": before[4].isoformat(),
                    }
                audit_id = new_id()
                action = "create" if before is None else "update"
                audit = {"id": audit_id, "action": action, "before": before_doc, "after": payload}
                conn.execute(
                    HAND_OUTBOX,
                    (
                        audit_id,
                        WS,
                        action,
                        row[0],
                        Jsonb(before_doc),
                        Jsonb(payload),
                        now,
                        new_id(),
                        WS,
                        "lead.upsert",
                        "lead",
                        row[0],
                        row[2],
                        now,
                        f"lead:{WS}:{row[0]}:{row[2]}",
                        Jsonb(payload),
                        Jsonb(audit),
                    ),
                )
            return row[0]

        cases = {
            "get": (lambda: repo.get(WS, lead_id), hand_get),
            "upsert": (lambda: repo.upsert(WS, {"id": lead_id, **LEAD}), hand_upsert),
        }
        for kit_fn, hand_fn in cases.values():  # warm caches and the statement cache
            per_call(kit_fn, 200)
            per_call(hand_fn, 200)

        results = {}
        for name, (kit_fn, hand_fn) in cases.items():
            kit_times, hand_times = [], []
            for _ in range(args.rounds):
                hand_times.append(per_call(hand_fn, args.calls))
                kit_times.append(per_call(kit_fn, args.calls))
            kit, hand = statistics.median(kit_times), statistics.median(hand_times)
            results[name] = {
                "kit_us": round(kit * 1e6, 1),
                "hand_us": round(hand * 1e6, 1),
                "ratio": round(kit / hand, 3),
            }
        conn.close()
        engine.dispose()

    print(f"server: {where}")
    print(f"{'call':<8}{'kit µs':>10}{'psycopg µs':>12}{'ratio':>8}   goal <= 1.30")
    for name, r in results.items():
        print(f"{name:<8}{r['kit_us']:>10}{r['hand_us']:>12}{r['ratio']:>8}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
