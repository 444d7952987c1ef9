"""The database URL, read without connecting: the faults users hit before
the first packet leaves.

The kit's path is SQLAlchemy's URL parser, then psycopg, which hands every
parameter to libpq. The checks follow that path, so they find what would
break there: an ``@`` in the password that was not percent-encoded (the
host then starts inside the password), a query parameter libpq does not
know (it refuses the connection), an unknown ``sslmode``, ``verify-ca`` or
``verify-full`` without the CA file, a Unix socket directory (the Cloud SQL
Auth Proxy's ``/cloudsql/PROJECT:REGION:INSTANCE``) that is not there.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import psycopg.pq
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from migrationkit.adapters.postgres.database_url import ENV_VAR, normalize_database_url
from migrationkit.doctor.report import Check, Status
from migrationkit.errors import ConfigurationError

__all__ = ["SSL_MODES", "Dsn", "DsnReport", "inspect_dsn", "libpq_keywords"]

URL_CHECK = "database url"
TLS_CHECK = "tls"
SOCKET_CHECK = "socket"

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_VERIFYING = ("verify-ca", "verify-full")
_DEFAULT_SSLMODE = "prefer"

# The raw password as SQLAlchemy reads it: from the first ':' after the user
# name to the first '@' (the user name itself stops at ':' or '/').
_RAW_PASSWORD = re.compile(r"^[\w+.-]+://[^:/]*:(?P<password>[^@]*)@")
# The same, greedy: everything up to the last '@', i.e. what a password with
# an unencoded '@' really was. Used only to strike it from output.
_GREEDY_PASSWORD = re.compile(r"^[\w+.-]+://[^:/]*:(?P<password>.*)@")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# The Cloud SQL Auth Proxy names each socket directory after the instance's
# connection name: PROJECT:REGION:INSTANCE (the project may carry a domain).
_CLOUD_SQL_INSTANCE = re.compile(r"^[^/:]+(?::[^/:]+){2,3}$")

_PARAMETER_HINTS = {
    "ssl": "sslmode=require (or verify-full)",
    "sslca": "sslrootcert=/path/to/ca.pem",
    "sslcafile": "sslrootcert=/path/to/ca.pem",
    "sslrootcertificate": "sslrootcert=/path/to/ca.pem",
    "schema": "options=-csearch_path%3DNAME",
    "search_path": "options=-csearch_path%3DNAME",
    "currentschema": "options=-csearch_path%3DNAME",
    "timeout": "connect_timeout=SECONDS",
    "connection_limit": "nothing: pool sizes are engine options, not URL parameters",
    "pool_timeout": "nothing: pool settings are engine options, not URL parameters",
    "pgbouncer": "nothing (a Prisma setting)",
}


def libpq_keywords() -> dict[str, bool]:
    """Keyword -> is-secret, as the linked libpq knows them (``PQconndefaults``)."""
    return {
        option.keyword.decode(): option.dispchar == b"*"
        for option in psycopg.pq.Conninfo.get_defaults()
    }


@dataclass(frozen=True)
class Dsn:
    """A URL the later checks may connect with."""

    #: Normalized for the kit's engine; holds the password: connect with it, never show it.
    url: URL
    #: What psycopg hands libpq, password left out.
    params: Mapping[str, str]
    #: The URL with every secret masked.
    display: str


@dataclass
class DsnReport:
    checks: list[Check] = field(default_factory=list)
    #: None when a check failed: connecting would only repeat the fault.
    dsn: Dsn | None = None
    secrets: list[str] = field(default_factory=list)


def inspect_dsn(
    raw: str | None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> DsnReport:
    """Check ``raw`` (``None``: not configured). ``env`` stands for the libpq
    environment variables (``PGSSLMODE``...), ``home`` for the directory
    holding ``.postgresql/root.crt``."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    report = DsnReport()
    if raw is None or not raw.strip():
        report.checks.append(
            Check(
                URL_CHECK,
                Status.FAIL,
                f"{ENV_VAR} is not set and no --url was given",
                f"export {ENV_VAR}=postgresql://user:password@host:5432/dbname",
            )
        )
        return report
    raw = raw.strip()
    report.secrets.extend(_password_guesses(raw))
    keywords = libpq_keywords()
    url_check, parsed, params = _check_url(raw, keywords, report.secrets)
    report.checks.append(url_check)
    if parsed is None or params is None:
        return report
    report.checks.append(_check_tls(params, env, home))
    socket = _check_sockets(params, env)
    if socket is not None:
        report.checks.append(socket)
    if all(c.status is not Status.FAIL for c in report.checks):
        report.dsn = Dsn(parsed, params, _display(raw, keywords))
    return report


