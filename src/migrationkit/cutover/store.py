"""The stage store: the cutover stage per scope, kept in PostgreSQL, read
through a short cache so every process follows a change within seconds
without a restart.

Resolution, most specific first: (entity, workspace), (any entity,
workspace), (entity, any workspace), (any, any), else ``convex_only``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, Engine, delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.cutover.stages import Stage
from migrationkit.errors import StoreUnavailable
from migrationkit.schema.cutover_tables import cutover_history_table, cutover_stages_table
from migrationkit.schema.metadata import metadata

ANY = "*"
#: pg_advisory_xact_lock key shared by fenced writes and stage changes.
FENCE_LOCK_KEY = 7_160_419_022_871_731_202
DEFAULT_STAGE = Stage.CONVEX_ONLY


@dataclass(frozen=True)
class StageSetting:
    entity: str
    workspace: str
    stage: Stage
    updated_at: datetime | None = None
    updated_by: str = ""
    reason: str | None = None


def resolve(settings: dict[tuple[str, str], Stage], entity: str, workspace: str) -> Stage:
    for key in ((entity, workspace), (ANY, workspace), (entity, ANY), (ANY, ANY)):
        if key in settings:
            return settings[key]
    return DEFAULT_STAGE


class StageProvider(Protocol):
    def stage_for(self, entity: str, workspace: str) -> Stage:
        """The stage that applies to this entity in this workspace now."""
        ...


class PostgresStageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stages = cutover_stages_table(metadata)
        self.history = cutover_history_table(metadata)

    def settings(self) -> list[StageSetting]:
        t = self.stages
        with translated_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(t).order_by(t.c.scope_entity, t.c.scope_workspace)
            ).mappings()
            return [
                StageSetting(
                    r["scope_entity"],
                    r["scope_workspace"],
                    Stage(r["stage"]),
                    r["updated_at"],
                    r["updated_by"],
                    r["reason"],
                )
                for r in rows
            ]

    def snapshot(self, conn: Connection | None = None) -> dict[tuple[str, str], Stage]:
        """Every scope's stage; on ``conn`` when given (inside its transaction)."""
        t = self.stages
        query = select(t.c.scope_entity, t.c.scope_workspace, t.c.stage)
        if conn is not None:
            return {(r[0], r[1]): Stage(r[2]) for r in conn.execute(query)}
        with translated_errors(), self.engine.connect() as own:
            return {(r[0], r[1]): Stage(r[2]) for r in own.execute(query)}

    def stage_for(self, entity: str, workspace: str) -> Stage:
        return resolve(self.snapshot(), entity, workspace)

    def set(
        self,
        stage: Stage,
        *,
        entity: str = ANY,
        workspace: str = ANY,
        by: str,
        reason: str | None = None,
        forced: bool = False,
    ) -> Stage | None:
        """Set a scope's stage and record the change; returns the scope's previous stage."""
        t, h = self.stages, self.history
        with translated_errors(), self.engine.begin() as conn:
            # Fenced writes hold this lock shared: none is under way while the
            # stage changes, and each sees either the old stage or the new.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FENCE_LOCK_KEY})
            previous = conn.execute(
                select(t.c.stage)
                .where(t.c.scope_entity == entity, t.c.scope_workspace == workspace)
                .with_for_update()
            ).scalar_one_or_none()
            values = {
                "scope_entity": entity,
                "scope_workspace": workspace,
                "stage": stage.value,
                "updated_by": by,
                "reason": reason,
            }
            upsert = pg_insert(t).values(values)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[t.c.scope_entity, t.c.scope_workspace],
                    set_={
                        "stage": upsert.excluded.stage,
                        "updated_by": upsert.excluded.updated_by,
                        "reason": upsert.excluded.reason,
                        "updated_at": upsert.excluded.updated_at,
                    },
                )
            )
            conn.execute(
                insert(h).values(
                    scope_entity=entity,
                    scope_workspace=workspace,
                    from_stage=previous,
                    to_stage=stage.value,
                    forced=forced,
                    changed_by=by,
                    reason=reason,
                )
            )
        return None if previous is None else Stage(previous)

    def clear(self, *, entity: str = ANY, workspace: str = ANY) -> bool:
        """Remove a scope's override (it then follows the broader scopes)."""
        t = self.stages
        with translated_errors(), self.engine.begin() as conn:
            result = conn.execute(
                delete(t).where(t.c.scope_entity == entity, t.c.scope_workspace == workspace)
            )
            return result.rowcount > 0


class CachedStages:
    """Reads every scope in one query at most once per ``ttl`` seconds.

    A stale answer is at most ``ttl`` old; an unreachable store keeps the
    last known stages rather than failing every call (and retries on the
    next read).
    """

    def __init__(
        self,
        store: PostgresStageStore,
        *,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._settings: dict[tuple[str, str], Stage] | None = None
        self._loaded_at = float("-inf")

    def stage_for(self, entity: str, workspace: str) -> Stage:
        with self._lock:
            if self._settings is None or self._clock() - self._loaded_at >= self.ttl:
                try:
                    self._settings = self.store.snapshot()
                except StoreUnavailable:
                    if self._settings is None:
                        raise
                self._loaded_at = self._clock()
            settings = self._settings
        return resolve(settings, entity, workspace)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")
