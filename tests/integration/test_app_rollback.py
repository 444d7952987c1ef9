"""The rollback window of an existing app: writes an application makes to the
mirror tables in PostgreSQL reach the app's own Convex tables.

Real PostgreSQL and the local backend serving convex/testapp. The mirror
tables come from the user's path (introspect, `db revision`, upgrade), so
they carry the capture triggers that revision writes. Writes are plain SQL,
as an application would make them; the pg_to_convex worker's parts
(PgOutboxSource, the routing sink, the outbox Worker) carry them over; the
app's own queries read the result over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from migrationkit.adapters.convex.applier import ConvexApplier
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres import migrations
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.adapters.postgres.engine import make_engine
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.bootstrap import build_pipeline
from migrationkit.domain.change import Change
from migrationkit.domain.outbox import OutboxEvent
from migrationkit.errors import FunctionFailed
from migrationkit.mirror.backfill import Backfill
from migrationkit.mirror.reverse import ConvexMirrorApplier, RoutingSink
from migrationkit.mirror.rows import MirrorRevision, to_encoded_json
from migrationkit.mirror.writer import MirrorWriter
from migrationkit.outbox.settings import WorkerSettings
from migrationkit.outbox.worker import Worker, WorkerConfig
from migrationkit.schema import rls
from migrationkit.testing.convex_backend import LocalConvexBackend
from migrationkit.testing.databases import TestServer, throwaway_database

from .testapp_support import Deployment, seed

pytestmark = pytest.mark.postgres


class Rollback:
    """The test app mirrored (backfilled), and the pg_to_convex worker's parts."""

    def __init__(self, client: ConvexClient, deployment: Deployment) -> None:
        self.client = client
        self.deployment = deployment
        self.engine = deployment.engine
        self.ids = seed(client, users=3, posts=3)
        Backfill(client, self.engine, deployment.models).run()
        self.source = PgOutboxSource(self.engine, owner="rollback-test", lease_seconds=30)
        self.mirror = ConvexMirrorApplier(client, deployment.models)
        self.sink = RoutingSink(mirror=self.mirror, entities=ConvexApplier(client))
        self.worker = Worker(
            self.source,
            self.sink,
            DeadLetterStore(self.engine),
            config=WorkerConfig(batch_size=50, consumer="rollback-test"),
        )

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []

    def events(self) -> list[dict[str, Any]]:
        rows = self.sql("SELECT * FROM outbox_events ORDER BY occurred_at")
        return [dict(r._mapping) for r in rows]

    def changes(self) -> list[Change]:
        """Every event of the outbox as a Change, as the source reads them."""
        fields = OutboxEvent.model_fields
        return [
            Change.from_event(OutboxEvent.model_validate({k: e[k] for k in fields if k in e}))
            for e in self.events()
        ]

    def drain(self) -> None:
        """Run the worker until the outbox has nothing left to deliver."""
        for _ in range(20):
            self.worker.run_once()
            if self.source.backlog() == 0:
                break
        assert self.source.backlog() == 0
        assert {e["status"] for e in self.events()} <= {"done"}

    def user(self, id_: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.client.query("users:get", {"id": id_})
        return found


@pytest.fixture(scope="module")
def mirrored_app(
    testapp: LocalConvexBackend,
    migrationkit_server: TestServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """The ``deployment`` fixture's work (introspect, `db revision`, upgrade),
    done once for the module: it is most of a test's time."""
    testapp.reset()
    with ConvexClient(testapp.url, admin_key=testapp.admin_key) as client:
        seed(client, users=2, posts=2)
    with throwaway_database(migrationkit_server.admin_url, prefix="mk_rollback") as url:
        made = Deployment(testapp, url, Path(tmp_path_factory.mktemp("rollback")))
        try:
            yield made
        finally:
            made.close()


def empty_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        mirrors = conn.execute(
            text(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
                " WHERE schemaname = 'app_convex'"
            )
        ).scalars()
        kit = ["outbox_events", "dead_letters", "sync_backfills", "sync_cursors"]
        conn.execute(text(f"TRUNCATE {', '.join([*mirrors, *kit])}"))


@pytest.fixture
def rollback(testapp_client: ConvexClient, mirrored_app: Deployment) -> Rollback:
    """Convex emptied (by ``testapp_client``), then seeded and backfilled afresh."""
    empty_postgres(mirrored_app.engine)
    made = Rollback(testapp_client, mirrored_app)
    # (e) a backfill is the kit's own write: nothing to send back.
    assert made.events() == []
    return made


def test_an_update_in_postgresql_reaches_the_app_s_own_tables(rollback: Rollback) -> None:
    target = rollback.ids["users"][0]
    before = rollback.user(target)
    assert before is not None
    (old_ts,) = rollback.sql("SELECT _ts FROM app_convex.users WHERE _id = :i", i=target)[0]

    rollback.sql(
        "UPDATE app_convex.users SET name = 'Renamed in PG', credits = credits + 1 WHERE _id = :i",
        i=target,
    )

    (event,) = rollback.events()
    (new_ts,) = rollback.sql("SELECT _ts FROM app_convex.users WHERE _id = :i", i=target)[0]
    assert new_ts > old_ts
    assert (event["entity"], event["topic"]) == ("mirror:users", "mirror:users.upsert")
    assert (event["entity_id"], event["version"]) == (target, new_ts)
    assert event["workspace_id"] == before["teamId"]
    assert event["dedupe_key"] == f"mirror:users:{before['teamId']}:{target}:{new_ts}"
    rollback.drain()
    after = rollback.user(target)
    assert after == {**before, "name": "Renamed in PG", "credits": before["credits"] + 1}
    listed = rollback.client.query("users:list", {"teamId": before["teamId"]})
    assert [u["name"] for u in listed if u["_id"] == target] == ["Renamed in PG"]


def test_rows_made_in_postgresql_get_convex_documents_and_references(
    rollback: Rollback,
) -> None:
    profile = {"links": ["https://example.com/pg"], "prefs": {"theme": "light", "beta": True}}
    with rollback.engine.begin() as conn:
        # No _id, no _ts, no creation time, no workspace_id: the app's plain INSERT.
        user_id = conn.execute(
            text(
                "INSERT INTO app_convex.users (name, email, age, credits, avatar, role, team_id,"
                " profile) VALUES ('Made in PG', 'pg@example.com', 41, :credits, '\\x00ff'::bytea,"
                " 'member', 'team-a', CAST(:profile AS jsonb)) RETURNING _id"
            ),
            {"credits": 2**53 + 1, "profile": to_encoded_json(profile)},
        ).scalar_one()
        post_id = conn.execute(
            text(
                "INSERT INTO app_convex.posts (author, team_id, title, body, tags, stats, status,"
                " score) VALUES (:author, 'team-a', 'Post from PG', 'body', CAST(:tags AS jsonb),"
                " CAST(:stats AS jsonb), 'draft', CAST(:score AS jsonb)) RETURNING _id"
            ),
            {
                "author": user_id,
                "tags": to_encoded_json(["pg"]),
                "stats": to_encoded_json({"views": 7, "ratings": [4.5]}),
                "score": to_encoded_json(3.0),
            },
        ).scalar_one()
    assert user_id.startswith("pg_") and post_id.startswith("pg_")
    assert [(e["entity"], e["entity_id"], e["workspace_id"]) for e in rollback.events()] == [
        ("mirror:users", user_id, "team-a"),
        ("mirror:posts", post_id, "team-a"),
    ]
    # The post alone: Convex does not know its author yet, so it is refused
    # (the worker tries it again later) and nothing is written.
    post_change = rollback.changes()[1]
    with pytest.raises(FunctionFailed, match="UnresolvedReference"):
        rollback.mirror.apply([post_change])

    rollback.drain()
    users = rollback.client.query("users:list", {"teamId": "team-a"})
    (made,) = [u for u in users if u["email"] == "pg@example.com"]
    assert made["_id"] != user_id
    assert {k: made[k] for k in ("name", "age", "credits", "avatar", "role", "profile")} == {
        "name": "Made in PG",
        "age": 41.0,
        "credits": 2**53 + 1,
        "avatar": b"\x00\xff",
        "role": "member",
        "profile": profile,
    }
    (post,) = [p for p in rollback.client.query("posts:list", {}) if p["title"] == "Post from PG"]
    post = rollback.client.query("posts:get", {"id": post["_id"]})
    assert post["author"] == made["_id"]
    assert (post["stats"], post["score"], post["tags"]) == (
        {"views": 7, "ratings": [4.5]},
        3.0,
        ["pg"],
    )

    # Later writes to the row made in PostgreSQL find the same document.
    rollback.sql("UPDATE app_convex.users SET age = 42.5 WHERE _id = :i", i=user_id)
    rollback.drain()
    assert rollback.user(made["_id"])["age"] == 42.5  # type: ignore[index]


def test_a_delete_in_postgresql_deletes_the_document(rollback: Rollback) -> None:
    post_id = rollback.ids["posts"][0]
    assert rollback.client.query("posts:get", {"id": post_id}) is not None
    rollback.sql("DELETE FROM app_convex.posts WHERE _id = :i", i=post_id)
    (event,) = rollback.events()
    assert (event["topic"], event["payload"]["_deleted"]) == ("mirror:posts.delete", True)
    # A soft delete (the row kept as a tombstone) deletes it just the same.
    user_id = rollback.ids["users"][2]
    rollback.sql("UPDATE app_convex.users SET _deleted = true WHERE _id = :i", i=user_id)
    rollback.drain()
    assert rollback.client.query("posts:get", {"id": post_id}) is None
    assert rollback.user(user_id) is None
    # Purging the tombstone tells Convex nothing new.
    rollback.sql("DELETE FROM app_convex.users WHERE _id = :i", i=user_id)
    assert len(rollback.events()) == 2


def test_replays_and_reordering_change_nothing(rollback: Rollback) -> None:
    target = rollback.ids["users"][1]
    for name in ("first", "second", "third"):
        rollback.sql("UPDATE app_convex.users SET name = :n WHERE _id = :i", n=name, i=target)
    rollback.sql(
        "INSERT INTO app_convex.users (name, email, credits, role, team_id, profile)"
        " VALUES ('new', 'new@example.com', 1, 'guest', 'team-b', CAST(:p AS jsonb))",
        p=to_encoded_json({"links": [], "prefs": {"theme": "dark", "beta": False}}),
    )
    rollback.sql("DELETE FROM app_convex.posts WHERE _id = :i", i=rollback.ids["posts"][1])
    rollback.drain()
    changes = rollback.changes()
    assert len(changes) == 5
    state = rollback.client.query("users:list", {}), rollback.client.query("posts:list", {})

    again = rollback.sink.apply(changes)
    backwards = rollback.sink.apply(list(reversed(changes)))
    assert (again.applied, again.stale) == (0, 5)
    assert (backwards.applied, backwards.stale) == (0, 5)
    assert rollback.user(target)["name"] == "third"  # type: ignore[index]
    assert (rollback.client.query("users:list", {}), rollback.client.query("posts:list", {})) == (
        state
    )


def test_out_of_order_delivery_keeps_the_newest(rollback: Rollback) -> None:
    target = rollback.ids["users"][0]
    for name in ("older", "newer"):
        rollback.sql("UPDATE app_convex.users SET name = :n WHERE _id = :i", n=name, i=target)
    older, newer = rollback.changes()
    assert rollback.mirror.apply([newer]).applied == 1
    late = rollback.mirror.apply([older])
    assert (late.applied, late.stale) == (0, 1)
    assert rollback.user(target)["name"] == "newer"  # type: ignore[index]


def test_the_kit_s_own_writes_are_not_captured(rollback: Rollback) -> None:
    target = rollback.ids["users"][0]
    document = {**rollback.user(target), "name": "from the change feed"}  # type: ignore[dict-item]
    revision = MirrorRevision("users", target, 2**62, False, document)
    assert MirrorWriter(rollback.engine).write([revision]).applied == 1
    rows = rollback.sql("SELECT name, _ts FROM app_convex.users WHERE _id = :i", i=target)
    # Written as given: not stamped, not captured.
    assert rows == [("from the change feed", 2**62)]
    assert rollback.events() == []


def test_a_whole_document_table_goes_back_too(rollback: Rollback) -> None:
    target = rollback.ids["scratch"][0]
    document = {"n": 2**60, "nested": {"deep": [1.5, "two", None]}, "raw": b"\x01"}
    rollback.sql(
        "UPDATE app_convex.scratch SET document = CAST(:d AS jsonb) WHERE _id = :i",
        d=to_encoded_json(document),
        i=target,
    )
    # No workspace field: the event is in the workspace of every workspace.
    (event,) = rollback.events()
    assert (event["entity"], event["workspace_id"]) == ("mirror:scratch", "*")
    rollback.drain()
    (stored,) = [d for d in rollback.client.query("scratch:list", {}) if d["_id"] == target]
    assert {k: v for k, v in stored.items() if not k.startswith("_")} == document


@pytest.fixture
def app_login(rollback: Rollback) -> Iterator[Engine]:
    """An application's own login: a member of migrationkit_app, bound by RLS."""
    name = "mk_rollback_app"
    with rollback.engine.begin() as conn:
        conn.execute(
            text(
                f"""
                DO $$ BEGIN
                    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
                        CREATE ROLE {name} LOGIN PASSWORD '{name}' NOSUPERUSER NOBYPASSRLS;
                    END IF;
                END $$
                """
            )
        )
        conn.execute(text(f"GRANT {rls.APP_ROLE} TO {name}"))
    engine = make_engine(rollback.deployment.url.set(username=name, password=name))
    yield engine
    engine.dispose()


def test_an_rls_bound_application_is_captured_in_its_workspace(
    rollback: Rollback, app_login: Engine
) -> None:
    target = rollback.ids["users"][0]
    team = rollback.user(target)["teamId"]  # type: ignore[index]
    with app_login.begin() as conn:
        conn.execute(text("SELECT set_config('app.workspace_id', :w, true)"), {"w": team})
        conn.execute(
            text("UPDATE app_convex.users SET name = 'by the app' WHERE _id = :i"), {"i": target}
        )
        made = conn.execute(
            text(
                "INSERT INTO app_convex.users (name, email, credits, role, team_id, profile)"
                " VALUES ('app-made', 'app@example.com', 1, 'guest', :w, CAST(:p AS jsonb))"
                " RETURNING _id"
            ),
            {"w": team, "p": to_encoded_json({"links": [], "prefs": {"theme": "x", "beta": True}})},
        ).scalar_one()
        # The capture's own workspace was for its insert only.
        assert conn.execute(text("SELECT current_setting('app.workspace_id')")).scalar() == team
        # It sees its workspace's events, as RLS allows.
        seen = conn.execute(text("SELECT entity_id FROM outbox_events ORDER BY 1")).scalars()
        assert sorted([made, target]) == list(seen)
    assert {(e["entity_id"], e["workspace_id"]) for e in rollback.events()} == {
        (target, team),
        (made, team),
    }
    rollback.drain()
    assert rollback.user(target)["name"] == "by the app"  # type: ignore[index]
    assert "app@example.com" in [u["email"] for u in rollback.client.query("users:list", {})]


def test_a_mirror_table_made_before_the_capture_gets_it_from_the_next_revision(
    rollback: Rollback,
) -> None:
    deployment = rollback.deployment
    versions = deployment.revision.parent
    triggers = (
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'app_convex.users'::regclass"
        " AND NOT tgisinternal ORDER BY 1"
    )
    captured = [("migrationkit_capture",), ("migrationkit_stamp",)]
    assert rollback.sql(triggers) == captured
    # As a table migrated before the kit had migration 0008.
    rollback.sql("DROP TRIGGER migrationkit_capture ON app_convex.users")
    rollback.sql("DROP TRIGGER migrationkit_stamp ON app_convex.users")
    script = migrations.revision(deployment.url, "capture", versions)
    assert script is not None
    written = script.read_text()
    assert written.count("CREATE TRIGGER") == 2 and '"app_convex"."users"' in written
    migrations.upgrade(deployment.url, versions=versions)
    assert rollback.sql(triggers) == captured
    # Its downgrade takes them off again, and only them.
    migrations.downgrade(deployment.url, deployment.revision.stem.split("_")[0], versions)
    assert rollback.sql(triggers) == []
    migrations.upgrade(deployment.url, versions=versions)
    assert rollback.sql(triggers) == captured
    rollback.sql("UPDATE app_convex.users SET name = 'captured again'")
    assert len(rollback.events()) == len(rollback.ids["users"])


def test_the_pg_to_convex_worker_built_from_settings_serves_the_mirror_tables(
    rollback: Rollback, testapp: LocalConvexBackend
) -> None:
    settings = WorkerSettings(
        database_url=rollback.deployment.url.render_as_string(hide_password=False),
        convex_url=testapp.url,
        convex_deploy_key=testapp.admin_key,
        direction="pg_to_convex",
        source="pg_outbox",
        mirror_config=rollback.deployment.workdir / "migrationkit.toml",
        metrics_port=-1,
    )
    target = rollback.ids["users"][1]
    rollback.sql("UPDATE app_convex.users SET name = 'via the worker' WHERE _id = :i", i=target)
    with ExitStack() as stack:
        pipeline = build_pipeline(settings, stack)
        assert isinstance(pipeline.sink, RoutingSink)
        assert pipeline.worker is not None
        assert pipeline.worker.run_once()[0] == 1
    assert rollback.user(target)["name"] == "via the worker"  # type: ignore[index]
