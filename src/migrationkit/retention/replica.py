"""The other store, as retention sees it: where rows removed here must go too.

While Convex is still in the picture (until the cutover is done and
Convex retired), a row retention takes out of an entity table in
PostgreSQL must leave Convex as well, or the stores disagree and verify
says so. And a workspace deletion empties both.

``ConvexReplica`` does both through the generated functions:

* ``<table>:purgeMany``: removes each named *life* of a document (its
  ``createdAt``) while it is soft-deleted. A document created again with
  the same id since, or live again, is kept: a purge never loses a write.
* ``<table>:purgeWorkspace`` and ``outbox:purgeWorkspace``: every document
  and outbox event of a workspace, a page per mutation.

Neither records an outbox event: the removal came from here, and must not
come back. Both are idempotent: a retried call removes nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.documents import ms_from_datetime
from migrationkit.adapters.convex.repository import function_errors
from migrationkit.domain.entity import Entity
from migrationkit.domain.registry import registered_models
from migrationkit.schema.convex_codegen import OUTBOX_TABLE
from migrationkit.schema.convex_fields import camel_case

__all__ = ["ConvexReplica", "Removed", "Replica"]

#: Documents per mutation: one Convex transaction each, well inside its limits.
PAGE = 500


@dataclass(frozen=True)
class Removed:
    """One life of an entity that retention removed here."""

    workspace_id: str
    id: str
    created_at: datetime


class Replica(Protocol):
    """The other store, for retention. ``name`` labels it in reports."""

    name: str

    def purge(self, model: type[Entity], removed: Sequence[Removed]) -> int:
        """Remove these lives of ``model``'s documents; return how many were there."""
        ...

    def purge_workspace(self, workspace: str) -> dict[str, int]:
        """Remove every row of ``workspace``; return rows removed per table."""
        ...


class ConvexReplica:
    """Convex through the kit's generated functions (deploy key needed)."""

    name = "convex"

    def __init__(self, client: ConvexClient, models: Sequence[type[Entity]] | None = None) -> None:
        self.client = client
        self.models = list(models) if models is not None else registered_models()

    def purge(self, model: type[Entity], removed: Sequence[Removed]) -> int:
        purged = 0
        for start in range(0, len(removed), PAGE):
            documents = [
                {
                    "workspaceId": r.workspace_id,
                    "id": r.id,
                    "createdAt": ms_from_datetime(r.created_at),
                }
                for r in removed[start : start + PAGE]
            ]
            with function_errors():
                outcome = self.client.mutation(
                    f"{camel_case(model.table_name)}:purgeMany",
                    {"documents": documents},
                    idempotent=True,
                )
            purged += int(outcome["purged"])
        return purged

    def purge_workspace(self, workspace: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        modules = [(m.table_name, camel_case(m.table_name)) for m in self.models]
        for table, module in [*modules, (OUTBOX_TABLE, OUTBOX_TABLE)]:
            total = 0
            while True:
                with function_errors():
                    removed = int(
                        self.client.mutation(
                            f"{module}:purgeWorkspace",
                            {"workspaceId": workspace, "limit": float(PAGE)},  # v.number()
                            idempotent=True,
                        )
                    )
                total += removed
                if removed < PAGE:
                    break
            counts[table] = total
        return counts
