"""The audit log: one row per write, append-only for the application role

``audit_logs`` is a tenant table: RLS enabled and forced, the same
``tenant_isolation`` and ``readonly_tenant_read`` policies as every other.
Its grants differ: ``migrationkit_app`` may only SELECT and INSERT, so no
application session can rewrite or erase history, whatever its workspace;
removing old entries is for an operator's role (retention).

``outbox_events.audit`` carries each write's entry to the other store's
audit log inside the write's own event (still one event per write).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, not read from the kit: the roles and the predicate as 0001 made them.
PREDICATE = "workspace_id = current_setting('app.workspace_id', true)"
SECURITY = [
    "ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY",
    f"CREATE POLICY tenant_isolation ON audit_logs FOR ALL TO PUBLIC"
    f" USING ({PREDICATE}) WITH CHECK ({PREDICATE})",
    f"CREATE POLICY readonly_tenant_read ON audit_logs FOR SELECT TO migrationkit_readonly"
    f" USING ({PREDICATE})",
    # Append-only: no UPDATE, DELETE or TRUNCATE for the application.
    "GRANT SELECT, INSERT ON audit_logs TO migrationkit_app",
    "GRANT SELECT ON audit_logs TO migrationkit_readonly",
]


def upgrade() -> None:
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.Text(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "action IN ('create', 'update', 'delete')", name=op.f("ck_audit_logs_action_allowed")
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_audit_logs")),
    )
    op.create_index(
        "ix_audit_logs_workspace_id_resource_type_resource_id_at",
        "audit_logs",
        ["workspace_id", "resource_type", "resource_id", "at"],
        unique=False,
    )
    for statement in SECURITY:
        op.execute(statement)
    op.add_column(
        "outbox_events",
        sa.Column("audit", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("outbox_events", "audit")
    op.execute("REVOKE ALL ON audit_logs FROM migrationkit_readonly")
    op.execute("REVOKE ALL ON audit_logs FROM migrationkit_app")
    op.drop_index(
        "ix_audit_logs_workspace_id_resource_type_resource_id_at", table_name="audit_logs"
    )
    op.drop_table("audit_logs")
