"""An existing app adopts the outbox wrapper; the worker tails it into the mirror.

convex/testapp imports its mutation builders from ``functions.ts``, which
wraps them with the generated ``migrationkit/wrap.ts`` (users, events and
scratch through ``withOutbox``; posts through convex-helpers'
``customMutation``). The app's own public mutations write; every write must
leave exactly one outbox row in its own transaction, and the rows must end
in PostgreSQL as Convex holds the documents, whatever the order.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.streaming_export import StreamingExport
from migrationkit.errors import BadReply, FunctionFailed
from migrationkit.mirror.app_outbox_tail import PENDING, AppOutboxTail, revision_from_outbox
from migrationkit.mirror.writer import MirrorWriter
from migrationkit.testing.convex_backend import LocalConvexBackend, convex_dir

from .test_zip_import_backend import export_zip
from .testapp_support import (
    Deployment,
    cli_env,
    convex_documents,
    migrationkit,
    post,
    postgres_documents,
    user,
)

pytestmark = pytest.mark.postgres


def outbox_rows(client: ConvexClient) -> list[dict[str, Any]]:
    """Every row of the app's outbox, pending or done."""
    return [r.document for r in StreamingExport(client, table_name="migrationkitOutbox").snapshot()]


def drain(tail: AppOutboxTail) -> int:
    total = 0
    while True:
        fetched, more = tail.run_once()
        total += fetched
        if not more:
            return total


class MixedWrites:
    """Inserts, patches, replaces and deletes of users and posts, through the app."""

    def __init__(self, client: ConvexClient, seed: int = 11) -> None:
        self.client = client
        self.random = random.Random(seed)
        self.users: list[str] = []
        self.posts: list[str] = []
        self.done: dict[str, int] = {}

    def step(self, n: int) -> None:
        r, c = self.random, self.client
        kinds = ["insert_user"]
        if self.users:
            kinds += ["insert_post", "patch_user", "replace_user", "delete_user"]
        if self.posts:
            kinds += ["patch_post", "view_post", "delete_post"]
        kind = r.choice(kinds)
        if kind == "insert_user":
            self.users.append(c.mutation("users:create", user(n, f"team-{'ab'[n % 2]}")))
        elif kind == "insert_post":
            self.posts.append(c.mutation("posts:create", post(n, r.choice(self.users))))
        elif kind == "patch_user":
            c.mutation("users:update", {"id": r.choice(self.users), "name": f"n{n}", "age": None})
        elif kind == "patch_post":
            c.mutation("posts:update", {"id": r.choice(self.posts), "title": f"t{n}", "tags": []})
        elif kind == "replace_user":
            c.mutation("users:replace", {"id": r.choice(self.users), "user": user(n + 5000)})
        elif kind == "view_post":
            c.mutation("posts:view", {"id": r.choice(self.posts)})
        elif kind == "delete_post":
            c.mutation("posts:remove", {"id": self.posts.pop(r.randrange(len(self.posts)))})
        else:
            c.mutation("users:remove", {"id": self.users.pop(r.randrange(len(self.users)))})
        self.done[kind] = self.done.get(kind, 0) + 1

    def run(self, count: int) -> dict[str, int]:
        for n in range(count):
            self.step(n)
        return self.done


def test_a_thousand_mixed_writes_land_in_postgres_exactly(
    testapp_client: ConvexClient, deployment: Deployment
) -> None:
    writes = MixedWrites(testapp_client).run(1000)
    assert sum(writes.values()) == 1000
    assert all(writes.get(k, 0) > 30 for k in ("patch_post", "replace_user", "delete_post"))
    rows = outbox_rows(testapp_client)
    # One row per write, in the write's transaction: no more, no fewer.
    assert len(rows) == 1000
    assert {r["op"] for r in rows} == {"insert", "patch", "replace", "delete"}
    assert all(r["status"] == "pending" for r in rows)

    tail = AppOutboxTail(testapp_client, deployment.engine, deployment.models, batch_size=170)
    assert tail.backlog() == 1000
    assert drain(tail) == 1000
    assert tail.backlog() == 0
    assert all(r["status"] == "done" for r in outbox_rows(testapp_client))

    convex = convex_documents(testapp_client)
    postgres = postgres_documents(deployment.engine, deployment.models)
    for table in ("users", "posts"):
        assert convex[table], table
        assert postgres[table] == convex[table], f"{table} differs"


def test_replayed_and_reordered_rows_end_the_same(
    testapp_client: ConvexClient, deployment: Deployment
) -> None:
    MixedWrites(testapp_client, seed=3).run(300)
    pending = testapp_client.query(PENDING, {"limit": 1000})
    revisions = [revision_from_outbox(row) for row in pending]
    assert len(revisions) == 300
    shuffled = random.Random(5).sample(revisions, len(revisions))
    writer = MirrorWriter(deployment.engine)
    # Newest first, duplicated, in small batches: the rev guard sorts it out.
    for start in range(0, 300, 40):
        writer.write(shuffled[start : start + 40])
    writer.write(list(reversed(revisions)))
    expected = convex_documents(testapp_client)
    postgres = postgres_documents(deployment.engine, deployment.models)
    for table in ("users", "posts"):
        assert postgres[table] == expected[table], f"{table} differs"
    # The tail then applies the same rows once more and changes nothing.
    tail = AppOutboxTail(testapp_client, deployment.engine, deployment.models)
    assert drain(tail) == 300
    assert postgres_documents(deployment.engine, deployment.models) == postgres


