"""Which failures may be retried, and how long to wait before the next try.

A retry is safe when Convex certainly did not run the call: it answered 429
(rate limited) or 503 (overloaded, OCC contention), or the connection failed
before the request left this process. When the request may have reached the
server (a read timeout, a dropped connection), retrying could run a mutation
twice: only calls that are harmless to repeat go again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

__all__ = ["RETRY_STATUSES", "Backoff", "maybe_sent", "not_sent", "parse_retry_after"]

RETRY_STATUSES = frozenset({429, 503})

# The connection never carried the request: nothing ran.
not_sent: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# The request may have been read and run; only the reply was lost. Checked
# after ``not_sent``, whose classes are subclasses of these.
maybe_sent: tuple[type[httpx.HTTPError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: a uniform wait in [0, min(cap, base * 2**n))."""

    base: float = 0.05
    cap: float = 2.0

    def delay(self, attempt: int, jitter: float, retry_after: float | None = None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based).

        ``jitter`` is a draw from [0, 1). A server's ``Retry-After`` wins:
        it knows when it will have room again.
        """
        if retry_after is not None:
            return retry_after
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 60))
        return max(0.0, min(jitter, 1.0)) * ceiling


def parse_retry_after(header: str | None) -> float | None:
    """Seconds from a numeric ``Retry-After``; ``None`` when absent or an HTTP date."""
    if header is None:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
