"""Repository ports: what application code calls, whatever store is behind.

Every method takes the workspace first: tenancy is never implicit. Every
adapter (memory, PostgreSQL, Convex, the cutover router) honours the same
contract, which ``migrationkit.testing`` checks:

* ``get`` returns ``None`` for a missing or soft-deleted entity.
* ``list`` returns live entities in id order, one ``Page`` at a time; the
  cursor is opaque and bound to the query that issued it.
* ``upsert`` validates ``data`` against the model, creates the entity (a new
  ULID when ``data`` has no id) or replaces its fields, bumps ``version`` by
  exactly one and records one outbox event in the same transaction. It
  returns the id. With ``expected_version`` it writes only if the stored
  version equals it (0: only if absent) and raises ``Conflict`` otherwise.
* ``delete`` soft-deletes: ``deleted_at`` is set, ``version`` bumped, one
  event recorded. It returns ``True``; deleting a deleted entity changes
  nothing and returns ``False``; an id never seen raises ``NotFound``.
* Bad input raises ``ValidationFailed`` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from migrationkit.domain.entity import Entity
from migrationkit.domain.lead import Lead
from migrationkit.domain.query import ListQuery, Page, SegmentQuery

E = TypeVar("E", bound=Entity)


@runtime_checkable
class Repository(Protocol[E]):
    """Reads and writes one entity type, scoped to a workspace."""

    def get(self, workspace_id: str, id: str) -> E | None:
        """The live entity with this id, or ``None``."""
        ...

    def list(self, workspace_id: str, query: ListQuery | None = None) -> Page[E]:
        """One page of live entities in id order."""
        ...

    def upsert(
        self,
        workspace_id: str,
        data: E | Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> str:
        """Create or replace; returns the id."""
        ...

    def delete(self, workspace_id: str, id: str) -> bool:
        """Soft-delete; ``False`` if it was already deleted."""
        ...


@runtime_checkable
class LeadRepository(Repository[Lead], Protocol):
    """Leads, plus the example domain query."""

    def list_by_segment(self, workspace_id: str, query: SegmentQuery) -> Page[Lead]:
        """Live leads matching every filter set in ``query``, in id order."""
        ...
