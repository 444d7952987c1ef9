"""``verify`` on mirror tables: equal rows, and 10 differing rows located.

The test app (convex/testapp) is filled with ``--docs`` documents (half
users, half posts) through its own ``seed:bulk`` mutation, introspected and
backfilled into PostgreSQL. Then, each in a child process that reports its
own peak RSS:

* verify: ``migrationkit.verify.runner.verify`` over every mirror table at
  the backfill's cut (the Convex side COPYed into a temporary table, then
  checksums per workspace and bisection by key ranges, all in PostgreSQL);
* baseline, measured in the same run: both sides read whole into Python
  (``mirror.compare.convex_documents`` and ``postgres_documents``) and
  compared document by document as dicts.

Both run twice: on equal stores, and after 10 rows on random keys were
changed in PostgreSQL (one field each, ``users.name`` or ``posts.title``,
by UPDATE; ``_ts`` unchanged). Both must find exactly those 10 keys, each
with the changed field.

    python benchmarks/verify.py [--docs 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.testing.convex_backend import LocalConvexBackend, convex_dir

from _support import migrated_database

CONFIG = '[mirror]\nschema = "bench"\nmodels = "models.py"\nworkspace_field = "teamId"\n'

#: Changed per planted difference: the table and the field (the same name in
#: Convex and in PostgreSQL).
PLANTED_FIELDS = {"users": "name", "posts": "title"}
PLANTED = 10
#: Documents seeded before introspecting: ``json_schemas`` infers each
#: table's shape from every document it holds, which over a million outlasts
#: the CLI's request timeout; the seed's documents have shown every shape
#: they take well before this many.
INTROSPECTED = 10_000

CHILD = """
import json, sys, time
from pathlib import Path
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror.backfill import TAIL_CURSOR, Backfill
from migrationkit.mirror.compare import convex_documents, postgres_documents
from migrationkit.mirror.config import load_config
from migrationkit.mirror.loading import selected_models
from migrationkit.schema.metadata import current_metadata
from migrationkit.verify.runner import verify
from migrationkit.verify.targets import mirror_target

url, key, db, config, mode = sys.argv[1:6]
models = selected_models(load_config(Path(config)))
engine = make_engine(db)
out = {}
with ConvexClient(url, admin_key=key, timeout=600) as client:
    started = time.perf_counter()
    if mode == "backfill":
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS bench")
            current_metadata().create_all(conn, tables=[
                t for t in current_metadata().tables.values() if t.schema == "bench"])
        out["rows"] = Backfill(client, engine, models).run().rows
    elif mode == "verify":
        targets = [mirror_target(m) for m in models]
        report = verify(engine, client, targets, tail_cursor=TAIL_CURSOR, settle=0)
        out["rows"] = sum(t.convex_rows for t in report.tables)
        out["cut_source"] = report.cut_source
        out["tables"] = {
            t.name: {"convex_rows": t.convex_rows, "postgres_rows": t.postgres_rows,
                     "ranges_checked": t.ranges_checked}
            for t in report.tables
        }
        out["found"] = sorted(
            [t.name, d.key[0], d.kind, list(d.fields)]
            for t in report.tables for d in t.differences
        )
    else:
        tables = [m.mirror.qualified_convex_name for m in models]
        convex = convex_documents(client, tables)
        postgres = postgres_documents(engine, models)
        found = []
        for table in tables:
            cx, pg = convex[table], postgres[table]
            for id_ in cx.keys() | pg.keys():
                a, b = cx.get(id_), pg.get(id_)
                if a == b:
                    continue
                if a is None or b is None:
                    found.append([table, id_, "missing" if b is None else "extra", []])
                    continue
                fields = sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f))
                found.append([table, id_, "differs", fields])
        out["rows"] = sum(len(convex[t]) for t in tables)
        out["found"] = sorted(found)
    out["seconds"] = time.perf_counter() - started
