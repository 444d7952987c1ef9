"""Passing verifies, looked up for the cutover gate (``verify_runs``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, text

from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.domain.registry import registered_models

__all__ = ["PostgresVerifications"]

ANY = "*"


class PostgresVerifications:
    """Which scopes a passing verify covers.

    A run covers an entity when its scope is every table (``*``) or names
    the entity, and a workspace when it ran over every workspace or that
    one. A move for every entity (``*``) needs a run that covered them all.
    """

    def __init__(self, engine: Engine, entities: Sequence[str] | None = None) -> None:
        self.engine = engine
        self.entities = (
            list(entities)
            if entities is not None
            else [model.entity_name for model in registered_models()]
        )

    def passed_age(self, entity: str, workspace: str) -> float | None:
        covers_entity = (
            "(scope = '*' OR string_to_array(scope, ',') @> CAST(:entities AS text[]))"
            if entity == ANY
            else "(scope = '*' OR :entity = ANY(string_to_array(scope, ',')))"
        )
        covers_workspace = (
            "workspace IS NULL"
            if workspace == ANY
            else "(workspace IS NULL OR workspace = :workspace)"
        )
        query = text(
            "SELECT extract(epoch FROM now() - max(finished_at)) FROM verify_runs"  # noqa: S608
            f" WHERE passed AND {covers_entity} AND {covers_workspace}"
        )
        params = {"entity": entity, "workspace": workspace, "entities": self.entities}
        with translated_errors(), self.engine.connect() as conn:
            age = conn.execute(query, params).scalar_one()
        return None if age is None else max(0.0, float(age))
