"""Run the kit's alembic migrations from Python (the CLI and test fixtures use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres.database_url import normalize_database_url
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.errors import ConfigurationError


def scripts_dir() -> Path:
    """Where the migration scripts are: inside an installed wheel, or the checkout."""
    package_root = Path(__file__).resolve().parents[2]
    for candidate in (package_root / "_migrations", package_root.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigurationError("the migration scripts are missing from this installation")


def alembic_config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(scripts_dir()))
    # Passed as an attribute, not an ini option: ini interpolation would
    # mangle a '%' in a password.
    config.attributes["url"] = normalize_database_url(url)
    config.attributes["configure_logging"] = False
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    with translated_errors():
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    with translated_errors():
        command.downgrade(alembic_config(url), revision)


def current_revision(url: str | URL) -> str | None:
    engine = make_engine(url)
    try:
        with translated_errors(), engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