def test_a_mutation_that_throws_leaves_no_outbox_row(
    testapp_client: ConvexClient, deployment: Deployment
) -> None:
    author = testapp_client.mutation("users:create", user(1))
    first = testapp_client.mutation("posts:create", post(1, author))
    second = testapp_client.mutation("posts:create", post(2, author))
    before = outbox_rows(testapp_client)
    assert len(before) == 3
    # Patches two posts, then fails on the third: all or nothing.
    with pytest.raises(FunctionFailed, match="no post"):
        testapp_client.mutation("posts:retitle", {"ids": [first, second, "nope"], "title": "x"})
    assert outbox_rows(testapp_client) == before
    assert testapp_client.query("posts:get", {"id": first})["title"] == "Post 1"
    tail = AppOutboxTail(testapp_client, deployment.engine, deployment.models)
    assert drain(tail) == 3
    # A write in the same transaction as a component's: only the app's table is tracked.
    testapp_client.mutation("users:createLimited", {"user": user(2), "max": 5})
    assert [r["table"] for r in outbox_rows(testapp_client)].count("users") == 2


def test_without_streaming_export_an_export_zip_then_the_worker_on_the_outbox(
    testapp: LocalConvexBackend, testapp_client: ConvexClient, deployment: Deployment
) -> None:
    """The path for a deployment below the Pro plan: the app has adopted the
    wrapper; the first copy comes from an export ZIP; the worker follows the
    outbox, with no streaming export at all."""
    writes = MixedWrites(testapp_client, seed=8)
    writes.run(60)
    testapp.set_streaming_export(False)
    try:
        path = export_zip(testapp, deployment.workdir / "export.zip", format="uniform")
        env = cli_env(testapp, deployment.url)
        done = migrationkit("import", str(path), env=env, cwd=deployment.workdir)
        assert done.returncode == 0, done.stderr
        worker_env = env | {
            "MIGRATIONKIT_SOURCE": "convex_app_outbox",
            "MIGRATIONKIT_MIRROR_CONFIG": str(deployment.workdir / "migrationkit.toml"),
            "MIGRATIONKIT_METRICS_PORT": "-1",
            "MIGRATIONKIT_POLL_MAX": "0.2",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "migrationkit.worker"],
            env=worker_env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for n in range(200, 340):
                writes.step(n)
            deadline = time.monotonic() + 60
            while testapp_client.query("migrationkit/outbox:stats", {"limit": 1000})["pending"]:
                assert time.monotonic() < deadline, "the worker did not drain the outbox"
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, log = worker.communicate(timeout=30)
        assert worker.returncode == 0, log
        assert "via convex_app_outbox" in log
    finally:
        testapp.set_streaming_export(True)
    convex = convex_documents(testapp_client)
    postgres = postgres_documents(deployment.engine, deployment.models)
    for table in ("users", "posts"):
        assert postgres[table] == convex[table], f"{table} differs"


def test_a_malformed_outbox_row_is_a_typed_error() -> None:
    good = {"table": "users", "id": "x", "rev": 5, "deleted": True, "document": None}
    assert revision_from_outbox(good).deleted
    for bad in (
        {**good, "rev": 0},
        {**good, "rev": "5"},
        {**good, "deleted": False},
        {**good, "table": 3},
        {"table": "users"},
    ):
        with pytest.raises(BadReply):
            revision_from_outbox(bad)


def test_the_generated_folder_in_the_test_app_is_current(
    deployment: Deployment, tmp_path: Path
) -> None:
    folder = convex_dir() / "testapp" / "migrationkit"
    env = cli_env(deployment.testapp)
    config = deployment.workdir / "migrationkit.toml"
    done = migrationkit(
        "codegen",
        "app-outbox",
        "--config",
        str(config),
        "--out",
        str(folder),
        "--check",
        env=env,
        cwd=deployment.workdir,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # A fresh folder is written whole, and --check then passes on it.
    fresh = tmp_path / "migrationkit"
    done = migrationkit(
        "codegen",
        "app-outbox",
        "--config",
        str(config),
        "--out",
        str(fresh),
        env=env,
        cwd=deployment.workdir,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in fresh.iterdir()) == [
        "config.ts",
        "outbox.ts",
        "tables.ts",
        "wrap.ts",
    ]
    (fresh / "config.ts").write_text("// edited\n")
    done = migrationkit(
        "codegen",
        "app-outbox",
        "--config",
        str(config),
        "--out",
        str(fresh),
        "--check",
        env=env,
        cwd=deployment.workdir,
    )
    assert done.returncode == 1 and "config.ts" in done.stderr
    shutil.rmtree(fresh)


def test_every_form_of_a_write_is_recorded_in_order(
    testapp_client: ConvexClient, deployment: Deployment
) -> None:
    doc_id = testapp_client.mutation("forms:everyForm", {"user": user(3)})
    rows = [r for r in outbox_rows(testapp_client) if r["docId"] == doc_id]
    assert [r["op"] for r in rows] == ["insert", "patch", "patch", "replace", "delete"]
    revs = [r["rev"] for r in rows]
    # One mutation, one clock reading: each write still gets its own revision.
    assert revs == sorted(revs) and len(set(revs)) == 5
    assert [r["doc"]["name"] if r["doc"] else None for r in rows] == [
        "User 3",
        "patched with the table named",
        "patched by id alone",
        "replaced with the table named",
        None,
    ]
    tail = AppOutboxTail(testapp_client, deployment.engine, deployment.models)
    assert drain(tail) == 5
    assert doc_id not in postgres_documents(deployment.engine, deployment.models)["users"]
