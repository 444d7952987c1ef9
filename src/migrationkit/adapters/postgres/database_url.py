"""Database URLs as users write them -> URLs SQLAlchemy's psycopg 3 dialect takes."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from migrationkit.errors import ConfigurationError

ENV_VAR = "MIGRATIONKIT_DATABASE_URL"
_ACCEPTED = {"postgres", "postgresql", "postgresql+psycopg"}


def normalize_database_url(raw: str | URL) -> URL:
    """Accept ``postgres://``, ``postgresql://`` or ``postgresql+psycopg://``.

    Anything else (another driver, another database, garbage) is a
    ``ConfigurationError`` whose message never shows the password.
    """
    if isinstance(raw, URL):
        url = raw
    else:
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigurationError("database URL is empty")
        try:
            url = make_url(raw.strip())
        except ArgumentError:
            raise ConfigurationError(
                "database URL is malformed: expected postgresql://user@host:port/dbname"
            ) from None
    if url.drivername not in _ACCEPTED:
        raise ConfigurationError(
            f"database URL scheme {url.drivername!r} is not supported:"
            " use postgresql:// (psycopg 3 is the driver)"
        )
    if not url.database:
        raise ConfigurationError(
            f"database URL {safe_url(url)} names no database: add /dbname at the end"
        )
    return url.set(drivername="postgresql+psycopg")


def database_url_from_env(env_var: str = ENV_VAR) -> URL:
    raw = os.environ.get(env_var)
    if not raw:
        raise ConfigurationError(
            f"{env_var} is not set: export {env_var}=postgresql://user@host:5432/dbname"
        )
    return normalize_database_url(raw)


def safe_url(url: URL | str) -> str:
    """The URL with its password masked, for messages and logs."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)
