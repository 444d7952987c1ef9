"""Apply throughput: PostgresApplier against a plain COPY and against one
transaction per event, in one run, on one database.

The stream: ``--events`` changes to leads (inserts, updates, soft deletes;
10% duplicates of recent events; shuffled in windows of 32, as a source
that retries delivers them), made lazily from a seed.

* applier: the stream through ``PostgresApplier.apply`` in batches of
  ``--batch-size``; only the ``apply`` calls are timed.
* COPY: the end state the stream leads to (the last version of every lead),
  rows built beforehand, written by one ``COPY`` into the truncated table.
  It knows the answer in advance and keeps no inbox: a floor, not a sink.
* one transaction per event: the straightforward sink (validate, insert the
  inbox row, version-guarded upsert, commit), on the first
  ``--per-event-sample`` events of the same stream; rates compared.
* plain batched upsert (a reference): per batch, the same checks, then the
  inbox rows and the version-guarded upserts sent with psycopg's
  ``executemany`` (pipelined) in one transaction.

Every sink of the kit validates each change with its model (pydantic, email
syntax, storable strings) before writing it; a bare COPY does not. So COPY
is reported twice: bare (the database floor), and after the same
validation of every event (what any sink starting from these changes pays
first): the goal is set against the latter.

Then peak traced memory while applying growing streams in the same batch
size: it stays flat, as the stream is made and applied lazily.

    cd benchmarks && ../.venv/bin/python apply_throughput.py \
        [--events 100000] [--batch-size 2000] [--per-event-sample 3000] \
        [--memory-events 25000,50000,100000]

Goals: applier >= 0.5x COPY (validated), >= 8x one transaction per event.
For scale, the plain batched upsert's own ratios are printed too.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pydantic_core
from psycopg.types.json import Jsonb, set_json_dumps
from ulid import ULID

from migrationkit.adapters.postgres import make_engine
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.row_codec import RowCodec
from migrationkit.domain import Lead
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.ports.changes import ApplyResult

from _support import migrated_database, psycopg_conninfo

COLUMNS = (
    "id",
    "workspace_id",
    "version",
    "created_at",
    "updated_at",
    "deleted_at",
    "email",
    "segment",
    "score",
    "tags",
    "profile",
    "convex_id",
)
JSON_COLUMNS = {"tags", "profile"}
COPY_TYPES = [
    "text",
    "text",
    "int8",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
    "float8",
    "jsonb",
    "jsonb",
    "text",
]
SEGMENTS = ("startup", "enterprise", "smb", None)
START = datetime(2026, 1, 1, tzinfo=UTC)

PER_EVENT_INBOX = (
    "INSERT INTO processed_events (consumer, event_id, workspace_id, entity, entity_id, version)"
    " VALUES ('per-event', %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
PER_EVENT_UPSERT = """
    INSERT INTO leads (id, workspace_id, version, created_at, updated_at, deleted_at, email,
                       segment, score, tags, profile, convex_id)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (workspace_id, id) DO UPDATE SET
        version = excluded.version, created_at = excluded.created_at,
        updated_at = excluded.updated_at, deleted_at = excluded.deleted_at,
        email = excluded.email, segment = excluded.segment, score = excluded.score,
        tags = excluded.tags, profile = excluded.profile,
        convex_id = coalesce(excluded.convex_id, leads.convex_id)
    WHERE leads.version < excluded.version
