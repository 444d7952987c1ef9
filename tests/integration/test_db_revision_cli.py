"""`migrationkit db revision`: your models' migration in a folder of your own,
applied with the kit's by `db upgrade --versions`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.testing.databases import TestServer, throwaway_database

pytestmark = pytest.mark.postgres

MODELS = """
from typing import Annotated, Any, ClassVar

from pydantic import Field

from migrationkit.mirror import ConvexJson, MirrorDocument, MirrorTable, RefersTo, register_mirror


@register_mirror
class Orders(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(
        convex_table="orders", pg_table="orders", pg_schema="shop", workspace_field="storeId"
    )

    store_id: str = Field(alias="storeId")
    total: int
    lines: Annotated[Any, ConvexJson()]
    customer: Annotated[str, RefersTo("customers")]
"""


@pytest.fixture
def database(migrationkit_server: TestServer) -> Iterator[URL]:
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_rev") as url:
        yield url


def cli(*args: str, url: URL, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"MIGRATIONKIT_DATABASE_URL": url.render_as_string(hide_password=False)}
    env.pop("MIGRATIONKIT_MODELS", None)
    return subprocess.run(
        [sys.executable, "-m", "migrationkit.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def revision(message: str, url: URL, work: Path) -> subprocess.CompletedProcess[str]:
    """`db revision` for the test's models.py into work/versions."""
    versions = str(work / "versions")
    return cli(
        "db",
        "revision",
        "-m",
        message,
        "--versions",
        versions,
        "--models",
        "models.py",
        url=url,
        cwd=work,
    )


def test_revision_then_upgrade_creates_the_mirror_tables(database: URL, tmp_path: Path) -> None:
    (tmp_path / "models.py").write_text(MODELS)
    versions = tmp_path / "versions"
    versions.mkdir()
    first = cli("db", "upgrade", "--versions", str(versions), url=database, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    made = revision("shop", database, tmp_path)
    assert made.returncode == 0, made.stderr
    (script,) = versions.glob("*_shop.py")
    assert "CREATE SCHEMA IF NOT EXISTS" in script.read_text()
    applied = cli("db", "upgrade", "--versions", str(versions), url=database, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            secured = conn.execute(
                text(
                    "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class"
                    " WHERE oid = 'shop.orders'::regclass"
                )
            ).scalar_one()
        assert secured is True
    finally:
        engine.dispose()
    # Nothing left to compare: a second revision would be empty.
    again = revision("again", database, tmp_path)
    assert again.returncode == 0, again.stderr
    (second,) = versions.glob("*_again.py")
    assert "op.create_table" not in second.read_text()


def test_revision_on_a_database_behind_says_upgrade_first(database: URL, tmp_path: Path) -> None:
    (tmp_path / "models.py").write_text(MODELS)
    versions = tmp_path / "versions"
    versions.mkdir()
    made = revision("shop", database, tmp_path)
    assert made.returncode == 2
    assert "not up to date" in made.stderr
    assert made.stderr.count("\n") == 1


def test_a_missing_versions_folder_is_named(database: URL, tmp_path: Path) -> None:
    done = cli("db", "upgrade", "--versions", str(tmp_path / "nope"), url=database, cwd=tmp_path)
    assert done.returncode == 2
    assert "no migrations folder" in done.stderr
