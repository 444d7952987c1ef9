"""``retention plan``: what a run would archive and delete, as of ``now``.

Counts only, in one REPEATABLE READ snapshot, so the numbers of all tables
belong to one moment. Under the same ``now`` and with no writes in
between, a run does exactly this (the same ``steps``).

Reads every workspace at once: run it as an operator's role that bypasses
row-level security (as the worker does), never as the application's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select

from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.retention.policy import RetentionPolicy
from migrationkit.retention.report import RetentionReport
from migrationkit.retention.steps import steps
from migrationkit.schema.metadata import current_metadata
from migrationkit.schema.retention_tables import retention_purges_table

__all__ = ["plan"]


def plan(engine: Engine, policy: RetentionPolicy, now: datetime) -> RetentionReport:
    """The rows a run at ``now`` would archive or delete, per table and workspace."""
    report = RetentionReport(now=now)
    queue = retention_purges_table(current_metadata())
    with translated_errors(), engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            for step in steps(policy, now):
                t = step.table
                counted = conn.execute(
                    select(t.c.workspace_id, func.count())
                    .where(*step.due)
                    .group_by(t.c.workspace_id)
                )
                for workspace, rows in counted:
                    report.rows[(step.name, workspace, step.action)] += int(rows)
            report.convex_queue = int(
                conn.execute(select(func.count()).select_from(queue)).scalar_one()
            )
    return report
