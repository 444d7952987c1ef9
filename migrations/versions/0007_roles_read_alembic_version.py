"""The kit's roles may read alembic_version, so `migrationkit doctor` run with
the services' own login can tell whether the schema is at head

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The roles as 0001 created them; frozen here, not read from the kit.
def upgrade() -> None:
    op.execute("GRANT SELECT ON alembic_version TO migrationkit_app, migrationkit_readonly")


def downgrade() -> None:
    op.execute("REVOKE SELECT ON alembic_version FROM migrationkit_app, migrationkit_readonly")
