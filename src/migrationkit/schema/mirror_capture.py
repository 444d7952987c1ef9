"""The triggers that capture an application's writes to a mirror table.

The trigger functions come with the kit's migration 0008; each mirror table
gets two triggers calling them, written into the revision that creates the
table (``mirror_migrations.add_mirror_ddl``) as plain SQL:

* ``migrationkit_stamp`` (BEFORE INSERT OR UPDATE): ``_id`` for a row made
  in PostgreSQL, creation time, workspace, a new ``_ts``;
* ``migrationkit_capture`` (AFTER INSERT OR UPDATE OR DELETE): one outbox
  event per row written, entity ``mirror:<convex table>``.

The kit's own writers set ``migrationkit.replicating`` (:data:`REPLICATING_SQL`)
so that what they copy from Convex is not captured and sent back.
"""

from __future__ import annotations

from migrationkit.mirror.columns import DOCUMENT, mirror_columns
from migrationkit.mirror.model import MirrorDocument
from migrationkit.schema.identifiers import quote_ident

__all__ = [
    "CAPTURE_TRIGGER",
    "ENTITY_PREFIX",
    "REPLICATING_SQL",
    "STAMP_TRIGGER",
    "capture_sql",
    "drop_capture_sql",
    "mirror_entity",
    "workspace_path",
]

#: Outbox events of mirror tables are for entity ``mirror:<qualified convex table>``.
ENTITY_PREFIX = "mirror:"
STAMP_TRIGGER = "migrationkit_stamp"
CAPTURE_TRIGGER = "migrationkit_capture"
STAMP_FUNCTION = "migrationkit_mirror_stamp"
CAPTURE_FUNCTION = "migrationkit_mirror_capture"
#: Run in a transaction: its writes to mirror tables are not captured.
REPLICATING_SQL = "SELECT set_config('migrationkit.replicating', 'on', true)"


def mirror_entity(qualified_convex_name: str) -> str:
    return ENTITY_PREFIX + qualified_convex_name


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _table(table: str, schema: str | None) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}" if schema else quote_ident(table)


def workspace_path(model: type[MirrorDocument]) -> tuple[str, ...]:
    """Where the workspace field's value sits in the row (as ``to_jsonb`` gives
    it): its column, or ``document`` and the field; empty when the table has
    no ``workspace_id`` (no workspace field)."""
    field = model.mirror.workspace_field
    if field is None:
        return ()
    if model.mirror.document_only:
        return (DOCUMENT, field)
    column = next((c.column for c in mirror_columns(model) if c.convex_name == field), None)
    return () if column is None else (column,)


def capture_sql(model: type[MirrorDocument]) -> list[str]:
    """The two triggers of ``model``'s mirror table."""
    spec = model.mirror
    table = _table(spec.pg_table, spec.pg_schema)
    stamp_args = ", ".join(_literal(p) for p in workspace_path(model))
    return [
        f"CREATE TRIGGER {STAMP_TRIGGER} BEFORE INSERT OR UPDATE ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {STAMP_FUNCTION}({stamp_args})",
        f"CREATE TRIGGER {CAPTURE_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION"
        f" {CAPTURE_FUNCTION}({_literal(spec.qualified_convex_name)})",
    ]


def drop_capture_sql(model: type[MirrorDocument]) -> list[str]:
    spec = model.mirror
    table = _table(spec.pg_table, spec.pg_schema)
    return [
        f"DROP TRIGGER IF EXISTS {CAPTURE_TRIGGER} ON {table}",
        f"DROP TRIGGER IF EXISTS {STAMP_TRIGGER} ON {table}",
    ]