"""
PLAIN_INBOX = (
    "INSERT INTO processed_events (consumer, event_id, workspace_id, entity, entity_id, version)"
    " VALUES ('plain', %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING event_id"
)
CHECKSUM = (
    "SELECT count(*), md5(string_agg(l::text, E'\\n' ORDER BY workspace_id, id)) FROM leads l"
)


# -- the stream ------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _ulid(rng: random.Random, at: datetime) -> str:
    # As the kit makes them: milliseconds first, so ids made later sort later.
    millis = int(at.timestamp() * 1000)
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + rng.randbytes(10)))


def events(count: int, seed: int = 1, duplicates: float = 0.1) -> Iterator[Change]:
    """``count`` changes, made on demand; memory bounded whatever ``count`` is.

    Leads are updated from a bounded working set of recent ones, so what the
    generator holds does not grow with the stream.
    """
    rng = random.Random(seed)
    working: list[dict[str, Any]] = []
    recent: deque[Change] = deque(maxlen=2000)
    window: list[Change] = []
    for n in range(count):
        if recent and rng.random() < duplicates:
            window.append(rng.choice(recent))
        else:
            window.append(_next_write(rng, n, working))
            recent.append(window[-1])
        if len(window) == 32:
            rng.shuffle(window)
            yield from window
            window.clear()
    rng.shuffle(window)
    yield from window


def _next_write(rng: random.Random, n: int, working: list[dict[str, Any]]) -> Change:
    at = START + timedelta(milliseconds=n)
    roll = rng.random()
    if roll < 0.45 or not working:
        lead_id = _ulid(rng, at)
        doc: dict[str, Any] = {
            "id": lead_id,
            "workspace_id": f"ws-{rng.randrange(50):02d}",
            "version": 1,
            "created_at": _iso(at),
            "updated_at": _iso(at),
            "deleted_at": None,
            "email": f"user{n}@example.com",
            "segment": rng.choice(SEGMENTS),
            "score": round(rng.random() * 100, 3),
            "tags": ["lead", f"batch-{n % 7}"],
            "profile": {
                "company": f"Company {n % 1000}",
                "title": None,
                "verified": False,
                "links": ["https://example.com"],
                "address": None,
                "notes": {"source": "bench"},
            },
        }
        working.append(doc)
        if len(working) > 4000:
            working.pop(rng.randrange(len(working)))
        kind = ChangeKind.UPSERT
    else:
        index = rng.randrange(len(working))
        doc = dict(working[index])
        doc["version"] += 1
        doc["updated_at"] = _iso(at)
        if roll > 0.9:
            doc["deleted_at"] = _iso(at)
            working[index] = working[-1]
            working.pop()
            kind = ChangeKind.DELETE
        else:
            doc["score"] = round(rng.random() * 100, 3)
            doc["segment"] = rng.choice(SEGMENTS)
            working[index] = doc
            kind = ChangeKind.UPSERT
    return Change(
        event_id=_ulid(rng, at),
        entity="lead",
        kind=kind,
        workspace_id=doc["workspace_id"],
        entity_id=doc["id"],
        version=doc["version"],
        data=doc,
        occurred_at=at,
        convex_id=f"cx-{doc['id']}",
    )


def batched(stream: Iterable[Change], size: int) -> Iterator[list[Change]]:
    batch: list[Change] = []
    for change in stream:
        batch.append(change)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def final_rows(count: int) -> list[tuple[Any, ...]]:
    """The row every lead ends at (its highest version), ready for COPY."""
    last: dict[tuple[str | None, str | None], Change] = {}
    for change in events(count):
        key = (change.workspace_id, change.entity_id)
        if key not in last or last[key].version < change.version:
            last[key] = change
    codec = RowCodec(Lead)
    return [
        tuple(
            {**codec.to_row(Lead.model_validate(c.data)), "convex_id": c.convex_id}[col]
            for col in COLUMNS
        )
        for c in last.values()
    ]


# -- the three ways --------------------------------------------------------------


def run_applier(applier: PostgresApplier, count: int, batch_size: int) -> tuple[float, ApplyResult]:
    totals = ApplyResult()
    elapsed = 0.0
    for batch in batched(events(count), batch_size):
        start = time.perf_counter()
        result = applier.apply(batch)
        elapsed += time.perf_counter() - start
        totals.applied += result.applied
        totals.duplicates += result.duplicates
        totals.stale += result.stale
    return elapsed, totals


def validation_seconds(count: int, batch_size: int) -> float:
    """What validating every event with the model costs on its own."""
    elapsed = 0.0
    for batch in batched(events(count), batch_size):
        start = time.perf_counter()
        for change in batch:
            Lead.model_validate(change.data)
        elapsed += time.perf_counter() - start
    return elapsed


def run_copy(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> float:
    """Binary COPY, JSON by pydantic's serializer: as fast as the applier's own COPY."""
    cursor = conn.cursor()
    set_json_dumps(pydantic_core.to_json, cursor)
    start = time.perf_counter()
    with (
        conn.transaction(),
        cursor.copy(f"COPY leads ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(COPY_TYPES)
        for row in rows:
            copy.write_row(row)
    return time.perf_counter() - start


def checked_parameters(change: Change) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The checks the applier makes, then the inbox row's and the upsert's parameters."""
    lead = Lead.model_validate(change.data)
    data = lead.model_dump(mode="json")
    data["convex_id"] = change.convex_id
    claim = (change.event_id, lead.workspace_id, "lead", lead.id, lead.version)
    upsert = tuple(
        Jsonb(data[c]) if c in JSON_COLUMNS and data[c] is not None else data[c] for c in COLUMNS
    )
    return claim, upsert


