"""``migrationkit import`` on a real PostgreSQL: export ZIPs of both formats
land document for document, in one transaction that a bad value, an
unknown table or a damaged member rolls back whole."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.errors import ExportUnreadable, UnknownEntity, ValidationFailed
from migrationkit.mirror.backfill import TAIL_CURSOR
from migrationkit.mirror.config import MirrorConfig
from migrationkit.mirror.documents import live_documents
from migrationkit.mirror.loading import import_models
from migrationkit.mirror.model import MirrorDocument, mirror_model_for, unregister_mirrors
from migrationkit.mirror.zip_import import import_zip
from migrationkit.schema.metadata import current_metadata, metadata

pytestmark = pytest.mark.postgres

SCHEMA = "mk_zip_test"

MODELS = f'''
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from migrationkit.mirror import ConvexJson, MirrorDocument, MirrorTable, register_mirror


@register_mirror
class Thing(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(
        convex_table="things", pg_table="things", pg_schema="{SCHEMA}", workspace_field="teamId"
    )

    name: str
    team_id: str = Field(alias="teamId")
    credits: int
    score: float | None = None
    avatar: bytes | None = None
    role: Literal["admin", "member"]
    profile: Annotated[Any, ConvexJson()]


@register_mirror
class Limit(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(
        convex_table="limits", component="limiter", pg_table="limiter_limits",
        pg_schema="{SCHEMA}",
    )

    key: str
    hits: int
'''

NAN_BITS = struct.pack("<Q", 0x7FF8_0000_0000_0042)
NAN = struct.unpack("<d", NAN_BITS)[0]


# --- documents and the two ZIP formats ------------------------------------------


def thing(i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": f"thing{i:04d}",
        "_creationTime": 1795367142625.125 + i,
        "name": f"Thing {i}",
        "teamId": f"team-{'ab'[i % 2]}",
        "credits": 2**62 + i,
        "role": ["admin", "member"][i % 2],
        "profile": {"visits": i, "key": bytes([i % 256, 0, 255]), "ratio": 0.5, "tags": ["x"]},
    }
    if i % 3 == 0:
        doc["avatar"] = bytes([1, 2, i % 256])
    if i % 4 == 1:
        doc["score"] = i / 3
    elif i % 4 == 2:
        doc["score"] = [math.inf, -math.inf, NAN, -0.0][i // 4 % 4]
    return doc


def limit(i: int) -> dict[str, Any]:
    return {"_id": f"limit{i}", "_creationTime": 1795367142000.5, "key": f"k{i}", "hits": i}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def uniform(value: Any) -> Any:
    """A decoded value as the uniform export writes it (before json.dumps)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return {"$float": b64(struct.pack("<d", value))}
    if isinstance(value, bytes):
        return {"$bytes": b64(value)}
    if isinstance(value, list):
        return [uniform(v) for v in value]
    if isinstance(value, dict):
        return {k: uniform(v) for k, v in value.items()}
    return value  # ints stay bare integers, floats are written with a '.' by json


def legacy(value: Any) -> Any:
    """Convex's clean JSON: int64 as a decimal string, bytes as base64, NaN/inf as strings."""
    if value is True or value is False or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes):
        return b64(value)
    if isinstance(value, list):
        return [legacy(v) for v in value]
    return {k: legacy(v) for k, v in value.items()}


THING_SHAPE = (
    '{"_creationTime": normalfloat64, "_id": id<10001>, "avatar"?: bytes, "credits": int64,'
    ' "name": string, "profile": {"key": bytes, "ratio": normalfloat64, "tags": array<string>,'
    ' "visits": int64}, "role": "admin" | "member", "score"?: float64, "teamId": string}'
)
LIMIT_SHAPE = '{"_creationTime": normalfloat64, "_id": id<10001>, "hits": int64, "key": field_name}'


