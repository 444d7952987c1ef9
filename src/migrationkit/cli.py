"""The ``migrationkit`` command.

Errors the kit raises on purpose print as one line on stderr with exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from migrationkit.adapters.postgres import migrations
from migrationkit.adapters.postgres.database_url import (
    ENV_VAR,
    database_url_from_env,
    normalize_database_url,
    safe_url,
)
from migrationkit.errors import MigrationKitError
from migrationkit.schema import convex_codegen

app = typer.Typer(no_args_is_help=True, help="Move a product from Convex to PostgreSQL.")
db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL schema (alembic migrations).")
app.add_typer(db_app, name="db")
codegen_app = typer.Typer(no_args_is_help=True, help="Generate code from the registered models.")
app.add_typer(codegen_app, name="codegen")

out_console = Console(soft_wrap=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help=f"PostgreSQL URL; defaults to ${ENV_VAR}.", show_default=False),
]


def _url(given: str | None) -> str:
    url = normalize_database_url(given) if given else database_url_from_env()
    return url.render_as_string(hide_password=False)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    url: UrlOption = None,
) -> None:
    """Create or update the schema, row-level security included."""
    target = _url(url)
    migrations.upgrade(target, revision)
    out_console.print(f"{safe_url(target)} is at revision {migrations.current_revision(target)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. base or -1.")],
    url: UrlOption = None,
) -> None:
    """Step the schema back to an earlier revision."""
    target = _url(url)
    migrations.downgrade(target, revision)
    out_console.print(f"{safe_url(target)} is at revision {migrations.current_revision(target)}")


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


def main() -> None:
    try:
        app()
    except MigrationKitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