def run_per_event(conn: psycopg.Connection[Any], sample: list[Change]) -> float:
    start = time.perf_counter()
    for change in sample:
        claim, upsert = checked_parameters(change)
        with conn.transaction():
            if conn.execute(PER_EVENT_INBOX, claim).rowcount:
                conn.execute(PER_EVENT_UPSERT, upsert)
    return time.perf_counter() - start


def run_plain_batched(conn: psycopg.Connection[Any], count: int, batch_size: int) -> float:
    """Validate a batch, then pipeline its inbox rows and its upserts: one transaction."""
    elapsed = 0.0
    for batch in batched(events(count), batch_size):
        start = time.perf_counter()
        claims, upserts = zip(*map(checked_parameters, batch), strict=True)
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(PLAIN_INBOX, claims, returning=True)
            fresh: set[str] = set()
            while True:
                claimed = cursor.fetchone()
                if claimed is not None:
                    fresh.add(claimed[0])
                if not cursor.nextset():
                    break
            # Each fresh event once (a batch may repeat one), in delivery order.
            todo = []
            for claim, row in zip(claims, upserts, strict=True):
                if claim[0] in fresh:
                    fresh.discard(claim[0])
                    todo.append(row)
            cursor.executemany(PER_EVENT_UPSERT, todo)
        elapsed += time.perf_counter() - start
    return elapsed


