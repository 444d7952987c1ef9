"""Alembic environment: the target metadata is the one generated from the models."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool

from migrationkit.adapters.postgres.database_url import (
    database_url_from_env,
    normalize_database_url,
)
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror.loading import import_models
from migrationkit.schema.metadata import current_metadata
from migrationkit.schema.mirror_migrations import add_mirror_ddl, include_name_for, mirror_schemas

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Your own models register themselves when imported: name their modules in
# MIGRATIONKIT_MODELS (comma-separated module names, or paths to .py files such
# as the one `migrationkit introspect` writes) so autogenerate sees their tables.
for module in filter(
    None, (m.strip() for m in os.environ.get("MIGRATIONKIT_MODELS", "").split(","))
):
    import_models(module)
target_metadata = current_metadata()
# Mirror tables may sit in their own schema: compare it too, and no other.
_schemas = mirror_schemas(target_metadata)
_options: dict[str, object] = {"process_revision_directives": add_mirror_ddl}
if _schemas:
    _options |= {"include_schemas": True, "include_name": include_name_for(_schemas)}


def _url() -> object:
    given = config.attributes.get("url")
    return normalize_database_url(given) if given else database_url_from_env()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, **_options)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, **_options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)  # type: ignore[arg-type]
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, **_options)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
