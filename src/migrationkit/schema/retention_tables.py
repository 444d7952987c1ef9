"""Tables of the retention job and of workspace deletion.

* ``<table>_archive`` for each entity table and for ``outbox_events``: the
  same columns, plus ``archived_at``. Tenant tables (RLS on
  ``workspace_id``), read-only to the application: only the retention job,
  under an operator's role, moves rows in and deletes them.
* ``retention_purges``: rows the job removed from an entity table that the
  other store (Convex) has yet to remove; drained by the job, kept until
  Convex confirms. A tenant table too.
* ``workspace_deletions``: one row per deletion request and its fate.
* ``workspace_events``: the notices of workspace deletion (an outbox of
  their own, see ``retention.workspaces`` for why not ``outbox_events``).

The last two name the workspace in a ``workspace`` column, not
``workspace_id``: they are the operator's record of a tenant, not the
tenant's data, so no RLS scope hides them and a purge keeps them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from migrationkit.domain.entity import Entity
from migrationkit.schema.outbox_tables import outbox_table
from migrationkit.schema.tables import table_for

ARCHIVE_SUFFIX = "_archive"
PURGES_TABLE = "retention_purges"
DELETIONS_TABLE = "workspace_deletions"
EVENTS_TABLE = "workspace_events"
DELETION_STATUSES = ("pending", "purging", "cancelled", "purged")
EVENT_STATUSES = ("pending", "done")
#: What the application's role may do on ``app_read_only_tables`` (0010 revokes the rest).
APP_PRIVILEGES = ("SELECT",)


def archive_name(table: str) -> str:
    return table + ARCHIVE_SUFFIX


def _archive_of(source: Table, metadata: MetaData, key: tuple[str, ...], aged_by: str) -> Table:
    name = archive_name(source.name)
    if name in metadata.tables:
        return metadata.tables[name]
    # Types and nullability only: no defaults, checks or unique keys, so an
    # archived row is kept as it was even if the live table's rules change.
    columns = [Column(c.name, c.type, nullable=c.nullable) for c in source.columns]
    table = Table(
        name,
        metadata,
        *columns,
        Column("archived_at", TIMESTAMP(timezone=True), nullable=False),
        PrimaryKeyConstraint(*key),
    )
    # The hard-delete step finds its rows by age.
    Index(f"ix_{name}_{aged_by}", table.c[aged_by])
    return table


def entity_archive_table(model: type[Entity], metadata: MetaData) -> Table:
    """``<table>_archive`` of an entity: one row per incarnation of an id
    (a purged id created again archives again, with another ``created_at``)."""
    return _archive_of(
        table_for(model, metadata), metadata, ("workspace_id", "id", "created_at"), "deleted_at"
    )


def outbox_archive_table(metadata: MetaData) -> Table:
    return _archive_of(outbox_table(metadata), metadata, ("event_id",), "occurred_at")


def retention_purges_table(metadata: MetaData) -> Table:
    if PURGES_TABLE in metadata.tables:
        return metadata.tables[PURGES_TABLE]
    return Table(
        PURGES_TABLE,
        metadata,
        Column("entity", Text(), nullable=False),
        Column("workspace_id", Text(), nullable=False),
        Column("id", Text(), nullable=False),
        # Which incarnation was removed: Convex removes that one only, never
        # a document created again with the same id since.
        Column("created_at", TIMESTAMP(timezone=True), nullable=False),
        Column("version", BigInteger(), nullable=False),
        Column("convex_id", Text(), nullable=True),
        Column("removed_at", TIMESTAMP(timezone=True), nullable=False),
        PrimaryKeyConstraint("entity", "workspace_id", "id", "created_at"),
    )


def workspace_deletions_table(metadata: MetaData) -> Table:
    if DELETIONS_TABLE in metadata.tables:
        return metadata.tables[DELETIONS_TABLE]
    allowed = ", ".join(f"'{s}'" for s in DELETION_STATUSES)
    table = Table(
        DELETIONS_TABLE,
        metadata,
        Column("id", Text(), primary_key=True),
        Column("workspace", Text(), nullable=False),
        Column("status", Text(), nullable=False),
        Column("requested_by", Text(), nullable=False),
        Column("requested_at", TIMESTAMP(timezone=True), nullable=False),
        Column("due_at", TIMESTAMP(timezone=True), nullable=False),
        Column("cancelled_by", Text(), nullable=True),
        Column("cancelled_at", TIMESTAMP(timezone=True), nullable=True),
        Column("purged_at", TIMESTAMP(timezone=True), nullable=True),
        # Rows removed, per store and table: what the audit entry reports.
        Column("purged_rows", JSONB(), nullable=True),
        CheckConstraint(f"status IN ({allowed})", name="status_allowed"),
    )
    # One open request per workspace: a second request finds the first.
    Index(
        "uq_workspace_deletions_open",
        table.c.workspace,
        unique=True,
        postgresql_where=table.c.status.in_(["pending", "purging"]),
    )
    Index("ix_workspace_deletions_status_due_at", table.c.status, table.c.due_at)
    return table


def workspace_events_table(metadata: MetaData) -> Table:
    if EVENTS_TABLE in metadata.tables:
        return metadata.tables[EVENTS_TABLE]
    allowed = ", ".join(f"'{s}'" for s in EVENT_STATUSES)
    table = Table(
        EVENTS_TABLE,
        metadata,
        Column("event_id", Text(), primary_key=True),
        Column("workspace", Text(), nullable=False),
        Column("deletion_id", Text(), nullable=False),
        Column("topic", Text(), nullable=False),
        Column("occurred_at", TIMESTAMP(timezone=True), nullable=False),
        # Each notice once: a tick that runs twice inserts nothing new.
        Column("dedupe_key", Text(), nullable=False, unique=True),
        Column("payload", JSONB(), nullable=False),
        Column("status", Text(), nullable=False, server_default=text("'pending'")),
        Column("published_at", TIMESTAMP(timezone=True), nullable=True),
        CheckConstraint(f"status IN ({allowed})", name="status_allowed"),
    )
    Index(
        "ix_workspace_events_pending",
        table.c.occurred_at,
        postgresql_where=table.c.status == "pending",
    )
    return table


def app_read_only_tables(metadata: MetaData) -> set[str]:
    """Tenant tables here that the application's role may only read (the
    migration revokes INSERT, UPDATE and DELETE): the archives and the
    purge queue, written by the retention job alone."""
    names = {PURGES_TABLE}
    for table in metadata.tables.values():
        if (
            table.name.endswith(ARCHIVE_SUFFIX)
            and table.name[: -len(ARCHIVE_SUFFIX)] in metadata.tables
        ):
            names.add(table.name)
    return names


def retention_tables(metadata: MetaData) -> None:
    """The tables above that do not depend on an entity (entity archives are
    made with their entity's table, by ``entity_archive_table``)."""
    outbox_archive_table(metadata)
    retention_purges_table(metadata)
    workspace_deletions_table(metadata)
    workspace_events_table(metadata)