def peak_memory(applier: PostgresApplier, count: int, batch_size: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        for batch in batched(events(count), batch_size):
            applier.apply(batch)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- the run -----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--per-event-sample", type=int, default=3000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds, interleaved; medians are shown"
    )
    parser.add_argument(
        "--memory-events",
        default="25000,50000,100000",
        help="comma-separated stream lengths for the memory check ('' to skip)",
    )
    args = parser.parse_args()
    n, batch_size = args.events, args.batch_size
    memory_counts = [int(c) for c in args.memory_events.split(",") if c.strip()]

    with migrated_database() as (url, where):
        engine = make_engine(url, pool_size=1)
        conn = psycopg.connect(psycopg_conninfo(url), autocommit=True)

        def truncate() -> None:
            conn.execute("TRUNCATE leads, processed_events")
            gc.collect()

        applier = PostgresApplier(engine, consumer="bench")
        applier.apply(list(events(500, seed=99)))  # warm: statements compiled, caches filled
        rows = final_rows(n)
        gc.freeze()  # long-lived: keep them out of the collector's way while timing

        # Rounds interleave the three measures, so that drift in the
        # machine's load reaches all of them alike.
        applier_times, copy_times, validate_times, plain_times = [], [], [], []
        same_end_state = True
        totals = ApplyResult()
        for _ in range(args.rounds):
            truncate()
            seconds, totals = run_applier(applier, n, batch_size)
            applier_times.append(seconds)
            applier_state = conn.execute(CHECKSUM).fetchone()
            truncate()
            copy_times.append(run_copy(conn, rows))
            same_end_state &= applier_state == conn.execute(CHECKSUM).fetchone()
            truncate()
            plain_times.append(run_plain_batched(conn, n, batch_size))
            same_end_state &= applier_state == conn.execute(CHECKSUM).fetchone()
            gc.collect()
            validate_times.append(validation_seconds(n, batch_size))
        final_count = len(rows)
        del rows
        gc.unfreeze()

        truncate()
        sample = list(events(args.per_event_sample))
        per_event_seconds = run_per_event(conn, sample)

        memory: dict[int, int] = {}
        for count in memory_counts:
            truncate()
            memory[count] = peak_memory(applier, count, batch_size)

        conn.close()
        engine.dispose()

    applier_seconds = statistics.median(applier_times)
    copy_seconds = statistics.median(copy_times)
    validate_seconds = statistics.median(validate_times)
    rates = {
        "applier": n / applier_seconds,
        "copy_bare": n / copy_seconds,
        "copy_validated": n / (copy_seconds + validate_seconds),
        "per_event": len(sample) / per_event_seconds,
        "plain_batched": n / statistics.median(plain_times),
    }
    ratios = {
        "vs_copy_validated": rates["applier"] / rates["copy_validated"],
        "vs_per_event": rates["applier"] / rates["per_event"],
        "vs_plain_batched": rates["applier"] / rates["plain_batched"],
        "vs_copy_bare": rates["applier"] / rates["copy_bare"],
        "plain_batched_vs_copy_validated": rates["plain_batched"] / rates["copy_validated"],
        "plain_batched_vs_per_event": rates["plain_batched"] / rates["per_event"],
    }

    print(f"server: {where}; medians of {args.rounds} rounds")
    print(
        f"stream: {n:,} events in batches of {batch_size}: {totals.applied:,} applied,"
        f" {totals.stale:,} stale, {totals.duplicates:,} duplicates -> {final_count:,} rows;"
        f" end states of applier, COPY and plain upsert identical: {same_end_state}"
    )
    print(f"model validation alone: {validate_seconds / n * 1e6:.1f} µs/event")
    print(f"{'':<44}{'events/s':>10}{'applier is':>12}   goal")
    lines = [
        ("PostgresApplier", rates["applier"], None, ""),
        (
            "COPY, after validating every event",
            rates["copy_validated"],
            ratios["vs_copy_validated"],
            ">= 0.5x",
        ),
        ("one transaction per event", rates["per_event"], ratios["vs_per_event"], ">= 8x"),
        ("plain batched upsert, inbox", rates["plain_batched"], ratios["vs_plain_batched"], ""),
        ("COPY, bare (database floor)", rates["copy_bare"], ratios["vs_copy_bare"], ""),
    ]
    for label, rate, ratio, goal in lines:
        shown = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"{label:<44}{rate:>10,.0f}{shown:>12}   {goal}")
    print(
        f"for scale, the plain batched upsert is {ratios['plain_batched_vs_copy_validated']:.2f}x"
        f" COPY (validated) and {ratios['plain_batched_vs_per_event']:.1f}x one transaction"
        " per event"
    )
    if memory:
        print(f"peak traced memory while applying, batches of {batch_size}:")
        for count, peak in memory.items():
            print(f"  {count:>9,} events: {peak / 2**20:6.2f} MiB")
    print(
        json.dumps(
            {
                "events": n,
                "batch_size": batch_size,
                "final_rows": final_count,
                "applied": totals.applied,
                "stale": totals.stale,
                "duplicates": totals.duplicates,
                "same_end_state_as_copy": same_end_state,
                "validation_us_per_event": round(validate_seconds / n * 1e6, 1),
                "events_per_s": {k: round(v) for k, v in rates.items()},
                "ratios": {k: round(v, 3) for k, v in ratios.items()},
                "peak_traced_memory_bytes": memory,
            }
        )
    )


if __name__ == "__main__":
    main()
