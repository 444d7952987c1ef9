"""`migrationkit doctor` against a real PostgreSQL and the local Convex backend:
each fault is planted, found, and named with its fix; the password and the
deploy key never appear in what it prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.migrations import downgrade, upgrade
from migrationkit.doctor.postgres import Role
from migrationkit.doctor.report import Status
from migrationkit.doctor.run import DoctorSettings, run_doctor
from migrationkit.schema.rls import APP_ROLE
from migrationkit.testing.convex_backend import LocalConvexBackend, convex_dir
from migrationkit.testing.databases import TestServer, throwaway_database

from .testapp_support import Deployment, seed

PASSWORD = "Doctor-pw-7f3a9c"
LINE = re.compile(r"^(ok|warn|fail|skip)\s+([^:]+): (.*)$")
EVERY_CHECK = [
    "database url",
    "tls",
    "server",
    "migrations",
    "login",
    "grants",
    "row-level security",
    "convex url",
    "convex key",
    "streaming export",
    "convex functions",
]
_CLEARED = (
    "MIGRATIONKIT_DATABASE_URL",
    "CONVEX_URL",
    "CONVEX_DEPLOY_KEY",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGHOST",
)


class Outcome:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code = done.returncode
        self.stdout = done.stdout
        self.output = done.stdout + done.stderr
        self.lines: dict[str, tuple[str, str]] = {}
        for line in done.stdout.splitlines():
            found = LINE.match(line)
            if found:
                self.lines[found.group(2)] = (found.group(1), found.group(3))

    def status(self, check: str) -> str:
        return self.lines[check][0]

    def said(self, check: str) -> str:
        return self.lines[check][1]

    def statuses(self) -> dict[str, str]:
        return {name: status for name, (status, _) in self.lines.items()}


def doctor(
    *args: str,
    database_url: URL | str | None = None,
    backend: LocalConvexBackend | None = None,
    key: str | None = None,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> Outcome:
    environment = {k: v for k, v in os.environ.items() if k not in _CLEARED} | (env or {})
    if database_url is not None:
        environment["MIGRATIONKIT_DATABASE_URL"] = (
            database_url
            if isinstance(database_url, str)
            else database_url.render_as_string(hide_password=False)
        )
    if backend is not None:
        environment["CONVEX_URL"] = backend.url
        environment["CONVEX_DEPLOY_KEY"] = key or backend.admin_key
    done = subprocess.run(
        [sys.executable, "-m", "migrationkit.cli", "doctor", *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outcome = Outcome(done)
    assert "Traceback" not in outcome.output, outcome.output
    return outcome


def assert_secret_free(outcome: Outcome, *secrets: str) -> None:
    for secret in (PASSWORD, *secrets):
        assert secret not in outcome.output


# --- databases and logins ----------------------------------------------------------


@pytest.fixture(scope="module")
def migrated(migrationkit_server: TestServer) -> Iterator[URL]:
    """A database at head, left as the migrations made it."""
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_doctor") as url:
        upgrade(url)
        yield url


@pytest.fixture
def scratch_db(migrationkit_server: TestServer) -> Iterator[URL]:
    """A database of the test's own, at head, to break."""
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_doctor") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def logins(migrated: URL) -> Iterator[dict[Role | str, str]]:
    """An ordinary login for the services, a BYPASSRLS one for the worker.
    Roles belong to the cluster: unique names, dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names: dict[Role | str, str] = {
        Role.APP: f"mk_doctor_app_{suffix}",
        Role.WORKER: f"mk_doctor_worker_{suffix}",
    }
    attributes = {Role.APP: "NOSUPERUSER NOBYPASSRLS", Role.WORKER: "NOSUPERUSER BYPASSRLS"}
    admin = make_engine(migrated, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for role, name in names.items():
            conn.execute(
                text(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}' {attributes[Role(role)]}")
            )
            conn.execute(text(f"GRANT {APP_ROLE} TO {name}"))
    yield names
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
    admin.dispose()


def as_login(url: URL, name: str) -> URL:
    return url.set(username=name, password=PASSWORD)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- a healthy setup -----------------------------------------------------------------


def test_a_healthy_setup_passes_every_check(
    migrated: URL, logins: dict[Role | str, str], convex_backend: LocalConvexBackend, tmp_path: Path
) -> None:
    outcome = doctor(
        database_url=as_login(migrated, logins[Role.APP]), backend=convex_backend, cwd=tmp_path
    )
    assert outcome.code == 0, outcome.output
    # (A server reached through a Unix socket adds a "socket" line.)
    assert [n for n in outcome.lines if n != "socket"] == EVERY_CHECK
    # The kit's roles may read alembic_version (migration 0007): every line is ok.
    assert set(outcome.statuses().values()) == {"ok"}
    assert outcome.said("migrations").startswith("at head")
    assert outcome.said("login").startswith(f"{logins[Role.APP]}: no superuser, no BYPASSRLS")
    assert outcome.said("row-level security") == "enabled and forced on 8 tenant tables"
    assert outcome.said("convex functions").startswith("deployed and current (sha256:")
    ok = sum(1 for status in outcome.statuses().values() if status == "ok")
    assert outcome.stdout.splitlines()[-1] == f"doctor: {ok} ok: nothing failed"
    assert_secret_free(outcome, convex_backend.admin_key)


def test_json_for_ci(
    migrated: URL, logins: dict[Role | str, str], convex_backend: LocalConvexBackend, tmp_path: Path
) -> None:
    outcome = doctor(
        "--json",
        database_url=as_login(migrated, logins[Role.APP]),
        backend=convex_backend,
        cwd=tmp_path,
    )
    report = json.loads(outcome.stdout)
    assert outcome.code == 0 and report["ok"] is True
    assert report["counts"] | {"ok": 0} == {"ok": 0, "warn": 0, "fail": 0, "skip": 0}
    assert [c["check"] for c in report["checks"] if c["check"] != "socket"] == EVERY_CHECK
    assert all(c["fix"] is None for c in report["checks"] if c["status"] == "ok")
    assert_secret_free(outcome, convex_backend.admin_key)


# --- the login -------------------------------------------------------------------------


def test_a_superuser_fails_as_the_app_and_warns_as_the_worker(
    migrated: URL, convex_backend: LocalConvexBackend, tmp_path: Path
) -> None:
    # The machine's own login (the test server's admin) is a superuser.
    as_app = doctor(database_url=migrated, backend=convex_backend, cwd=tmp_path)
    assert as_app.code == 1
    assert as_app.status("login") == "fail"
    assert "is a superuser: row-level security does not apply to it" in as_app.said("login")
    assert "GRANT migrationkit_app TO app_login" in as_app.said("login")
    assert [n for n, s in as_app.statuses().items() if s != "ok"] == ["login"]

    as_worker = doctor(
        "--role", "worker", database_url=migrated, backend=convex_backend, cwd=tmp_path
    )
    assert as_worker.code == 0
    assert as_worker.status("login") == "warn"
    assert "far more power than it needs" in as_worker.said("login")


def test_the_worker_needs_bypassrls_and_the_app_must_not_have_it(
    migrated: URL, logins: dict[Role | str, str], tmp_path: Path
) -> None:
    worker = as_login(migrated, logins[Role.WORKER])
    app = as_login(migrated, logins[Role.APP])

    ok = doctor("--role", "worker", database_url=worker, cwd=tmp_path)
    assert ok.status("login") == "ok" and "has BYPASSRLS, as the worker needs" in ok.said("login")
    # No Convex configured: one warning, and nothing failed.
    assert ok.code == 0 and ok.status("convex url") == "warn"

    app_as_worker = doctor("--role", "worker", database_url=app, cwd=tmp_path)
    assert app_as_worker.code == 1 and app_as_worker.status("login") == "fail"
    assert "has no BYPASSRLS" in app_as_worker.said("login")

    worker_as_app = doctor(database_url=worker, cwd=tmp_path)
    assert worker_as_app.code == 1 and worker_as_app.status("login") == "fail"
    assert "has BYPASSRLS: row-level security does not apply to it" in worker_as_app.said("login")
    for outcome in (ok, app_as_worker, worker_as_app):
        assert_secret_free(outcome)


# --- the schema ------------------------------------------------------------------------


def test_rls_switched_off_on_one_table_is_found_with_the_statement_that_fixes_it(
    scratch_db: URL, tmp_path: Path
) -> None:
    admin = make_engine(scratch_db)
    with admin.begin() as conn:
        conn.execute(text("ALTER TABLE leads NO FORCE ROW LEVEL SECURITY"))
        conn.execute(text("ALTER TABLE outbox_events DISABLE ROW LEVEL SECURITY"))
    broken = doctor("--role", "worker", database_url=scratch_db, cwd=tmp_path)
    assert broken.code == 1
    assert broken.status("row-level security") == "fail"
    said = broken.said("row-level security")
    assert "leads: not forced" in said and "outbox_events: not enabled" in said
    assert 'ALTER TABLE "leads" FORCE ROW LEVEL SECURITY' in said
    assert 'ALTER TABLE "outbox_events" ENABLE ROW LEVEL SECURITY' in said
    assert "processed_events" not in said

    with admin.begin() as conn:
        conn.execute(text('ALTER TABLE "leads" FORCE ROW LEVEL SECURITY'))
        conn.execute(text('ALTER TABLE "outbox_events" ENABLE ROW LEVEL SECURITY'))
    admin.dispose()
    fixed = doctor("--role", "worker", database_url=scratch_db, cwd=tmp_path)
    assert fixed.code == 0 and fixed.status("row-level security") == "ok"


def test_migrations_behind_unknown_or_missing(
    migrationkit_server: TestServer, scratch_db: URL, tmp_path: Path
) -> None:
    admin = make_engine(scratch_db)
    with admin.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    downgrade(scratch_db, "-1")
    behind = doctor("--role", "worker", database_url=scratch_db, cwd=tmp_path)
    assert behind.code == 1 and behind.status("migrations") == "fail"
    assert f"head is {head}" in behind.said("migrations")
    assert "run `migrationkit db upgrade`" in behind.said("migrations")

    with admin.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
    admin.dispose()
    unknown = doctor("--role", "worker", database_url=scratch_db, cwd=tmp_path)
    assert unknown.status("migrations") == "fail"
    assert "at f00dcafe, which these migrations do not know" in unknown.said("migrations")
    assert "--versions DIR" in unknown.said("migrations")

    with throwaway_database(migrationkit_server.admin_url, prefix="mk_doctor") as empty:
        bare = doctor("--role", "worker", database_url=empty, cwd=tmp_path)
    assert bare.status("migrations") == "fail" and "no schema yet" in bare.said("migrations")
    # The tables are missing too, and RLS says so rather than passing.
    assert "leads is missing" in bare.said("row-level security")


# --- the database URL ---------------------------------------------------------------


def test_a_server_that_does_not_answer(tmp_path: Path) -> None:
    port = closed_port()
    outcome = doctor(database_url=f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app", cwd=tmp_path)
    assert outcome.code == 1
    assert outcome.status("server") == "fail"
    assert "Connection refused" in outcome.said("server")
    assert "start the server" in outcome.said("server")
    for later in ("migrations", "login", "grants", "row-level security"):
        assert outcome.status(later) == "skip"
    assert_secret_free(outcome)


@pytest.mark.parametrize(
    ("url", "check", "said"),
    [
        (f"postgresql://app:{PASSWORD}@x@127.0.0.1/db", "database url", "'@' that is not"),
        (f"postgresql://app:{PASSWORD}@127.0.0.1/db?sslmod=require", "database url", "sslmod"),
        (f"postgresql://app:{PASSWORD}@%2Ftmp%2Fsock/db", "database url", "percent-encoded"),
        (
            f"postgresql://app:{PASSWORD}@/db?host=/cloudsql/proj:region:inst",
            "socket",
            "Cloud SQL Auth Proxy is not running",
        ),
        (f"postgresql://app:{PASSWORD}@127.0.0.1/db?sslmode=verify-full", "tls", "root.crt"),
        (f"postgresql://app:{PASSWORD}@127.0.0.1/db?sslmode=verify-all", "tls", "'verify-all'"),
    ],
)
def test_each_bad_url_fails_its_line_before_connecting(
    tmp_path: Path, url: str, check: str, said: str
) -> None:
    # HOME without ~/.postgresql/root.crt, whatever the machine has.
    outcome = doctor(database_url=url, cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert outcome.code == 1
    assert outcome.status(check) == "fail" and said in outcome.said(check)
    assert outcome.status("server") == "skip"
    assert outcome.said("server") == "fix the database URL first"
    assert_secret_free(outcome)


def test_no_database_url(tmp_path: Path) -> None:
    outcome = doctor(cwd=tmp_path)
    assert outcome.code == 1
    assert outcome.status("database url") == "fail"
    assert "MIGRATIONKIT_DATABASE_URL is not set" in outcome.said("database url")


# --- Convex -------------------------------------------------------------------------------


def test_a_wrong_deploy_key_fails_and_is_not_shown(
    migrated: URL, logins: dict[Role | str, str], convex_backend: LocalConvexBackend, tmp_path: Path
) -> None:
    wrong = "local|" + uuid.uuid4().hex
    outcome = doctor(
        database_url=as_login(migrated, logins[Role.APP]),
        backend=convex_backend,
        key=wrong,
        cwd=tmp_path,
    )
    assert outcome.code == 1
    assert outcome.status("convex url") == "ok"
    assert outcome.status("convex key") == "fail" and "BadAdminKey" in outcome.said("convex key")
    assert outcome.status("streaming export") == "skip"
    assert outcome.status("convex functions") == "skip"
    assert_secret_free(outcome, wrong, wrong.partition("|")[2], convex_backend.admin_key)


def test_a_missing_deploy_key_and_a_url_that_does_not_answer(
    migrated: URL, logins: dict[Role | str, str], convex_backend: LocalConvexBackend, tmp_path: Path
) -> None:
    app = as_login(migrated, logins[Role.APP])
    no_key = doctor(database_url=app, cwd=tmp_path, env={"CONVEX_URL": convex_backend.url})
    assert no_key.code == 1 and no_key.status("convex key") == "fail"
    assert "CONVEX_DEPLOY_KEY is not set" in no_key.said("convex key")

    nowhere = f"http://127.0.0.1:{closed_port()}"
    silent = doctor("--convex-url", nowhere, "--timeout", "1", database_url=app, cwd=tmp_path)
    assert silent.code == 1 and silent.status("convex url") == "fail"
    assert "could not connect" in silent.said("convex url")
    assert silent.status("convex key") == "skip"


def test_streaming_export_off_warns_and_names_the_way_without_it(
    migrated: URL, logins: dict[Role | str, str], convex_backend: LocalConvexBackend, tmp_path: Path
) -> None:
    convex_backend.set_streaming_export(False)
    try:
        outcome = doctor(
            database_url=as_login(migrated, logins[Role.APP]), backend=convex_backend, cwd=tmp_path
        )
    finally:
        convex_backend.set_streaming_export(True)
    assert outcome.code == 0, outcome.output
    assert outcome.status("convex key") == "ok"
    assert outcome.status("streaming export") == "warn"
    said = outcome.said("streaming export")
    assert "not enabled" in said and "migrationkit import EXPORT.zip" in said
    assert "outbox" in said
    assert outcome.status("convex functions") == "ok"


def test_an_app_without_the_kit_functions_warns(
    migrated: URL, logins: dict[Role | str, str], testapp: LocalConvexBackend, tmp_path: Path
) -> None:
    outcome = doctor(
        database_url=as_login(migrated, logins[Role.APP]), backend=testapp, cwd=tmp_path
    )
    assert outcome.code == 0, outcome.output
    assert outcome.status("convex functions") == "warn"
    assert outcome.said("convex functions").startswith(
        "the kit's functions are not deployed (fine for mirror tables; needed for the outbox)"
    )
    assert_secret_free(outcome, testapp.admin_key)


@pytest.fixture
def functions_copy() -> Iterator[Path]:
    """A copy of the kit's functions to deploy changed. Inside convex/, so
    Node finds the packages the same way."""
    with tempfile.TemporaryDirectory(dir=convex_dir(), prefix=".doctor-") as parent:
        copy = Path(parent) / "functions"
        shutil.copytree(convex_dir() / "functions", copy)
        yield copy


def test_a_deployment_left_behind_by_the_codegen_fails(
    migrated: URL, logins: dict[Role | str, str], functions_copy: Path, tmp_path: Path
) -> None:
    module = functions_copy / "migrationkit.ts"
    module.write_text(re.sub(r"sha256:[0-9a-f]+", "sha256:" + "0" * 64, module.read_text()))
    with LocalConvexBackend(functions_dir=functions_copy) as stale:
        outcome = doctor(
            database_url=as_login(migrated, logins[Role.APP]), backend=stale, cwd=tmp_path
        )
    assert outcome.code == 1
    assert outcome.status("convex functions") == "fail"
    said = outcome.said("convex functions")
    assert "deployed, but not what `migrationkit codegen convex` writes now" in said
    assert "deployed sha256:000000000000" in said
    assert "npx convex deploy" in said


def test_the_kit_functions_from_before_the_fingerprint_fail(
    migrated: URL, logins: dict[Role | str, str], functions_copy: Path, tmp_path: Path
) -> None:
    (functions_copy / "migrationkit.ts").unlink()
    with LocalConvexBackend(functions_dir=functions_copy) as older:
        outcome = doctor(
            database_url=as_login(migrated, logins[Role.APP]), backend=older, cwd=tmp_path
        )
    assert outcome.code == 1
    assert outcome.status("convex functions") == "fail"
    assert "older than the fingerprint" in outcome.said("convex functions")


def test_models_changed_since_the_deploy_fail(
    migrated: URL, logins: dict[Role | str, str], convex_backend: LocalConvexBackend
) -> None:
    """The same deployment, checked against other models than it was built from."""
    settings = DoctorSettings(
        database_url=as_login(migrated, logins[Role.APP]).render_as_string(hide_password=False),
        convex_url=convex_backend.url,
        deploy_key=convex_backend.admin_key,
    )
    report = run_doctor(settings, fingerprint="sha256:" + "1" * 64)
    functions = next(c for c in report.checks if c.name == "convex functions")
    assert functions.status is Status.FAIL and "now sha256:111111111111" in functions.detail
    assert report.exit_code == 1


# --- mirror tables ---------------------------------------------------------------------


def test_mirror_tables_with_a_workspace_are_checked_too(
    migrationkit_server: TestServer, testapp: LocalConvexBackend, tmp_path: Path
) -> None:
    testapp.reset()
    with ConvexClient(testapp.url, admin_key=testapp.admin_key) as client:
        seed(client, users=4, posts=4)
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_doctor") as url:
        deployment = Deployment(testapp, url, tmp_path)
        try:
            args = ("--role", "worker", "--versions", str(tmp_path / "versions"))
            healthy = doctor(*args, database_url=url, backend=testapp, cwd=tmp_path)
            assert healthy.code == 0, healthy.output
            assert healthy.status("mirror models") == "ok"
            assert healthy.status("migrations") == "ok"
            # The kit's 8, then users and posts (teamId); events, scratch and limits have none.
            assert healthy.said("row-level security") == "enabled and forced on 10 tenant tables"

            with deployment.engine.begin() as conn:
                conn.execute(text("ALTER TABLE app_convex.users NO FORCE ROW LEVEL SECURITY"))
            broken = doctor(*args, database_url=url, backend=testapp, cwd=tmp_path)
            assert broken.code == 1
            assert broken.said("row-level security").startswith("app_convex.users: not forced")

            without = doctor("--role", "worker", database_url=url, cwd=tmp_path)
            assert without.status("migrations") == "fail"
            assert "--versions DIR" in without.said("migrations")
        finally:
            deployment.close()


def test_mirror_models_that_do_not_load_only_warn(migrated: URL, tmp_path: Path) -> None:
    (tmp_path / "migrationkit.toml").write_text('[mirror]\nmodels = "absent_models.py"\n')
    outcome = doctor("--role", "worker", database_url=migrated, cwd=tmp_path)
    assert outcome.status("mirror models") == "warn"
    assert "row-level security of mirror tables not checked" in outcome.said("mirror models")
    assert outcome.status("row-level security") == "ok"
