"""What alembic autogenerate needs to write a complete migration for mirror tables.

Mirror tables may live in their own PostgreSQL schema (config ``schema``).
Autogenerate then has to look into that schema (``include_schemas``), but
only there and in the default one: the database may hold other schemas the
kit must never propose to drop. A new table in such a schema needs the
schema first, and a new mirror table with a ``workspace_id`` column needs
row-level security; alembic knows neither, so :func:`add_mirror_ddl` adds
them to the generated script as ``op.execute`` statements (plain SQL,
frozen in the script, not calls into the kit that could change later).
The same goes for the triggers that capture an application's writes to a
mirror table (``schema.mirror_capture``): on each new mirror table, and on
one already there that does not have them yet (made before migration 0008).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from alembic.operations import ops
from sqlalchemy import MetaData, text

from migrationkit.mirror.columns import WORKSPACE
from migrationkit.mirror.model import MirrorDocument, registered_mirrors
from migrationkit.schema import rls
from migrationkit.schema.identifiers import quote_ident
from migrationkit.schema.mirror_capture import CAPTURE_TRIGGER, capture_sql, drop_capture_sql

__all__ = ["add_mirror_ddl", "include_name_for", "mirror_schemas"]

IncludeName = Callable[[str | None, str, dict[str, str | None]], bool]


def mirror_schemas(metadata: MetaData) -> set[str]:
    """The non-default schemas the metadata's tables live in."""
    return {t.schema for t in metadata.tables.values() if t.schema}


def include_name_for(schemas: Iterable[str]) -> IncludeName:
    """An ``include_name`` hook that compares only the default schema and ``schemas``."""
    allowed: set[str | None] = {None, "public", *schemas}

    def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
        if type_ == "schema":
            return name in allowed
        return True

    return include_name


def _mirror_tables() -> dict[tuple[str | None, str], type[MirrorDocument]]:
    return {(m.mirror.pg_schema, m.mirror.pg_table): m for m in registered_mirrors()}


def _without_capture(
    context: Any, mirrors: dict[tuple[str | None, str], type[MirrorDocument]]
) -> list[type[MirrorDocument]]:
    """Mirror tables the database has already, without the capture triggers."""
    conn = getattr(context, "connection", None)
    if conn is None:  # offline (--sql): nothing to look at
        return []
    found = []
    for (schema, table), model in mirrors.items():
        name = f"{quote_ident(schema)}.{quote_ident(table)}" if schema else quote_ident(table)
        exists, captured = conn.execute(
            text(
                "SELECT to_regclass(:name) IS NOT NULL, EXISTS (SELECT FROM pg_trigger"
                " WHERE tgrelid = to_regclass(:name) AND tgname = :trigger)"
            ),
            {"name": name, "trigger": CAPTURE_TRIGGER},
        ).one()
        if exists and not captured:
            found.append(model)
    return found


def add_mirror_ddl(context: Any, revision: Any, directives: list[Any]) -> None:
    """``process_revision_directives``: CREATE SCHEMA before new tables in a
    schema; RLS on each new mirror table that has ``workspace_id``; the
    capture triggers on each mirror table that lacks them."""
    mirrors = _mirror_tables()
    # Tables made by an earlier revision: their triggers here, dropped again
    # on downgrade (a new table's go with the table).
    uncaptured = _without_capture(context, mirrors)
    for script in directives:
        if not isinstance(script, ops.MigrationScript):
            continue
        for upgrade in script.upgrade_ops_list:
            created = [op for op in upgrade.ops if isinstance(op, ops.CreateTableOp)]
            schemas = sorted({op.schema for op in created if op.schema})
            before: list[ops.MigrateOperation] = [
                ops.ExecuteSQLOp(sql) for schema in schemas for sql in rls.schema_sql(schema)
            ]
            after: list[ops.MigrateOperation] = []
            for op in created:
                model = mirrors.get((op.schema, op.table_name))
                if model is None:
                    continue
                names = {getattr(c, "name", None) for c in op.columns}
                if WORKSPACE in names:
                    after += [
                        ops.ExecuteSQLOp(sql) for sql in rls.enable_sql(op.table_name, op.schema)
                    ]
                after += [ops.ExecuteSQLOp(sql) for sql in capture_sql(model)]
            after += [ops.ExecuteSQLOp(sql) for m in uncaptured for sql in capture_sql(m)]
            # Tables first, then their indexes (separate ops), then RLS and
            # triggers: they need the table; a schema is kept on downgrade,
            # as other objects may have come to live in it.
            upgrade.ops[:0] = before
            upgrade.ops.extend(after)
        for downgrade in script.downgrade_ops_list:
            downgrade.ops[:0] = [
                ops.ExecuteSQLOp(sql) for m in uncaptured for sql in drop_capture_sql(m)
            ]
