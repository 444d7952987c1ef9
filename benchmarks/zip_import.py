"""Export ZIP import: rows/s against a plain binary COPY, and peak memory.

For each size in ``--docs``, a uniform-format export ZIP of leads-like
documents (nested objects and arrays, int64, bytes, ids, optional fields)
is written streaming into a temporary directory. Then, on one throwaway
database (``MIGRATIONKIT_BENCH_DATABASE_URL``, else the local server):

* import: ``import_zip`` (read the ZIP, decode, check every value, COPY into
  a staging table, one ``_ts``-guarded upsert), in a child process that
  reports its own peak RSS (``VmHWM``); the target table starts empty.
* COPY: the same rows, converted beforehand by the same reader and row
  checks (not timed), written by one binary COPY into an identical table:
  the floor of writing these tuples at all, with nothing to read or check.

    python benchmarks/zip_import.py [--docs 100000,1000000] [--rounds 1]

Goals: import >= 0.5x COPY; peak RSS < 200 MB and flat from 100k to 1M.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.database_url import normalize_database_url, safe_url
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.migrations import upgrade
from migrationkit.mirror.export_zip import ExportZip
from migrationkit.mirror.loading import import_models
from migrationkit.mirror.model import mirror_model_for
from migrationkit.mirror.rows import MirrorRevision, row_maker
from migrationkit.mirror.writer import MirrorWriter, fast_bytea
from migrationkit.schema.metadata import current_metadata
from migrationkit.testing.databases import throwaway_database

from _support import psycopg_conninfo

BENCH_URL = "MIGRATIONKIT_BENCH_DATABASE_URL"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

MODELS = """
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from migrationkit.mirror import ConvexJson, MirrorDocument, MirrorTable, RefersTo, register_mirror


@register_mirror
class Lead(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(
        convex_table="leads", pg_table="leads", pg_schema="bench", workspace_field="workspaceId"
    )

    workspace: str = Field(alias="workspaceId")
    email: str
    name: str
    segment: Literal["smb", "mid", "enterprise"]
    score: float
    version: int
    owner_id: Annotated[str, RefersTo("users")] = Field(alias="ownerId")
    tags: Annotated[Any, ConvexJson()]
    profile: Annotated[Any, ConvexJson()]
    notes: str | None = None
    avatar: bytes | None = None
    deleted_at: float | None = Field(default=None, alias="deletedAt")
"""

CHILD = """
import json, sys, time
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror.loading import import_models
from migrationkit.mirror.zip_import import import_zip

models, url, path, warm = sys.argv[1:5]
import_models(models)
engine = make_engine(url)
# Once through a tiny export first: modules, metadata and statements are
# ready, as in the parent that times the COPY.
import_zip(engine, warm)
with engine.begin() as conn:
    conn.exec_driver_sql("TRUNCATE bench.leads")
started, cpu = time.perf_counter(), time.process_time()
report = import_zip(engine, path)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
engine.dispose()
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"rows": report.rows, "seconds": seconds, "cpu_seconds": cpu,
                  "peak_mib": hwm / 1024}))