def legacy_overrides(doc: dict[str, Any]) -> dict[str, Any] | None:
    # score is a general float64: NaN and the infinities carry an override.
    score = doc.get("score")
    if isinstance(score, float) and math.isnan(score):
        return {doc["_id"]: {"score": {"$float64NaN": b64(struct.pack("<d", score))}}}
    if isinstance(score, float) and math.isinf(score):
        return {doc["_id"]: {"score": "float64inf"}}
    return None


def export_zip(
    path: Path,
    things: list[dict[str, Any]],
    limits: list[dict[str, Any]],
    export_format: str = "uniform",
    extra: dict[str, str] | None = None,
) -> Path:
    """A ZIP in the layout ``npx convex export`` writes."""

    def lines(docs: list[dict[str, Any]]) -> str:
        encode = uniform if export_format == "uniform" else legacy
        return "".join(json.dumps(encode(d)) + "\n" for d in docs)

    def schema(shape: str, docs: list[dict[str, Any]]) -> str:
        if export_format == "uniform":
            return '"uniform"\n'
        overrides = [o for o in map(legacy_overrides, docs) if o]
        return json.dumps(shape) + "\n" + "".join(json.dumps(o) + "\n" for o in overrides)

    files = {
        "README.md": "# Welcome to your Convex snapshot export!\n",
        "_tables/documents.jsonl": '{"name":"things","id":10001}\n',
        "things/documents.jsonl": lines(things),
        "things/generated_schema.jsonl": schema(THING_SHAPE, things),
        "_storage/documents.jsonl": (
            '{"_id":"kg1","_creationTime":1.5,"sha256":"x","size":1200,"contentType":null}\n'
            '{"_id":"kg2","_creationTime":1.5,"sha256":"y","size":34,"contentType":"image/png"}\n'
        ),
        "_storage/kg1": "x" * 1200,
        "_storage/kg2.png": "y" * 34,
        "_components/limiter/_tables/documents.jsonl": '{"name":"limits","id":10001}\n',
        "_components/limiter/limits/documents.jsonl": lines(limits),
        "_components/limiter/limits/generated_schema.jsonl": schema(LIMIT_SHAPE, limits),
        "_components/limiter/_storage/documents.jsonl": "",
        **(extra or {}),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path


# --- fixtures -------------------------------------------------------------------


class Mirror:
    def __init__(self, engine: Engine, models_file: Path) -> None:
        self.engine = engine
        self.models_file = models_file
        self.thing = mirror_model_for("things")
        self.limit = mirror_model_for("limiter/limits")

    def documents(self, model: type[MirrorDocument]) -> list[dict[str, Any]]:
        return list(live_documents(self.engine, model))

    def dump(self) -> list[str]:
        """Every row of both tables, every column, as text: to show nothing changed."""
        rows: list[str] = []
        with self.engine.connect() as conn:
            for table in ("things", "limiter_limits"):
                query = f"SELECT t::text FROM {SCHEMA}.{table} t ORDER BY _id"
                rows += conn.execute(text(query)).scalars().all()
        return rows


@pytest.fixture
def mirror(migrationkit_engine: Engine, tmp_path: Path) -> Iterator[Mirror]:
    models_file = tmp_path / "convex_models.py"
    models_file.write_text(MODELS)
    import_models(models_file)
    made = Mirror(migrationkit_engine, models_file)
    tables = [mirror_table(made.thing), mirror_table(made.limit)]
    with migrationkit_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        for table in tables:
            table.create(conn)
    CursorStore(migrationkit_engine).delete(TAIL_CURSOR)
    yield made
    unregister_mirrors([made.thing, made.limit])
    for table in tables:
        metadata.remove(table)
    with migrationkit_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    CursorStore(migrationkit_engine).delete(TAIL_CURSOR)


def mirror_table(model: type[MirrorDocument]) -> Any:
    spec = model.mirror
    return current_metadata().tables[f"{spec.pg_schema}.{spec.pg_table}"]


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 and -0.0 from 0.0; NaN equals NaN.

    (A double precision column reads NaN back as the canonical NaN.)
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return sorted(a) == sorted(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


THINGS = [thing(i) for i in range(40)]
LIMITS = [limit(i) for i in range(5)]


# --- tests ----------------------------------------------------------------------


@pytest.mark.parametrize("export_format", ["uniform", "legacy"])
def test_each_format_lands_document_for_document(
    mirror: Mirror, tmp_path: Path, export_format: str
) -> None:
    path = export_zip(tmp_path / "e.zip", THINGS, LIMITS, export_format)
    report = import_zip(mirror.engine, path, snapshot_ts=0)
    assert [(t.table, t.rows, t.applied, t.format) for t in report.tables] == [
        ("things", 40, 40, export_format),
        ("limiter/limits", 5, 5, export_format),
    ]
    assert (report.storage_files, report.storage_bytes) == (2, 1234)
    for got, expected in zip(mirror.documents(mirror.thing), THINGS, strict=True):
        assert same(got, expected), (got, expected)
    assert same(mirror.documents(mirror.limit), LIMITS)
    with mirror.engine.connect() as conn:
        stamps = conn.execute(text(f"SELECT DISTINCT _ts, _deleted FROM {SCHEMA}.things")).all()
        teams = conn.execute(
            text(f"SELECT workspace_id, count(*) FROM {SCHEMA}.things GROUP BY 1 ORDER BY 1")
        ).all()
    assert stamps == [(0, False)]
    assert teams == [("team-a", 20), ("team-b", 20)]


def test_reimport_is_idempotent_and_the_change_feed_wins(mirror: Mirror, tmp_path: Path) -> None:
    path = export_zip(tmp_path / "e.zip", THINGS, LIMITS)
    import_zip(mirror.engine, path)
    before = mirror.dump()
    again = import_zip(mirror.engine, path)
    assert [t.applied for t in again.tables] == [0, 0]
    assert mirror.dump() == before
    # An export at a later snapshot replaces the rows; an older one does not.
    changed = [thing(i) | {"name": "renamed"} for i in range(40)]
    newer = export_zip(tmp_path / "newer.zip", changed, LIMITS)
    assert [t.applied for t in import_zip(mirror.engine, newer, snapshot_ts=10).tables] == [40, 5]
    assert [t.applied for t in import_zip(mirror.engine, path, snapshot_ts=9).tables] == [0, 0]
    assert {d["name"] for d in mirror.documents(mirror.thing)} == {"renamed"}


def test_a_value_that_does_not_fit_rolls_everything_back(mirror: Mirror, tmp_path: Path) -> None:
    import_zip(mirror.engine, export_zip(tmp_path / "old.zip", THINGS[:10], LIMITS[:2]))
    before = mirror.dump()
    # things (read first) is fine; the component table's line 3 is not.
    bad_limits = [*LIMITS[:2], limit(2) | {"hits": "many"}, *LIMITS[3:]]
    path = export_zip(tmp_path / "bad.zip", THINGS, bad_limits)
    with pytest.raises(ValidationFailed) as caught:
        import_zip(mirror.engine, path, snapshot_ts=50, start_tail=True)
    message = str(caught.value)
    assert "table limiter/limits" in message
    assert "_components/limiter/limits/documents.jsonl line 3" in message
    assert "field 'hits'" in message and "expected an int64, got a string" in message
    assert mirror.dump() == before
    assert CursorStore(mirror.engine).load(TAIL_CURSOR) is None


def test_a_damaged_line_rolls_everything_back(mirror: Mirror, tmp_path: Path) -> None:
    import_zip(mirror.engine, export_zip(tmp_path / "old.zip", THINGS[:3], LIMITS[:1]))
    before = mirror.dump()
    good = "".join(json.dumps(uniform(d)) + "\n" for d in LIMITS[:3])
    damaged = {"_components/limiter/limits/documents.jsonl": good + '{"_id": \n'}
    broken = export_zip(tmp_path / "bad.zip", THINGS, LIMITS, extra=damaged)
    with pytest.raises(ExportUnreadable, match=re.escape("limits/documents.jsonl line 4")):
        import_zip(mirror.engine, broken)
    assert mirror.dump() == before


@pytest.mark.parametrize("table_empty", [True, False])
def test_a_document_twice_refuses_the_import(
    mirror: Mirror, tmp_path: Path, table_empty: bool
) -> None:
    if not table_empty:  # then the rows go through the staging table and the upsert
        import_zip(mirror.engine, export_zip(tmp_path / "old.zip", THINGS[:2], LIMITS[:1]))
    before = mirror.dump()
    path = export_zip(tmp_path / "twice.zip", [*THINGS[:5], THINGS[3]], LIMITS)
    with pytest.raises(
        ValidationFailed, match="table things: the snapshot holds one document twice"
    ):
        import_zip(mirror.engine, path, snapshot_ts=5)
    assert mirror.dump() == before


def test_an_unknown_table_refuses_the_import(mirror: Mirror, tmp_path: Path) -> None:
    extra = {"mystery/documents.jsonl": '{"_id":"m1","_creationTime":1.0}\n'}
    path = export_zip(tmp_path / "e.zip", THINGS, LIMITS, extra=extra)
    with pytest.raises(UnknownEntity, match="unknown table mystery"):
        import_zip(mirror.engine, path)
    assert mirror.dump() == []
    # Excluded in the config, it is skipped and reported.
    report = import_zip(mirror.engine, path, MirrorConfig(exclude_tables=["mystery"]))
    assert report.skipped == ["mystery"]
    assert report.rows == 45


def test_start_tail_saves_the_cursor_with_the_rows(mirror: Mirror, tmp_path: Path) -> None:
    path = export_zip(tmp_path / "e.zip", THINGS, LIMITS)
    report = import_zip(mirror.engine, path, snapshot_ts=1_795_367_142_625_000_000, start_tail=True)
    assert report.tail_started
    assert CursorStore(mirror.engine).load(TAIL_CURSOR) == 1_795_367_142_625_000_000
    with mirror.engine.connect() as conn:
        stamps = conn.execute(text(f"SELECT DISTINCT _ts FROM {SCHEMA}.things")).scalars().all()
    assert stamps == [1_795_367_142_625_000_000]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrationkit.cli", "import", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command(mirror: Mirror, tmp_path: Path, migrationkit_database_url: URL) -> None:
    url = migrationkit_database_url.render_as_string(hide_password=False)
    (tmp_path / "migrationkit.toml").write_text(
        '[mirror]\nmodels = "convex_models.py"\nexclude_tables = ["mystery"]\n'
    )
    extra = {"mystery/documents.jsonl": '{"_id":"m1","_creationTime":1.0}\n'}
    path = export_zip(tmp_path / "e.zip", THINGS, LIMITS, "legacy", extra=extra)
    done = run_cli(str(path), "--url", url, "--snapshot-ts", "7", "--start-tail", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "things -> mk_zip_test.things: 40 rows (legacy format), 40 written" in out
    assert "mystery: skipped (excluded by the config)" in out
    assert "imported 45 rows in 2 tables" in out
    assert "_storage: 2 files (1,234 bytes) are listed in the export but not copied" in out
    assert "the mirror tail starts after 7" in out
    assert "things: done, 40 rows" in done.stderr  # plain progress lines off a terminal
    assert CursorStore(mirror.engine).load(TAIL_CURSOR) == 7
    # Errors: one line, exit code 2, nothing written.
    (tmp_path / "migrationkit.toml").write_text('[mirror]\nmodels = "convex_models.py"\n')
    before = mirror.dump()
    failed = run_cli(str(path), "--url", url, "--snapshot-ts", "8", cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: ") and "unknown table mystery" in failed.stderr
    assert mirror.dump() == before
    refused = run_cli(str(path), "--url", url, "--start-tail", cwd=tmp_path)
    assert refused.returncode == 2 and "--start-tail needs --snapshot-ts" in refused.stderr
