"""Identifiers: ULIDs made by the kit, and the workspace id every call carries.

The same ULID names an entity in Convex and in PostgreSQL, so neither store's
own id scheme leaks into the other. ULIDs sort by creation time, which makes
them a good keyset for pagination.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator
from ulid import ULID

from migrationkit.errors import ValidationFailed

# Crockford base32, 26 characters, first one 0-7 (128 bits).
_ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
# Workspace ids end up in SQL settings, Convex indexes and metric-free logs:
# keep them to a safe, bounded alphabet.
_WORKSPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def new_id() -> str:
    """A fresh ULID string."""
    return str(ULID())


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _normalize_entity_id(value: Any) -> str:
    text = _require_str(value, "id").upper()
    if not _ULID_RE.match(text):
        raise ValueError("id must be a 26-character ULID")
    return text


def _check_workspace_id(value: Any) -> str:
    text = _require_str(value, "workspace_id")
    if not _WORKSPACE_RE.match(text):
        raise ValueError(
            "workspace_id must be 1-64 characters of letters, digits, '_', '.', ':' or '-',"
            " starting with a letter or digit"
        )
    return text


EntityId = Annotated[str, BeforeValidator(_normalize_entity_id)]
WorkspaceId = Annotated[str, BeforeValidator(_check_workspace_id)]


def check_entity_id(value: Any) -> str:
    """Validate an id passed to a repository call; raise ``ValidationFailed``."""
    try:
        return _normalize_entity_id(value)
    except ValueError as exc:
        raise ValidationFailed(f"invalid id: {exc}", [{"loc": ("id",), "msg": str(exc)}]) from None


def check_workspace_id(value: Any) -> str:
    """Validate a workspace id passed to a repository call; raise ``ValidationFailed``."""
    try:
        return _check_workspace_id(value)
    except ValueError as exc:
        raise ValidationFailed(
            f"invalid workspace_id: {exc}", [{"loc": ("workspace_id",), "msg": str(exc)}]
        ) from None
