"""Row-level security DDL for tenant tables, called from alembic migrations.

Policies read ``current_setting('app.workspace_id', true)``: the ``true``
makes an unset setting NULL instead of an error, and ``workspace_id = NULL``
is never true, so a session that set no workspace sees no rows at all.
``FORCE`` applies the policies to the table's owner too; only superusers
and roles with BYPASSRLS (the operator's, not the application's) skip them.
"""

from __future__ import annotations

from migrationkit.schema.identifiers import quote_ident

APP_ROLE = "migrationkit_app"
READONLY_ROLE = "migrationkit_readonly"
WORKSPACE_PREDICATE = "workspace_id = current_setting('app.workspace_id', true)"


def schema_sql(schema: str) -> list[str]:
    """A schema for tenant tables, usable by the kit's roles (RLS still filters rows)."""
    s = quote_ident(schema)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"GRANT USAGE ON SCHEMA {s} TO {APP_ROLE}, {READONLY_ROLE}",
    ]


def create_roles_sql() -> list[str]:
    """Group roles (NOLOGIN) that login roles are granted; roles are global to a cluster."""
    return [
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN;
            END IF;
        END
        $$
        """
        for role in (APP_ROLE, READONLY_ROLE)
    ]


def _qualified(table: str, schema: str | None) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}" if schema else quote_ident(table)


def enable_sql(table: str, schema: str | None = None) -> list[str]:
    """RLS on ``table`` (in ``schema``, else the search path's), with its grants."""
    t = _qualified(table, schema)
    return [
        f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {t} FOR ALL TO PUBLIC"
        f" USING ({WORKSPACE_PREDICATE}) WITH CHECK ({WORKSPACE_PREDICATE})",
        f"CREATE POLICY readonly_tenant_read ON {t} FOR SELECT TO {READONLY_ROLE}"
        f" USING ({WORKSPACE_PREDICATE})",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO {APP_ROLE}",
        f"GRANT SELECT ON {t} TO {READONLY_ROLE}",
    ]


def disable_sql(table: str, schema: str | None = None) -> list[str]:
    t = _qualified(table, schema)
    return [
        f"REVOKE ALL ON {t} FROM {READONLY_ROLE}",
        f"REVOKE ALL ON {t} FROM {APP_ROLE}",
        f"DROP POLICY IF EXISTS readonly_tenant_read ON {t}",
        f"DROP POLICY IF EXISTS tenant_isolation ON {t}",
        f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
    ]
