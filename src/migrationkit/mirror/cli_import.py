"""``migrationkit import``: load an export ZIP (``npx convex export``) into the mirror tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.errors import ConfigurationError
from migrationkit.mirror.cli_support import (
    ConfigOption,
    PostgresUrlOption,
    database_url,
    mirror_config,
    row_progress,
)
from migrationkit.mirror.loading import import_models
from migrationkit.mirror.zip_import import ImportReport, import_zip


def import_command(
    export: Annotated[
        Path, typer.Argument(help="The ZIP `npx convex export` wrote.", show_default=False)
    ],
    config: ConfigOption = None,
    snapshot_ts: Annotated[
        int | None,
        typer.Option(
            "--snapshot-ts",
            min=0,
            help="The _ts imported rows get (default 0: any revision from the change feed is"
            " newer). Pass the export's snapshot timestamp to start the tail there.",
            show_default=False,
        ),
    ] = None,
    start_tail: Annotated[
        bool,
        typer.Option(
            "--start-tail",
            help="Save the mirror tail's cursor at --snapshot-ts, with the rows.",
        ),
    ] = False,
    url: PostgresUrlOption = None,
) -> None:
    """Import every table of an export ZIP into its mirror table, in one transaction.

    Any error rolls the whole import back. Files in _storage are listed, not copied.
    """
    if start_tail and snapshot_ts is None:
        raise ConfigurationError(
            "--start-tail needs --snapshot-ts: the tail starts at the export's snapshot timestamp"
        )
    settings = mirror_config(config)
    import_models(settings.models)
    engine = make_engine(database_url(url))
    try:
        with row_progress() as progress:
            report = import_zip(
                engine,
                export,
                settings,
                snapshot_ts=snapshot_ts or 0,
                start_tail=start_tail,
                progress=progress,
            )
    finally:
        engine.dispose()
    print_summary(report, Console())


def print_summary(report: ImportReport, console: Console) -> None:
    for table in report.tables:
        console.print(
            f"{table.table} -> {table.pg_table}: {table.rows} rows ({table.format} format),"
            f" {table.applied} written, {table.rows_per_second:,.0f} rows/s",
            highlight=False,
        )
    for name in report.skipped:
        console.print(f"{name}: skipped (excluded by the config)", highlight=False)
    for name in report.system:
        console.print(f"{name}: skipped (a Convex system table)", highlight=False)
    for name in report.absent:
        console.print(f"{name}: not in the export (left as it is)", highlight=False)
    console.print(
        f"imported {report.rows} rows in {len(report.tables)} tables from {report.path}"
        f" at _ts {report.snapshot_ts}; skipped {len(report.skipped)} tables",
        highlight=False,
    )
    if report.storage_files:
        console.print(
            f"_storage: {report.storage_files} files ({report.storage_bytes:,} bytes) are listed"
            " in the export but not copied: file storage is out of scope",
            highlight=False,
        )
    else:
        console.print("_storage: no files in the export", highlight=False)
    if report.tail_started:
        console.print(
            f"the mirror tail starts after {report.snapshot_ts}"
            " (run the worker with MIGRATIONKIT_SOURCE=convex_mirror)",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the command to the ``migrationkit`` app."""
    app.command("import")(import_command)
