"""Where the cutover stage lives: one row per scope, and the history of changes.

A scope is an entity ('*' for all) and a workspace ('*' for all); the most
specific row wins, so one tenant or one entity can go first.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Identity,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP

STAGES = ("convex_only", "shadow_write", "shadow_read", "pg_reads", "pg_primary", "pg_only")
_ALLOWED = ", ".join(f"'{s}'" for s in STAGES)


def cutover_stages_table(metadata: MetaData) -> Table:
    if "cutover_stages" in metadata.tables:
        return metadata.tables["cutover_stages"]
    return Table(
        "cutover_stages",
        metadata,
        Column("scope_entity", Text(), nullable=False, server_default=text("'*'")),
        Column("scope_workspace", Text(), nullable=False, server_default=text("'*'")),
        Column("stage", Text(), nullable=False),
        Column(
            "updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")
        ),
        Column("updated_by", Text(), nullable=False),
        Column("reason", Text(), nullable=True),
        PrimaryKeyConstraint("scope_entity", "scope_workspace"),
        CheckConstraint(f"stage IN ({_ALLOWED})", name="stage_allowed"),
    )


def cutover_history_table(metadata: MetaData) -> Table:
    if "cutover_history" in metadata.tables:
        return metadata.tables["cutover_history"]
    return Table(
        "cutover_history",
        metadata,
        Column("id", BigInteger(), Identity(), primary_key=True),
        Column("scope_entity", Text(), nullable=False),
        Column("scope_workspace", Text(), nullable=False),
        Column("from_stage", Text(), nullable=True),
        Column("to_stage", Text(), nullable=False),
        Column("forced", Boolean(), nullable=False),
        Column(
            "changed_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")
        ),
        Column("changed_by", Text(), nullable=False),
        Column("reason", Text(), nullable=True),
    )
