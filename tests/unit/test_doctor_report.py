"""migrationkit doctor's report: exit codes, the three renderings, secrets struck."""

from __future__ import annotations

import json

from rich.console import Console

from migrationkit.doctor.report import (
    Check,
    Report,
    Secrets,
    Status,
    render_json,
    render_plain,
    render_table,
)

KEY = "prod:happy-otter-123|eyJ2MiI6ImFiY2RlZiJ9"


def report(*statuses: Status, secrets: Secrets | None = None) -> Report:
    checks = [Check(f"check {i}", s, f"found {s.value}", "do this") for i, s in enumerate(statuses)]
    return Report.of(checks, secrets or Secrets())


def test_only_a_failure_fails() -> None:
    assert report(Status.OK, Status.WARN, Status.SKIP).exit_code == 0
    assert report(Status.OK, Status.FAIL).exit_code == 1
    assert report().exit_code == 0


def test_plain_lines_one_per_check_then_the_summary() -> None:
    text = render_plain(report(Status.OK, Status.FAIL))
    assert text.splitlines() == [
        "ok    check 0: found ok -- fix: do this",
        "fail  check 1: found fail -- fix: do this",
        "doctor: 1 ok, 1 fail: something failed",
    ]


def test_json_carries_every_field() -> None:
    payload = json.loads(render_json(report(Status.WARN)))
    assert payload == {
        "ok": True,
        "counts": {"ok": 0, "warn": 1, "fail": 0, "skip": 0},
        "checks": [
            {"check": "check 0", "status": "warn", "detail": "found warn", "fix": "do this"}
        ],
    }


def test_the_table_shows_brackets_as_text() -> None:
    console = Console(record=True, width=120, force_terminal=True)
    checks = [Check("login", Status.FAIL, "postgres is a superuser [bold]x[/bold]", "fix [it]")]
    render_table(Report.of(checks, Secrets()), console)
    shown = console.export_text()
    assert "[bold]x[/bold]" in shown and "fix [it]" in shown


def test_secrets_are_struck_from_details_and_fixes() -> None:
    secrets = Secrets([KEY, KEY.rpartition("|")[2], "pw", None])
    checks = [Check("convex key", Status.FAIL, f"refused {KEY}", f"not {KEY.rpartition('|')[2]}")]
    rendered = Report.of(checks, secrets)
    shown = render_plain(rendered) + render_json(rendered)
    assert KEY not in shown and "eyJ2MiI6ImFiY2RlZiJ9" not in shown
    assert "refused <redacted>" in shown
    # Too short to strike without mangling the text; the checks never print it.
    assert repr(secrets) == "Secrets(<2 values>)"
