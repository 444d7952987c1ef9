"""Tables the pipeline keeps in PostgreSQL beside the outbox and inbox."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP


def dead_letters_table(metadata: MetaData) -> Table:
    """Changes that kept failing, set aside so the rest keep flowing."""
    if "dead_letters" in metadata.tables:
        return metadata.tables["dead_letters"]
    return Table(
        "dead_letters",
        metadata,
        Column("event_id", Text(), primary_key=True),
        Column("consumer", Text(), nullable=False),
        Column("source", Text(), nullable=False),
        Column("entity", Text(), nullable=False),
        Column("kind", Text(), nullable=False),
        Column("workspace_id", Text(), nullable=True),
        Column("entity_id", Text(), nullable=True),
        Column("convex_id", Text(), nullable=True),
        Column("version", BigInteger(), nullable=False),
        Column("occurred_at", TIMESTAMP(timezone=True), nullable=False),
        Column("data", JSONB(), nullable=True),
        Column("error", Text(), nullable=False),
        Column("attempts", Integer(), nullable=False),
        Column("failed_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
        Column("replayed_at", TIMESTAMP(timezone=True), nullable=True),
        # The change's audit entry (AuditEntry JSON), applied again on replay.
        Column("audit", JSONB(), nullable=True),
    )


def sync_cursors_table(metadata: MetaData) -> Table:
    """Where a change-feed consumer keeps its position (e.g. a Convex delta cursor)."""
    if "sync_cursors" in metadata.tables:
        return metadata.tables["sync_cursors"]
    return Table(
        "sync_cursors",
        metadata,
        Column("name", Text(), primary_key=True),
        Column("cursor", BigInteger(), nullable=False),
        Column(
            "updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")
        ),
    )


def sync_backfills_table(metadata: MetaData) -> Table:
    """A backfill's place, per Convex table: saved with each page's rows.

    ``snapshot`` is the one timestamp every table is read at; ``page_cursor``
    the opaque ``list_snapshot`` cursor of the next page (NULL before the
    first); ``done`` once the table's last page is in.
    """
    if "sync_backfills" in metadata.tables:
        return metadata.tables["sync_backfills"]
    return Table(
        "sync_backfills",
        metadata,
        Column("name", Text(), primary_key=True),
        Column("convex_table", Text(), primary_key=True),
        Column("snapshot", BigInteger(), nullable=False),
        Column("page_cursor", Text(), nullable=True),
        Column("rows", BigInteger(), nullable=False, server_default=text("0")),
        Column("done", Boolean(), nullable=False, server_default=text("false")),
        Column(
            "started_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")
        ),
        Column(
            "updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")
        ),
    )


def verify_runs_table(metadata: MetaData) -> Table:
    """Each ``migrationkit verify``: its scope, cut, counts and what differed.

    ``scope`` is the entity or Convex table verified (``*`` for all) and
    ``workspace`` the workspace (NULL for all); the cutover gate looks for
    a recent passing run of the scope it moves. ``tables`` holds, per table,
    both counts and the located differences.
    """
    if "verify_runs" in metadata.tables:
        return metadata.tables["verify_runs"]
    return Table(
        "verify_runs",
        metadata,
        Column("id", BigInteger(), primary_key=True, autoincrement=True),
        Column("scope", Text(), nullable=False),
        Column("workspace", Text(), nullable=True),
        Column(
            "started_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")
        ),
        Column("finished_at", TIMESTAMP(timezone=True), nullable=False),
        Column("snapshot", BigInteger(), nullable=False),
        Column("passed", Boolean(), nullable=False),
        Column("convex_rows", BigInteger(), nullable=False),
        Column("postgres_rows", BigInteger(), nullable=False),
        Column("mismatches", BigInteger(), nullable=False),
        Column("tables", JSONB(), nullable=False),
        Index("ix_verify_runs_scope_finished_at", "scope", "finished_at"),
    )
