"""``migrationkit backfill``: copy the mirrored tables from one Convex snapshot."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror.backfill import Backfill, TableProgress
from migrationkit.mirror.cli_support import (
    ConfigOption,
    convex_client,
    database_url,
    mirror_config,
    row_progress,
)
from migrationkit.mirror.loading import selected_models


def backfill(
    config: ConfigOption = None,
    convex_url: Annotated[
        str | None,
        typer.Option("--convex-url", help="Defaults to $CONVEX_URL.", show_default=False),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="PostgreSQL URL; defaults to $MIGRATIONKIT_DATABASE_URL.",
            show_default=False,
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Forget a saved backfill and start from a new snapshot."),
    ] = False,
    name: Annotated[str, typer.Option("--name", help="Names the saved place.")] = "default",
) -> None:
    """Copy every mirrored table from one consistent snapshot, then start the tail there.

    The deploy key comes from $CONVEX_DEPLOY_KEY. Killed, it resumes where it
    stopped when run again. Then run the worker with MIGRATIONKIT_SOURCE=convex_mirror.
    """
    settings = mirror_config(config)
    models = selected_models(settings)
    engine = make_engine(database_url(url))
    console = Console()
    try:
        with convex_client(convex_url) as client, row_progress() as progress:

            def show(table: TableProgress) -> None:
                progress.update(
                    table.table,
                    table.rows,
                    done=table.done,
                    total=table.expected,
                    rate=table.rows_per_second,
                )

            job = Backfill(client, engine, models, name=name, on_page=show)
            if restart:
                job.forget()
            report = job.run()
    finally:
        engine.dispose()
    for table in report.resumed:
        console.print(f"{table}: already copied (resumed run)")
    console.print(
        f"backfilled {report.rows} rows in {len(report.tables)} tables at snapshot"
        f" {report.snapshot}; the change-feed tail starts there"
        " (run the worker with MIGRATIONKIT_SOURCE=convex_mirror)"
    )


def register(app: typer.Typer) -> None:
    """Add the command to the ``migrationkit`` app."""
    app.command("backfill")(backfill)
