"""Moving the stage: the operations behind ``migrationkit cutover``."""

from __future__ import annotations

import time

from migrationkit.cutover.fence import ConvexFence
from migrationkit.cutover.gates import Backlog, GateResult, Thresholds, Verifications, check
from migrationkit.cutover.stages import Stage, Store
from migrationkit.cutover.store import ANY, PostgresStageStore, StageSetting, resolve
from migrationkit.errors import ConfigurationError, MigrationKitError


class GateRefused(MigrationKitError):
    """The move is not safe yet; ``reasons`` says why. ``--force`` overrides."""

    def __init__(self, current: Stage, target: Stage, reasons: list[str]) -> None:
        super().__init__(
            f"refusing {current} -> {target}: " + "; ".join(reasons) + " (use --force to override)"
        )
        self.reasons = reasons


class CutoverControl:
    """Moves stages; a move that switches the authority runs the fence protocol.

    Into PostgreSQL's authority: fence Convex, wait for the Convex outbox to
    drain into PostgreSQL, then move the stage. Back to Convex: move the
    stage (PostgreSQL's fence is the stage itself), wait for PostgreSQL's
    outbox to drain into Convex, then lift Convex's fence. Writers meanwhile
    wait and retry (see ``CutoverRouter``); none fails and none forks.
    """

    def __init__(
        self,
        store: PostgresStageStore,
        outboxes: dict[str, Backlog],
        thresholds: Thresholds | None = None,
        *,
        convex_fence: ConvexFence | None = None,
        drain_timeout: float = 60.0,
        verifications: Verifications | None = None,
    ) -> None:
        self.store = store
        self.outboxes = outboxes
        self.thresholds = thresholds or Thresholds()
        self.convex_fence = convex_fence
        self.drain_timeout = drain_timeout
        #: Where passing verifies are looked up; None skips the verify gate.
        self.verifications = verifications

    def current(self, *, entity: str = ANY, workspace: str = ANY) -> Stage:
        return resolve(self.store.snapshot(), entity, workspace)

    def settings(self) -> list[StageSetting]:
        return self.store.settings()

    def gate(
        self, current: Stage, target: Stage, *, entity: str = ANY, workspace: str = ANY
    ) -> GateResult:
        return check(
            current,
            target,
            self.outboxes,
            self.thresholds,
            verifications=self.verifications,
            entity=entity,
            workspace=workspace,
        )

    def move(
        self,
        target: Stage,
        *,
        entity: str = ANY,
        workspace: str = ANY,
        force: bool = False,
        by: str,
        reason: str | None = None,
    ) -> Stage:
        """Set the scope's stage, after the gate; returns the stage it had."""
        current = self.current(entity=entity, workspace=workspace)
        result = self.gate(current, target, entity=entity, workspace=workspace)
        if not result.allowed and not force:
            raise GateRefused(current, target, result.reasons)

        def set_stage() -> None:
            self.store.set(
                target,
                entity=entity,
                workspace=workspace,
                by=by,
                reason=reason,
                forced=force and not result.allowed,
            )

        if current.authority is target.authority:
            set_stage()
            return current
        fence = self.convex_fence
        if fence is None:
            raise ConfigurationError(
                f"{current} -> {target} switches the authority, which needs the Convex fence:"
                " set CONVEX_URL and CONVEX_DEPLOY_KEY"
            )
        if target.authority is Store.POSTGRES:
            fence.set(Store.POSTGRES, entity=entity, workspace=workspace)
            if not self._drained("convex"):
                fence.set(Store.CONVEX, entity=entity, workspace=workspace)  # undo
                raise GateRefused(
                    current,
                    target,
                    [f"the Convex outbox did not drain within {self.drain_timeout:.0f}s"],
                )
            set_stage()
        else:
            set_stage()
            if not self._drained("postgres"):
                raise MigrationKitError(
                    f"the stage is {target}, but the PostgreSQL outbox did not drain within"
                    f" {self.drain_timeout:.0f}s, so Convex stays fenced and writes wait:"
                    " check the pg_to_convex worker, then run the same command again"
                )
            fence.set(Store.CONVEX, entity=entity, workspace=workspace)
        return current

    def _drained(self, which: str) -> bool:
        outbox = self.outboxes[which]
        deadline = time.monotonic() + self.drain_timeout
        while time.monotonic() < deadline:
            if outbox.backlog() == 0:
                return True
            time.sleep(0.05)
        return outbox.backlog() == 0

    def rollback(
        self,
        *,
        entity: str = ANY,
        workspace: str = ANY,
        force: bool = False,
        by: str,
        reason: str | None = None,
    ) -> Stage:
        """One step back; returns the new stage."""
        current = self.current(entity=entity, workspace=workspace)
        target = current.previous
        if target is None:
            raise GateRefused(current, current, ["convex_only is the first stage"])
        self.move(target, entity=entity, workspace=workspace, force=force, by=by, reason=reason)
        return target
