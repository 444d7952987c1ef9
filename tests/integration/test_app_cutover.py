"""The cutover of an existing app that adopted the outbox wrapper.

With ``MIGRATIONKIT_CONVEX_OUTBOX=app`` the cutover control reads the app
outbox's backlog and sets the app's own fence (``migrationkit/outbox:setFence``):
while PostgreSQL is the authority for a table, the wrapper refuses the app's
writes to it, and moving back lifts the fence.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.cutover.control import GateRefused
from migrationkit.cutover.gates import Thresholds
from migrationkit.cutover.stages import Stage
from migrationkit.cutover.wiring import CONVEX_OUTBOX, control_from_environment
from migrationkit.errors import ConfigurationError, FunctionFailed
from migrationkit.mirror.app_outbox_tail import AppOutboxStats, AppOutboxTail
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.verify.runner import verify
from migrationkit.verify.targets import mirror_target

from .testapp_support import Deployment, model, user

pytestmark = pytest.mark.postgres


@contextmanager
def tailing(client: ConvexClient, deployment: Deployment) -> Iterator[None]:
    """The convex_app_outbox worker, in a thread, for as long as the block runs."""
    stop = threading.Event()
    tail = AppOutboxTail(client, deployment.engine, deployment.models)
    thread = threading.Thread(target=tail.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def test_the_app_s_fence_follows_the_authority(
    testapp: LocalConvexBackend,
    testapp_client: ConvexClient,
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ada = testapp_client.mutation("users:create", user(1, "team-a"))
    bob = testapp_client.mutation("users:create", user(2, "team-b"))
    for key, value in {
        "MIGRATIONKIT_DATABASE_URL": deployment.url.render_as_string(hide_password=False),
        "CONVEX_URL": testapp.url,
        "CONVEX_DEPLOY_KEY": testapp.admin_key,
        CONVEX_OUTBOX: "app",
    }.items():
        monkeypatch.setenv(key, value)
    control = control_from_environment(Thresholds(max_backlog=0))
    control.drain_timeout = 20
    stats = AppOutboxStats(testapp_client)
    assert stats.backlog() == 2
    with tailing(testapp_client, deployment):
        for stage in (Stage.SHADOW_WRITE, Stage.SHADOW_READ):
            control.move(stage, entity="users", by="test")
        # pg_reads relies on PostgreSQL: a passing verify of the table first.
        with pytest.raises(GateRefused, match="verify"):
            control.move(Stage.PG_READS, entity="users", by="test")
        assert verify(
            deployment.engine, testapp_client, [mirror_target(model(deployment, "users"))]
        ).passed
        control.move(Stage.PG_READS, entity="users", by="test")
        control.move(Stage.PG_PRIMARY, entity="users", by="test")
    assert stats.backlog() == 0
    # PostgreSQL is the authority for users: the app's writes to them are refused,
    # whatever the workspace, and leave nothing behind; other tables go on.
    for target in (ada, bob):
        with pytest.raises(FunctionFailed, match="StageMoved"):
            testapp_client.mutation("users:update", {"id": target, "name": "refused"})
    assert testapp_client.query("users:get", {"id": ada})["name"] == "User 1"
    assert stats.backlog() == 0
    testapp_client.mutation("events:record", {"event": {"kind": "view", "page": "/"}})
    assert stats.backlog() == 1
    # Back to pg_reads: PostgreSQL's outbox is empty, the fence is lifted.
    control.rollback(entity="users", by="test")
    testapp_client.mutation("users:update", {"id": ada, "name": "written again"})
    assert testapp_client.query("users:get", {"id": ada})["name"] == "written again"


def test_a_workspace_scope_fences_only_that_workspace(
    testapp: LocalConvexBackend, testapp_client: ConvexClient, deployment: Deployment
) -> None:
    ada = testapp_client.mutation("users:create", user(1, "team-a"))
    bob = testapp_client.mutation("users:create", user(2, "team-b"))
    fence = {"entity": "users", "workspaceId": "team-a", "authority": "postgres"}
    testapp_client.mutation("migrationkit/outbox:setFence", fence)
    with pytest.raises(FunctionFailed, match="StageMoved"):
        testapp_client.mutation("users:update", {"id": ada, "name": "refused"})
    # A user may neither move into the fenced workspace nor out of it.
    with pytest.raises(FunctionFailed, match="StageMoved"):
        testapp_client.mutation("users:update", {"id": bob, "teamId": "team-a"})
    with pytest.raises(FunctionFailed, match="StageMoved"):
        testapp_client.mutation("users:update", {"id": ada, "teamId": "team-b"})
    testapp_client.mutation("users:update", {"id": bob, "name": "allowed"})
    testapp_client.mutation("migrationkit/outbox:setFence", {**fence, "authority": "convex"})
    testapp_client.mutation("users:update", {"id": ada, "name": "allowed again"})


def test_an_unknown_convex_outbox_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATIONKIT_DATABASE_URL", "postgresql://x@127.0.0.1:1/x")
    monkeypatch.setenv(CONVEX_OUTBOX, "mine")
    with pytest.raises(ConfigurationError, match="kit or app"):
        control_from_environment(Thresholds())
