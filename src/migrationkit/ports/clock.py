"""The clock port: adapters ask it for "now" so tests can control time."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC now, at millisecond precision."""
        ...
