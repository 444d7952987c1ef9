"""Time as the kit records it."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC, truncated to milliseconds.

    Convex keeps times as float milliseconds and PostgreSQL as microseconds;
    recording milliseconds everywhere makes a timestamp survive a round trip
    through either store unchanged.
    """
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


class SystemClock:
    """The real clock; tests inject their own object with the same ``now``."""

    def now(self) -> datetime:
        return utc_now()
