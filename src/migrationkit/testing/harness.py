"""Harnesses: one adapter plus what the contract suite needs to look inside it.

The suite talks to the repository through the port only; to check the
outbox it asks the harness, since reading events is not part of the port.
Bring your own adapter to the suite by writing a harness for it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy import Engine, select

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.memory import MemoryLeadRepository
from migrationkit.adapters.postgres import PostgresLeadRepository, workspace_transaction
from migrationkit.domain.outbox import OutboxEvent
from migrationkit.ports.repository import LeadRepository
from migrationkit.schema.metadata import metadata
from migrationkit.schema.outbox_tables import outbox_table


@runtime_checkable
class LeadHarness(Protocol):
    @property
    def name(self) -> str:
        """The adapter's name, as shown in test ids."""
        ...

    @property
    def repository(self) -> LeadRepository:
        """The repository under test."""
        ...

    def outbox_events(self, workspace_id: str) -> list[OutboxEvent]:
        """Every event the store recorded for the workspace, oldest first."""
        ...


class MemoryHarness:
    name = "memory"

    def __init__(self) -> None:
        self.repository = MemoryLeadRepository()

    def outbox_events(self, workspace_id: str) -> list[OutboxEvent]:
        return self.repository.outbox_events(workspace_id)


class ConvexHarness:
    name = "convex"

    def __init__(self, client: ConvexClient) -> None:
        self.repository = ConvexLeadRepository(client)

    def outbox_events(self, workspace_id: str) -> list[OutboxEvent]:
        return self.repository.outbox_events(workspace_id)


class PostgresHarness:
    name = "postgres"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.repository = PostgresLeadRepository(engine)

    def outbox_events(self, workspace_id: str) -> list[OutboxEvent]:
        t = outbox_table(metadata)
        columns = [t.c[name] for name in OutboxEvent.model_fields]
        # Ties on occurred_at (same millisecond) fall back to the version.
        stmt = (
            select(*columns)
            .where(t.c.workspace_id == workspace_id)
            .order_by(t.c.occurred_at, t.c.version, t.c.event_id)
        )
        with workspace_transaction(self.engine, workspace_id) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [OutboxEvent.model_validate(dict(r)) for r in rows]
