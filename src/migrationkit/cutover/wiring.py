"""Builds the cutover control from the environment (the CLI's composition root)."""

from __future__ import annotations

import os

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.postgres.database_url import database_url_from_env
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.cutover.control import CutoverControl
from migrationkit.cutover.fence import ConvexFence
from migrationkit.cutover.gates import Backlog, Thresholds
from migrationkit.cutover.store import PostgresStageStore
from migrationkit.errors import ConfigurationError
from migrationkit.verify.records import PostgresVerifications


class _Unreachable:
    """Stands for an outbox that is not configured: its gate cannot pass."""

    def __init__(self, why: str) -> None:
        self.why = why

    def backlog(self) -> int | None:
        raise ConfigurationError(self.why)

    def oldest_pending_age(self) -> float | None:
        return None


def control_from_environment(thresholds: Thresholds) -> CutoverControl:
    engine = make_engine(database_url_from_env())
    outboxes: dict[str, Backlog] = {"postgres": PgOutboxSource(engine, owner="cutover-cli")}
    url = os.environ.get("CONVEX_URL")
    fence = None
    if url:
        client = ConvexClient(url, admin_key=os.environ.get("CONVEX_DEPLOY_KEY"))
        outboxes["convex"] = ConvexOutboxSource(client)
        fence = ConvexFence(client)
    else:
        outboxes["convex"] = _Unreachable(
            "CONVEX_URL is not set: the Convex outbox backlog cannot be checked"
        )
    return CutoverControl(
        PostgresStageStore(engine),
        outboxes,
        thresholds,
        convex_fence=fence,
        verifications=PostgresVerifications(engine),
    )
