"""Backfill through the local Convex backend: rows/s and peak memory.

The test app (convex/testapp) is filled with ``--docs`` documents (users and
posts with nested objects, int64, bytes, ids) through its own ``seed:bulk``
mutation, introspected, and backfilled into PostgreSQL. The baseline,
measured in the same run on the same backend: reading the same snapshot
alone (``list_snapshot`` pages, decoded, nothing written), so the ratio
shows what checking and writing the rows adds to fetching them. Peak RSS is
the backfill child process's own high-water mark.

    python benchmarks/backfill.py [--docs 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.testing.convex_backend import LocalConvexBackend, convex_dir

from _support import migrated_database

CONFIG = '[mirror]\nschema = "bench"\nmodels = "models.py"\nworkspace_field = "teamId"\n'

CHILD = """
import json, sys, time
from pathlib import Path
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror.backfill import Backfill
from migrationkit.mirror.config import load_config
from migrationkit.mirror.loading import selected_models
from migrationkit.schema.metadata import current_metadata

url, key, db, config, mode = sys.argv[1:6]
models = selected_models(load_config(Path(config)))
engine = make_engine(db)
started = time.perf_counter()
rows = 0
with ConvexClient(url, admin_key=key) as client:
    if mode == "read":
        for model in models:
            snapshot, cursor = None, None
            while True:
                page = client.list_snapshot(snapshot=snapshot, cursor=cursor,
                                            table_name=model.mirror.convex_table)
                snapshot, cursor = page.snapshot, page.cursor
                rows += len(page.values)
                if not page.has_more:
                    break
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS bench")
            current_metadata().create_all(conn, tables=[
                t for t in current_metadata().tables.values() if t.schema == "bench"])
        rows = Backfill(client, engine, models).run().rows
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: a child started by vfork and exec inherits its
# parent's high-water mark in ru_maxrss.
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "seconds": seconds, "peak_mib": peak_kib / 1024}))
"""


def run_child(args: list[str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    args = parser.parse_args()
    testapp = convex_dir() / "testapp"
    with (
        LocalConvexBackend(functions_dir=testapp) as backend,
        ConvexClient(backend.url, admin_key=backend.admin_key, timeout=120) as client,
        migrated_database() as (url, server),
        tempfile.TemporaryDirectory() as tmp,
    ):
        started = time.perf_counter()
        for offset in range(0, args.docs, 1000):
            client.mutation("seed:bulk", {"count": min(1000, args.docs - offset), "offset": offset})
        print(f"seeded {args.docs} documents in {time.perf_counter() - started:.1f}s")
        work = Path(tmp)
        (work / "migrationkit.toml").write_text(CONFIG)
        env = os.environ | {"CONVEX_URL": backend.url, "CONVEX_DEPLOY_KEY": backend.admin_key}
        subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "introspect"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
        common = [
            backend.url,
            backend.admin_key,
            url.render_as_string(hide_password=False),
            str(work / "migrationkit.toml"),
        ]
        read = run_child([*common, "read"])
        backfill = run_child([*common, "backfill"])
    rate = backfill["rows"] / backfill["seconds"]
    read_rate = read["rows"] / read["seconds"]
    print(f"server: {server}")
    print(f"documents: {int(backfill['rows'])}")
    print(f"read the snapshot alone: {read_rate:,.0f} rows/s (peak RSS {read['peak_mib']:.0f} MiB)")
    print(f"backfill:               {rate:,.0f} rows/s (peak RSS {backfill['peak_mib']:.0f} MiB)")
    print(f"backfill / read alone:  {rate / read_rate:.2f}x")


if __name__ == "__main__":
    main()
