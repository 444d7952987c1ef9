"""Dead letters keep the change's audit entry, so a replay adds it too

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 11:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("audit", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("dead_letters", "audit")
