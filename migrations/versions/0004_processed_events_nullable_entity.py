"""processed_events: workspace_id and entity_id may be unknown

A purge names only a Convex id; when no row has it, the inbox records the
event with no workspace or entity id (NULL), rather than empty strings that
look like real values.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 19:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("processed_events", "workspace_id", existing_type=sa.Text(), nullable=True)
    op.alter_column("processed_events", "entity_id", existing_type=sa.Text(), nullable=True)
    # Rows recorded before this revision used empty strings for "unknown".
    op.execute("UPDATE processed_events SET workspace_id = NULL WHERE workspace_id = ''")
    op.execute("UPDATE processed_events SET entity_id = NULL WHERE entity_id = ''")


def downgrade() -> None:
    op.execute("UPDATE processed_events SET workspace_id = '' WHERE workspace_id IS NULL")
    op.execute("UPDATE processed_events SET entity_id = '' WHERE entity_id IS NULL")
    op.alter_column("processed_events", "entity_id", existing_type=sa.Text(), nullable=False)
    op.alter_column("processed_events", "workspace_id", existing_type=sa.Text(), nullable=False)
