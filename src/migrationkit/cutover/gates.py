"""Gates: what must hold before the stage moves.

Moving forward needs the store about to be relied on caught up: until
``pg_primary`` that is PostgreSQL, fed from Convex's outbox; leaving
``pg_primary`` backwards (or going on to ``pg_only``) needs Convex caught up,
fed from PostgreSQL's outbox. "Caught up" means the feeding outbox's backlog
and its oldest pending change's age are under the thresholds.

Moving forward into ``pg_reads`` or later also needs proof that PostgreSQL
holds what Convex holds: a ``migrationkit verify`` of the scope that passed
within ``max_verify_age`` seconds. Backlog says nothing is waiting; only a
verify says nothing was lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from migrationkit.cutover.stages import Stage


class Backlog(Protocol):
    def backlog(self) -> int | None: ...
    def oldest_pending_age(self) -> float | None: ...


class Verifications(Protocol):
    def passed_age(self, entity: str, workspace: str) -> float | None:
        """Seconds since the last passing verify that covers the scope (None: never)."""
        ...


@dataclass(frozen=True)
class Thresholds:
    max_backlog: int = 100
    max_lag_seconds: float = 5.0
    #: How old a passing verify may be for a move into pg_reads or later.
    max_verify_age_seconds: float = 3600.0


#: Stages that rely on PostgreSQL's data: entering one needs a recent verify.
VERIFIED_STAGES = (Stage.PG_READS, Stage.PG_PRIMARY, Stage.PG_ONLY)


def needs_verify(current: Stage, target: Stage) -> bool:
    return target.is_forward_of(current) and target in VERIFIED_STAGES


@dataclass
class GateResult:
    allowed: bool
    reasons: list[str] = field(default_factory=list)


def feeding_outbox(current: Stage, target: Stage) -> str | None:
    """Which outbox must be drained for this move: "convex", "postgres" or None."""
    if target.is_forward_of(current):
        if target in (Stage.SHADOW_WRITE, Stage.SHADOW_READ):
            return None  # PostgreSQL is not relied on yet
        if target in (Stage.PG_READS, Stage.PG_PRIMARY):
            return "convex"
        return "postgres"  # pg_only: Convex stops being fed; it should have everything
    if current is Stage.PG_PRIMARY or current is Stage.PG_ONLY:
        return "postgres"  # Convex becomes authoritative again: it must have every write
    return None


def check(
    current: Stage,
    target: Stage,
    outboxes: dict[str, Backlog],
    thresholds: Thresholds | None = None,
    *,
    verifications: Verifications | None = None,
    entity: str = "*",
    workspace: str = "*",
) -> GateResult:
    thresholds = thresholds or Thresholds()
    reasons = []
    if verifications is not None and needs_verify(current, target):
        age = verifications.passed_age(entity, workspace)
        limit = thresholds.max_verify_age_seconds
        scope = f"entity {entity}, workspace {workspace}"
        if age is None:
            reasons.append(f"no passing verify of {scope} (run `migrationkit verify`)")
        elif age > limit:
            reasons.append(
                f"the last passing verify of {scope} is {age:.0f}s old (at most {limit:.0f}s):"
                " run `migrationkit verify` again"
            )
    which = feeding_outbox(current, target)
    if which is None or current is target:
        return GateResult(not reasons, reasons)
    outbox = outboxes[which]
    backlog = outbox.backlog()
    if backlog is not None and backlog > thresholds.max_backlog:
        reasons.append(
            f"the {which} outbox holds {backlog} changes (at most {thresholds.max_backlog})"
        )
    age = outbox.oldest_pending_age()
    if age is not None and age > thresholds.max_lag_seconds:
        reasons.append(
            f"the oldest pending change in the {which} outbox is {age:.1f}s old"
            f" (at most {thresholds.max_lag_seconds:.1f}s)"
        )
    return GateResult(not reasons, reasons)
