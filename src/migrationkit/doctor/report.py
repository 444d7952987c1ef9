"""Check results and how they are shown: a table, plain lines or JSON.

Every text a check produced passes through :class:`Secrets` before it is
shown, as a second line of defence: the checks already build their messages
without passwords and keys, but a driver's message may echo what it was given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Check", "Report", "Secrets", "Status", "render_json", "render_plain", "render_table"]

#: Shorter strings are not scrubbed: striking every "a" from the output would
#: hide more than it protects. The checks never print a password to begin with.
_SHORTEST_SCRUBBED = 4


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    #: Not run because an earlier check failed or nothing was configured for it.
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, what was found, how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


class Secrets:
    """Strings that must never be shown (passwords, keys), struck from any text."""

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        self._values: set[str] = set()
        self.add(*values)

    def add(self, *values: str | None) -> None:
        for value in values:
            if value and len(value) >= _SHORTEST_SCRUBBED:
                self._values.add(value)

    def __call__(self, text: str) -> str:
        # Longest first: a secret that contains another is struck whole.
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, "<redacted>")
        return text

    def __repr__(self) -> str:
        return f"Secrets(<{len(self._values)} values>)"


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @classmethod
    def of(cls, checks: Sequence[Check], secrets: Secrets) -> Report:
        scrubbed = [
            replace(
                c,
                detail=secrets(c.detail),
                fix=secrets(c.fix) if c.fix is not None else None,
            )
            for c in checks
        ]
        return cls(tuple(scrubbed))

    @property
    def failed(self) -> bool:
        return any(c.status is Status.FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (warnings allowed), 1 otherwise."""
        return 1 if self.failed else 0

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for c in self.checks if c.status is s) for s in Status}

    def summary(self) -> str:
        counts = self.counts()
        parts = [
            f"{counts[s.value]} {s.value}" for s in Status if counts[s.value] or s is Status.OK
        ]
        verdict = "something failed" if self.failed else "nothing failed"
        return f"doctor: {', '.join(parts)}: {verdict}"


def plain_line(check: Check) -> str:
    line = f"{check.status.value:<4}  {check.name}: {check.detail}"
    return f"{line} -- fix: {check.fix}" if check.fix else line


def render_plain(report: Report) -> str:
    return "\n".join([*(plain_line(c) for c in report.checks), report.summary()]) + "\n"


def render_json(report: Report) -> str:
    payload: dict[str, Any] = {
        "ok": not report.failed,
        "counts": report.counts(),
        "checks": [
            {"check": c.name, "status": c.status.value, "detail": c.detail, "fix": c.fix}
            for c in report.checks
        ],
    }
    return json.dumps(payload, indent=2) + "\n"


_STYLES = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}


def render_table(report: Report, console: Console) -> None:
    # Text objects, not strings: a detail holding "[...]" is not rich markup.
    table = Table("", "check", "result", "fix", show_lines=False)
    for c in report.checks:
        table.add_row(
            Text(c.status.value, style=_STYLES[c.status]),
            Text(c.name),
            Text(c.detail),
            Text(c.fix or ""),
        )
    console.print(table)
    console.print(
        Text(report.summary(), style=_STYLES[Status.FAIL if report.failed else Status.OK])
    )
