"""`migrationkit introspect` against the test app on the local backend, and the
migration alembic autogenerates from the module it writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.migrations import scripts_dir
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.testing.databases import TestServer, throwaway_database

from .testapp_support import CONFIG, migrationkit, seed

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def testapp(testapp: LocalConvexBackend) -> LocalConvexBackend:
    """The shared test app, emptied and seeded: introspection reads the shapes stored."""
    testapp.reset()
    with ConvexClient(testapp.url, admin_key=testapp.admin_key) as client:
        seed(client, users=4, posts=4)
    return testapp


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "migrationkit.toml").write_text(CONFIG)
    return tmp_path


def env_for(backend: LocalConvexBackend, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVEX_URL", "CONVEX_DEPLOY_KEY")}
    env["CONVEX_DEPLOY_KEY"] = backend.admin_key
    return env | extra


def test_introspect_writes_the_module_and_check_catches_drift(
    testapp: LocalConvexBackend, workdir: Path
) -> None:
    env = env_for(testapp)
    done = migrationkit("introspect", "--url", testapp.url, "--out", "m.py", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    module = workdir / "m.py"
    first = module.read_bytes()
    # The summary: one head line per table, then its columns.
    assert "users -> app_convex.users (workspace_id from teamId): 8 columns" in done.stdout
    assert "ratelimiter/limits -> app_convex.limits" in done.stdout
    assert 'author: v.id("users") -> author text, indexed -> users' in done.stdout
    assert f"from {testapp.url}." in first.decode()
    assert testapp.admin_key not in first.decode()

    again = migrationkit("introspect", "--url", testapp.url, "--out", "m.py", env=env, cwd=workdir)
    assert again.returncode == 0 and module.read_bytes() == first
    check = ("introspect", "--url", testapp.url, "--out", "m.py", "--check")
    clean = migrationkit(*check, env=env, cwd=workdir)
    assert clean.returncode == 0, clean.stderr
    assert "m.py is up to date" in clean.stdout

    module.write_bytes(first.replace(b"    name: str\n", b"    name: str | None = None\n"))
    drift = migrationkit(*check, env=env, cwd=workdir)
    assert drift.returncode == 1
    assert drift.stderr.strip() == (
        "error: m.py is out of date: run `migrationkit introspect` and commit it"
    )
    assert module.read_bytes() != first  # --check wrote nothing
    module.unlink()
    missing = migrationkit(*check, env=env, cwd=workdir)
    assert missing.returncode == 1 and "m.py does not exist" in missing.stderr


def test_the_config_picks_the_default_output_and_the_url_from_the_environment(
    testapp: LocalConvexBackend, workdir: Path
) -> None:
    env = env_for(testapp, CONVEX_URL=testapp.url)
    done = migrationkit("introspect", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    text_ = (workdir / "convex_models.py").read_text()
    for name in ("class Users(", "class Posts(", "class Events(", "class Scratch("):
        assert name in text_
    assert "class RatelimiterLimits(" in text_
    formatted = subprocess.run(
        [str(Path(sys.executable).with_name("ruff")), "format", "--isolated", "--check", "."],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_missing_settings_are_one_line_naming_the_variable(
    testapp: LocalConvexBackend, workdir: Path
) -> None:
    no_url = migrationkit("introspect", env=env_for(testapp), cwd=workdir)
    assert no_url.returncode == 2
    assert no_url.stderr == "error: CONVEX_URL is not set (or pass --url)\n"
    env = env_for(testapp)
    del env["CONVEX_DEPLOY_KEY"]
    no_key = migrationkit("introspect", "--url", testapp.url, env=env, cwd=workdir)
    assert no_key.returncode == 2
    assert len(no_key.stderr.splitlines()) == 1
    assert no_key.stderr.startswith("error: CONVEX_DEPLOY_KEY is not set")
    assert not (workdir / "convex_models.py").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('[mirror]\nworkspace_feild = "teamId"\n', "mirror.workspace_feild: unknown key"),
        ('[mirror]\ntables = ["users", "nope"]\n', "does not have: nope"),
        (
            '[mirror.table.users]\nexclude_fields = ["avatr"]\n',
            "table.users.exclude_fields: no field 'avatr'",
        ),
    ],
)
def test_config_mistakes_are_named(
    testapp: LocalConvexBackend, tmp_path: Path, config: str, message: str
) -> None:
    (tmp_path / "mk.toml").write_text(config)
    args = ("introspect", "--url", testapp.url, "--config", "mk.toml")
    done = migrationkit(*args, env=env_for(testapp), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.splitlines()) == 1


def export(backend: LocalConvexBackend, path: Path, export_format: str) -> Path:
    response = httpx.post(
        f"{backend.url}/_test/export_zip",
        json={"format": export_format, "wrapper": "snapshot"},
        headers={"Authorization": f"Convex {backend.admin_key}"},
        timeout=60,
    )
    response.raise_for_status()
    path.write_bytes(response.content)
    return path


def test_introspect_reads_export_zips_offline(testapp: LocalConvexBackend, workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEX_")}
    for export_format in ("legacy", "uniform"):
        zip_path = export(testapp, workdir / f"{export_format}.zip", export_format)
        out = f"{export_format}.py"
        done = migrationkit(
            "introspect", "--zip", zip_path.name, "--out", out, env=env, cwd=workdir
        )
        assert done.returncode == 0, done.stderr
        module = (workdir / out).read_text()
        assert f"from {export_format}.zip." in module
        assert "credits: int\n" in module and "class RatelimiterLimits(" in module
        if export_format == "legacy":
            # The shape line keeps the table of a v.id(); the union of object
            # shapes (documents with different fields) merges into one.
            assert 'author: Annotated[str, RefersTo("users")]' in module
            assert "    page: str | None = None\n" in module
        else:
            # Read off the values: ids are strings.
            assert "    author: str\n" in module
            assert "Read off the documents of a uniform export" in module
    both = migrationkit("introspect", "--url", "x", "--zip", "legacy.zip", env=env, cwd=workdir)
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.fixture
def database(migrationkit_server: TestServer) -> Iterator[URL]:
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_introspect") as url:
        yield url


def alembic(workdir: Path, url: URL, models: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Plain `alembic`, as a user runs it, on a copy of the kit's migrations."""
    if not (workdir / "migrations").exists():
        shutil.copytree(
            scripts_dir(), workdir / "migrations", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy(REPOSITORY / "alembic.ini", workdir / "alembic.ini")
    env = dict(os.environ)
    env["MIGRATIONKIT_DATABASE_URL"] = url.render_as_string(hide_password=False)
    env["MIGRATIONKIT_MODELS"] = str(models)
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(workdir / "alembic.ini"), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_autogenerate_from_the_module_creates_the_schema_the_tables_and_rls(
    testapp: LocalConvexBackend, workdir: Path, database: URL
) -> None:
    env = env_for(testapp, CONVEX_URL=testapp.url)
    assert migrationkit("introspect", env=env, cwd=workdir).returncode == 0
    models = workdir / "convex_models.py"
    for args in (("upgrade", "head"), ("revision", "--autogenerate", "-m", "mirror")):
        done = alembic(workdir, database, models, *args)
        assert done.returncode == 0, done.stderr
    (script,) = (workdir / "migrations" / "versions").glob("*_mirror.py")
    body = script.read_text()
    assert body.index("CREATE SCHEMA IF NOT EXISTS") < body.index("op.create_table(")
    assert body.index("op.create_table(") < body.index("ENABLE ROW LEVEL SECURITY")
    upgraded = alembic(workdir, database, models, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr

    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text(
                    "SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class"
                    " WHERE relnamespace = 'app_convex'::regnamespace AND relkind = 'r'"
                )
            ).all()
            policies = conn.execute(
                text(
                    "SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'app_convex'"
                )
            ).all()
            columns = dict(
                conn.execute(
                    text(
                        "SELECT column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = 'app_convex' AND table_name = 'users'"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert dict(tables) == {
        "users": True,
        "posts": True,
        "events": False,
        "scratch": False,
        "limits": False,
    }
    assert set(policies) == {
        (t, p) for t in ("users", "posts") for p in ("tenant_isolation", "readonly_tenant_read")
    }
    assert columns["credits"] == "bigint" and columns["avatar"] == "bytea"
    assert columns["profile"] == "jsonb" and columns["_creation_time"] == "timestamp with time zone"

    # Nothing left to do: a second autogenerate finds no difference.
    again = alembic(workdir, database, models, "revision", "--autogenerate", "-m", "again")
    assert again.returncode == 0, again.stderr
    (second,) = (workdir / "migrations" / "versions").glob("*_again.py")
    upgrade = second.read_text().split("def upgrade() -> None:")[1].split("def downgrade")[0]
    assert "op." not in upgrade, upgrade
