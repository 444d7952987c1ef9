"""The PostgreSQL side: the server answers, the schema is at head, the login
is what its role needs, and every tenant table has row-level security on.

All checks share one connection in autocommit, so a refused query fails its
own check and not the ones after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.pool import NullPool

from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.adapters.postgres.migrations import alembic_config
from migrationkit.errors import MigrationKitError, PermissionDenied
from migrationkit.schema import audit_tables, retention_tables
from migrationkit.schema.metadata import build_metadata
from migrationkit.schema.rls import APP_ROLE

from .dsn import Dsn
from .report import Check, Status
from .tenants import TenantTable

__all__ = ["Role", "postgres_checks"]

SERVER, MIGRATIONS, LOGIN, GRANTS = "server", "migrations", "login", "grants"
RLS = "row-level security"
_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
#: Tables the application's role is granted less on, by design.
_PRIVILEGES_OF: dict[tuple[str | None, str], tuple[str, ...]] = {
    (None, audit_tables.AUDIT_TABLE): audit_tables.APP_PRIVILEGES,
    # Archives and the purge queue: the app reads them, retention writes them.
    **{
        (None, name): retention_tables.APP_PRIVILEGES
        for name in retention_tables.app_read_only_tables(build_metadata())
    },
}
# libpq rounds a connect_timeout below 2 seconds up to 2.
_SHORTEST_CONNECT_TIMEOUT = 2


class Role(StrEnum):
    """Whose login the URL is: the services' (RLS must apply) or the worker's
    (it works across every workspace, so it must bypass RLS)."""

    APP = "app"
    WORKER = "worker"


def postgres_checks(
    dsn: Dsn | None,
    *,
    role: Role,
    tables: Sequence[TenantTable],
    versions: Path | None,
    timeout: float,
) -> list[Check]:
    later = (MIGRATIONS, LOGIN, GRANTS, RLS)
    if dsn is None:
        return [Check(name, Status.SKIP, "fix the database URL first") for name in (SERVER, *later)]
    engine = make_engine(
        dsn.url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={
            "connect_timeout": max(_SHORTEST_CONNECT_TIMEOUT, math.ceil(timeout)),
            "application_name": "migrationkit doctor",
        },
    )
    try:
        try:
            with translated_errors():
                conn = engine.connect()
        except MigrationKitError as exc:
            failed = Check(SERVER, Status.FAIL, str(exc), _connect_fix(str(exc), timeout))
            return [failed, *(Check(n, Status.SKIP, "the server did not answer") for n in later)]
        with conn:
            return [
                _guarded(SERVER, lambda: _server(conn, dsn)),
                _guarded(MIGRATIONS, lambda: _migrations(conn, dsn, versions)),
                _guarded(LOGIN, lambda: _login(conn, role)),
                _guarded(GRANTS, lambda: _grants(conn, tables)),
                _guarded(RLS, lambda: _rls(conn, tables)),
            ]
    finally:
        engine.dispose()


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    """Run one check; a refused query becomes its failure, not the report's end."""
    try:
        with translated_errors():
            return check()
    except MigrationKitError as exc:
        return Check(name, Status.FAIL, f"could not be checked: {exc}")


_CONNECT_FIXES = (
    ("password authentication failed", "check the user and password (percent-encoded in the URL)"),
    ("no pg_hba.conf entry", "allow this client in pg_hba.conf, or set the sslmode the entry asks"),
    ("does not exist", "create the database (or role), or fix the name in the URL"),
    ("Connection refused", "start the server, or fix the host and port"),
    ("timeout expired", "the host did not answer in time: check the host, port and firewall"),
    ("could not translate host name", "fix the host name (DNS does not know it)"),
    ("No such file or directory", "no socket there: start the server or the Cloud SQL Auth Proxy"),
    ("certificate", "name the server's CA in sslrootcert, or check the host name it was issued to"),
)


def _connect_fix(message: str, timeout: float) -> str:
    for needle, fix in _CONNECT_FIXES:
        if needle.lower() in message.lower():
            return fix
    return f"check the URL and that the server answers within {timeout:g}s"


def _server(conn: Connection, dsn: Dsn) -> Check:
    version, user, database = conn.execute(
        text("SELECT current_setting('server_version'), current_user, current_database()")
    ).one()
    where = dsn.params.get("host") or "the default socket"
    port = dsn.params.get("port")
    place = f"{where}:{port}" if port and not where.startswith("/") else where
    return Check(
        SERVER, Status.OK, f"PostgreSQL {version} at {place}, database {database}, login {user}"
    )


