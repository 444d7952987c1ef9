"""The alembic migrations: applied by the CLI and by plain alembic, in step
with the models, reversible."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres import make_engine
from migrationkit.adapters.postgres.migrations import (
    alembic_config,
    current_revision,
    downgrade,
    upgrade,
)
from migrationkit.schema import metadata
from migrationkit.testing.databases import TestServer, throwaway_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_database(migrationkit_server: TestServer) -> Iterator[URL]:
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_migr") as url:
        yield url


def _env(url: URL) -> dict[str, str]:
    return os.environ | {"MIGRATIONKIT_DATABASE_URL": url.render_as_string(hide_password=False)}


def _head(url: URL) -> str:
    """The kit's newest migration: the one every upgrade must reach."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def _tables(url: URL) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_cli_upgrade_reads_the_url_from_the_environment(empty_database: URL) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrationkit.cli", "db", "upgrade"],
        env=_env(empty_database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert _head(empty_database) in result.stdout
    assert {"leads", "outbox_events", "processed_events", "sync_backfills"} <= _tables(
        empty_database
    )


def test_plain_alembic_upgrade_head_works(empty_database: URL) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=_env(empty_database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert current_revision(empty_database) == _head(empty_database)


def test_migrations_match_the_models(empty_database: URL) -> None:
    upgrade(empty_database)
    engine = make_engine(empty_database)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_downgrade_to_base_and_up_again(empty_database: URL) -> None:
    upgrade(empty_database)
    downgrade(empty_database, "base")
    assert _tables(empty_database) <= {"alembic_version"}
    upgrade(empty_database)  # roles already exist in the cluster: still fine
    engine = make_engine(empty_database)
    try:
        with engine.connect() as conn:
            policies = conn.execute(
                text("SELECT tablename, policyname FROM pg_policies ORDER BY 1, 2")
            ).all()
    finally:
        engine.dispose()
    assert ("leads", "tenant_isolation") in policies
    assert ("leads", "readonly_tenant_read") in policies


def test_0004_turns_the_inbox_s_empty_strings_into_nulls_and_back(empty_database: URL) -> None:
    upgrade(empty_database, "0003")
    engine = make_engine(empty_database)
    insert = text(
        "INSERT INTO processed_events (consumer, event_id, workspace_id, entity, entity_id,"
        " version) VALUES ('c', :event, :ws, 'lead', :id, 1)"
    )
    read = text("SELECT event_id, workspace_id, entity_id FROM processed_events ORDER BY 1")
    try:
        with engine.begin() as conn:
            # Before 0004 a purge that found no row was recorded with empty strings.
            conn.execute(insert, {"event": "e1", "ws": "", "id": ""})
            conn.execute(insert, {"event": "e2", "ws": "ws-1", "id": "L1"})
        upgrade(empty_database)
        with engine.connect() as conn:
            assert conn.execute(read).all() == [("e1", None, None), ("e2", "ws-1", "L1")]
        downgrade(empty_database, "0003")
        with engine.connect() as conn:
            assert conn.execute(read).all() == [("e1", "", ""), ("e2", "ws-1", "L1")]
    finally:
        engine.dispose()


def test_cli_refuses_a_bad_url_without_showing_the_password() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "migrationkit.cli",
            "db",
            "upgrade",
            "--url",
            "postgresql://user:s3cret-pw@127.0.0.1:1/db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unavailable" in result.stderr and "s3cret-pw" not in result.stderr + result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "migrationkit.cli", "db", "current"],
        env={k: v for k, v in os.environ.items() if k != "MIGRATIONKIT_DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "MIGRATIONKIT_DATABASE_URL is not set" in missing.stderr
