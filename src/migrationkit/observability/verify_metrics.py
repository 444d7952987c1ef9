"""The last verify of each table, as Prometheus gauges read at scrape time.

``migrationkit verify`` runs and exits; its results live in ``verify_runs``.
This collector reads the newest run of each table when Prometheus scrapes,
so the worker's ``/metrics`` shows them (one small query per scrape):

    migrationkit_row_count_diff{table}           PostgreSQL rows minus Convex rows
    migrationkit_verify_mismatches{table}        differing rows located
    migrationkit_verify_passed{table}            1 when the run found the stores equal
    migrationkit_verify_age_seconds{table}       how long ago that run finished
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

from migrationkit.errors import MigrationKitError

__all__ = ["VerifyCollector"]

log = logging.getLogger("migrationkit.observability")

_LATEST = text(
    """
    SELECT DISTINCT ON (t->>'table')
        t->>'table',
        (t->>'row_count_diff')::bigint,
        (t->>'mismatches')::bigint,
        (t->>'passed')::boolean,
        extract(epoch FROM now() - r.finished_at)
    FROM verify_runs r, jsonb_array_elements(r.tables) t
    ORDER BY t->>'table', r.finished_at DESC
    """
)


class VerifyCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        diff = GaugeMetricFamily(
            "migrationkit_row_count_diff",
            "PostgreSQL rows minus Convex rows at the last verify of the table.",
            labels=["table"],
        )
        mismatches = GaugeMetricFamily(
            "migrationkit_verify_mismatches",
            "Differing rows the last verify of the table located.",
            labels=["table"],
        )
        passed = GaugeMetricFamily(
            "migrationkit_verify_passed",
            "1 when the last verify of the table found both stores equal.",
            labels=["table"],
        )
        age = GaugeMetricFamily(
            "migrationkit_verify_age_seconds",
            "Seconds since the last verify of the table finished.",
            labels=["table"],
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(_LATEST).all()
        except Exception as exc:  # a scrape must never fail for this
            log.warning("could not read verify_runs: %s", _first_line(exc))
            rows = []
        for table, count_diff, found, ok, seconds in rows:
            diff.add_metric([table], float(count_diff or 0))
            mismatches.add_metric([table], float(found or 0))
            passed.add_metric([table], 1.0 if ok else 0.0)
            age.add_metric([table], float(seconds or 0))
        yield from (diff, mismatches, passed, age)


def _first_line(exc: Exception) -> str:
    if isinstance(exc, MigrationKitError):
        return str(exc)
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
