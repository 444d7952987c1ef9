"""``verify``: every target compared at one cut, the outcome recorded.

The cut: where the change-feed tail has applied up to (its cursor), when
every target is fed by it and the cursor is still readable; PostgreSQL then
holds exactly the cut, and only rows it wrote after it are set aside. Else
a fresh snapshot, and replication in flight is given ``settle`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.errors import ConfigurationError, ResyncRequired
from migrationkit.schema.metadata import metadata
from migrationkit.schema.pipeline_tables import verify_runs_table
from migrationkit.verify.engine import ReadProgress, TableResult, compare_table
from migrationkit.verify.targets import VerifyTarget

__all__ = ["ALL", "VerifyReport", "record", "verify"]

#: The scope of a run over every target.
ALL = "*"
#: Differences kept per table in ``verify_runs`` (all are counted).
KEPT_DIFFERENCES = 100


@dataclass
class VerifyReport:
    scope: str
    workspace: str | None
    cut: int
    #: Where the cut came from: "tail cursor" or "fresh snapshot".
    cut_source: str
    tables: list[TableResult]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    run_id: int | None = None

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tables)

    def as_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "workspace": self.workspace,
            "cut": self.cut,
            "cut_source": self.cut_source,
            "passed": self.passed,
            "run_id": self.run_id,
            "tables": [_table_json(t) for t in self.tables],
        }


def _table_json(result: TableResult, limit: int | None = None) -> dict[str, Any]:
    differences = result.differences[:limit] if limit else result.differences
    return {
        "table": result.name,
        "passed": result.passed,
        "convex_rows": result.convex_rows,
        "postgres_rows": result.postgres_rows,
        "row_count_diff": result.row_count_diff,
        "changed_after_cut": result.changed_after_cut,
        "ranges_checked": result.ranges_checked,
        "settled": result.settled,
        "mismatches": len(result.differences),
        "workspaces": {
            str(ws): {"convex": c.convex, "postgres": c.postgres, "equal": c.checksums_equal}
            for ws, c in sorted(result.workspaces.items(), key=lambda i: str(i[0]))
        },
        "differences": [
            {
                "key": list(d.key),
                "workspace": d.workspace,
                "kind": d.kind,
                "fields": list(d.fields),
                "text": d.describe(),
            }
            for d in differences
        ],
    }


def _cut(
    engine: Engine, client: ConvexClient, probe: VerifyTarget, tail_cursor: str | None
) -> tuple[int, str]:
    """The cut to compare at, and where it came from."""
    extra = {"component": probe.component} if probe.component else None
    if tail_cursor is not None:
        cursor = CursorStore(engine).load(tail_cursor)
        if cursor is not None:
            try:
                # Still readable? (A snapshot older than the retention is refused.)
                client.list_snapshot(
                    snapshot=cursor, table_name=probe.convex_table, extra_params=extra
                )
                return cursor, "tail cursor"
            except ResyncRequired:
                pass  # compare at a fresh cut instead
    page = client.list_snapshot(table_name=probe.convex_table, extra_params=extra)
    return page.snapshot, "fresh snapshot"


def verify(
    engine: Engine,
    client: ConvexClient,
    targets: Sequence[VerifyTarget],
    *,
    scope: str = ALL,
    workspace: str | None = None,
    tail_cursor: str | None = None,
    settle: float = 5.0,
    page_size: int | None = None,
    progress: ReadProgress | None = None,
) -> VerifyReport:
    """Compare every target at one cut; record and return the outcome."""
    if not targets:
        raise ConfigurationError("nothing to verify: no entity or mirror table selected")
    cut, source = _cut(engine, client, targets[0], tail_cursor)
    report = VerifyReport(scope, workspace, cut, source, [])
    started = time.monotonic()
    for target in targets:
        report.tables.append(
            compare_table(
                engine,
                client,
                target,
                cut,
                workspace=workspace,
                settle=max(0.0, settle - (time.monotonic() - started)) if settle else 0.0,
                page_size=page_size,
                progress=progress,
            )
        )
    report.finished_at = datetime.now(UTC)
    report.run_id = record(engine, report)
    return report


def record(engine: Engine, report: VerifyReport) -> int:
    """Store the run in ``verify_runs``; its id."""
    runs = verify_runs_table(metadata)
    values = {
        "scope": report.scope,
        "workspace": report.workspace,
        "started_at": report.started_at,
        "finished_at": report.finished_at or datetime.now(UTC),
        "snapshot": report.cut,
        "passed": report.passed,
        "convex_rows": sum(t.convex_rows for t in report.tables),
        "postgres_rows": sum(t.postgres_rows for t in report.tables),
        "mismatches": sum(len(t.differences) for t in report.tables),
        "tables": [_table_json(t, KEPT_DIFFERENCES) for t in report.tables],
    }
    with translated_errors(), engine.begin() as conn:
        return int(conn.execute(insert(runs).values(values).returning(runs.c.id)).scalar_one())
