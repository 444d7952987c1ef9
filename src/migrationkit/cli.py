"""The ``migrationkit`` command.

Errors the kit raises on purpose print as one line on stderr with exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from migrationkit import __version__
from migrationkit.adapters.postgres import migrations
from migrationkit.adapters.postgres.database_url import (
    ENV_VAR,
    database_url_from_env,
    normalize_database_url,
    safe_url,
)
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.app_outbox import codegen as app_outbox_codegen
from migrationkit.cutover.control import CutoverControl
from migrationkit.cutover.gates import Thresholds
from migrationkit.cutover.stages import Stage
from migrationkit.doctor import cli as doctor_cli
from migrationkit.errors import ConfigurationError, MigrationKitError
from migrationkit.mirror import cli_backfill, cli_import, cli_introspect, cli_verify
from migrationkit.mirror.cli_support import ConfigOption, mirror_config, row_progress
from migrationkit.mirror.loading import selected_models
from migrationkit.retention import cli as retention_cli
from migrationkit.schema import convex_codegen

app = typer.Typer(no_args_is_help=True, help="Move a product from Convex to PostgreSQL.")
db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL schema (alembic migrations).")
app.add_typer(db_app, name="db")
codegen_app = typer.Typer(no_args_is_help=True, help="Generate code from the registered models.")
app.add_typer(codegen_app, name="codegen")
dlq_app = typer.Typer(no_args_is_help=True, help="Changes the worker set aside (dead letters).")
app.add_typer(dlq_app, name="dlq")
cutover_app = typer.Typer(no_args_is_help=True, help="The cutover stage, one step at a time.")
app.add_typer(cutover_app, name="cutover")
# Existing deployments: introspect, backfill and import (mirror tables).
cli_introspect.register(app)
cli_backfill.register(app)
cli_import.register(app)
cli_verify.register(app)
doctor_cli.register(app)
retention_cli.register(app)

EntityOption = Annotated[str, typer.Option("--entity", help="One entity (default: all).")]
WorkspaceOption = Annotated[str, typer.Option("--workspace", help="One workspace (default: all).")]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Move past the thresholds (recorded as forced); never skips the drain of an"
        " authority switch.",
    ),
]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Kept in the history.")]

# Piped output keeps whole lines (ids, errors) rather than an 80-column cut.
out_console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help=f"PostgreSQL URL; defaults to ${ENV_VAR}.", show_default=False),
]


def _url(given: str | None) -> str:
    url = normalize_database_url(given) if given else database_url_from_env()
    return url.render_as_string(hide_password=False)


VersionsOption = Annotated[
    Path | None,
    typer.Option(
        "--versions",
        help="A folder of your own revisions (e.g. the mirror tables'), applied with the kit's.",
        show_default=False,
    ),
]


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
    url: UrlOption = None,
    versions: VersionsOption = None,
) -> None:
    """Create or update the schema, row-level security included."""
    target = _url(url)
    migrations.upgrade(target, revision, versions)
    out_console.print(f"{safe_url(target)} is at revision {migrations.current_revision(target)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. base or -1.")],
    url: UrlOption = None,
    versions: VersionsOption = None,
) -> None:
    """Step the schema back to an earlier revision."""
    target = _url(url)
    migrations.downgrade(target, revision, versions)
    out_console.print(f"{safe_url(target)} is at revision {migrations.current_revision(target)}")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="The revision's title.")],
    versions: Annotated[
        Path, typer.Option("--versions", help="The folder your revisions are kept in.")
    ],
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Models to compare: a .py file (as introspect writes) or a module; repeatable.",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Write a migration for your models (alembic autogenerate) into --versions.

    The database must be at the head of the migrations (run `db upgrade
    --versions DIR` first). Apply the new revision with the same command.
    """
    from migrationkit.mirror.loading import import_models

    for where in models or []:
        import_models(where)
    written = migrations.revision(_url(url), message, versions)
    out_console.print(f"wrote {written}" if written else "nothing to write")


@db_app.command("current")
def db_current(url: UrlOption = None) -> None:
    """Print the schema revision the database is at."""
    target = _url(url)
    out_console.print(migrations.current_revision(target) or "none (empty database)")


@codegen_app.command("convex")
def codegen_convex(
    out: Annotated[Path, typer.Option("--out", help="The Convex functions directory.")],
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; fail if the files are out of date.")
    ] = False,
) -> None:
    """Write schema.ts, one functions module per entity and outbox.ts."""
    if check:
        stale = convex_codegen.stale_files(out)
        if stale:
            typer.echo(f"out of date in {out}: {', '.join(stale)}", err=True)
            raise typer.Exit(1)
        out_console.print(f"{out} is up to date")
        return
    for path in convex_codegen.write(out):
        out_console.print(f"wrote {path}")


@codegen_app.command("app-outbox")
def codegen_app_outbox(
    out: Annotated[
        Path,
        typer.Option("--out", help="A folder of the app's Convex directory (convex/migrationkit)."),
    ],
    config: ConfigOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; fail if the files are out of date.")
    ] = False,
) -> None:
    """Write the outbox an existing app adopts: tables.ts, wrap.ts, outbox.ts, config.ts.

    The tracked tables are the app's own tables the mirror config selects.
    See docs/app-outbox.md for the two edits that adopt it.
    """
    models = selected_models(mirror_config(config))
    if check:
        stale = app_outbox_codegen.stale_files(out, models)
        if stale:
            typer.echo(f"out of date in {out}: {', '.join(stale)}", err=True)
            raise typer.Exit(1)
        out_console.print(f"{out} is up to date")
        return
    for path in app_outbox_codegen.write(out, models):
        out_console.print(f"wrote {path}")


