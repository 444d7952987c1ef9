"""Where a change-feed consumer keeps its position."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class CursorStore(Protocol):
    def load(self, name: str) -> int | None:
        """The saved cursor, or ``None`` if the consumer never saved one."""
        ...

    def save(self, name: str, cursor: int) -> None:
        """Persist ``cursor`` (after the batch it ends has been applied)."""
        ...
