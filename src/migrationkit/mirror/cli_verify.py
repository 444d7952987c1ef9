"""``migrationkit verify``: prove PostgreSQL holds what Convex holds, or show where not."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.domain.registry import model_for, registered_models
from migrationkit.errors import ConfigurationError
from migrationkit.mirror.backfill import TAIL_CURSOR
from migrationkit.mirror.cli_support import (
    ConfigOption,
    PostgresUrlOption,
    convex_client,
    database_url,
    mirror_config,
    row_progress,
)
from migrationkit.mirror.loading import import_models
from migrationkit.mirror.model import mirror_model_for, registered_mirrors
from migrationkit.verify.runner import ALL, VerifyReport, verify
from migrationkit.verify.targets import VerifyTarget, entity_target, mirror_target

#: The change-feed source's cursor for entity tables (MIGRATIONKIT_SOURCE=convex_deltas).
ENTITY_TAIL_CURSOR = "convex_deltas"
SHOWN_DIFFERENCES = 20


def _targets(
    entities: list[str], tables: list[str], config: ConfigOption
) -> tuple[list[VerifyTarget], str | None]:
    """The targets asked for (default: the mirror tables, else the entities), and
    the tail cursor that feeds all of them, if one does."""
    settings = mirror_config(config)
    if tables or not entities:
        try:
            import_models(settings.models)
        except ConfigurationError:
            if tables:
                raise
    mirrors = [mirror_model_for(t) for t in tables]
    if not tables and not entities:
        mirrors = [
            m for m in registered_mirrors() if settings.selects(m.mirror.qualified_convex_name)
        ]
    models = [model_for(e) for e in entities]
    if not mirrors and not entities:
        models = registered_models()
    targets = [*(entity_target(m) for m in models), *(mirror_target(m) for m in mirrors)]
    if not models:
        return targets, TAIL_CURSOR
    return targets, ENTITY_TAIL_CURSOR if not mirrors else None


def verify_command(
    entity: Annotated[
        list[str] | None,
        typer.Option("--entity", help="An entity of the kit's own (e.g. lead); repeatable."),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option("--table", help="A mirrored Convex table (t or component/t); repeatable."),
    ] = None,
    workspace: Annotated[
        str | None, typer.Option("--workspace", help="One workspace (default: all).")
    ] = None,
    settle: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds rows in flight (missing, extra, older) may take to arrive.",
        ),
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document, for CI.")] = False,
    config: ConfigOption = None,
    convex_url: Annotated[
        str | None,
        typer.Option("--convex-url", help="Defaults to $CONVEX_URL.", show_default=False),
    ] = None,
    url: PostgresUrlOption = None,
) -> None:
    """Compare PostgreSQL with Convex at one cut: counts and checksums per table and
    workspace, then the differing rows and fields. Exit code 0 only when equal.

    Default: every mirrored table of the config (else every entity). The deploy key
    comes from $CONVEX_DEPLOY_KEY. Each run is kept in verify_runs; the cutover
    gate asks for a recent passing one.
    """
    targets, tail = _targets(entity or [], table or [], config)
    names = sorted(t.name for t in targets)
    scope = ALL if not entity and not table else ",".join(names)
    engine = make_engine(database_url(url))
    try:
        # The bars go to stderr, so --json on stdout stays clean.
        with convex_client(convex_url) as client, row_progress(action="reading Convex") as progress:
            report = verify(
                engine,
                client,
                targets,
                scope=scope,
                workspace=workspace,
                tail_cursor=tail,
                settle=settle,
                progress=lambda table, rows, done: progress.update(table, rows, done=done),
            )
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        _show(report)
    raise typer.Exit(0 if report.passed else 1)


def _show(report: VerifyReport) -> None:
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    summary = Table(
        "table",
        "workspace",
        "Convex",
        "PostgreSQL",
        "checksum",
        "differences",
        title=f"verify at {report.cut} ({report.cut_source})",
    )
    for result in report.tables:
        for ws, counts in sorted(result.workspaces.items(), key=lambda i: str(i[0])):
            summary.add_row(
                result.name,
                ws or "-",
                str(counts.convex),
                str(counts.postgres),
                "[green]equal" if counts.checksums_equal else "[red]differs",
                str(sum(1 for d in result.differences if d.workspace == ws)),
            )
        if not result.workspaces:
            summary.add_row(result.name, "-", "0", "0", "[green]equal", "0")
    console.print(summary)
    for result in report.tables:
        for difference in result.differences[:SHOWN_DIFFERENCES]:
            console.print(f"{result.name}: {difference.describe()}", highlight=False)
        if len(result.differences) > SHOWN_DIFFERENCES:
            more = len(result.differences) - SHOWN_DIFFERENCES
            console.print(f"{result.name}: ... and {more} more (see --json)", highlight=False)
    settled = sum(t.settled for t in report.tables)
    if settled:
        console.print(f"{settled} rows were in flight at the cut and arrived while verifying")
    verdict = "[green]equal" if report.passed else "[red]NOT equal"
    console.print(f"{verdict}[/] (run {report.run_id})")


def register(app: typer.Typer) -> None:
    """Add the command to the ``migrationkit`` app."""
    app.command("verify")(verify_command)
