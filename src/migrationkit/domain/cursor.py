"""Opaque keyset cursors.

A cursor names the last id a page returned and is bound to the workspace,
entity and filters of the query that made it: replaying it against another
query is refused instead of silently skipping rows. Keyset (``id > last``)
rather than offsets keeps pages stable while rows are inserted.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from migrationkit.domain.ids import check_entity_id
from migrationkit.errors import InvalidCursor, ValidationFailed


def _binding(workspace_id: str, entity: str, filters: dict[str, Any]) -> str:
    canonical = json.dumps([workspace_id, entity, filters], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(last_id: str, workspace_id: str, entity: str, filters: dict[str, Any]) -> str:
    body = json.dumps({"v": 1, "after": last_id, "q": _binding(workspace_id, entity, filters)})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, workspace_id: str, entity: str, filters: dict[str, Any]
) -> str | None:
    """The id to continue after, or ``None`` for the first page."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        if not isinstance(body, dict) or body.get("v") != 1:
            raise ValueError("unknown cursor format")
        after = check_entity_id(body.get("after"))
        bound_to = body.get("q")
    except (ValueError, UnicodeError, ValidationFailed):
        raise InvalidCursor(
            "invalid cursor: not a cursor this kit issued",
            [{"loc": ("cursor",), "msg": "malformed"}],
        ) from None
    if bound_to != _binding(workspace_id, entity, filters):
        raise InvalidCursor(
            "invalid cursor: it was issued for another workspace or query",
            [{"loc": ("cursor",), "msg": "belongs to another query"}],
        )
    return after