def _migrations(conn: Connection, dsn: Dsn, versions: Path | None) -> Check:
    script = ScriptDirectory.from_config(alembic_config(dsn.url, versions))
    heads = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    try:
        with translated_errors():
            current = set(MigrationContext.configure(conn).get_current_heads())
    except PermissionDenied:
        # As it should be for the services' login: it is not the schema's owner.
        return Check(
            MIGRATIONS,
            Status.SKIP,
            "this login may not read alembic_version (fine for the services' login)",
            "check the migrations with the owner's URL: migrationkit doctor --url OWNER_URL",
        )
    upgrade = "migrationkit db upgrade" + (f" --versions {versions}" if versions else "")
    shown_heads = ", ".join(sorted(heads))
    if not current:
        return Check(
            MIGRATIONS, Status.FAIL, f"no schema yet (head is {shown_heads})", f"run `{upgrade}`"
        )
    unknown = sorted(current - known)
    if unknown:
        fix = (
            "pass --versions DIR, the folder of your own revisions (e.g. the mirror tables')"
            if versions is None
            else "this kit is older than the database's schema: upgrade migrationkit"
        )
        return Check(
            MIGRATIONS,
            Status.FAIL,
            f"the database is at {', '.join(unknown)}, which these migrations do not know",
            fix,
        )
    at = ", ".join(sorted(current))
    if current == heads:
        return Check(MIGRATIONS, Status.OK, f"at head ({at})")
    return Check(MIGRATIONS, Status.FAIL, f"at {at}, head is {shown_heads}", f"run `{upgrade}`")


def _login(conn: Connection, role: Role) -> Check:
    user, superuser, bypass = conn.execute(
        text("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    ).one()
    ordinary = (
        f"CREATE ROLE app_login LOGIN PASSWORD '...' NOSUPERUSER NOBYPASSRLS;"
        f" GRANT {APP_ROLE} TO app_login"
    )
    if role is Role.APP:
        if superuser:
            return Check(
                LOGIN,
                Status.FAIL,
                f"{user} is a superuser: row-level security does not apply to it, every"
                " workspace is visible",
                f"run the services as an ordinary login ({ordinary});"
                " check the worker's login with --role worker",
            )
        if bypass:
            return Check(
                LOGIN,
                Status.FAIL,
                f"{user} has BYPASSRLS: row-level security does not apply to it",
                f"ALTER ROLE {user} NOBYPASSRLS, or use another login; only the worker's"
                " login should bypass RLS",
            )
        return Check(LOGIN, Status.OK, f"{user}: no superuser, no BYPASSRLS (RLS applies)")
    if superuser:
        return Check(
            LOGIN,
            Status.WARN,
            f"{user} is a superuser: the worker runs, but with far more power than it needs",
            f"a login with BYPASSRLS only: CREATE ROLE worker LOGIN BYPASSRLS; GRANT {APP_ROLE}"
            " TO worker",
        )
    if not bypass:
        return Check(
            LOGIN,
            Status.FAIL,
            f"{user} has no BYPASSRLS: the worker claims the outbox and applies changes"
            " across every workspace, and under RLS it sees none of them",
            f"ALTER ROLE {user} BYPASSRLS (as a superuser), or use the worker's own login",
        )
    return Check(LOGIN, Status.OK, f"{user} has BYPASSRLS, as the worker needs")


def _grants(conn: Connection, tables: Sequence[TenantTable]) -> Check:
    missing: list[str] = []
    present = 0
    for table in tables:
        row = conn.execute(
            text(
                "SELECT to_regclass(:name) IS NOT NULL,"
                " (SELECT array_agg(p) FROM unnest(CAST(:privileges AS text[])) AS p"
                "  WHERE to_regclass(:name) IS NOT NULL"
                "    AND NOT has_table_privilege(current_user, to_regclass(:name), p))"
            ),
            {
                "name": table.regclass,
                "privileges": list(_PRIVILEGES_OF.get((table.schema, table.name), _PRIVILEGES)),
            },
        ).one()
        exists, lacking = row
        present += bool(exists)
        if exists and lacking:
            missing.append(f"{table} ({', '.join(lacking)})")
    if missing:
        return Check(
            GRANTS,
            Status.FAIL,
            f"the login may not write {len(missing)} tenant table(s): {'; '.join(missing)}",
            f"GRANT {APP_ROLE} TO the login (the migrations grant it every tenant table)",
        )
    if not present:
        return Check(GRANTS, Status.SKIP, "no tenant table exists yet")
    return Check(GRANTS, Status.OK, f"may read and write every tenant table ({present})")


def _rls(conn: Connection, tables: Sequence[TenantTable]) -> Check:
    problems: list[str] = []
    fixes: list[str] = []
    for table in tables:
        row = conn.execute(
            text(
                "SELECT c.relrowsecurity, c.relforcerowsecurity, EXISTS ("
                "  SELECT FROM pg_policy p"
                "  WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation')"
                " FROM pg_class c WHERE c.oid = to_regclass(:name)"
            ),
            {"name": table.regclass},
        ).one_or_none()
        if row is None:
            problems.append(f"{table} is missing")
            fixes.append("migrationkit db upgrade")
            continue
        enabled, forced, policy = row
        states = (("not enabled", enabled), ("not forced", forced), ("no policy", policy))
        lacking = [what for what, ok in states if not ok]
        if lacking:
            problems.append(f"{table}: {', '.join(lacking)}")
            if not enabled:
                fixes.append(f"ALTER TABLE {table.regclass} ENABLE ROW LEVEL SECURITY")
            if not forced:
                fixes.append(f"ALTER TABLE {table.regclass} FORCE ROW LEVEL SECURITY")
            if not policy:
                fixes.append(f"the tenant_isolation policy on {table} (schema.rls.enable_sql)")
    if problems:
        return Check(RLS, Status.FAIL, "; ".join(problems), "; ".join(dict.fromkeys(fixes)))
    return Check(RLS, Status.OK, f"enabled and forced on {len(tables)} tenant tables")
