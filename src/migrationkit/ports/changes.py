"""Ports of the pipeline: where changes come from and where they go.

The worker loop is: ``batch = source.fetch(n)``; ``sink.apply(batch.changes)``
(one transaction, idempotent); then ``source.ack(batch)``. A crash anywhere
replays the batch, which the sink's version guard and inbox make harmless.
Nothing is acknowledged before the sink has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from migrationkit.domain.change import Change


@dataclass
class ChangeBatch:
    """Changes fetched together, and what the source needs to acknowledge them."""

    changes: list[Change]
    #: Source-specific: a delta cursor, the claimed rows' lease, ...
    token: Any = None
    #: The source knows more is waiting: fetch again without idling.
    more: bool = False


@dataclass
class ApplyResult:
    """What a sink did with a batch."""

    applied: int = 0
    #: Already recorded in the inbox: a duplicate or a replay.
    duplicates: int = 0
    #: Older than what the store holds: arrived out of order, changed nothing.
    stale: int = 0
    failed_event_ids: list[str] = field(default_factory=list)


@runtime_checkable
class ChangeSource(Protocol):
    name: str

    def fetch(self, limit: int) -> ChangeBatch:
        """Up to ``limit`` changes not yet acknowledged (possibly none)."""
        ...

    def ack(self, batch: ChangeBatch) -> None:
        """The sink committed ``batch``: do not hand it out again."""
        ...

    def backlog(self) -> int | None:
        """Changes waiting, if the source can tell cheaply."""
        ...


@runtime_checkable
class ChangeSink(Protocol):
    name: str

    def apply(self, changes: Sequence[Change]) -> ApplyResult:
        """Apply in one transaction; duplicates and stale versions change nothing."""
        ...