# --- the URL itself -------------------------------------------------------------


def _password_guesses(raw: str) -> list[str]:
    guesses: list[str] = []
    for pattern in (_RAW_PASSWORD, _GREEDY_PASSWORD):
        found = pattern.match(raw)
        if found and found.group("password"):
            text = found.group("password")
            guesses += [text, unquote(text), *text.split("@")]
    return guesses


def _check_url(
    raw: str, keywords: Mapping[str, bool], secrets: list[str]
) -> tuple[Check, URL | None, dict[str, str] | None]:
    def fail(detail: str, fix: str) -> tuple[Check, None, None]:
        return Check(URL_CHECK, Status.FAIL, detail, fix), None, None

    if "://" not in raw and "=" in raw:
        return fail(
            "a key=value connection string, not a URL",
            "write it as postgresql://user:password@host:5432/dbname?sslmode=...",
        )
    try:
        url = normalize_database_url(raw)
    except ConfigurationError as exc:
        return fail(str(exc), "postgresql://user:password@host:5432/dbname")
    except ValueError:
        # SQLAlchemy reads "h1:5432,h2:5433" as one port and fails.
        return fail(
            "the URL cannot be read (several hosts in the host part?)",
            "name one host, or several as ?host=h1:5432&host=h2:5432",
        )
    secrets += [url.password] if isinstance(url.password, str) else []
    if url.host and "@" in url.host:
        return fail(
            "the password holds an '@' that is not percent-encoded: the password ends at"
            " the first '@' and the rest is read as the host",
            "percent-encode the password: '@' is %40, ':' %3A, '/' %2F, '%' %25"
            " (python3 -c 'import sys,urllib.parse as u; print(u.quote(sys.argv[1], safe=\"\"))'"
            " PASSWORD)",
        )
    if url.host and "%" in url.host:
        return fail(
            "the host is percent-encoded (a socket path?): the kit's driver path does not"
            " decode it",
            "pass a socket directory as a parameter: postgresql://user:password@/dbname"
            "?host=/cloudsql/PROJECT:REGION:INSTANCE",
        )
    params, problem = _connect_params(url, keywords)
    if problem is not None:
        return fail(*problem)
    for key, secret in keywords.items():
        if secret and key in params:
            secrets.append(params[key])
    params.pop("password", None)
    shown = _display(raw, keywords)
    warnings = _password_warnings(raw)
    if warnings:
        fix = "percent-encode those characters in the password (':' %3A, '/' %2F, '%' %25)"
        return Check(URL_CHECK, Status.WARN, f"{shown}: {'; '.join(warnings)}", fix), url, params
    return Check(URL_CHECK, Status.OK, shown), url, params


