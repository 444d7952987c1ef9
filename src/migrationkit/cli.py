"""The ``migrationkit`` command.

Errors the kit raises on purpose print as one line on stderr with exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

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

app = typer.Typer(no_args_is_help=True, help="Move a product from Convex to PostgreSQL.")
db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL schema (alembic migrations).")
app.add_typer(db_app, name="db")

out = Console(soft_wrap=True)

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
    out.print(f"{safe_url(target)} is at revision {migrations.current_revision(target)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. base or -1.")],
    url: UrlOption = None,
) -> None:
    """Step the schema back to an earlier revision."""
    target = _url(url)
    migrations.downgrade(target, revision)
    out.print(f"{safe_url(target)} is at revision {migrations.current_revision(target)}")


@db_app.command("current")
def db_current(url: UrlOption = None) -> None:
    """Print the schema revision the database is at."""
    target = _url(url)
    out.print(migrations.current_revision(target) or "none (empty database)")


def main() -> None:
    try:
        app()
    except MigrationKitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
