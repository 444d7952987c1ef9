"""The pipeline's own tables: the outbox every write fills and the inbox a
consumer records applied events in.

The outbox carries what a consumer needs to claim work safely: a status, an
attempt count, the earliest next attempt, and a lease (owner and expiry), so
a worker that stalls loses its claim instead of blocking the queue.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

OUTBOX_STATUSES = ("pending", "processing", "done", "dead")


def outbox_table(metadata: MetaData) -> Table:
    if "outbox_events" in metadata.tables:
        return metadata.tables["outbox_events"]
    allowed = ", ".join(f"'{s}'" for s in OUTBOX_STATUSES)
    table = Table(
        "outbox_events",
        metadata,
        Column("event_id", Text(), primary_key=True),
        Column("workspace_id", Text(), nullable=False),
        Column("topic", Text(), nullable=False),
        Column("entity", Text(), nullable=False),
        Column("entity_id", Text(), nullable=False),
        Column("version", BigInteger(), nullable=False),
        Column("occurred_at", TIMESTAMP(timezone=True), nullable=False),
        Column("dedupe_key", Text(), nullable=False, unique=True),
        Column("payload", JSONB(), nullable=False),
        # The write's audit entry, for the other store's audit log (NULL for
        # events recorded before there was one, and for mirror captures).
        Column("audit", JSONB(), nullable=True),
        Column("status", Text(), nullable=False, server_default=text("'pending'")),
        Column("attempts", Integer(), nullable=False, server_default=text("0")),
        Column(
            "next_attempt_at",
            TIMESTAMP(timezone=True),
            nullable=False,
            server_default=text("now()"),
        ),
        Column("lease_owner", Text(), nullable=True),
        Column("lease_expires_at", TIMESTAMP(timezone=True), nullable=True),
        Column("last_error", Text(), nullable=True),
        CheckConstraint(f"status IN ({allowed})", name="status_allowed"),
    )
    # Consumers claim by (status, next_attempt_at); a partial index keeps the
    # scan proportional to the backlog, not to the table's history.
    Index(
        "ix_outbox_events_claimable",
        table.c.next_attempt_at,
        postgresql_where=table.c.status.in_(["pending", "processing"]),
    )
    Index("ix_outbox_events_workspace_id_entity_id", table.c.workspace_id, table.c.entity_id)
    return table


def processed_events_table(metadata: MetaData) -> Table:
    if "processed_events" in metadata.tables:
        return metadata.tables["processed_events"]
    return Table(
        "processed_events",
        metadata,
        Column("consumer", Text(), nullable=False),
        Column("event_id", Text(), nullable=False),
        # Unknown (NULL) for a purge that found no row: it names only a Convex id.
        Column("workspace_id", Text(), nullable=True),
        Column("entity", Text(), nullable=False),
        Column("entity_id", Text(), nullable=True),
        Column("version", BigInteger(), nullable=False),
        Column(
            "processed_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")
        ),
        PrimaryKeyConstraint("consumer", "event_id"),
    )
