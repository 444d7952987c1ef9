"""``migrationkit doctor``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from migrationkit.adapters.postgres.database_url import ENV_VAR
from migrationkit.mirror.cli_support import CONVEX_DEPLOY_KEY, CONVEX_URL, ConfigOption

from .postgres import Role
from .report import render_json, render_plain, render_table
from .run import DoctorSettings, run_doctor


def register(app: typer.Typer) -> None:
    """Add the command to the ``migrationkit`` app."""
    app.command("doctor")(doctor)


def doctor(
    url: Annotated[
        str | None,
        typer.Option("--url", help=f"PostgreSQL URL; defaults to ${ENV_VAR}.", show_default=False),
    ] = None,
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="Whose login the URL is: app (RLS must apply to it) or worker (must bypass RLS).",
        ),
    ] = Role.APP,
    versions: Annotated[
        Path | None,
        typer.Option(
            "--versions",
            help="Your own revisions folder (as for `db upgrade --versions`): head includes them.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    convex_url: Annotated[
        str | None,
        typer.Option(
            "--convex-url",
            help=f"The deployment's URL; defaults to ${CONVEX_URL}. The key: ${CONVEX_DEPLOY_KEY}.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1.0, help="Seconds per network step.")
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document, for CI.")] = False,
) -> None:
    """Check the wiring before anything runs: one line per check (ok, warn or
    fail, with the fix). Exits 1 when a check failed; warnings do not fail."""
    settings = DoctorSettings(
        database_url=url or os.environ.get(ENV_VAR),
        convex_url=convex_url or os.environ.get(CONVEX_URL),
        deploy_key=os.environ.get(CONVEX_DEPLOY_KEY),
        role=role,
        versions=versions,
        config=config,
        timeout=timeout,
    )
    report = run_doctor(settings)
    if as_json:
        sys.stdout.write(render_json(report))
    elif sys.stdout.isatty():
        render_table(report, Console())
    else:
        sys.stdout.write(render_plain(report))
    raise typer.Exit(report.exit_code)
