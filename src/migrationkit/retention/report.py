"""What a retention plan found, or a run did: row counts per table,
workspace and action, comparable between the two."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrationkit.retention.steps import Action

__all__ = ["RetentionReport", "Tally"]

#: (table the rows leave, workspace, action) -> rows.
Tally = Counter[tuple[str, str, Action]]


@dataclass
class RetentionReport:
    """``rows``: rows archived or deleted (planned, or done) per table the
    rows leave, workspace and action; ``convex_queue``: rows removed here that
    Convex has yet to remove; ``convex_purged``: of those, removed by a run."""

    now: datetime
    rows: Tally = field(default_factory=Counter)
    convex_queue: int = 0
    convex_purged: int = 0

    def lines(self) -> list[tuple[str, str, Action, int]]:
        """(table, workspace, action, rows), sorted; no zero lines."""
        return sorted((t, w, a, n) for (t, w, a), n in self.rows.items() if n)

    def total(self, action: Action | None = None) -> int:
        return sum(n for (_, _, a), n in self.rows.items() if action is None or a is action)

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "rows": [
                {"table": t, "workspace": w, "action": a.value, "rows": n}
                for t, w, a, n in self.lines()
            ],
            "archived": self.total(Action.ARCHIVE),
            "deleted": self.total(Action.DELETE),
            "convex_queue": self.convex_queue,
            "convex_purged": self.convex_purged,
        }