def _connect_params(
    url: URL, keywords: Mapping[str, bool]
) -> tuple[dict[str, str], tuple[str, str] | None]:
    """What psycopg would hand libpq, or the problem that stops it."""
    # The dialect psycopg's engine uses turns the URL into connect() arguments.
    _, kwargs = url.get_dialect()().create_connect_args(url)
    repeated = sorted(k for k, v in kwargs.items() if isinstance(v, tuple))
    if repeated:
        return {}, (
            f"parameter {', '.join(repeated)} given more than once",
            "keep one of each (several hosts: ?host=h1:5432&host=h2:5432)",
        )
    params = {str(k): str(v) for k, v in kwargs.items()}
    unknown = sorted(k for k in params if k not in keywords)
    if unknown:
        hints = [f"{k} -> {_hint(k, keywords)}" for k in unknown]
        return params, (
            f"unknown parameter {', '.join(unknown)}: psycopg hands every URL parameter"
            " to libpq, which refuses the connection over one it does not know",
            "; ".join(hints),
        )
    return params, None


def _hint(key: str, keywords: Mapping[str, bool]) -> str:
    lowered = key.lower().replace("-", "_")
    if lowered in keywords:
        return lowered
    if lowered in _PARAMETER_HINTS:
        return _PARAMETER_HINTS[lowered]
    close = difflib.get_close_matches(lowered, list(keywords), n=1, cutoff=0.75)
    return f"{close[0]}?" if close else "remove it"


def _password_warnings(raw: str) -> list[str]:
    """Characters SQLAlchemy reads inside the password but libpq (psql) would not,
    or that parsers disagree on."""
    found = _RAW_PASSWORD.match(raw)
    if not found:
        return []
    password = found.group("password")
    warnings = []
    if ":" in password:
        warnings.append(
            "the password holds ':' not percent-encoded (the kit and libpq read it, but"
            " URL parsers disagree on it)"
        )
    cut = sorted({ch for ch in "/?#" if ch in password})
    if cut:
        warnings.append(
            f"the password holds {' '.join(repr(c) for c in cut)} not percent-encoded: the kit"
            " reads it, but psql and other libpq tools end the host part there"
        )
    if _BAD_ESCAPE.search(password):
        warnings.append(
            "the password holds a '%' that starts no %XX escape: the kit keeps it as is,"
            " psql and other libpq tools refuse the URL"
        )
    return warnings


