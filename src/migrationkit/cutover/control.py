"""Moving the stage: the operations behind ``migrationkit cutover``."""

from __future__ import annotations

from migrationkit.cutover.gates import Backlog, GateResult, Thresholds, check
from migrationkit.cutover.stages import Stage
from migrationkit.cutover.store import ANY, PostgresStageStore, StageSetting, resolve
from migrationkit.errors import MigrationKitError


class GateRefused(MigrationKitError):
    """The move is not safe yet; ``reasons`` says why. ``--force`` overrides."""

    def __init__(self, current: Stage, target: Stage, reasons: list[str]) -> None:
        super().__init__(
            f"refusing {current} -> {target}: " + "; ".join(reasons) + " (use --force to override)"
        )
        self.reasons = reasons


class CutoverControl:
    def __init__(
        self,
        store: PostgresStageStore,
        outboxes: dict[str, Backlog],
        thresholds: Thresholds | None = None,
    ) -> None:
        self.store = store
        self.outboxes = outboxes
        self.thresholds = thresholds or Thresholds()

    def current(self, *, entity: str = ANY, workspace: str = ANY) -> Stage:
        return resolve(self.store.snapshot(), entity, workspace)

    def settings(self) -> list[StageSetting]:
        return self.store.settings()

    def gate(self, current: Stage, target: Stage) -> GateResult:
        return check(current, target, self.outboxes, self.thresholds)

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
        result = self.gate(current, target)
        if not result.allowed and not force:
            raise GateRefused(current, target, result.reasons)
        self.store.set(
            target,
            entity=entity,
            workspace=workspace,
            by=by,
            reason=reason,
            forced=force and not result.allowed,
        )
        return current

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
