"""Passing verifies, looked up for the cutover gate (``verify_runs``)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from migrationkit.adapters.postgres.errors import translated_errors

__all__ = ["PostgresVerifications"]

ANY = "*"


class PostgresVerifications:
    """Which scopes a passing verify covers.

    A run covers an entity when its scope is every table (``*``) or names
    the entity, and a workspace when it ran over every workspace or that
    one. A move for every entity (``*``) needs a run over every table.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def passed_age(self, entity: str, workspace: str) -> float | None:
        covers_entity = (
            "scope = '*'"
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
        with translated_errors(), self.engine.connect() as conn:
            age = conn.execute(query, {"entity": entity, "workspace": workspace}).scalar_one()
        return None if age is None else max(0.0, float(age))
