"""migrationkit doctor, the database URL: every fault found without connecting,
and the password never shown."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg.pq
import pytest

from migrationkit.doctor.dsn import inspect_dsn, libpq_keywords
from migrationkit.doctor.report import Check, Report, Secrets, Status, render_json, render_plain

PASSWORD = "Sup3r-s3cret"


def checks(raw: str | None, *, env: dict[str, str] | None = None, home: Path) -> dict[str, Check]:
    return {c.name: c for c in inspect_dsn(raw, env=env or {}, home=home).checks}


def shown(raw: str, home: Path) -> str:
    """Everything doctor would print for ``raw``, in both text forms."""
    report = inspect_dsn(raw, env={}, home=home)
    rendered = Report.of(report.checks, Secrets(report.secrets))
    return render_plain(rendered) + render_json(rendered)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home directory without ~/.postgresql/root.crt."""
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory named like a Cloud SQL instance, with a listening Unix socket
    in it, as the Cloud SQL Auth Proxy leaves. Short: socket paths are limited."""
    with tempfile.TemporaryDirectory(prefix="mkd", dir="/tmp") as parent:
        directory = Path(parent) / "proj:europe-west1:db"
        directory.mkdir()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(directory / ".s.PGSQL.5432"))
        listener.listen(1)
        try:
            yield directory
        finally:
            listener.close()


def test_a_plain_url_is_ok_and_shown_without_its_password(home: Path) -> None:
    raw = f"postgresql://app:{PASSWORD}@db.internal:5432/app"
    found = checks(raw, home=home)
    assert found["database url"].status is Status.OK
    assert found["database url"].detail == "postgresql://app:***@db.internal:5432/app"
    assert found["tls"].status is Status.OK and "sslmode=prefer" in found["tls"].detail
    assert "socket" not in found
    report = inspect_dsn(raw, env={}, home=home)
    assert report.dsn is not None and "password" not in report.dsn.params
    assert report.dsn.url.password == PASSWORD  # kept for connecting, never shown


def test_no_url_at_all_fails_naming_the_variable(home: Path) -> None:
    found = checks(None, home=home)["database url"]
    assert found.status is Status.FAIL and "MIGRATIONKIT_DATABASE_URL" in found.detail


def test_an_unencoded_at_in_the_password_fails_without_showing_any_of_it(home: Path) -> None:
    raw = "postgresql://app:p4ss@word@db.internal/app"
    found = checks(raw, home=home)["database url"]
    assert found.status is Status.FAIL and "'@'" in found.detail
    assert found.fix is not None and "%40" in found.fix
    output = shown(raw, home)
    # The host SQLAlchemy and libpq read ("word@db.internal") holds half the password.
    for part in ("p4ss@word", "word@"):
        assert part not in output
    assert inspect_dsn(raw, env={}, home=home).dsn is None


@pytest.mark.parametrize(
    ("password", "said"),
    [
        ("pa:ss:word", "':'"),
        ("pa/ss#word", "psql"),
        ("pa%zzword", "'%'"),
    ],
)
def test_characters_parsers_disagree_on_warn(home: Path, password: str, said: str) -> None:
    raw = f"postgresql://app:{password}@db.internal/app"
    found = checks(raw, home=home)["database url"]
    assert found.status is Status.WARN and said in found.detail
    assert password not in shown(raw, home)
    # A warning still lets doctor connect: the kit reads these passwords right.
    report = inspect_dsn(raw, env={}, home=home)
    assert report.dsn is not None and report.dsn.url.password == password


def test_unknown_parameters_fail_with_what_was_meant(home: Path) -> None:
    raw = f"postgresql://app:{PASSWORD}@db/app?ssl=true&sslmod=require&schema=x&bogus=1"
    found = checks(raw, home=home)["database url"]
    assert found.status is Status.FAIL
    assert "unknown parameter bogus, schema, ssl, sslmod" in found.detail
    assert found.fix is not None
    assert "ssl -> sslmode=require" in found.fix
    assert "sslmod -> sslmode?" in found.fix
    assert "schema -> options=-csearch_path" in found.fix
    assert "bogus -> remove it" in found.fix


def test_every_libpq_keyword_is_accepted(home: Path) -> None:
    keywords = libpq_keywords()
    assert {"sslmode", "sslrootcert", "application_name", "options"} <= keywords.keys()
    assert keywords["password"] and keywords["sslpassword"] and not keywords["sslmode"]
    raw = "postgresql://app@db/app?application_name=svc&connect_timeout=3&options=-csearch_path%3Dx"
    assert checks(raw, home=home)["database url"].status is Status.OK


def test_a_secret_parameter_is_masked(home: Path) -> None:
    raw = f"postgresql://app@db/app?password={PASSWORD}&sslmode=require"
    found = checks(raw, home=home)["database url"]
    assert found.detail == "postgresql://app@db/app?password=***&sslmode=require"
    assert PASSWORD not in shown(raw, home)


def test_a_parameter_given_twice_fails(home: Path) -> None:
    found = checks("postgresql://app@db/app?sslmode=require&sslmode=disable", home=home)
    assert found["database url"].status is Status.FAIL
    assert "sslmode given more than once" in found["database url"].detail


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("host=db dbname=app user=app", "key=value"),
        ("mysql://app@db/app", "'mysql' is not supported"),
        ("postgresql://app@db:5432", "names no database"),
        ("postgresql://app@h1:5432,h2:5433/app", "several hosts"),
        ("postgresql://app@%2Fcloudsql%2Fp%3Ar%3Ai/app", "percent-encoded"),
    ],
)
def test_urls_the_kit_cannot_use_fail(home: Path, raw: str, said: str) -> None:
    found = checks(raw, home=home)["database url"]
    assert found.status is Status.FAIL and said in found.detail
    assert found.fix


def test_several_hosts_as_parameters_are_fine(home: Path) -> None:
    found = checks("postgresql://app@/app?host=h1:5432&host=h2:5433", home=home)
    assert found["database url"].status is Status.OK


@pytest.mark.parametrize("mode", ["verify-full", "verify-ca"])
def test_verifying_without_a_root_certificate_fails(home: Path, mode: str) -> None:
    found = checks(f"postgresql://app@db/app?sslmode={mode}", home=home)["tls"]
    assert found.status is Status.FAIL
    assert f"no sslrootcert and no {home}/.postgresql/root.crt" in found.detail
    assert found.fix is not None and "sslrootcert=" in found.fix


def test_verifying_with_the_default_root_certificate_is_ok(home: Path) -> None:
    (home / ".postgresql").mkdir()
    (home / ".postgresql" / "root.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    found = checks("postgresql://app@db/app?sslmode=verify-full", home=home)["tls"]
    assert found.status is Status.OK and "root.crt" in found.detail


def test_a_named_root_certificate_must_exist(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "server-ca.pem"
    raw = f"postgresql://app@db/app?sslmode=verify-ca&sslrootcert={missing}"
    assert checks(raw, home=home)["tls"].status is Status.FAIL
    missing.write_text("-----BEGIN CERTIFICATE-----\n")
    assert checks(raw, home=home)["tls"].status is Status.OK


def test_the_system_store_needs_libpq_16(home: Path) -> None:
    found = checks("postgresql://app@db/app?sslmode=verify-full&sslrootcert=system", home=home)
    expected = Status.OK if psycopg.pq.version() >= 160000 else Status.FAIL
    assert found["tls"].status is expected


def test_sslmode_from_the_environment_counts(home: Path) -> None:
    found = checks("postgresql://app@db/app", env={"PGSSLMODE": "verify-full"}, home=home)["tls"]
    assert found.status is Status.FAIL and "(from PGSSLMODE)" in found.detail


def test_an_unknown_sslmode_fails(home: Path) -> None:
    found = checks("postgresql://app@db/app?sslmode=required", home=home)["tls"]
    assert found.status is Status.FAIL and "'required'" in found.detail
    assert found.fix is not None and "did you mean require?" in found.fix


def test_a_missing_client_certificate_fails(home: Path, tmp_path: Path) -> None:
    raw = f"postgresql://app@db/app?sslmode=require&sslcert={tmp_path}/client.crt"
    found = checks(raw, home=home)["tls"]
    assert found.status is Status.FAIL and "sslcert=" in found.detail


@pytest.mark.parametrize("query", ["host=/cloudsql/proj:europe-west1:db", "host=/tmp/nowhere"])
def test_a_missing_socket_directory_fails(home: Path, query: str) -> None:
    found = checks(f"postgresql://app@/app?{query}", home=home)["socket"]
    assert found.status is Status.FAIL and "no socket directory" in found.detail
    cloud_sql = "cloudsql" in query
    assert ("Cloud SQL Auth Proxy is not running" in found.detail) is cloud_sql
    assert found.fix is not None and ("cloud-sql-proxy --unix-socket /cloudsql" in found.fix) is (
        cloud_sql
    )


def test_a_cloud_sql_socket_directory_with_its_socket_is_ok(home: Path, socket_dir: Path) -> None:
    raw = f"postgresql://app:{PASSWORD}@/app?host={socket_dir}&sslmode=verify-full"
    found = checks(raw, home=home)
    assert found["socket"].status is Status.OK
    assert f"{socket_dir}/.s.PGSQL.5432" in found["socket"].detail
    # libpq does not use TLS over a Unix socket: no CA file is needed.
    assert found["tls"].status is Status.OK and "Unix socket" in found["tls"].detail
    assert inspect_dsn(raw, env={}, home=home).dsn is not None


def test_a_socket_directory_without_its_socket_fails(home: Path, socket_dir: Path) -> None:
    found = checks(f"postgresql://app@/app?host={socket_dir}&port=6543", home=home)["socket"]
    assert found.status is Status.FAIL
    assert ".s.PGSQL.6543: the Cloud SQL Auth Proxy is not listening there" in found.detail


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql://app:{PASSWORD}@db/app?sslmode=verify-full",
        f"postgresql://app:{PASSWORD}@db/app?bogus=1",
        f"postgresql://app:{PASSWORD}@db/app?sslmode=nope",
        f"postgresql://app:{PASSWORD}@/app?host=/cloudsql/p:r:i",
        f"postgresql://app:{PASSWORD}@h1:1,h2:2/app",
        f"mysql://app:{PASSWORD}@db/app",
        f"postgresql://app:{PASSWORD}:x@db/app",
        f"postgresql://app:{PASSWORD}@x@db/app",
    ],
)
def test_the_password_never_shows(home: Path, raw: str) -> None:
    assert PASSWORD not in shown(raw, home)
