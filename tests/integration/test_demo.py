"""`make demo` runs `python -m migrationkit.demo`: it must end with both stores in step."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_a_whole_replication_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrationkit.demo"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PostgreSQL is in step with Convex" in result.stdout
    assert "exit code 0" in result.stdout  # the worker stopped cleanly on SIGTERM
    assert result.stdout.count("yes") >= 3  # every workspace matched
