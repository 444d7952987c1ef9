"""The one ``MetaData`` holding every table the kit manages."""

from __future__ import annotations

from sqlalchemy import MetaData, Table

from migrationkit.domain.entity import Entity
from migrationkit.domain.registry import registered_models
from migrationkit.mirror.model import registered_mirrors
from migrationkit.schema.audit_tables import audit_logs_table
from migrationkit.schema.cutover_tables import cutover_history_table, cutover_stages_table
from migrationkit.schema.mirror_tables import mirror_table_for
from migrationkit.schema.outbox_tables import outbox_table, processed_events_table
from migrationkit.schema.pipeline_tables import (
    dead_letters_table,
    sync_backfills_table,
    sync_cursors_table,
    verify_runs_table,
)
from migrationkit.schema.retention_tables import entity_archive_table, retention_tables
from migrationkit.schema.tables import NAMING_CONVENTION, table_for

# Importing the domain registers the example entity before tables are built.
import migrationkit.domain  # noqa: F401  isort: skip


def build_metadata(models: list[type[Entity]] | None = None) -> MetaData:
    """A fresh ``MetaData`` with the given (default: all registered) entity tables."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    for model in models if models is not None else registered_models():
        table_for(model, metadata)
        entity_archive_table(model, metadata)
    outbox_table(metadata)
    processed_events_table(metadata)
    audit_logs_table(metadata)
    dead_letters_table(metadata)
    sync_cursors_table(metadata)
    sync_backfills_table(metadata)
    verify_runs_table(metadata)
    cutover_stages_table(metadata)
    cutover_history_table(metadata)
    retention_tables(metadata)
    return metadata


metadata = build_metadata()


def current_metadata() -> MetaData:
    """The shared metadata, with tables for models registered since import
    (entity models and mirror models alike)."""
    for model in registered_models():
        table_for(model, metadata)
        entity_archive_table(model, metadata)
    for mirror in registered_mirrors():
        mirror_table_for(mirror, metadata)
    return metadata


def entity_table(model: type[Entity]) -> Table:
    """The table of a model in the shared metadata."""
    return table_for(model, metadata)


def tenant_tables() -> list[str]:
    """Tables holding per-workspace rows: RLS applies to every one of them."""
    return [t.name for t in current_metadata().sorted_tables if "workspace_id" in t.c]
