"""Every entry point answers --help and --version with no environment set,
and a missing setting is one line naming its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

import migrationkit
from migrationkit.cli import app


def bare_env() -> dict[str, str]:
    """PATH only: no MIGRATIONKIT_*, no CONVEX_* (and no .env in the cwd)."""
    return {"PATH": os.environ.get("PATH", "")}


def run(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=bare_env(), cwd=cwd, capture_output=True, text=True, timeout=60
    )


def command_paths(group: TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        paths.append(path)
        if isinstance(command, TyperGroup):
            paths += command_paths(command, path)
    return paths


def test_the_worker_answers_help_and_version_with_no_environment(tmp_path: object) -> None:
    done = run("-m", "migrationkit.worker", "--help", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    for variable in ("MIGRATIONKIT_DATABASE_URL", "CONVEX_URL", "MIGRATIONKIT_SOURCE"):
        assert variable in done.stdout
    assert "convex_app_outbox" in done.stdout
    # Every setting is named there, by the variable it is read from.
    from migrationkit.outbox.settings import WorkerSettings, _variable

    for field in WorkerSettings.model_fields:
        assert _variable(field).replace("MIGRATIONKIT_POLL_MAX", "_MAX") in done.stdout, field
    done = run("-m", "migrationkit.worker", "--version", cwd=str(tmp_path))
    assert done.returncode == 0
    assert done.stdout.strip() == f"migrationkit {migrationkit.__version__}"


def test_a_missing_setting_is_one_line_naming_the_variable(tmp_path: object) -> None:
    done = run("-m", "migrationkit.worker", cwd=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: MIGRATIONKIT_DATABASE_URL is not set"]


def test_the_cli_answers_version_with_no_environment(tmp_path: object) -> None:
    done = run("-m", "migrationkit.cli", "--version", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"migrationkit {migrationkit.__version__}"


_ROOT = typer.main.get_command(app)
assert isinstance(_ROOT, TyperGroup)
COMMANDS = command_paths(_ROOT)


def test_every_command_is_reached() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"worker", "verify", "backfill", "codegen app-outbox", "cutover set"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_answers_help_with_no_environment(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("MIGRATIONKIT_", "CONVEX_")):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
