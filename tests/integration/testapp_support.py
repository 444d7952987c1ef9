"""The test Convex app (convex/testapp) as an existing deployment: its backend,
data written through its own public mutations, and both stores' documents."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.migrations import alembic_config, scripts_dir
from migrationkit.mirror.documents import live_documents
from migrationkit.mirror.feed import revision_from_export
from migrationkit.mirror.model import MirrorDocument
from migrationkit.testing.convex_backend import LocalConvexBackend

TABLES = ("events", "posts", "ratelimiter/limits", "scratch", "users")

CONFIG = """\
[mirror]
schema = "app_convex"
models = "convex_models.py"
workspace_field = "teamId"

[mirror.table.scratch]
document = true
"""

Documents = dict[str, dict[str, Any]]


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


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    # PostgreSQL keeps an absent optional field and an explicit null alike.
    return {k: v for k, v in document.items() if v is not None}


def convex_documents(client: ConvexClient) -> dict[str, Documents]:
    """Every live document, per qualified table, as Convex holds it now."""
    out: dict[str, Documents] = {t: {} for t in TABLES}
    cursor: str | None = None
    snapshot: int | None = None
    while True:
        page = client.list_snapshot(snapshot=snapshot, cursor=cursor)
        snapshot = page.snapshot
        for value in page.values:
            revision = revision_from_export(value)
            if revision.table in out:
                out[revision.table][revision.id] = _plain(dict(revision.document))
        if not page.has_more:
            break
        cursor = page.cursor
    return out


def component_documents(client: ConvexClient, component: str) -> Documents:
    out: Documents = {}
    cursor: str | None = None
    snapshot: int | None = None
    while True:
        page = client.list_snapshot(
            snapshot=snapshot, cursor=cursor, extra_params={"component": component}
        )
        snapshot = page.snapshot
        for value in page.values:
            revision = revision_from_export(value)
            out[revision.id] = _plain(dict(revision.document))
        if not page.has_more:
            return out
        cursor = page.cursor


def postgres_documents(engine: Engine, models: list[type[MirrorDocument]]) -> dict[str, Documents]:
    return {
        m.mirror.qualified_convex_name: {d["_id"]: _plain(d) for d in live_documents(engine, m)}
        for m in models
    }


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
    """alembic autogenerate for the models in a copy of the kit's migrations, then upgrade."""
    scripts = workdir / "migrations"
    if not scripts.exists():
        shutil.copytree(scripts_dir(), scripts, ignore=shutil.ignore_patterns("__pycache__"))
    config = alembic_config(url)
    config.set_main_option("script_location", str(scripts))
    previous = os.environ.get("MIGRATIONKIT_MODELS")
    os.environ["MIGRATIONKIT_MODELS"] = str(models_file)
    try:
        command.upgrade(config, "head")
        revision = command.revision(config, message="mirror tables", autogenerate=True)
        command.upgrade(config, "head")
    finally:
        if previous is None:
            os.environ.pop("MIGRATIONKIT_MODELS", None)
        else:
            os.environ["MIGRATIONKIT_MODELS"] = previous
    assert revision is not None and not isinstance(revision, list)
    return Path(revision.path)
