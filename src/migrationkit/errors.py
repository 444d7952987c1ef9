"""The errors migrationkit raises.

Every adapter translates what its driver raises (psycopg, httpx, pydantic)
into this tree, so callers catch one family whatever store sits behind a
port. The driver's exception is kept as ``__cause__``.

    MigrationKitError
    ├── ValidationFailed        bad input: wrong types, malformed ids, limits
    │   ├── InvalidCursor       a cursor that was tampered with or belongs elsewhere
    │   └── ExportUnreadable    an export ZIP that is damaged or holds a value the kit cannot read
    ├── NotFound                the entity does not exist (or is deleted)
    ├── Conflict                a write lost a race (expected version differs)
    │   └── StageMoved          the cutover fenced this store off for the scope
    ├── UnknownEntity           a table or entity name nobody registered
    ├── ConfigurationError      a bad URL, a missing key or setting
    ├── FunctionFailed          a remote (Convex) function ran and threw
    ├── ResyncRequired          a change-feed cursor fell out of the retention window
    └── StoreUnavailable        the store cannot be reached or refused the call
        ├── PermissionDenied    the store answered but forbids the call
        │   └── StreamingExportNotEnabled  Convex streaming export is off for the deployment
        └── BadReply            the store answered with something unreadable

Messages never carry secrets (passwords, deploy keys): adapters strip them
before raising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BadReply",
    "ConfigurationError",
    "Conflict",
    "ExportUnreadable",
    "FunctionFailed",
    "InvalidCursor",
    "MigrationKitError",
    "NotFound",
    "PermissionDenied",
    "ResyncRequired",
    "StageMoved",
    "StoreUnavailable",
    "StreamingExportNotEnabled",
    "UnknownEntity",
    "ValidationFailed",
]


class MigrationKitError(Exception):
    """Base of every error the kit raises on purpose."""


class ValidationFailed(MigrationKitError, ValueError):
    """Input was refused before anything was written.

    ``errors`` holds one entry per problem, each with a ``loc`` (the path to
    the offending field) and a ``msg``, in the shape pydantic uses.
    """

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors]

    @classmethod
    def from_pydantic(cls, what: str, exc: Any) -> ValidationFailed:
        """Wrap a ``pydantic.ValidationError``, keeping its problems but not the input."""
        problems = [
            {"loc": tuple(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(
            f"{'.'.join(str(p) for p in prob['loc']) or '<root>'}: {prob['msg']}"
            for prob in problems
        )
        return cls(f"invalid {what}: {summary}", problems)


class InvalidCursor(ValidationFailed):
    """A pagination cursor that is malformed or was made for another query."""


class ExportUnreadable(ValidationFailed):
    """An export ZIP (``npx convex export``) that cannot be read: not a ZIP,
    damaged (bad CRC, cut short), a line that is not JSON, or a value in an
    encoding the kit does not know. The message names the ZIP member, the
    table, the line and the field when they are known; nothing was written.
    """


class NotFound(MigrationKitError, LookupError):
    """The entity does not exist in this workspace, or it is deleted."""


class Conflict(MigrationKitError):
    """A concurrent write won: the version the caller expected is not current."""


class StageMoved(Conflict):
    """A store refused a write because the cutover made the other store
    authoritative for that scope; re-read the stage and write there."""


class UnknownEntity(MigrationKitError, KeyError):
    """An entity or table name that is not registered with the kit."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigurationError(MigrationKitError):
    """A setting is missing or malformed (database URL, deployment URL, key)."""


class StoreUnavailable(MigrationKitError):
    """The store could not be reached, timed out, or failed the call."""


class PermissionDenied(StoreUnavailable):
    """The store answered but refused the call for lack of rights."""


class StreamingExportNotEnabled(PermissionDenied):
    """The deployment does not serve streaming export (``list_snapshot``,
    ``document_deltas``, ``json_schemas``): on Convex Cloud it needs the Pro
    plan. Use an export ZIP (``migrationkit import``) and the outbox instead."""


class BadReply(StoreUnavailable):
    """The store answered, but not in a shape the kit can read (not JSON, wrong fields)."""


class FunctionFailed(MigrationKitError):
    """A remote function ran and threw.

    ``data`` is the decoded ``errorData`` of a ``ConvexError`` (``None`` for
    other exceptions); ``function`` is the path that was called.
    """

    def __init__(self, message: str, *, function: str, data: Any = None) -> None:
        super().__init__(message)
        self.function = function
        self.data = data


class ResyncRequired(MigrationKitError):
    """A change-feed cursor is older than the source keeps history: tailing
    cannot resume without a gap. Run a full backfill (resync) instead."""
