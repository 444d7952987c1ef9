"""The demo's second part: an existing Convex app, mirrored as it is.

The test app (``convex/testapp``) has its own schema and mutations, none of
them made by the kit. The demo introspects it, writes the migration with
alembic autogenerate, backfills from one snapshot while the app keeps
writing, then runs the worker on the change feed and checks PostgreSQL
against Convex document by document.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.mirror.compare import Documents, convex_documents, postgres_documents
from migrationkit.mirror.config import load_config
from migrationkit.mirror.loading import selected_models
from migrationkit.mirror.model import MirrorDocument
from migrationkit.testing.convex_backend import LocalConvexBackend, convex_dir

REPLICATING = "SELECT set_config('migrationkit.replicating', 'on', true)"

CONFIG = """\
[mirror]
schema = "app_convex"
models = "convex_models.py"
workspace_field = "teamId"

[mirror.table.scratch]
document = true
"""


def _seed(client: ConvexClient) -> None:
    for offset in range(0, 3000, 1000):
        client.mutation("seed:bulk", {"count": 1000, "offset": offset, "teams": 3})
    client.mutation("events:record", {"event": {"kind": "click", "x": 10.5, "y": 3.0}})
    client.mutation("events:record", {"event": {"kind": "view", "page": "/pricing"}})
    client.mutation("scratch:put", {"doc": {"note": "no schema", "n": 2**40}})
    for key in ("login", "signup"):
        client.mutation("ratelimit:hit", {"key": key})


def _churn(client: ConvexClient, stop: threading.Event, counter: list[int]) -> None:
    """New users, renames and new posts while the backfill and the worker run."""
    rng = random.Random(3)
    users = [v["_id"] for v in client.list_snapshot(table_name="users").values[:50]]
    while not stop.is_set():
        n = counter[0]
        choice = rng.randrange(3)
        if choice == 0:
            client.mutation("users:update", {"id": rng.choice(users), "name": f"renamed {n}"})
        elif choice == 1:
            client.mutation("seed:bulk", {"count": 2, "offset": 10_000 + 2 * n, "teams": 3})
        else:
            client.mutation("ratelimit:hit", {"key": rng.choice(["login", "signup", "reset"])})
        counter[0] += 1


def _postgres(url: URL, models: list[type[MirrorDocument]]) -> Documents:
    with engine_for(url) as engine:
        return postgres_documents(engine, models)


@contextmanager
def engine_for(url: URL) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def existing_app(console: Console, database_url: URL) -> bool:
    """Introspect, migrate, backfill and tail the test app; True when the stores agree."""
    console.rule("[bold]an existing Convex app: introspect, backfill, tail")
    db = database_url.render_as_string(hide_password=False)
    with (
        LocalConvexBackend(functions_dir=convex_dir() / "testapp") as backend,
        ConvexClient(backend.url, admin_key=backend.admin_key) as client,
        tempfile.TemporaryDirectory(prefix="mk_demo_app_") as tmp,
    ):
        work = Path(tmp)
        _seed(client)
        console.print(
            f"the test app at {backend.url} holds users, posts, events, scratch and a"
            " ratelimiter component's limits, written by its own mutations"
        )
        env = os.environ | {
            "CONVEX_URL": backend.url,
            "CONVEX_DEPLOY_KEY": backend.admin_key,
            "MIGRATIONKIT_DATABASE_URL": db,
        }
        (work / "migrationkit.toml").write_text(CONFIG)
        console.print("$ migrationkit introspect")
        subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "introspect"], cwd=work, env=env, check=True
        )
        versions = work / "migrations"
        versions.mkdir()
        for args in (
            ["revision", "-m", "convex mirror", "--models", "convex_models.py"],
            ["upgrade"],
        ):
            console.print(f"$ migrationkit db {' '.join(args)} --versions migrations/")
            subprocess.run(
                [sys.executable, "-m", "migrationkit.cli", "db", *args, "--versions", "migrations"],
                cwd=work,
                env=env,
                check=True,
            )

        stop = threading.Event()
        counter = [0]
        writer = threading.Thread(target=_churn, args=(client, stop, counter), daemon=True)
        writer.start()
        console.print("$ migrationkit backfill   (the app keeps writing meanwhile)")
        subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "backfill"], cwd=work, env=env, check=True
        )
        worker_env = env | {
            "MIGRATIONKIT_SOURCE": "convex_mirror",
            "MIGRATIONKIT_MIRROR_CONFIG": str(work / "migrationkit.toml"),
            "MIGRATIONKIT_METRICS_PORT": "-1",
        }
        console.print("starting the worker on the change feed: MIGRATIONKIT_SOURCE=convex_mirror")
        worker = subprocess.Popen(
            [sys.executable, "-m", "migrationkit.worker"], env=worker_env, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(1.0)
            stop.set()
            writer.join(timeout=30)
            models = selected_models(load_config(work / "migrationkit.toml"))
            tables = {m.mirror.qualified_convex_name for m in models}

            def equal() -> bool:
                return _postgres(database_url, models) == convex_documents(client, tables)

            in_step = _wait_until(equal, 60)
        finally:
            worker.terminate()
            code = worker.wait(timeout=30)
        convex = convex_documents(client, tables)
        postgres = _postgres(database_url, models)
        table = Table("Convex table", "PostgreSQL table", "docs", "rows", "equal")
        for m in models:
            name = m.mirror.qualified_convex_name
            table.add_row(
                name,
                m.mirror.qualified_pg_name,
                str(len(convex[name])),
                str(len(postgres[name])),
                "[green]yes" if convex[name] == postgres[name] else "[red]no",
            )
        console.print(table)
        console.print(
            f"{counter[0]} writes arrived during the backfill and the tail;"
            f" the worker stopped with exit code {code}"
        )
        # A planted difference, for verify to find, planted as a faulty writer
        # would (an application's write is captured and goes to Convex instead).
        with engine_for(database_url) as engine, engine.begin() as conn:
            conn.exec_driver_sql(REPLICATING)
            planted = conn.exec_driver_sql(
                "UPDATE app_convex.users SET name = 'tampered' WHERE _id ="
                " (SELECT min(_id) FROM app_convex.users) RETURNING _id"
            ).scalar_one()
        console.print("$ migrationkit verify   (after changing one user's name in PostgreSQL)")
        found = subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "verify", "--settle", "0"], cwd=work, env=env
        )
        with engine_for(database_url) as engine, engine.begin() as conn:
            conn.exec_driver_sql(REPLICATING)
            conn.exec_driver_sql(
                "UPDATE app_convex.users SET name = %(name)s WHERE _id = %(id)s",
                {"name": convex["users"][planted]["name"], "id": planted},
            )
        console.print("$ migrationkit verify   (the name put back)")
        clean = subprocess.run(
            [sys.executable, "-m", "migrationkit.cli", "verify"], cwd=work, env=env
        )
        drained = _drain_app_outbox(console, client, env, work)
        rolled_back = _roll_back_a_write(console, client, database_url, env, work)
    return (
        in_step
        and code == 0
        and found.returncode == 1
        and clean.returncode == 0
        and drained
        and rolled_back
    )


def _worker(env: dict[str, str], work: Path, **settings: str) -> subprocess.Popen[bytes]:
    worker_env = env | {
        "MIGRATIONKIT_MIRROR_CONFIG": str(work / "migrationkit.toml"),
        "MIGRATIONKIT_METRICS_PORT": "-1",
        "MIGRATIONKIT_POLL_MAX": "0.2",
        **{f"MIGRATIONKIT_{k.upper()}": v for k, v in settings.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-m", "migrationkit.worker"], env=worker_env, stderr=subprocess.DEVNULL
    )


def _stop(worker: subprocess.Popen[bytes]) -> int:
    worker.terminate()
    return worker.wait(timeout=30)


def _drain_app_outbox(
    console: Console, client: ConvexClient, env: dict[str, str], work: Path
) -> bool:
    """The app adopted the outbox (convex/testapp/functions.ts): its own
    mutations recorded every write; a worker on that outbox needs no
    streaming export at all."""
    console.rule("[bold]the outbox inside the app's own mutations (no streaming export needed)")
    pending = int(client.query("migrationkit/outbox:stats", {"limit": 1000})["pending"])
    console.print(
        f"the app's wrapped mutations recorded {pending} outbox rows"
        " (`migrationkit codegen app-outbox`, adopted in functions.ts)"
    )
    console.print("starting the worker on them: MIGRATIONKIT_SOURCE=convex_app_outbox")
    worker = _worker(env, work, source="convex_app_outbox")
    try:
        drained = _wait_until(
            lambda: client.query("migrationkit/outbox:stats", {"limit": 1000})["pending"] == 0, 60
        )
    finally:
        code = _stop(worker)
    console.print(
        f"outbox drained: {'yes' if drained else 'no'}; rows already applied from the change"
        f" feed were older or equal and changed nothing (worker exit code {code})"
    )
    return drained and code == 0


def _roll_back_a_write(
    console: Console, client: ConvexClient, database_url: URL, env: dict[str, str], work: Path
) -> bool:
    """pg_primary for the app: a write made in PostgreSQL reaches the app's own
    table through its generated `migrationkit/outbox:apply`."""
    console.rule("[bold]the way back: a PostgreSQL write into the app's own Convex table")
    with engine_for(database_url) as engine, engine.begin() as conn:
        target = conn.exec_driver_sql(
            "UPDATE app_convex.users SET name = 'written in PostgreSQL' WHERE _id ="
            " (SELECT max(_id) FROM app_convex.users WHERE NOT _deleted) RETURNING _id"
        ).scalar_one()
    console.print(f"an application's UPDATE of app_convex.users, user {target}")
    console.print("starting the worker the other way: MIGRATIONKIT_DIRECTION=pg_to_convex")
    worker = _worker(env, work, direction="pg_to_convex", source="pg_outbox")
    try:
        seen = _wait_until(
            lambda: client.query("users:get", {"id": target})["name"] == "written in PostgreSQL",
            60,
        )
    finally:
        code = _stop(worker)
    name = client.query("users:get", {"id": target})["name"]
    console.print(f"the app's own query users:get answers {name!r} (worker exit code {code})")
    return seen and code == 0
