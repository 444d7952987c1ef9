"""SQL identifiers written into statements by hand (quoted, never bound)."""

from __future__ import annotations

from sqlalchemy import Table

__all__ = ["qualified", "quote_ident"]


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier: double quotes, inner ones doubled."""
    return '"' + name.replace('"', '""') + '"'


def qualified(table: Table) -> str:
    """The table's quoted name, schema first when it has one."""
    name = quote_ident(table.name)
    return f"{quote_ident(table.schema)}.{name}" if table.schema else name
