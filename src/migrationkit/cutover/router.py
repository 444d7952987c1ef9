"""``CutoverRouter``: the repository port in front of both stores, routing
each call by the stage that applies to its entity and workspace.

Application code keeps calling ``get``/``list``/``upsert``/``delete``; the
stage decides where each goes, and changes take effect within the stage
cache's lifetime, without a restart.

* Writes go to the stage's authoritative store; its failure fails the call.
  The other store is kept in step by the outbox worker (the default) or,
  with ``shadow_writes="inline"``, also right away through the same
  version-guarded sink the worker uses. An inline failure never fails the
  call: it is counted, logged and left to the outbox.
* Reads come from the stage's read store. In ``shadow_read`` the other
  store is read too (for a sampled share of calls) and compared; a mismatch
  is counted and logged with a readable diff, an error there is counted and
  swallowed, and the caller always gets the authoritative answer. In
  ``pg_reads`` with ``read_mode="hybrid"``, a row PostgreSQL does not have
  yet is read from Convex, and the fallback counted.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, Protocol, TypeVar

from migrationkit.cutover.fence import PostgresFence
from migrationkit.cutover.stages import Stage, Store
from migrationkit.cutover.store import StageProvider
from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.entity import Entity
from migrationkit.domain.ids import check_workspace_id
from migrationkit.domain.lead import Lead
from migrationkit.domain.query import ListQuery, Page, SegmentQuery
from migrationkit.errors import StageMoved
from migrationkit.observability.metrics import CutoverMetrics
from migrationkit.ports.changes import ChangeSink

E = TypeVar("E", bound=Entity)
T = TypeVar("T")
log = logging.getLogger("migrationkit.cutover")


class WritableRepository(Protocol[E]):
    """A repository that also returns what it stored (every adapter does)."""

    def get(self, workspace_id: str, id: str) -> E | None: ...
    def list(self, workspace_id: str, query: ListQuery | None = None) -> Page[E]: ...
    def upsert_entity(
        self, workspace_id: str, data: E | Mapping[str, Any], *, expected_version: int | None = ...
    ) -> E: ...
    def delete_entity(self, workspace_id: str, id: str) -> E | None: ...


def diff(authoritative: Entity | None, shadow: Entity | None, ignore: frozenset[str]) -> list[str]:
    """Readable differences, one ``field: authoritative != shadow`` line each."""
    if authoritative is None or shadow is None:
        if authoritative is shadow:
            return []
        return [f"<row>: {_presence(authoritative)} != {_presence(shadow)}"]
    a = authoritative.model_dump(mode="json", exclude=set(ignore))
    b = shadow.model_dump(mode="json", exclude=set(ignore))
    return [f"{key}: {a.get(key)!r} != {b.get(key)!r}" for key in sorted(a) if a[key] != b.get(key)]


def _presence(entity: Entity | None) -> str:
    return "missing" if entity is None else f"v{entity.version}"


def change_for(entity: Entity, kind: ChangeKind) -> Change:
    """The change an inline shadow write carries, as the outbox would."""
    return Change(
        event_id=f"inline:{entity.entity_name}:{entity.workspace_id}:{entity.id}:{entity.version}",
        entity=entity.entity_name,
        kind=kind,
        workspace_id=entity.workspace_id,
        entity_id=entity.id,
        version=entity.version,
        data=entity.model_dump(mode="json"),
        occurred_at=entity.updated_at,
    )


class CutoverRouter(Generic[E]):
    def __init__(
        self,
        *,
        convex: WritableRepository[E],
        postgres: WritableRepository[E],
        stages: StageProvider,
        entity: str,
        shadow_writes: Literal["outbox", "inline"] = "outbox",
        sinks: Mapping[Store, ChangeSink] | None = None,
        read_mode: Literal["strict", "hybrid"] = "strict",
        sample_rate: float = 1.0,
        ignore_fields: frozenset[str] = frozenset(),
        metrics: CutoverMetrics | None = None,
        random_source: Callable[[], float] = random.random,
        postgres_fence: PostgresFence | None = None,
        fence_wait: float = 60.0,
    ) -> None:
        if shadow_writes == "inline" and not sinks:
            raise ValueError("inline shadow writes need a sink for each store")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate is a share of calls, from 0 to 1")
        self.repos: dict[Store, WritableRepository[E]] = {
            Store.CONVEX: convex,
            Store.POSTGRES: postgres,
        }
        self.stages = stages
        self.entity = entity
        self.shadow_writes = shadow_writes
        self.sinks = dict(sinks or {})
        self.read_mode = read_mode
        self.sample_rate = sample_rate
        self.ignore_fields = ignore_fields
        self.metrics = metrics or CutoverMetrics()
        self._random = random_source
        self.postgres_fence = postgres_fence
        self.fence_wait = fence_wait

    def stage(self, workspace_id: str) -> Stage:
        return self.stages.stage_for(self.entity, check_workspace_id(workspace_id))

    # -- reads -------------------------------------------------------------

    def get(self, workspace_id: str, id: str) -> E | None:
        stage = self.stage(workspace_id)
        found = self.repos[stage.reads_from].get(workspace_id, id)
        if found is None and stage is Stage.PG_READS and self.read_mode == "hybrid":
            found = self.repos[Store.CONVEX].get(workspace_id, id)
            if found is not None:
                self.metrics.read_fallbacks.labels(self.entity).inc()
        if stage.compares_reads and self._sampled():
            self._compare(stage, workspace_id, id, found)
        return found

    def list(self, workspace_id: str, query: ListQuery | None = None) -> Page[E]:
        stage = self.stage(workspace_id)
        page = self.repos[stage.reads_from].list(workspace_id, query)
        if stage.compares_reads and self._sampled():
            for item in page.items:
                self._compare(stage, workspace_id, item.id, item)
        return page

    def _sampled(self) -> bool:
        return self.sample_rate >= 1.0 or self._random() < self.sample_rate

    def _compare(self, stage: Stage, workspace_id: str, id: str, answer: E | None) -> None:
        other = stage.reads_from.other
        try:
            shadow = self.repos[other].get(workspace_id, id)
        except Exception as exc:  # never the caller's problem
            self.metrics.shadow_reads.labels(self.entity, "error").inc()
            log.warning("shadow read of %s %s from %s failed: %s", self.entity, id, other, exc)
            return
        differences = diff(answer, shadow, self.ignore_fields)
        if differences:
            self.metrics.shadow_reads.labels(self.entity, "mismatch").inc()
            log.warning(
                "shadow read mismatch for %s %s in %s (%s vs %s):\n  %s",
                self.entity,
                id,
                workspace_id,
                stage.reads_from,
                other,
                "\n  ".join(differences),
            )
        else:
            self.metrics.shadow_reads.labels(self.entity, "match").inc()

    # -- writes ------------------------------------------------------------

    def upsert(
        self,
        workspace_id: str,
        data: E | Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> str:
        def write(stage: Stage) -> E:
            repo: Any = self.repos[stage.authority]
            return repo.upsert_entity(  # type: ignore[no-any-return]
                workspace_id,
                data,
                expected_version=expected_version,
                **self._guard(stage, workspace_id),
            )

        stage, saved = self._fenced(workspace_id, write)
        self._shadow(stage, saved, ChangeKind.UPSERT)
        return saved.id

    def delete(self, workspace_id: str, id: str) -> bool:
        def write(stage: Stage) -> E | None:
            repo: Any = self.repos[stage.authority]
            return repo.delete_entity(  # type: ignore[no-any-return]
                workspace_id, id, **self._guard(stage, workspace_id)
            )

        stage, deleted = self._fenced(workspace_id, write)
        if deleted is not None:
            self._shadow(stage, deleted, ChangeKind.DELETE)
        return deleted is not None

    def _guard(self, stage: Stage, workspace_id: str) -> dict[str, Any]:
        if stage.authority is Store.POSTGRES and self.postgres_fence is not None:
            return {"guard": self.postgres_fence.guard(self.entity, workspace_id)}
        return {}

    def _fenced(self, workspace_id: str, write: Callable[[Stage], T]) -> tuple[Stage, T]:
        """Write to the stage's authority; while a switch fences it off, wait and retry.

        A refused write changed nothing, so retrying it is safe; the stage is
        re-read each time, so the write lands wherever the switch ends.
        """
        deadline = time.monotonic() + self.fence_wait
        delay = 0.005
        while True:
            stage = self.stage(workspace_id)
            try:
                return stage, write(stage)
            except StageMoved:
                if time.monotonic() >= deadline:
                    raise
                self.metrics.fenced_writes.labels(self.entity).inc()
                invalidate = getattr(self.stages, "invalidate", None)
                if callable(invalidate):
                    invalidate()
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _shadow(self, stage: Stage, entity: Entity, kind: ChangeKind) -> None:
        if not stage.replicates or self.shadow_writes != "inline":
            return  # the outbox carries it
        other = stage.authority.other
        try:
            self.sinks[other].apply([change_for(entity, kind)])
        except Exception as exc:  # the outbox worker will deliver it
            self.metrics.shadow_write_failures.labels(self.entity, other.value).inc()
            log.warning(
                "inline shadow write of %s %s v%d to %s failed (the outbox will retry): %s",
                self.entity,
                entity.id,
                entity.version,
                other,
                exc,
            )


class LeadCutoverRouter(CutoverRouter[Lead]):
    def __init__(self, **options: Any) -> None:
        super().__init__(entity="lead", **options)

    def list_by_segment(self, workspace_id: str, query: SegmentQuery) -> Page[Lead]:
        stage = self.stage(workspace_id)
        repo: Any = self.repos[stage.reads_from]
        page: Page[Lead] = repo.list_by_segment(workspace_id, query)
        if stage.compares_reads and self._sampled():
            for item in page.items:
                self._compare(stage, workspace_id, item.id, item)
        return page
