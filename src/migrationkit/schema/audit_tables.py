"""``audit_logs``: one row per write, in the write's own transaction.

A tenant table like the entity tables (RLS on ``workspace_id``), but
append-only for the application: its role may insert and read rows, never
change or remove them (the migration grants no UPDATE or DELETE). Removing
old entries is the retention job's, under an operator's role.

``before`` and ``after`` are the entity in the kit's JSON shape, as the
outbox payload carries it. ``actor``, ``ip`` and ``user_agent`` are NULL
when the caller gave none: "not given", never a guess.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, MetaData, PrimaryKeyConstraint, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from migrationkit.domain.audit import AuditAction

AUDIT_TABLE = "audit_logs"
#: All the application's role is granted on it (migration 0009): append-only.
APP_PRIVILEGES = ("SELECT", "INSERT")


def audit_logs_table(metadata: MetaData) -> Table:
    if AUDIT_TABLE in metadata.tables:
        return metadata.tables[AUDIT_TABLE]
    allowed = ", ".join(f"'{a.value}'" for a in AuditAction)
    table = Table(
        AUDIT_TABLE,
        metadata,
        Column("id", Text(), nullable=False),
        Column("workspace_id", Text(), nullable=False),
        Column("actor", Text(), nullable=True),
        Column("action", Text(), nullable=False),
        Column("resource_type", Text(), nullable=False),
        Column("resource_id", Text(), nullable=False),
        Column("before", JSONB(), nullable=True),
        Column("after", JSONB(), nullable=True),
        Column("at", TIMESTAMP(timezone=True), nullable=False),
        Column("ip", Text(), nullable=True),
        Column("user_agent", Text(), nullable=True),
        CheckConstraint(f"action IN ({allowed})", name="action_allowed"),
        # Led by the workspace, as every tenant table's key: an entry
        # replicated twice (by id) is the same row, whichever path it took.
        PrimaryKeyConstraint("workspace_id", "id"),
    )
    # "What happened to this record", newest or oldest first.
    Index(
        "ix_audit_logs_workspace_id_resource_type_resource_id_at",
        table.c.workspace_id,
        table.c.resource_type,
        table.c.resource_id,
        table.c.at,
    )
    return table
