"""Which tables must have row-level security: the kit's tenant tables, and
the mirror tables that carry a ``workspace_id`` when a mirror config names
their models. Loading those models is best effort: doctor still runs when
the models module is missing, and says so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from migrationkit.errors import MigrationKitError
from migrationkit.mirror.cli_support import DEFAULT_CONFIG, mirror_config
from migrationkit.mirror.loading import selected_models
from migrationkit.mirror.model import MirrorDocument
from migrationkit.schema.metadata import build_metadata

from .report import Check, Status

__all__ = ["TenantTable", "load_mirror_models", "tenant_tables"]

MIRROR_CHECK = "mirror models"


@dataclass(frozen=True)
class TenantTable:
    schema: str | None
    name: str

    @property
    def regclass(self) -> str:
        """The name as ``to_regclass`` reads it, quoted."""
        quoted = '"' + self.name.replace('"', '""') + '"'
        if self.schema is None:
            return quoted
        return '"' + self.schema.replace('"', '""') + '".' + quoted

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def tenant_tables(mirrors: Sequence[type[MirrorDocument]] = ()) -> list[TenantTable]:
    """The tables ``schema.tenant_tables()`` names (built afresh, so mirror
    models registered meanwhile do not join without their schema), then the
    mirror tables with a workspace column."""
    kit = [
        TenantTable(None, t.name) for t in build_metadata().sorted_tables if "workspace_id" in t.c
    ]
    # A mirror table has a workspace_id column exactly when its model names a
    # workspace field (see schema.mirror_tables).
    mirrored = [m.mirror for m in mirrors if m.mirror.workspace_field is not None]
    return kit + [TenantTable(spec.pg_schema, spec.pg_table) for spec in mirrored]


def load_mirror_models(config: Path | None) -> tuple[Check | None, list[type[MirrorDocument]]]:
    """The mirror models of ``config`` (default ``./migrationkit.toml``, when present)."""
    if config is None and not DEFAULT_CONFIG.is_file():
        return None, []
    where = config or DEFAULT_CONFIG
    try:
        models = selected_models(mirror_config(where))
    except MigrationKitError as exc:
        return (
            Check(
                MIRROR_CHECK,
                Status.WARN,
                f"not loaded from {where} ({exc}): row-level security of mirror tables not checked",
                "run `migrationkit introspect` (or fix the config) so its models module imports",
            ),
            [],
        )
    with_workspace = [m for m in models if m.mirror.workspace_field]
    detail = (
        f"{len(models)} from {where}, {len(with_workspace)} with workspace_id"
        " (their RLS is checked below)"
    )
    return Check(MIRROR_CHECK, Status.OK, detail), models