@app.command("worker")
def worker_command() -> None:
    """Run the outbox worker (`python -m migrationkit.worker`), configured from the environment."""
    from migrationkit.worker import main as worker_main

    raise typer.Exit(worker_main([]))


def _dead_letters() -> DeadLetterStore:
    return DeadLetterStore(make_engine(_url(None)))


@dlq_app.command("list")
def dlq_list(
    include_replayed: Annotated[
        bool, typer.Option("--all", help="Include dead letters already replayed.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
) -> None:
    """Show dead letters, oldest first."""
    store = _dead_letters()
    letters = store.list(limit=limit, include_replayed=include_replayed)
    if not letters:
        out_console.print("no dead letters")
        return
    table = Table("event", "entity", "workspace", "id", "version", "attempts", "failed", "error")
    for letter in letters:
        table.add_row(
            letter.event_id,
            f"{letter.entity} {letter.kind}",
            letter.workspace_id or "-",
            letter.entity_id or letter.convex_id or "-",
            str(letter.version),
            str(letter.attempts),
            letter.failed_at.strftime("%Y-%m-%d %H:%M:%S"),
            (letter.error[:80] + "...") if len(letter.error) > 80 else letter.error,
        )
    out_console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Dead letters to replay.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Apply dead letters again (after fixing their cause); each is applied at most once."""
    from migrationkit.outbox.replay import replay_dead_letters

    if not event_ids and not replay_all:
        raise ConfigurationError("name the event ids to replay, or pass --all")
    with row_progress(action="replaying") as progress:
        replayed, failed = replay_dead_letters(
            event_ids or None,
            lambda done, total: progress.update(
                "dead letters", done, done=done == total, total=total
            ),
        )
    for event_id, error in failed:
        typer.echo(f"still failing: {event_id}: {error}", err=True)
    out_console.print(f"replayed {replayed}, still failing {len(failed)}")
    if failed:
        raise typer.Exit(1)


def _control(
    max_backlog: int = 100, max_lag: float = 5.0, max_verify_age: float = 3600.0
) -> CutoverControl:
    from migrationkit.cutover.wiring import control_from_environment

    return control_from_environment(Thresholds(max_backlog, max_lag, max_verify_age))


def _operator() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


@cutover_app.command("status")
def cutover_status() -> None:
    """Show the stage of every scope and what each stage means."""
    control = _control()
    settings = control.settings()
    table = Table("entity", "workspace", "stage", "writes to", "reads from", "set by", "at")
    if not settings:
        out_console.print("no stage set: everything is at convex_only")
    for s in settings:
        table.add_row(
            s.entity,
            s.workspace,
            s.stage.value,
            s.stage.authority.value,
            s.stage.reads_from.value,
            s.updated_by,
            s.updated_at.strftime("%Y-%m-%d %H:%M:%S") if s.updated_at else "-",
        )
    if settings:
        out_console.print(table)
    for name, outbox in control.outboxes.items():
        try:
            backlog, age = outbox.backlog(), outbox.oldest_pending_age()
        except MigrationKitError as exc:
            out_console.print(f"{name} outbox: unavailable ({exc})")
            continue
        age_text = "-" if age is None else f"{age:.1f}s"
        out_console.print(f"{name} outbox: {backlog} pending, oldest {age_text}")


@cutover_app.command("set")
def cutover_set(
    stage: Annotated[str, typer.Argument(help=" | ".join(s.value for s in Stage))],
    entity: EntityOption = "*",
    workspace: WorkspaceOption = "*",
    force: ForceOption = False,
    reason: ReasonOption = None,
    max_backlog: Annotated[int, typer.Option(help="Gate: most changes waiting.")] = 100,
    max_lag: Annotated[float, typer.Option(help="Gate: oldest waiting change, seconds.")] = 5.0,
    max_verify_age: Annotated[
        float,
        typer.Option(
            help="Gate: into pg_reads or later, the last passing verify of the scope is at"
            " most this many seconds old."
        ),
    ] = 3600.0,
) -> None:
    """Move a scope to STAGE, if the gate allows it."""
    try:
        target = Stage(stage)
    except ValueError:
        raise ConfigurationError(
            f"unknown stage {stage!r}: one of {', '.join(s.value for s in Stage)}"
        ) from None
    control = _control(max_backlog, max_lag, max_verify_age)
    previous = control.move(
        target, entity=entity, workspace=workspace, force=force, by=_operator(), reason=reason
    )
    out_console.print(f"{entity}/{workspace}: {previous} -> {target}")


@cutover_app.command("rollback")
def cutover_rollback(
    entity: EntityOption = "*",
    workspace: WorkspaceOption = "*",
    force: ForceOption = False,
    reason: ReasonOption = None,
) -> None:
    """Move a scope one stage back."""
    control = _control()
    previous = control.current(entity=entity, workspace=workspace)
    target = control.rollback(
        entity=entity, workspace=workspace, force=force, by=_operator(), reason=reason
    )
    out_console.print(f"{entity}/{workspace}: {previous} -> {target}")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"migrationkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Move a product from Convex to PostgreSQL."""


def main() -> None:
    try:
        app()
    except MigrationKitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
