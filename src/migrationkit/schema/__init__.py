"""Schema generation from the registered models."""

from migrationkit.schema.metadata import (
    build_metadata,
    current_metadata,
    entity_table,
    metadata,
    tenant_tables,
)
from migrationkit.schema.tables import column_kind, field_kinds, snake_case, table_for

__all__ = [
    "build_metadata",
    "column_kind",
    "current_metadata",
    "entity_table",
    "field_kinds",
    "metadata",
    "snake_case",
    "table_for",
    "tenant_tables",
]
