"""What the mirror commands share: settings from the environment, progress output."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.database_url import (
    database_url_from_env,
    normalize_database_url,
)
from migrationkit.errors import ConfigurationError
from migrationkit.mirror.config import MirrorConfig, load_config

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigOption",
    "PostgresUrlOption",
    "RowProgress",
    "convex_client",
    "database_url",
    "mirror_config",
    "row_progress",
]

DEFAULT_CONFIG = Path("migrationkit.toml")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"The mirror config file (TOML; default: ./{DEFAULT_CONFIG}, if any).",
        show_default=False,
    ),
]
PostgresUrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="PostgreSQL URL; defaults to $MIGRATIONKIT_DATABASE_URL.", show_default=False
    ),
]


def mirror_config(path: Path | None) -> MirrorConfig:
    """The config file given, else ./migrationkit.toml if there is one, else the defaults."""
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    return load_config(path)


CONVEX_URL = "CONVEX_URL"
CONVEX_DEPLOY_KEY = "CONVEX_DEPLOY_KEY"


def convex_client(url: str | None) -> ConvexClient:
    """A client on ``url`` (or ``$CONVEX_URL``) with ``$CONVEX_DEPLOY_KEY``.

    The key is read from the environment only: a flag would land in shell
    history and process listings.
    """
    url = url or os.environ.get(CONVEX_URL)
    if not url:
        raise ConfigurationError(f"{CONVEX_URL} is not set (or pass --convex-url)")
    key = os.environ.get(CONVEX_DEPLOY_KEY)
    if not key:
        raise ConfigurationError(
            f"{CONVEX_DEPLOY_KEY} is not set: streaming export needs a deploy or admin key"
        )
    return ConvexClient(url, admin_key=key)


def database_url(given: str | None) -> str:
    url = normalize_database_url(given) if given else database_url_from_env()
    return url.render_as_string(hide_password=False)


class RowProgress:
    """Rows copied per table: a live bar on a terminal, log lines otherwise."""

    def __init__(
        self, progress: Progress | None, console: Console, action: str = "copying"
    ) -> None:
        self._progress = progress
        self._console = console
        self._action = action
        self._tasks: dict[str, TaskID] = {}
        self._started: dict[str, tuple[float, int]] = {}
        self._last_line: dict[str, float] = {}

    def update(
        self,
        table: str,
        rows: int,
        *,
        done: bool,
        total: int | None = None,
        rate: float | None = None,
    ) -> None:
        """``rate``: rows/s if the caller measured it from the table's start."""
        now = time.monotonic()
        start = self._started.setdefault(table, (now, rows))
        if self._progress is not None:
            task = self._tasks.get(table)
            if task is None:
                task = self._tasks[table] = self._progress.add_task(table, total=total)
            self._progress.update(task, completed=rows, total=rows if done else total)
            return
        if not done and now - self._last_line.get(table, 0.0) < 2.0:
            return
        self._last_line[table] = now
        if rate is None:
            elapsed = now - start[0]
            rate = (rows - start[1]) / elapsed if elapsed > 0 else 0.0
        state = "done" if done else self._action
        line = f"{table}: {state}, {rows} rows, {rate:,.0f} rows/s"
        if total and not done and rate > 0:
            line += f", about {max(0, total - rows) / rate:,.0f}s left of ~{total} rows"
        self._console.print(line, highlight=False)


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:>10,.0f} rows/s" if speed else "         - rows/s")


@contextmanager
def row_progress(
    console: Console | None = None, *, action: str = "copying"
) -> Iterator[RowProgress]:
    """Per-table progress on stderr: bars on a terminal, a line every 2 s otherwise."""
    console = console or Console(stderr=True)
    if not sys.stderr.isatty():
        yield RowProgress(None, console, action)
        return
    columns = (
        TextColumn("{task.description:<28}"),
        MofNCompleteColumn(),
        TextColumn("rows"),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield RowProgress(progress, console, action)
