"""The test Convex app (convex/testapp) as an existing deployment: its backend,
data written through its own public mutations, and both stores' documents."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres import migrations
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror import compare
from migrationkit.mirror.compare import Documents
from migrationkit.mirror.config import load_config
from migrationkit.mirror.loading import import_models, selected_models
from migrationkit.mirror.model import MirrorDocument, registered_mirrors, unregister_mirrors
from migrationkit.mirror.tail import MirrorTail
from migrationkit.schema.metadata import metadata
from migrationkit.testing.convex_backend import LocalConvexBackend

TABLES = ("events", "posts", "ratelimiter/limits", "scratch", "users")

# The wrapper's audit log (migrationkitAuditLog) is mirrored like any table
# by default; these tests are about the app's own tables, so it is left out
# here. tests/integration/test_audit_log.py mirrors it.
CONFIG = """\
[mirror]
schema = "app_convex"
models = "convex_models.py"
workspace_field = "teamId"
exclude_tables = ["migrationkitAuditLog"]

[mirror.table.scratch]
document = true
"""


def user(i: int, team: str = "team-a") -> dict[str, Any]:
    return {
        "name": f"User {i}",
        "email": f"user{i}@example.com",
        **({"age": 30.5 + i} if i % 2 else {}),
        "credits": 2**40 + i,
        **({"avatar": bytes([i % 256, 0, 255])} if i % 3 == 0 else {}),
        "role": ["admin", "member", "guest"][i % 3],
        "teamId": team,
        "profile": {
            **({"bio": f"bio {i}"} if i % 2 == 0 else {}),
            "links": [f"https://example.com/{i}"],
            "prefs": {"theme": "dark", "beta": i % 2 == 0},
        },
    }


def post(i: int, author: str, team: str = "team-a") -> dict[str, Any]:
    return {
        "author": author,
        "teamId": team,
        "title": f"Post {i}",
        "body": "x" * (i % 50),
        "tags": ["a", f"t{i % 4}"],
        "stats": {"views": 10**12 + i, "ratings": [4.5, float(i)]},
        "status": ["draft", "published", "archived"][i % 3],
        "score": i / 2 if i % 2 else f"grade-{i}",
        **({"attachment": bytes([i % 256])} if i % 4 == 0 else {}),
    }


def seed(client: ConvexClient, users: int = 12, posts: int = 24) -> dict[str, list[str]]:
    """Documents in every kind of table, written through the app's own mutations."""
    ids: dict[str, list[str]] = {"users": [], "posts": [], "scratch": []}
    for i in range(users):
        ids["users"].append(client.mutation("users:create", user(i, f"team-{'ab'[i % 2]}")))
    for i in range(posts):
        author = ids["users"][i % users]
        ids["posts"].append(client.mutation("posts:create", post(i, author)))
    client.mutation("events:record", {"event": {"kind": "click", "x": 1.5, "y": 2.0}})
    client.mutation("events:record", {"event": {"kind": "view", "page": "/home"}})
    for i in range(4):
        doc = {"n": i, "nested": {"deep": [1.0, "two", None]}, "big": 2**50 + i}
        ids["scratch"].append(client.mutation("scratch:put", {"doc": doc}))
    for key in ("alpha", "beta", "gamma"):
        client.mutation("ratelimit:hit", {"key": key})
    return ids


class Churn:
    """Writes, updates and deletes through the app while something else runs."""

    def __init__(self, client: ConvexClient, ids: dict[str, list[str]], seed_: int = 7) -> None:
        self.client = client
        self.ids = {k: list(v) for k, v in ids.items()}
        self.random = random.Random(seed_)
        self.writes = 0
        self.stop = threading.Event()
        self.failures: list[BaseException] = []

    def step(self) -> None:
        r, c, n = self.random, self.client, self.writes
        choice = r.randrange(6)
        if choice == 0:
            self.ids["users"].append(c.mutation("users:create", user(1000 + n)))
        elif choice == 1 and self.ids["users"]:
            target = r.choice(self.ids["users"])
            c.mutation("users:update", {"id": target, "name": f"renamed {n}", "credits": n})
        elif choice == 2 and self.ids["posts"]:
            target = self.ids["posts"].pop(r.randrange(len(self.ids["posts"])))
            c.mutation("posts:remove", {"id": target})
        elif choice == 3 and self.ids["scratch"]:
            target = r.choice(self.ids["scratch"])
            c.mutation("scratch:put", {"id": target, "doc": {"changed": n}})
        elif choice == 4:
            c.mutation("ratelimit:hit", {"key": r.choice(["alpha", "delta"])})
        else:
            author = r.choice(self.ids["users"])
            self.ids["posts"].append(c.mutation("posts:create", post(2000 + n, author)))
        self.writes += 1

    @contextmanager
    def running(self) -> Iterator[Churn]:
        def loop() -> None:
            try:
                while not self.stop.is_set():
                    self.step()
            except BaseException as exc:
                self.failures.append(exc)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=60)
        if self.failures:
            raise self.failures[0]


def convex_documents(client: ConvexClient) -> Documents:
    """Every live document of the test app's tables, per qualified table."""
    return compare.convex_documents(client, TABLES)


def postgres_documents(engine: Engine, models: list[type[MirrorDocument]]) -> Documents:
    return compare.postgres_documents(engine, models)


def cli_env(backend: LocalConvexBackend, database_url: URL | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["CONVEX_URL"] = backend.url
    env["CONVEX_DEPLOY_KEY"] = backend.admin_key
    if database_url is not None:
        env["MIGRATIONKIT_DATABASE_URL"] = database_url.render_as_string(hide_password=False)
    return env


def migrationkit(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrationkit.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def migrate_with_models(url: URL, models_file: Path, workdir: Path) -> Path:
    """The user's steps: the kit's migrations, then a revision for the models, applied."""
    versions = workdir / "versions"
    versions.mkdir(exist_ok=True)
    import_models(models_file)
    migrations.upgrade(url, versions=versions)
    written = migrations.revision(url, "mirror tables", versions)
    migrations.upgrade(url, versions=versions)
    assert written is not None
    return written


class Deployment:
    """An introspected, migrated mirror of the test app on its own database."""

    def __init__(self, testapp: LocalConvexBackend, url: URL, workdir: Path) -> None:
        self.testapp = testapp
        self.url = url
        self.workdir = workdir
        (workdir / "migrationkit.toml").write_text(CONFIG)
        done = migrationkit("introspect", env=cli_env(testapp), cwd=workdir)
        assert done.returncode == 0, done.stderr
        self.models_file = workdir / "convex_models.py"
        self.revision = migrate_with_models(url, self.models_file, workdir)
        self.models = selected_models(load_config(workdir / "migrationkit.toml"))
        self.engine = make_engine(url)

    def close(self) -> None:
        self.engine.dispose()
        tables = [m for m in registered_mirrors()]
        unregister_mirrors(tables)
        for table in list(metadata.tables.values()):
            if table.schema == "app_convex":
                metadata.remove(table)


def model(deployment: Deployment, table: str) -> type[MirrorDocument]:
    return next(m for m in deployment.models if m.mirror.qualified_convex_name == table)


def tail_until_caught_up(client: ConvexClient, deployment: Deployment) -> None:
    tail = MirrorTail(client, deployment.engine, deployment.models)
    while True:
        _, more = tail.run_once()
        if not more:
            return
