"""The retention policy file: the shipped one reads as documented, and every
mistake is refused with the file and the key in the message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migrationkit.errors import ConfigurationError
from migrationkit.retention.policy import entity_models, is_due, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "spec" / "data-retention.yaml"

VALID = """\
version: 1
entities:
  leads: {delete: soft, archive_after_days: 365, hard_delete_after_days: 2555}
outbox_events: {archive_after_days: 90, hard_delete_after_days: 365}
audit_logs: {keep_days: 2555}
workspace_deletion: {grace_period_days: 30, notice_days_before: [1, 7, 3]}
"""


def test_the_shipped_policy_says_what_the_issue_asks() -> None:
    policy = load_policy(SHIPPED)
    leads = policy.entities["leads"]
    assert (leads.delete, leads.archive_after_days, leads.hard_delete_after_days) == (
        "soft",
        365,
        2555,
    )
    assert policy.audit_logs.keep_days == 2555
    assert (
        policy.outbox_events.archive_after_days,
        policy.outbox_events.hard_delete_after_days,
    ) == (
        90,
        365,
    )
    assert policy.workspace_deletion.grace_period_days == 30
    assert policy.workspace_deletion.notice_days_before == (7, 3, 1)
    assert [table for _, table in entity_models(policy)] == ["leads"]


def test_notice_days_are_read_largest_first() -> None:
    assert parse_policy(VALID).workspace_deletion.notice_days_before == (7, 3, 1)


def _problem(text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_policy(text, "spec/data-retention.yaml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "archive_after_days: 365,",
            "archive_after_days: 0,",
            "spec/data-retention.yaml: entities.leads.archive_after_days: Input should be"
            " greater than 0",
        ),
        (
            "archive_after_days: 365,",
            'archive_after_days: "365",',
            "entities.leads.archive_after_days: Input should be a valid integer",
        ),
        (
            "hard_delete_after_days: 2555}",
            "hard_delete_after_days: 300}",
            "entities.leads.hard_delete_after_days: must be more than archive_after_days (365)",
        ),
        (
            "delete: soft,",
            "delete: hard,",
            "entities.leads.delete: Input should be 'soft'",
        ),
        (
            "keep_days: 2555}",
            "keep_days: 2555, keep: forever}",
            "audit_logs.keep: Extra inputs are not permitted",
        ),
        (
            "audit_logs: {keep_days: 2555}\n",
            "",
            "spec/data-retention.yaml: audit_logs: Field required",
        ),
        (
            "[1, 7, 3]",
            "[1, 7, 30]",
            "workspace_deletion.notice_days_before: 30 is not inside the grace period of 30 days",
        ),
        (
            "[1, 7, 3]",
            "[1, 7, 7]",
            "workspace_deletion.notice_days_before: holds the same day twice",
        ),
        (
            "[1, 7, 3]",
            "[1, -7, 3]",
            "workspace_deletion.notice_days_before[1]: Input should be greater than 0",
        ),
        ("version: 1", "version: 2", "version: Input should be 1"),
        (
            "grace_period_days: 30",
            "grace_period_days: 100000",
            "workspace_deletion.grace_period_days: Input should be less than or equal to 36500",
        ),
    ],
)
def test_a_mistake_is_named_by_its_key(old: str, new: str, expected: str) -> None:
    assert old in VALID
    assert expected in _problem(VALID.replace(old, new))


def test_every_problem_is_reported_at_once() -> None:
    text = VALID.replace("keep_days: 2555", "keep_days: -1").replace("version: 1", "version: 3")
    lines = _problem(text).splitlines()
    assert len(lines) == 2 and all(line.startswith("spec/data-retention.yaml: ") for line in lines)


def test_a_key_given_twice_is_refused_not_silently_replaced() -> None:
    text = VALID + "outbox_events: {archive_after_days: 1, hard_delete_after_days: 2}\n"
    assert "line 7, column 1: the key 'outbox_events' is given twice" in _problem(text)


def test_yaml_that_does_not_parse_names_the_line() -> None:
    problem = _problem("version: 1\nentities: {leads: [}\n")
    assert problem.startswith("spec/data-retention.yaml: line 2, column ")


def test_a_file_that_is_not_a_mapping_is_refused() -> None:
    assert "<top level>: expected a mapping" in _problem("- 1\n- 2\n")


def test_a_table_no_entity_has_is_named() -> None:
    policy = parse_policy(VALID.replace("  leads:", "  contacts:"), "p.yaml")
    with pytest.raises(ConfigurationError, match=r"p\.yaml: entities\.contacts: no registered"):
        entity_models(policy)


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        load_policy(tmp_path / "absent.yaml")


def test_the_environment_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(VALID.replace("keep_days: 2555", "keep_days: 10"), encoding="utf-8")
    monkeypatch.setenv("MIGRATIONKIT_RETENTION_POLICY", str(path))
    assert load_policy().audit_logs.keep_days == 10


def test_the_boundary_is_inclusive() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert is_due(now - timedelta(days=365), now, 365)
    assert not is_due(now - timedelta(days=365) + timedelta(milliseconds=1), now, 365)
    assert is_due(now - timedelta(days=366), now, 365)
    assert not is_due(now - timedelta(days=364), now, 365)
