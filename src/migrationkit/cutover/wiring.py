"""Builds the cutover control from the environment (the CLI's composition root)."""

from __future__ import annotations

import os

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.postgres.database_url import database_url_from_env
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.cutover.control import CutoverControl
from migrationkit.cutover.fence import APP_SET_FENCE, KIT_SET_FENCE, ConvexFence
from migrationkit.cutover.gates import Backlog, Thresholds
from migrationkit.cutover.store import PostgresStageStore
from migrationkit.errors import ConfigurationError
from migrationkit.mirror.app_outbox_tail import AppOutboxStats
from migrationkit.verify.records import PostgresVerifications


class _Unreachable:
    """Stands for an outbox that is not configured: its gate cannot pass."""

    def __init__(self, why: str) -> None:
        self.why = why

    def backlog(self) -> int | None:
        raise ConfigurationError(self.why)

    def oldest_pending_age(self) -> float | None:
        return None


#: Which Convex functions the cutover talks to: the kit's generated ones
#: (``kit``), or the outbox an existing app adopted (``app``: docs/app-outbox.md).
CONVEX_OUTBOX = "MIGRATIONKIT_CONVEX_OUTBOX"


def control_from_environment(thresholds: Thresholds) -> CutoverControl:
    engine = make_engine(database_url_from_env())
    outboxes: dict[str, Backlog] = {"postgres": PgOutboxSource(engine, owner="cutover-cli")}
    url = os.environ.get("CONVEX_URL")
    flavour = os.environ.get(CONVEX_OUTBOX, "kit")
    if flavour not in ("kit", "app"):
        raise ConfigurationError(f"{CONVEX_OUTBOX} must be kit or app, not {flavour!r}")
    fence = None
    if url:
        client = ConvexClient(url, admin_key=os.environ.get("CONVEX_DEPLOY_KEY"))
        if flavour == "app":
            outboxes["convex"] = AppOutboxStats(client)
            fence = ConvexFence(client, APP_SET_FENCE)
        else:
            outboxes["convex"] = ConvexOutboxSource(client)
            fence = ConvexFence(client, KIT_SET_FENCE)
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
