"""Translate SQLAlchemy/psycopg exceptions into the kit's error tree.

Only the server's message survives: SQLAlchemy's own text embeds the
statement's parameters, which are user data and must not reach logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg.errors
from sqlalchemy import exc as sa_exc

from migrationkit.errors import (
    Conflict,
    MigrationKitError,
    PermissionDenied,
    StoreUnavailable,
    ValidationFailed,
)


def _server_message(error: sa_exc.DBAPIError) -> str:
    original = error.orig
    diag = getattr(original, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    # Connection failures have no diagnostics; their first line names the
    # host and the reason (libpq never puts the password in it).
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return first_line or type(original).__name__


def translate(error: sa_exc.SQLAlchemyError) -> MigrationKitError:
    if isinstance(error, sa_exc.DBAPIError):
        original = error.orig
        message = _server_message(error)
        if isinstance(original, psycopg.errors.InsufficientPrivilege):
            return PermissionDenied(f"PostgreSQL refused the call: {message}")
        if isinstance(original, psycopg.errors.UniqueViolation):
            return Conflict(f"PostgreSQL: {message}")
        if isinstance(
            original, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected
        ):
            return Conflict(f"PostgreSQL: {message}")
        if isinstance(original, psycopg.errors.DataError | psycopg.errors.IntegrityError):
            return ValidationFailed(f"PostgreSQL rejected the data: {message}")
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
            return StoreUnavailable(f"PostgreSQL is unavailable: {message}")
        return StoreUnavailable(f"PostgreSQL failed the call: {message}")
    return StoreUnavailable(f"PostgreSQL failed the call: {type(error).__name__}")


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except sa_exc.SQLAlchemyError as error:
        raise translate(error) from error