engine.dispose()
# VmHWM, not ru_maxrss: a child started by vfork and exec inherits its
# parent's high-water mark in ru_maxrss.
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
out["peak_mib"] = hwm / 1024
print(json.dumps(out))
"""


def run_child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def seed(client: ConvexClient, start: int, stop: int) -> None:
    for offset in range(start, stop, 1000):
        client.mutation("seed:bulk", {"count": min(1000, stop - offset), "offset": offset})


def introspect(backend: LocalConvexBackend, work: Path) -> None:
    env = os.environ | {"CONVEX_URL": backend.url, "CONVEX_DEPLOY_KEY": backend.admin_key}
    done = subprocess.run(
        [sys.executable, "-m", "migrationkit.cli", "introspect"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"introspect failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


def plant(db: str, seed: int) -> list[list[Any]]:
    """Change one field of ``PLANTED`` rows on random keys; what verify should find."""
    rng = random.Random(seed)
    engine = make_engine(db)
    chosen = []
    with engine.begin() as conn:
        sizes = {
            table: conn.execute(
                text(f"SELECT count(*) FROM bench.{table} WHERE NOT _deleted")  # noqa: S608
            ).scalar_one()
            for table in PLANTED_FIELDS
        }
        first, second = PLANTED_FIELDS
        for n in rng.sample(range(sizes[first] + sizes[second]), PLANTED):
            table, rank = (first, n) if n < sizes[first] else (second, n - sizes[first])
            field = PLANTED_FIELDS[table]
            id_ = conn.execute(
                text(
                    f"UPDATE bench.{table} SET {field} = {field} || ' (changed)' WHERE _id ="  # noqa: S608
                    f" (SELECT _id FROM bench.{table} WHERE NOT _deleted ORDER BY _id"
                    " OFFSET :rank LIMIT 1) RETURNING _id"
                ),
                {"rank": rank},
            ).scalar_one()
            chosen.append([table, id_, "differs", [field]])
    engine.dispose()
    return sorted(chosen)


def line(name: str, result: dict[str, Any]) -> str:
    rate = result["rows"] / result["seconds"]
    return (
        f"{name:<28} {rate:>10,.0f} rows/s  {result['seconds']:>8.2f} s"
        f"  (peak RSS {result['peak_mib']:.0f} MiB)"
    )


def ranges(result: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {t['ranges_checked']}" for name, t in result["tables"].items() if t["convex_rows"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    testapp = convex_dir() / "testapp"
    with (
        LocalConvexBackend(functions_dir=testapp) as backend,
        ConvexClient(backend.url, admin_key=backend.admin_key, timeout=600) as client,
        migrated_database() as (url, server),
        tempfile.TemporaryDirectory() as tmp,
    ):
        work = Path(tmp)
        (work / "migrationkit.toml").write_text(CONFIG)
        started = time.perf_counter()
        seed(client, 0, min(args.docs, INTROSPECTED))
        introspect(backend, work)
        seed(client, INTROSPECTED, args.docs)
        print(f"seeded {args.docs} documents in {time.perf_counter() - started:.1f}s", flush=True)
        db = url.render_as_string(hide_password=False)
        common = [backend.url, backend.admin_key, db, str(work / "migrationkit.toml")]
        backfill = run_child([*common, "backfill"])
        print(f"backfilled {backfill['rows']} rows in {backfill['seconds']:.1f}s", flush=True)
        equal = {mode: run_child([*common, mode]) for mode in ("verify", "baseline")}
        planted = plant(db, args.seed)
        changed = {mode: run_child([*common, mode]) for mode in ("verify", "baseline")}
    print(f"server: {server}")
    print(f"documents: {equal['verify']['rows']} (cut: {equal['verify']['cut_source']})")
    for title, runs in (("equal rows", equal), (f"{PLANTED} differing rows", changed)):
        verified, baseline = runs["verify"], runs["baseline"]
        print(f"{title}:")
        print("  " + line("verify", verified))
        print("  " + line("baseline (whole, in Python)", baseline))
        ratio = verified["seconds"] / baseline["seconds"]
        print(f"  verify / baseline: {ratio:.2f}x the time")
        print(f"  ranges_checked: {ranges(verified)}")
    print(f"planted ({PLANTED} UPDATEs in PostgreSQL, _ts unchanged):")
    for table, id_, _, fields in planted:
        print(f"  {table}/{id_}: {fields[0]}")
    for title, runs, want in (("equal", equal, []), ("changed", changed, planted)):
        for mode, result in runs.items():
            if result["found"] == want:
                what = "exactly the planted keys, each differing in its changed field"
                print(f"{mode} on {title} rows: {len(want)} found, {what if want else 'none'}")
            else:
                print(f"{mode} on {title} rows: WRONG")
                print(f"  expected {want}\n  found    {result['found']}")


if __name__ == "__main__":
    main()
