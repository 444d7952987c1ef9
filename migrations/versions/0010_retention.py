"""Retention and workspace deletion: archive tables, deletion requests

* ``leads_archive`` and ``outbox_events_archive``: the live table's columns
  (``LIKE``: as they are at this revision, 0009's outbox ``audit`` column
  included) plus ``archived_at``; RLS like every tenant table, and read-only
  to the application role: only the retention job (an operator's role)
  moves rows in and deletes them.
* ``retention_purges``: rows removed from an entity table that Convex has
  yet to remove (tenant table, same rules).
* ``workspace_deletions`` and ``workspace_events``: the operator's record of
  deletion requests and their notices (no RLS: they name a workspace, they
  hold none of its data).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrationkit.schema import rls

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, not read from the kit.
ARCHIVES = {
    # archive -> (live table, primary key, the column its age is read from)
    "leads_archive": ("leads", "workspace_id, id, created_at", "deleted_at"),
    "outbox_events_archive": ("outbox_events", "event_id", "occurred_at"),
}
TENANT_TABLES = ("leads_archive", "outbox_events_archive", "retention_purges")


def _read_only_for_the_app(table: str) -> None:
    for statement in rls.enable_sql(table):
        op.execute(statement)
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON {table} FROM {rls.APP_ROLE}")


def upgrade() -> None:
    for archive, (live, key, aged_by) in ARCHIVES.items():
        # LIKE copies names, types and NOT NULL, and nothing else: no
        # defaults, checks or unique keys, so an archived row stays as it was.
        op.execute(f"CREATE TABLE {archive} (LIKE {live})")
        op.execute(f"ALTER TABLE {archive} ADD COLUMN archived_at timestamptz NOT NULL")
        op.execute(f"ALTER TABLE {archive} ADD CONSTRAINT pk_{archive} PRIMARY KEY ({key})")
        op.create_index(f"ix_{archive}_{aged_by}", archive, [aged_by], unique=False)
    op.create_table(
        "retention_purges",
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("convex_id", sa.Text(), nullable=True),
        sa.Column("removed_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "entity", "workspace_id", "id", "created_at", name=op.f("pk_retention_purges")
        ),
    )
    op.create_table(
        "workspace_deletions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("workspace", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("due_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("cancelled_by", sa.Text(), nullable=True),
        sa.Column("cancelled_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("purged_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("purged_rows", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'purging', 'cancelled', 'purged')",
            name=op.f("ck_workspace_deletions_status_allowed"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_deletions")),
    )
    op.create_index(
        "ix_workspace_deletions_status_due_at",
        "workspace_deletions",
        ["status", "due_at"],
        unique=False,
    )
    op.create_index(
        "uq_workspace_deletions_open",
        "workspace_deletions",
        ["workspace"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'purging')"),
    )
    op.create_table(
        "workspace_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("workspace", sa.Text(), nullable=False),
        sa.Column("deletion_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("occurred_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("published_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done')", name=op.f("ck_workspace_events_status_allowed")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_workspace_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_workspace_events_dedupe_key")),
    )
    op.create_index(
        "ix_workspace_events_pending",
        "workspace_events",
        ["occurred_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    for table in TENANT_TABLES:
        _read_only_for_the_app(table)


def downgrade() -> None:
    for table in TENANT_TABLES:
        for statement in rls.disable_sql(table):
            op.execute(statement)
    op.drop_index(
        "ix_workspace_events_pending",
        table_name="workspace_events",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("workspace_events")
    op.drop_index(
        "uq_workspace_deletions_open",
        table_name="workspace_deletions",
        postgresql_where=sa.text("status IN ('pending', 'purging')"),
    )
    op.drop_index("ix_workspace_deletions_status_due_at", table_name="workspace_deletions")
    op.drop_table("workspace_deletions")
    op.drop_table("retention_purges")
    for archive in reversed(ARCHIVES):
        op.drop_table(archive)
