"""The mirror config file (TOML): which Convex tables to mirror, and how.

::

    [mirror]
    schema = "app_convex"            # PostgreSQL schema for every mirror table
    models = "app/convex_models.py"  # the module `migrationkit introspect` writes
    workspace_field = "teamId"       # fills workspace_id (RLS) where a table has it
    tables = ["users", "posts", "ratelimiter/limits"]  # default: every table
    exclude_tables = ["scratch"]

    [mirror.table.users]
    name = "app_users"               # the PostgreSQL table (default: snake_case)
    workspace_field = "orgId"        # this table's own workspace field
    exclude_fields = ["avatar"]      # left out of the mirror on purpose
    rename = { email = "email_address" }   # Convex field -> column
    foreign_keys = ["managerId"]     # v.id fields made foreign keys

    [mirror.table.scratch]
    document = true                  # no schema: keep each document whole (jsonb)

Unknown keys are errors: a typo must not silently mirror the wrong thing.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from migrationkit.errors import ConfigurationError

__all__ = ["KIT_TABLES", "MirrorConfig", "TableConfig", "load_config"]

#: The outbox's own tables in an app that adopted it (``codegen app-outbox``):
#: bookkeeping, never mirrored.
KIT_TABLES = frozenset({"migrationkitOutbox", "migrationkitIdMap", "migrationkitFence"})

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Identifier = Annotated[
    str,
    Field(pattern=_IDENTIFIER.pattern, description="a PostgreSQL name: lower case, digits, _"),
]


class TableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Identifier | None = None
    workspace_field: str | None = None
    exclude_fields: list[str] = []
    rename: dict[str, Identifier] = {}
    foreign_keys: list[str] = []
    #: Keep each document whole in one jsonb ``document`` column: for a
    #: table with no schema, whose inferred shape may change with any write.
    document: bool = False


class MirrorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_name: Identifier | None = Field(default=None, alias="schema")
    models: Path = Path("convex_models.py")
    workspace_field: str | None = None
    tables: list[str] | None = None
    exclude_tables: list[str] = []
    table: dict[str, TableConfig] = {}

    @field_validator("tables", "exclude_tables")
    @classmethod
    def _no_blank(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and any(not n.strip() for n in names):
            raise ValueError("table names must not be empty")
        return names

    def selects(self, qualified_name: str) -> bool:
        """Whether the Convex table (``t`` or ``component/t``) is mirrored."""
        if qualified_name in self.exclude_tables or qualified_name in KIT_TABLES:
            return False
        return self.tables is None or qualified_name in self.tables

    def for_table(self, qualified_name: str) -> TableConfig:
        return self.table.get(qualified_name, TableConfig())

    def unknown_tables(self, known: set[str]) -> list[str]:
        """Names the config gives that the deployment does not have."""
        named = set(self.tables or ()) | set(self.exclude_tables) | set(self.table)
        return sorted(named - known)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mirror: MirrorConfig = MirrorConfig()


def load_config(path: Path | None) -> MirrorConfig:
    """Read and check the config file; no file means every default.

    Raises ``ConfigurationError`` naming the file and the bad key.
    """
    if path is None:
        return MirrorConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = _File.model_validate(raw).mirror
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            key = ".".join(str(p) for p in error["loc"]) or "<root>"
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{key}: {message}")
        raise ConfigurationError(f"{path}: {'; '.join(problems)}") from None
    if not config.models.is_absolute():
        config.models = path.parent / config.models
    return config
