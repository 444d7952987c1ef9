"""``migrationkit retention``: plan, run, and workspace deletion requests.

The PostgreSQL URL must be an operator's (a role that bypasses row-level
security, as the worker's): retention spans every workspace. Convex is
purged too when ``--convex-url`` or ``$CONVEX_URL`` names it (with
``$CONVEX_DEPLOY_KEY``); without it, removals wait in ``retention_purges``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from migrationkit.adapters.postgres.database_url import ENV_VAR
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.domain.clock import utc_now
from migrationkit.errors import ConfigurationError
from migrationkit.mirror.cli_support import CONVEX_URL, convex_client, database_url, row_progress
from migrationkit.retention.planner import plan
from migrationkit.retention.policy import POLICY_ENV, RetentionPolicy, load_policy
from migrationkit.retention.replica import ConvexReplica
from migrationkit.retention.report import RetentionReport
from migrationkit.retention.runner import DEFAULT_BATCH_SIZE, RetentionRunner
from migrationkit.retention.steps import Action
from migrationkit.retention.workspaces import DeletionRequest, TickReport, WorkspaceDeletions

__all__ = ["register", "retention_app"]

retention_app = typer.Typer(
    no_args_is_help=True,
    help="The retention policy (spec/data-retention.yaml) and workspace deletion.",
)
workspace_app = typer.Typer(no_args_is_help=True, help="Delete a workspace, after a grace period.")
retention_app.add_typer(workspace_app, name="workspace")

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)

PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help=f"The policy file; defaults to ${POLICY_ENV}, else spec/data-retention.yaml.",
        show_default=False,
    ),
]
NowOption = Annotated[
    str | None,
    typer.Option(
        "--now",
        help="Act as of this ISO 8601 time with a zone (e.g. 2027-01-01T00:00:00Z); default: now.",
        show_default=False,
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help=f"PostgreSQL URL (an operator's); defaults to ${ENV_VAR}.", show_default=False
    ),
]
ConvexOption = Annotated[
    str | None,
    typer.Option(
        "--convex-url",
        help=f"Purge Convex too; defaults to ${CONVEX_URL} (key: $CONVEX_DEPLOY_KEY).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document.")]
ByOption = Annotated[str, typer.Option("--by", help="Who asks (kept, and in the audit log).")]


def register(app: typer.Typer) -> None:
    """Add ``retention`` to the ``migrationkit`` app."""
    app.add_typer(retention_app, name="retention")


class FixedClock:
    """``--now``: every step of the command sees this one moment."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"--now {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"--now {value!r} has no time zone (add Z or +00:00)")
    return moment


@contextmanager
def _engine(url: str | None) -> Iterator[Engine]:
    engine = make_engine(database_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def _replica(url: str | None) -> ConvexReplica | None:
    if not (url or os.environ.get(CONVEX_URL)):
        return None
    return ConvexReplica(convex_client(url))


def _clock(now: str | None) -> FixedClock | None:
    moment = parse_now(now)
    return None if moment is None else FixedClock(moment)


def _print_report(title: str, report: RetentionReport, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
        return
    table = Table(title=f"{title} as of {report.now.isoformat()}")
    for column in ("table", "workspace", "action"):
        table.add_column(column)
    table.add_column("rows", justify="right")
    for name, workspace, action, rows in report.lines():
        table.add_row(name, workspace, action.value, str(rows))
    out.print(table)
    out.print(
        f"archived {report.total(Action.ARCHIVE)}, deleted {report.total(Action.DELETE)};"
        f" Convex: {report.convex_purged} purged, {report.convex_queue} waiting"
    )


@retention_app.command("plan")
def plan_command(
    policy: PolicyOption = None,
    now: NowOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """What a run would archive and delete, per table and workspace (changes nothing)."""
    rules = load_policy(policy)
    moment = parse_now(now) or utc_now()
    with _engine(url) as engine:
        report = plan(engine, rules, moment)
    _print_report("retention plan", report, as_json)


@retention_app.command("run")
def run_command(
    policy: PolicyOption = None,
    now: NowOption = None,
    url: UrlOption = None,
    convex_url: ConvexOption = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per transaction.")
    ] = DEFAULT_BATCH_SIZE,
    as_json: JsonOption = False,
) -> None:
    """Archive and delete what the policy says, then workspace deletions' notices and purges."""
    rules: RetentionPolicy = load_policy(policy)
    clock = _clock(now)
    replica = _replica(convex_url)
    with _engine(url) as engine:
        runner = RetentionRunner(engine, rules, clock=clock, replica=replica, batch_size=batch_size)
        with row_progress(action="archiving or deleting") as progress:
            report = runner.run(
                progress=lambda step, rows, done: progress.update(step, rows, done=done)
            )
        deletions = WorkspaceDeletions(
            engine, rules.workspace_deletion, clock=clock, replica=replica, batch_size=batch_size
        )
        ticked = deletions.tick()
    if as_json:
        document = report.as_dict() | {"workspaces": _tick_dict(ticked)}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    _print_report("retention run", report, as_json=False)
    for notice in ticked.notices:
        out.print(f"notice: {notice.workspace} {notice.topic} {notice.payload.get('days_before')}")
    for purged in ticked.purged:
        out.print(f"purged: workspace {purged.workspace} (request {purged.id})")


def _tick_dict(ticked: TickReport) -> dict[str, object]:
    return {
        "notices": [
            {
                "workspace": n.workspace,
                "topic": n.topic,
                "days_before": n.payload.get("days_before"),
            }
            for n in ticked.notices
        ],
        "purged": [{"workspace": p.workspace, "request": p.id} for p in ticked.purged],
    }


def _deletions(policy: Path | None, engine: Engine) -> WorkspaceDeletions:
    return WorkspaceDeletions(engine, load_policy(policy).workspace_deletion)


def _print_request(request: DeletionRequest) -> None:
    out.print(
        f"workspace {request.workspace}: {request.status}, requested by {request.requested_by}"
        f" at {request.requested_at.isoformat()}, due {request.due_at.isoformat()}"
        f" (request {request.id})"
    )


@workspace_app.command("request")
def workspace_request(
    workspace: Annotated[str, typer.Argument(help="The workspace to delete.")],
    by: ByOption,
    policy: PolicyOption = None,
    now: NowOption = None,
    url: UrlOption = None,
) -> None:
    """Ask for a workspace's deletion: purged once the grace period is over."""
    with _engine(url) as engine:
        request = _deletions(policy, engine).request(workspace, by, parse_now(now))
    _print_request(request)


@workspace_app.command("cancel")
def workspace_cancel(
    workspace: Annotated[str, typer.Argument(help="The workspace to keep.")],
    by: ByOption,
    policy: PolicyOption = None,
    now: NowOption = None,
    url: UrlOption = None,
) -> None:
    """Cancel a workspace's deletion, inside its grace period."""
    with _engine(url) as engine:
        request = _deletions(policy, engine).cancel(workspace, by, parse_now(now))
    _print_request(request)


@workspace_app.command("status")
def workspace_status(
    workspace: Annotated[str, typer.Argument(help="The workspace.")],
    policy: PolicyOption = None,
    url: UrlOption = None,
) -> None:
    """The workspace's latest deletion request, if any."""
    with _engine(url) as engine:
        request = _deletions(policy, engine).current(workspace)
    if request is None:
        out.print(f"workspace {workspace}: no deletion requested")
        return
    _print_request(request)