def _display(raw: str, keywords: Mapping[str, bool]) -> str:
    """The URL as the user wrote it, password and secret parameters masked."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        return "<unreadable URL>"
    base = url.set(query={}).render_as_string(hide_password=True)
    # Written out by hand: SQLAlchemy would percent-encode "/" and ":" of a socket path.
    query = "&".join(
        f"{k}={'***' if keywords.get(k) else v}"
        for k, values in url.query.items()
        for v in (values if isinstance(values, tuple) else (values,))
    )
    return f"{base}?{query}" if query else base


# --- TLS --------------------------------------------------------------------------


def _check_tls(params: Mapping[str, str], env: Mapping[str, str], home: Path) -> Check:
    given = params.get("sslmode") or env.get("PGSSLMODE")
    mode = given or _DEFAULT_SSLMODE
    source = "" if given is None else (" (from PGSSLMODE)" if "sslmode" not in params else "")
    if mode not in SSL_MODES:
        close = difflib.get_close_matches(mode, SSL_MODES, n=1, cutoff=0.6)
        return Check(
            TLS_CHECK,
            Status.FAIL,
            f"sslmode={mode!r}{source} is not an sslmode libpq knows",
            f"one of {', '.join(SSL_MODES)}" + (f" (did you mean {close[0]}?)" if close else ""),
        )
    for key, env_var in (("sslcert", "PGSSLCERT"), ("sslkey", "PGSSLKEY")):
        path = params.get(key) or env.get(env_var)
        if path and not Path(path).expanduser().is_file():
            return Check(
                TLS_CHECK,
                Status.FAIL,
                f"{key}={path} does not exist",
                f"point {key} at the client certificate files, or drop it",
            )
    if _over_unix_sockets(params, env):
        return Check(TLS_CHECK, Status.OK, f"sslmode={mode}: not used over a Unix socket")
    if mode not in _VERIFYING:
        if given is None:
            return Check(
                TLS_CHECK,
                Status.OK,
                "sslmode=prefer (the default): encrypted when the server offers TLS,"
                " server not verified",
            )
        return Check(TLS_CHECK, Status.OK, f"sslmode={mode}{source}")
    return _check_root_certificate(mode, source, params, env, home)


def _over_unix_sockets(params: Mapping[str, str], env: Mapping[str, str]) -> bool:
    """libpq skips TLS on a Unix socket (no host at all means its default socket)."""
    if params.get("hostaddr") or env.get("PGHOSTADDR"):
        return False
    hosts = (params.get("host") or env.get("PGHOST") or "").split(",")
    return all(host == "" or host.startswith("/") for host in hosts)


def _check_root_certificate(
    mode: str, source: str, params: Mapping[str, str], env: Mapping[str, str], home: Path
) -> Check:
    named = params.get("sslrootcert") or env.get("PGSSLROOTCERT")
    if named == "system":
        if psycopg.pq.version() < 160000:
            return Check(
                TLS_CHECK,
                Status.FAIL,
                f"sslrootcert=system needs libpq 16 or later; this one is {psycopg.pq.version()}",
                "name the CA file instead: sslrootcert=/path/to/ca.pem",
            )
        return Check(TLS_CHECK, Status.OK, f"sslmode={mode}{source}, the system's CA store")
    root = Path(named).expanduser() if named else home / ".postgresql" / "root.crt"
    if root.is_file():
        return Check(TLS_CHECK, Status.OK, f"sslmode={mode}{source}, CA {root}")
    where = f"sslrootcert={named} does not exist" if named else f"no sslrootcert and no {root}"
    return Check(
        TLS_CHECK,
        Status.FAIL,
        f"sslmode={mode}{source} checks the server's certificate against a CA file: {where}",
        "download the server's CA certificate (Cloud SQL: gcloud sql instances describe"
        " INSTANCE --format='value(serverCaCert.cert)' > server-ca.pem) and add"
        " sslrootcert=/path/to/server-ca.pem to the URL (or sslrootcert=system for a public CA)",
    )


# --- Unix sockets -----------------------------------------------------------------


def _check_sockets(params: Mapping[str, str], env: Mapping[str, str]) -> Check | None:
    hosts = (params.get("host") or env.get("PGHOST") or "").split(",")
    ports = (params.get("port") or env.get("PGPORT") or "5432").split(",")
    found = []
    for index, host in enumerate(hosts):
        if not host.startswith("/"):
            continue
        port = ports[index] if index < len(ports) else ports[-1]
        problem = _socket_problem(Path(host), port or "5432")
        if problem is not None:
            return problem
        found.append(f"{host}/.s.PGSQL.{port or '5432'}")
    if not found:
        return None
    return Check(SOCKET_CHECK, Status.OK, "Unix socket " + ", ".join(found))


def _socket_problem(directory: Path, port: str) -> Check | None:
    instance = _CLOUD_SQL_INSTANCE.match(directory.name) is not None
    if instance:
        fix = (
            f"start the proxy: cloud-sql-proxy --unix-socket {directory.parent} {directory.name}"
            f" (from another container: share {directory.parent} as a volume), or connect over"
            " TCP with sslmode=verify-ca and the server CA"
        )
    else:
        fix = "start the server, or name the directory its unix_socket_directories setting names"
    if not directory.is_dir():
        if instance:
            detail = (
                f"no socket directory {directory}: the Cloud SQL Auth Proxy is not running"
                f" here, or not with --unix-socket {directory.parent}"
            )
        else:
            detail = f"no socket directory {directory}"
        return Check(SOCKET_CHECK, Status.FAIL, detail, fix)
    if not (directory / f".s.PGSQL.{port}").exists():
        who = "the Cloud SQL Auth Proxy is not" if instance else "no server is"
        return Check(
            SOCKET_CHECK,
            Status.FAIL,
            f"{directory} holds no .s.PGSQL.{port}: {who} listening there"
            + (" (not running, or on another port)" if instance else ""),
            fix,
        )
    return None
