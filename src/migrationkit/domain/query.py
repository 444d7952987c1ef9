"""Queries and pages of results.

Queries validate themselves on construction and raise ``ValidationFailed``,
so a bad limit is refused before any store is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from migrationkit.domain.cursor import encode_cursor
from migrationkit.domain.entity import Entity
from migrationkit.domain.lead import Segment
from migrationkit.errors import ValidationFailed

T = TypeVar("T")
R = TypeVar("R")
EntityT = TypeVar("EntityT", bound=Entity)

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100


def _check_limit(limit: Any) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"invalid limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}",
            [{"loc": ("limit",), "msg": f"must be an integer from 1 to {MAX_LIMIT}"}],
        )


def _check_cursor(cursor: Any) -> None:
    if cursor is not None and not isinstance(cursor, str):
        raise ValidationFailed(
            "invalid cursor: must be a string or None",
            [{"loc": ("cursor",), "msg": "must be a string or None"}],
        )


@dataclass(frozen=True)
class ListQuery:
    """One page of a workspace's live entities, in id order."""

    cursor: str | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        _check_limit(self.limit)
        _check_cursor(self.cursor)

    def filters(self) -> dict[str, Any]:
        """What, besides the position, a cursor of this query is bound to."""
        return {}


@dataclass(frozen=True)
class SegmentQuery:
    """Leads filtered by segment, email domain and creation time."""

    segment: Segment | None = None
    email_domain: str | None = None
    created_after: datetime | None = None
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        _check_limit(self.limit)
        _check_cursor(self.cursor)
        if self.segment is not None:
            try:
                object.__setattr__(self, "segment", Segment(self.segment))
            except ValueError:
                raise ValidationFailed(
                    f"invalid segment {self.segment!r}: one of {[s.value for s in Segment]}",
                    [{"loc": ("segment",), "msg": "unknown segment"}],
                ) from None
        if self.email_domain is not None:
            domain = self.email_domain
            if not isinstance(domain, str) or not domain or "@" in domain or "\x00" in domain:
                raise ValidationFailed(
                    f"invalid email_domain {domain!r}",
                    [{"loc": ("email_domain",), "msg": "a domain such as example.com"}],
                )
            object.__setattr__(self, "email_domain", domain.lower())
        if self.created_after is not None:
            moment = self.created_after
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise ValidationFailed(
                    "invalid created_after: must be a timezone-aware datetime",
                    [{"loc": ("created_after",), "msg": "timezone-aware datetime"}],
                )
            object.__setattr__(self, "created_after", moment.astimezone(UTC))

    def filters(self) -> dict[str, Any]:
        return {
            "segment": self.segment.value if self.segment else None,
            "email_domain": self.email_domain,
            "created_after": self.created_after.isoformat() if self.created_after else None,
        }


@dataclass(frozen=True)
class Page(Generic[T]):
    """Items of one page and the cursor of the next (``None`` on the last page)."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None


def page_of(
    fetched: Sequence[R],
    limit: int,
    to_entity: Callable[[R], EntityT],
    *,
    workspace_id: str,
    entity: str,
    filters: dict[str, Any],
) -> Page[EntityT]:
    """The page made from up to ``limit + 1`` fetched rows.

    Every adapter fetches one row more than asked: its presence says that
    another page exists, whose cursor starts after the page's last item.
    """
    items = [to_entity(row) for row in fetched[:limit]]
    next_cursor = None
    if len(fetched) > limit:
        next_cursor = encode_cursor(items[-1].id, workspace_id, entity, filters)
    return Page(items=items, next_cursor=next_cursor)
