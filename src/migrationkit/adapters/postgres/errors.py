"""Translate SQLAlchemy and psycopg exceptions into the kit's error tree.

Only the server's message survives: SQLAlchemy's own text embeds the
statement's parameters, which are user data and must not reach logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg.errors
from sqlalchemy import exc as sa_exc

from migrationkit.errors import (
    Conflict,
    MigrationKitError,
    PermissionDenied,
    StoreUnavailable,
    ValidationFailed,
)


def _server_message(error: BaseException) -> str:
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    # Connection failures have no diagnostics; their first line names the
    # host and the reason (libpq never puts the password in it).
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def translate_driver_error(error: psycopg.Error) -> MigrationKitError:
    message = _server_message(error)
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return PermissionDenied(f"PostgreSQL refused the call: {message}")
    if isinstance(
        error,
        psycopg.errors.UniqueViolation
        | psycopg.errors.SerializationFailure
        | psycopg.errors.DeadlockDetected,
    ):
        return Conflict(f"PostgreSQL: {message}")
    if isinstance(error, psycopg.DataError | psycopg.IntegrityError):
        return ValidationFailed(f"PostgreSQL rejected the data: {message}")
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(f"PostgreSQL is unavailable: {message}")
    return StoreUnavailable(f"PostgreSQL failed the call: {message}")


def translate(error: sa_exc.SQLAlchemyError) -> MigrationKitError:
    if isinstance(error, sa_exc.DBAPIError) and isinstance(error.orig, psycopg.Error):
        return translate_driver_error(error.orig)
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        return StoreUnavailable(f"PostgreSQL failed the call: {_server_message(error.orig)}")
    return StoreUnavailable(f"PostgreSQL failed the call: {type(error).__name__}")


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except sa_exc.SQLAlchemyError as error:
        raise translate(error) from error
