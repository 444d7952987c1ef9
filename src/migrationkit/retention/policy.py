"""The retention policy: ``spec/data-retention.yaml``, read and checked.

Every problem is a ``ConfigurationError`` that names the file and the key,
``spec/data-retention.yaml: entities.leads.archive_after_days: ...``, so a
bad policy is fixed from the message alone and never half-applied: the
whole file is checked before anything reads it.

Ages are whole days of 24 hours (``timedelta(days=n)``), not calendar days:
the same policy then means the same instant whatever the time zone or a
daylight-saving change. ``is_due`` holds the one boundary rule.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from migrationkit.domain.entity import Entity
from migrationkit.domain.registry import model_for
from migrationkit.errors import ConfigurationError, UnknownEntity

__all__ = [
    "DEFAULT_POLICY",
    "POLICY_ENV",
    "AuditRule",
    "EntityRule",
    "OutboxRule",
    "RetentionPolicy",
    "WorkspaceDeletionRule",
    "cutoff",
    "entity_models",
    "is_due",
    "load_policy",
    "parse_policy",
]

DEFAULT_POLICY = Path("spec/data-retention.yaml")
POLICY_ENV = "MIGRATIONKIT_RETENTION_POLICY"

#: A hundred years: a longer age is a typo, and it would overflow date arithmetic.
MAX_DAYS = 36_500

#: Strict: "365" (a string) or 365.5 is refused rather than read as a number.
Days = Annotated[int, Field(strict=True, gt=0, le=MAX_DAYS)]


def cutoff(now: datetime, days: int) -> datetime:
    """The latest moment that is ``days`` days old at ``now``: see ``is_due``."""
    return now - timedelta(days=days)


def is_due(moment: datetime, now: datetime, days: int) -> bool:
    """Whether ``moment`` is at least ``days`` days before ``now``.

    Inclusive: a row soft-deleted exactly 365 days ago is due for the
    365-day step, one deleted a millisecond later is not. "After 365 days"
    then means "once 365 days have passed", and the plan and the run,
    given the same ``now``, draw the line at the same instant.
    """
    return moment <= cutoff(now, days)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Aged(_Rule):
    """Rows that are archived after one age and deleted for good after a later one."""

    archive_after_days: Days
    hard_delete_after_days: Days

    @field_validator("hard_delete_after_days")
    @classmethod
    def _after_archive(cls, value: int, info: ValidationInfo) -> int:
        archive = info.data.get("archive_after_days")
        if archive is not None and value <= archive:
            raise ValueError(f"must be more than archive_after_days ({archive})")
        return value


class EntityRule(_Aged):
    """Tombstones of one entity table: archived, then deleted."""

    #: The kit's deletes are always soft; the key says so where it is read.
    delete: Literal["soft"]


class OutboxRule(_Aged):
    """Delivered (``done``) and dead outbox events: archived, then deleted."""


class AuditRule(_Rule):
    """Audit entries are deleted once this old; never archived."""

    keep_days: Days


class WorkspaceDeletionRule(_Rule):
    grace_period_days: Days
    #: Days before the purge a notice goes out, largest first once read.
    notice_days_before: tuple[Days, ...] = ()

    @field_validator("notice_days_before")
    @classmethod
    def _inside_grace(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError("holds the same day twice")
        grace = info.data.get("grace_period_days")
        if grace is not None:
            outside = [d for d in value if d >= grace]
            if outside:
                raise ValueError(
                    f"{outside[0]} is not inside the grace period of {grace} days:"
                    " a notice must go out after the request"
                )
        return tuple(sorted(value, reverse=True))

    @property
    def grace_period(self) -> timedelta:
        return timedelta(days=self.grace_period_days)


class RetentionPolicy(_Rule):
    version: Literal[1]
    #: Entity table name -> its rule.
    entities: dict[str, EntityRule]
    outbox_events: OutboxRule
    audit_logs: AuditRule
    workspace_deletion: WorkspaceDeletionRule
    #: Where the policy was read from, for messages (not a YAML key).
    _source: str = PrivateAttr(default=str(DEFAULT_POLICY))

    @property
    def source(self) -> str:
        return self._source

    def error(self, key: str, problem: str) -> ConfigurationError:
        """A ``ConfigurationError`` naming this policy's file and ``key``."""
        return ConfigurationError(f"{self.source}: {key}: {problem}")


def _where(loc: tuple[int | str, ...]) -> str:
    """``("entities", "leads", "archive_after_days")`` -> ``entities.leads.archive_after_days``;
    list positions as ``[i]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _message(error: Any) -> str:
    msg = str(error.get("msg", ""))
    # pydantic prefixes what a validator raised; the key already says where.
    return msg.removeprefix("Value error, ")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping: PyYAML
    keeps the last silently, which would quietly drop half of a rule."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_policy(text: str, source: str = str(DEFAULT_POLICY)) -> RetentionPolicy:
    """Read a policy from YAML text; ``source`` names it in errors."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigurationError(f"{source}: {where}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: <top level>: expected a mapping of keys")
    try:
        policy = RetentionPolicy.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{source}: {_where(tuple(e['loc']))}: {_message(e)}"
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ConfigurationError("\n".join(problems)) from None
    policy._source = source
    return policy


def load_policy(path: str | Path | None = None) -> RetentionPolicy:
    """The policy at ``path`` (default: ``$MIGRATIONKIT_RETENTION_POLICY``,
    else ``spec/data-retention.yaml`` from the current directory)."""
    chosen = Path(path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY)
    try:
        text = chosen.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{chosen}: no such file (the retention policy)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{chosen}: cannot be read: {exc}") from None
    return parse_policy(text, str(chosen))


def entity_models(policy: RetentionPolicy) -> list[tuple[type[Entity], str]]:
    """(model, table) per entity table the policy names, checked against the registry."""
    found: list[tuple[type[Entity], str]] = []
    for table in policy.entities:
        try:
            model = model_for(table)
        except UnknownEntity:
            model = None
        if model is None or model.table_name != table:
            raise policy.error(f"entities.{table}", "no registered entity has this table")
        found.append((model, table))
    return found