"""


# --- the export -------------------------------------------------------------------


def lead(rng: random.Random, n: int) -> dict[str, Any]:
    """One leads-like document, as the uniform export writes it (before json.dumps)."""
    doc: dict[str, Any] = {
        "_id": f"k{n:09d}{'abcdefghjkmnpqrs'[n % 16]}x7h2m9q3w",
        "_creationTime": 1_700_000_000_000.0 + n * 1.25,
        "workspaceId": f"ws_{n % 50:03d}",
        "email": f"lead{n}@example{n % 97}.com",
        "name": f"Lead number {n}",
        "segment": ("smb", "mid", "enterprise")[n % 3],
        "score": round(rng.random() * 100, 3),
        "version": rng.randrange(1, 2**40),
        "ownerId": f"u{n % 1000:06d}abcdefgh",
        "tags": [f"tag{rng.randrange(20)}" for _ in range(rng.randrange(0, 4))],
        "profile": {
            "company": f"Company {n % 5000}",
            "size": rng.randrange(1, 10_000),
            "address": {"city": ("Paris", "Lyon", "Berlin", "Austin")[n % 4], "zip": f"{n:05d}"},
            "visits": [{"at": 1.7e12 + i, "page": f"/p/{i}"} for i in range(n % 3)],
        },
    }
    if n % 4 == 0:
        doc["notes"] = "called twice, wants a demo"
    if n % 10 == 0:
        doc["avatar"] = {"$bytes": base64.b64encode(rng.randbytes(24)).decode()}
    if n % 25 == 0:
        doc["deletedAt"] = 1_700_000_100_000.5
    return doc


def write_export(path: Path, count: int) -> None:
    rng = random.Random(count)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.md", "# Welcome to your Convex snapshot export!\n")
        archive.writestr("_tables/documents.jsonl", '{"name":"leads","id":10001}\n')
        archive.writestr("leads/generated_schema.jsonl", '"uniform"\n')
        with archive.open("leads/documents.jsonl", "w", force_zip64=True) as member:
            batch: list[str] = []
            for n in range(count):
                batch.append(json.dumps(lead(rng, n), separators=(",", ":")))
                if len(batch) == 5000:
                    member.write(("\n".join(batch) + "\n").encode())
                    batch.clear()
            if batch:
                member.write(("\n".join(batch) + "\n").encode())
        archive.writestr("_storage/documents.jsonl", "")


# --- the two measures ---------------------------------------------------------------


def run_import(models_file: Path, url: URL, path: Path, warm: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(models_file), _url_text(url), str(path), str(warm)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"import child failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def converted_rows(path: Path) -> list[tuple[Any, ...]]:
    """The rows the import writes, made by the same reader and checks."""
    model = mirror_model_for("leads")
    maker = row_maker(model)
    with ExportZip(path) as export:
        (table,) = export.tables
        return [
            maker.row(MirrorRevision("leads", doc["_id"], 0, False, doc))
            for _, doc in export.documents(table)
        ]


def run_copy(
    conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], copy_types: list[str]
) -> float:
    columns = ", ".join(f'"{c}"' for c in row_maker(mirror_model_for("leads")).column_names)
    conn.execute("TRUNCATE bench.leads_copy")
    started = time.perf_counter()
    statement = f"COPY bench.leads_copy ({columns}) FROM STDIN (FORMAT BINARY)"
    with conn.transaction(), conn.cursor() as cursor:
        fast_bytea(cursor)  # as the import does: the same dumpers on both sides
        with cursor.copy(statement) as copy:
            copy.set_types(copy_types)
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started


def _url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@contextmanager
def bench_database() -> Iterator[URL]:
    server = normalize_database_url(os.environ.get(BENCH_URL) or DEFAULT_SERVER)
    with throwaway_database(server, "mk_bench") as url:
        upgrade(url)
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds; medians shown")
    args = parser.parse_args()
    sizes = [int(s) for s in args.docs.split(",") if s.strip()]

    with tempfile.TemporaryDirectory() as tmp, bench_database() as url:
        work = Path(tmp)
        models_file = work / "models.py"
        models_file.write_text(MODELS)
        import_models(models_file)
        table = current_metadata().tables["bench.leads"]
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA bench")
            table.create(conn)
            conn.exec_driver_sql("CREATE TABLE bench.leads_copy (LIKE bench.leads INCLUDING ALL)")
        # The import's own COPY types: the baseline sends the same binary values.
        copy_types = MirrorWriter(engine).statements(mirror_model_for("leads")).copy_types
        engine.dispose()
        conn = psycopg.connect(psycopg_conninfo(url), autocommit=True)
        warm = work / "warm.zip"
        write_export(warm, 10)
        print(f"server: {safe_url(url)}")
        print(f"{'docs':>9} {'zip MB':>7} {'import rows/s':>14} {'COPY rows/s':>12}"
              f" {'ratio':>6} {'import peak RSS':>16}")  # fmt: skip
        for count in sizes:
            path = work / f"export_{count}.zip"
            started = time.perf_counter()
            write_export(path, count)
            made = time.perf_counter() - started
            rows = converted_rows(path)
            gc.collect()
            gc.freeze()  # long-lived: keep them out of the collector's way while timing
            # Rounds interleave the two measures, so that drift in the
            # machine's load reaches both alike.
            imports, copies, peaks, cpu = [], [], [], []
            for _ in range(args.rounds):
                conn.execute("TRUNCATE bench.leads")
                result = run_import(models_file, url, path, warm)
                assert int(result["rows"]) == count
                imports.append(result["seconds"])
                cpu.append(result["cpu_seconds"])
                peaks.append(result["peak_mib"])
                copies.append(run_copy(conn, rows, copy_types))
            gc.unfreeze()
            del rows
            gc.collect()
            same = conn.execute(
                "SELECT (SELECT count(*) FROM bench.leads),"
                " (SELECT count(*) FROM bench.leads_copy),"
                " (SELECT count(*) FROM (SELECT * FROM bench.leads EXCEPT"
                "  SELECT * FROM bench.leads_copy) d)"
            ).fetchone()
            assert same == (count, count, 0), same
            import_rate = count / statistics.median(imports)
            copy_rate = count / statistics.median(copies)
            print(
                f"{count:>9} {path.stat().st_size / 1e6:>7.1f} {import_rate:>14,.0f}"
                f" {copy_rate:>12,.0f} {import_rate / copy_rate:>5.2f}x"
                f" {max(peaks):>12.0f} MiB   (ZIP written in {made:.0f}s; import client CPU"
                f" {count / statistics.median(cpu):,.0f} rows/s)"
            )
            path.unlink()
        conn.close()


if __name__ == "__main__":
    main()
