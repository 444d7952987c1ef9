"""``migrationkit import`` of the test app's own export ZIP, in each format,
compared document by document with a list_snapshot read of the same backend.

The app (convex/testapp) is introspected from the deployment and migrated
as a user would; the local backend writes the ZIP in the real layout
(``POST /_test/export_zip``): int64, bytes, optional and union fields,
nested objects, a union-of-objects table, a table with no schema and a
component's table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror.config import load_config
from migrationkit.mirror.loading import selected_models
from migrationkit.mirror.model import registered_mirrors, unregister_mirrors
from migrationkit.schema.metadata import metadata
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.testing.databases import TestServer, throwaway_database

from .testapp_support import (
    CONFIG,
    TABLES,
    cli_env,
    convex_documents,
    migrate_with_models,
    migrationkit,
    postgres_documents,
    seed,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def workdir(
    testapp: LocalConvexBackend,
    testapp_client: ConvexClient,
    migrationkit_server: TestServer,
    tmp_path: Path,
) -> Iterator[tuple[Path, URL]]:
    """Introspected and migrated, as a user would; the backend emptied again."""
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_zip") as url:
        # Introspection needs the tables to exist with data, as in a real app.
        seed(testapp_client, users=2, posts=2)
        (tmp_path / "migrationkit.toml").write_text(CONFIG)
        done = migrationkit("introspect", env=cli_env(testapp), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        migrate_with_models(url, tmp_path / "convex_models.py", tmp_path)
        testapp.reset()
        yield tmp_path, url
        unregister_mirrors(registered_mirrors())
        for table in list(metadata.tables.values()):
            if table.schema == "app_convex":
                metadata.remove(table)


def export_zip(backend: LocalConvexBackend, path: Path, **body: object) -> Path:
    reply = httpx.post(
        f"{backend.url}/_test/export_zip",
        headers={"Authorization": f"Convex {backend.admin_key}"},
        json=body,
        timeout=60,
    )
    reply.raise_for_status()
    path.write_bytes(reply.content)
    return path


@pytest.mark.parametrize(
    ("export_format", "wrapper"),
    [("uniform", None), ("legacy", None), ("legacy", "snapshot_1795367142")],
)
def test_the_apps_export_imports_equal_to_its_snapshot(
    testapp: LocalConvexBackend,
    testapp_client: ConvexClient,
    workdir: tuple[Path, URL],
    export_format: str,
    wrapper: str | None,
) -> None:
    cwd, url = workdir
    seed(testapp_client, users=15, posts=30)
    body: dict[str, object] = {"format": export_format, "includeStorage": True}
    if wrapper:
        body["wrapper"] = wrapper
    path = export_zip(testapp, cwd / "export.zip", **body)
    done = migrationkit("import", str(path), env=cli_env(testapp, url), cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert f"({export_format} format)" in done.stdout
    assert "_storage: no files in the export" in done.stdout
    convex = convex_documents(testapp_client)
    models = selected_models(load_config(cwd / "migrationkit.toml"))
    engine = make_engine(url)
    try:
        postgres = postgres_documents(engine, models)
        with engine.connect() as conn:
            stamps = conn.execute(text("SELECT DISTINCT _ts FROM app_convex.users")).scalars()
            assert list(stamps) == [0]
    finally:
        engine.dispose()
    assert set(postgres) == set(TABLES)
    compared = 0
    for table, documents in convex.items():
        assert postgres[table] == documents, f"{table} differs"
        compared += len(documents)
    assert compared >= 15 + 30 + 2 + 4 + 2
