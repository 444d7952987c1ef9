"""Run the kit's alembic migrations from Python (the CLI and test fixtures use this)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import alembic
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
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


def alembic_config(url: str | URL, versions: Path | None = None) -> Config:
    """The kit's migrations; with ``versions``, also the revisions kept there
    (your own: the mirror tables of an existing app, written by ``revision``)."""
    config = Config()
    config.set_main_option("script_location", str(scripts_dir()))
    if versions is not None:
        if not versions.is_dir():
            raise ConfigurationError(f"no migrations folder at {versions}: create it first")
        locations = [str(scripts_dir() / "versions"), str(versions)]
        # Paths may hold spaces: split on the OS's separator. Alembic 1.16
        # renamed the option (the old name still works there, with a warning).
        renamed = tuple(int(p) for p in alembic.__version__.split(".")[:2]) >= (1, 16)
        config.set_main_option("path_separator" if renamed else "version_path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join(locations))
    # Passed as an attribute, not an ini option: ini interpolation would
    # mangle a '%' in a password.
    config.attributes["url"] = normalize_database_url(url)
    config.attributes["configure_logging"] = False
    return config


@contextlib.contextmanager
def _alembic_errors() -> Iterator[None]:
    with translated_errors():
        try:
            yield
        except CommandError as exc:
            raise ConfigurationError(f"alembic: {exc}") from None


def upgrade(url: str | URL, revision: str = "heads", versions: Path | None = None) -> None:
    with _alembic_errors():
        command.upgrade(alembic_config(url, versions), revision)


def downgrade(url: str | URL, revision: str, versions: Path | None = None) -> None:
    with _alembic_errors():
        command.downgrade(alembic_config(url, versions), revision)


def revision(url: str | URL, message: str, versions: Path) -> Path | None:
    """Autogenerate a revision for the registered models into ``versions``.

    Import the models first (``migrationkit.mirror.loading.import_models``):
    what is registered in this process is what autogenerate compares with
    the database, which must be at the head of the migrations already.
    Returns the new script, or None when there was nothing to write.
    """
    with _alembic_errors():
        script = command.revision(
            alembic_config(url, versions),
            message=message,
            autogenerate=True,
            version_path=str(versions),
        )
    if script is None or isinstance(script, list):
        return None
    return Path(script.path)


def current_revision(url: str | URL) -> str | None:
    engine = make_engine(url)
    try:
        with translated_errors(), engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
