"""The audit log, in both stores: one row per write, in the write's own
transaction, with the row before and after; none for a write that rolled
back; append-only for the application's role; and replicated like any table.

PostgreSQL is real (the test server); Convex is the local backend serving
the kit's generated functions, and the test app for the wrapper an existing
app adopts.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from migrationkit.adapters.convex.applier import ConvexApplier
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.convex.streaming_export import StreamingExport
from migrationkit.adapters.postgres import PostgresLeadRepository, make_engine
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.dead_letters import DeadLetterStore
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.domain.audit import AuditAction, AuditEntry, audit_context
from migrationkit.domain.ids import new_id
from migrationkit.domain.lead import Lead
from migrationkit.errors import Conflict, FunctionFailed, PermissionDenied, ValidationFailed
from migrationkit.mirror.app_outbox_tail import AppOutboxTail
from migrationkit.mirror.backfill import Backfill
from migrationkit.mirror.compare import convex_documents, postgres_documents
from migrationkit.mirror.config import load_config
from migrationkit.mirror.loading import selected_models
from migrationkit.mirror.model import registered_mirrors, unregister_mirrors
from migrationkit.mirror.tail import MirrorTail
from migrationkit.outbox.worker import Backoff, PollInterval, Worker, WorkerConfig
from migrationkit.schema import rls
from migrationkit.schema.metadata import metadata
from migrationkit.testing.convex_backend import LocalConvexBackend, convex_dir

from .conftest import running, wait_until
from .testapp_support import (
    CONFIG,
    cli_env,
    migrate_with_models,
    migrationkit,
    post,
    seed,
    user,
)

pytestmark = pytest.mark.postgres

WS_A, WS_B = "audit-a", "audit-b"
WHO = {"actor": "user:42", "ip": "203.0.113.9", "user_agent": "crm/1.2 (+https://example.com)"}
FAST = dict(poll=PollInterval(0.01, 0.1), backoff=Backoff(base=0.01, cap=0.2))


def postgres_audit(engine: Engine) -> list[dict[str, Any]]:
    """Every audit row, as stored (read as the owner, across workspaces)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit_logs ORDER BY at, id")).mappings().all()
    return [AuditEntry.model_validate(dict(r)).model_dump(mode="json") for r in rows]


def postgres_events(engine: Engine) -> list[dict[str, Any]]:
    """Every outbox event's workspace, version and audit entry, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT workspace_id, version, audit FROM outbox_events"
                " ORDER BY occurred_at, version"
            )
        )
        return [dict(r) for r in rows.mappings()]


def convex_audit(client: ConvexClient) -> list[dict[str, Any]]:
    """Every Convex audit row about leads, in the kit's shape, oldest first."""
    repo = ConvexLeadRepository(client)
    workspaces = {row.document["workspaceId"] for row in audit_rows(client)}
    entries = [e for ws in sorted(workspaces) for e in repo.audit_entries(ws)]
    return [e.model_dump(mode="json") for e in sorted(entries, key=lambda e: (e.at, e.id))]


def audit_rows(client: ConvexClient) -> list[Any]:
    return list(StreamingExport(client, table_name="auditLogs").snapshot())


def lead_json(lead: Lead | None) -> dict[str, Any] | None:
    return None if lead is None else lead.model_dump(mode="json")


def by_version(entries: list[AuditEntry]) -> list[AuditEntry]:
    """Entries of one millisecond may come in either order: sort them by version."""
    return sorted(entries, key=lambda e: (e.resource_id, e.after["version"] if e.after else 0))


def check_history(
    entries: list[AuditEntry], steps: list[tuple[Lead | None, Lead, AuditAction]]
) -> None:
    """One entry per write, in order, each with the write's before and after."""
    assert [(e.action, e.before, e.after) for e in entries] == [
        (action, lead_json(before), lead_json(after)) for before, after, action in steps
    ]
    assert len({e.id for e in entries}) == len(entries)
    for entry, (_, after, _) in zip(entries, steps, strict=True):
        assert (entry.workspace_id, entry.resource_type, entry.resource_id) == (
            after.workspace_id,
            "lead",
            after.id,
        )
        assert entry.at == after.updated_at


# -- PostgreSQL ------------------------------------------------------------------


def test_each_postgres_write_leaves_one_audit_row_with_before_and_after(
    clean_postgres: Engine,
) -> None:
    repo = PostgresLeadRepository(clean_postgres)
    with audit_context(**WHO):
        created = repo.upsert_entity(WS_A, {"email": "ada@example.com", "tags": ["a"]})
        updated = repo.upsert_entity(WS_A, created.model_dump() | {"score": 9.5})
        deleted = repo.delete_entity(WS_A, created.id)
        assert deleted is not None and repo.delete_entity(WS_A, created.id) is None  # no write
        revived = repo.upsert_entity(WS_A, created.model_dump() | {"email": "back@example.com"})

    entries = by_version(repo.audit_entries(WS_A))
    check_history(
        entries,
        [
            (None, created, AuditAction.CREATE),
            (created, updated, AuditAction.UPDATE),
            (updated, deleted, AuditAction.DELETE),
            (deleted, revived, AuditAction.UPDATE),
        ],
    )
    assert entries[2].after is not None and entries[2].after["deleted_at"] is not None
    assert {(e.actor, e.ip, e.user_agent) for e in entries} == {
        ("user:42", "203.0.113.9", WHO["user_agent"])
    }
    # The one outbox event of each write carries its entry, for the other store.
    events = [e for e in postgres_events(clean_postgres) if e["workspace_id"] == WS_A]
    assert [e["audit"] for e in events] == [e.model_dump(mode="json") for e in entries]
    assert repo.audit_entries(WS_B) == []
    stored = sorted(postgres_audit(clean_postgres), key=lambda e: e["id"])
    assert stored == sorted((e.model_dump(mode="json") for e in entries), key=lambda e: e["id"])


def test_a_write_outside_an_audit_context_is_recorded_with_no_actor(
    clean_postgres: Engine,
) -> None:
    repo = PostgresLeadRepository(clean_postgres)
    with audit_context(actor="user:1"):
        with audit_context(actor="service:import", ip="2001:0db8:0000::0001"):
            repo.upsert(WS_A, {"email": "inner@example.com"})
        repo.upsert(WS_A, {"email": "outer@example.com"})
    repo.upsert(WS_A, {"email": "nobody@example.com"})
    who = {
        e.after["email"]: (e.actor, e.ip, e.user_agent) for e in repo.audit_entries(WS_A) if e.after
    }
    assert who == {
        "inner@example.com": ("service:import", "2001:db8::1", None),  # normalized
        "outer@example.com": ("user:1", None, None),
        "nobody@example.com": (None, None, None),  # not given: recorded as such, never guessed
    }


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"actor": ""}, "actor"),
        ({"actor": "x" * 257}, "actor"),
        ({"actor": "a\x00b"}, "NUL"),
        ({"ip": "203.0.113.300"}, "ip"),
        ({"ip": "localhost"}, "ip"),
        ({"user_agent": "u" * 1025}, "user_agent"),
    ],
)
def test_a_bad_audit_context_is_refused_before_anything_is_written(
    given: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValidationFailed, match=problem), audit_context(**given):
        pytest.fail("entered")


def test_a_rolled_back_postgres_write_leaves_no_audit_row(clean_postgres: Engine) -> None:
    repo = PostgresLeadRepository(clean_postgres)
    with audit_context(**WHO):
        lead = repo.upsert_entity(WS_A, {"email": "keep@example.com"})
        before = (postgres_audit(clean_postgres), postgres_events(clean_postgres))
        # A lost race: the version the caller expected is not the stored one.
        with pytest.raises(Conflict):
            repo.upsert(WS_A, lead.model_dump() | {"score": 1.0}, expected_version=7)
        with pytest.raises(Conflict):
            repo.upsert(WS_A, {"id": lead.id, "email": "x@example.com"}, expected_version=0)
        # A fault at commit, after the write, its event and its audit row were all made.
        with clean_postgres.begin() as conn:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'injected fault at commit'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON audit_logs"
                    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"
                )
            )
        try:
            with pytest.raises(Exception, match="injected fault"):
                repo.upsert(WS_A, lead.model_dump() | {"score": 2.0})
            with pytest.raises(Exception, match="injected fault"):
                repo.delete(WS_A, lead.id)
        finally:
            with clean_postgres.begin() as conn:
                conn.execute(text("DROP TRIGGER refuse_commit ON audit_logs"))
                conn.execute(text("DROP FUNCTION refuse_commit()"))
    assert (postgres_audit(clean_postgres), postgres_events(clean_postgres)) == before
    stored = repo.get(WS_A, lead.id)
    assert stored is not None and stored.version == 1 and stored.score == 0.0


def test_concurrent_writers_each_record_the_row_they_replaced(clean_postgres: Engine) -> None:
    repo = PostgresLeadRepository(clean_postgres)
    lead_id = new_id()  # neither writer knows whether it exists: both may create it
    per_thread = 15

    def write(tag: str) -> None:
        with audit_context(actor=f"writer:{tag}"):
            for n in range(per_thread):
                repo.upsert(WS_A, {"id": lead_id, "email": f"{tag}{n}@example.com"})

    threads = [threading.Thread(target=write, args=(tag,)) for tag in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    entries = sorted(repo.audit_entries(WS_A), key=lambda e: e.after["version"] if e.after else 0)
    assert [e.after["version"] for e in entries if e.after] == list(range(1, 2 * per_thread + 1))
    assert [e.action for e in entries].count(AuditAction.CREATE) == 1
    # Each write's "before" is exactly the row the previous write left.
    for previous, entry in itertools.pairwise(entries):
        assert entry.before == previous.after
    assert {e.actor for e in entries} == {"writer:x", "writer:y"}


@pytest.fixture(scope="module")
def role_engines(
    migrationkit_engine: Engine, migrationkit_database_url: URL
) -> Iterator[dict[str, Engine]]:
    """Ordinary login roles (no superuser, no BYPASSRLS) in the kit's two groups."""
    engines = {}
    for role, login, group in (
        ("app", "mk_audit_app", rls.APP_ROLE),
        ("reader", "mk_audit_reader", rls.READONLY_ROLE),
    ):
        with migrationkit_engine.begin() as conn:
            conn.execute(
                text(
                    f"""
                    DO $$ BEGIN
                        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login}') THEN
                            CREATE ROLE {login} LOGIN PASSWORD '{login}' NOSUPERUSER NOBYPASSRLS;
                        END IF;
                    END $$
                    """
                )
            )
            conn.execute(text(f"GRANT {group} TO {login}"))
        engines[role] = make_engine(migrationkit_database_url.set(username=login, password=login))
    yield engines
    for engine in engines.values():
        engine.dispose()


def scoped(engine: Engine, sql: str, workspace: str) -> Any:
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('app.workspace_id', :w, true)"), {"w": workspace})
        return conn.execute(text(sql)).scalar()


def test_the_app_role_appends_and_reads_audit_rows_but_cannot_alter_or_delete_them(
    role_engines: dict[str, Engine], clean_postgres: Engine
) -> None:
    app, reader = role_engines["app"], role_engines["reader"]
    repo = PostgresLeadRepository(app)
    with audit_context(actor="user:7"):
        lead_id = repo.upsert(WS_A, {"email": "a@example.com"})
        repo.delete(WS_A, lead_id)
    PostgresLeadRepository(clean_postgres).upsert(WS_B, {"email": "b@example.com"})
    assert [e.action for e in by_version(repo.audit_entries(WS_A))] == [
        AuditAction.CREATE,
        AuditAction.DELETE,
    ]

    # Its own workspace only.
    assert scoped(app, "SELECT count(*) FROM audit_logs", WS_A) == 2
    assert scoped(app, "SELECT count(*) FROM audit_logs", WS_B) == 1
    assert scoped(reader, "SELECT count(*) FROM audit_logs", WS_A) == 2
    # History cannot be rewritten or erased, in any workspace, by the app or the reader.
    for engine in (app, reader):
        for statement in (
            "UPDATE audit_logs SET actor = 'someone else' RETURNING 1",
            "DELETE FROM audit_logs RETURNING 1",
            "TRUNCATE audit_logs",
        ):
            with pytest.raises(Exception, match="permission denied"):
                scoped(engine, statement, WS_A)
    # Appending is allowed, within the session's workspace only.
    insert = (
        "INSERT INTO audit_logs (id, workspace_id, action, resource_type, resource_id, at)"
        " VALUES ('{id}', '{ws}', 'update', 'lead', '{lead}', now()) RETURNING 1"
    )
    assert scoped(app, insert.format(id=new_id(), ws=WS_A, lead=lead_id), WS_A) == 1
    with pytest.raises(Exception, match="row-level security"):
        scoped(app, insert.format(id=new_id(), ws=WS_B, lead=lead_id), WS_A)
    with pytest.raises(Exception, match="permission denied"):
        scoped(reader, insert.format(id=new_id(), ws=WS_A, lead=lead_id), WS_A)
    with pytest.raises(PermissionDenied):
        PostgresLeadRepository(reader).upsert(WS_A, {"email": "nope@example.com"})
    assert len(postgres_audit(clean_postgres)) == 4  # 2 + 1 + the one appended by hand


# -- Convex ----------------------------------------------------------------------


def test_each_convex_write_leaves_one_audit_row_in_its_own_mutation(
    clean_convex: ConvexClient,
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    with audit_context(**WHO):
        created = repo.upsert_entity(WS_A, {"email": "ada@example.com", "tags": ["a"]})
        updated = repo.upsert_entity(WS_A, created.model_dump() | {"score": 9.5})
        deleted = repo.delete_entity(WS_A, created.id)
        assert deleted is not None and repo.delete_entity(WS_A, created.id) is None
    repo.upsert(WS_B, {"email": "other@example.com"})  # no context: no actor

    entries = by_version(repo.audit_entries(WS_A))
    check_history(
        entries,
        [
            (None, created, AuditAction.CREATE),
            (created, updated, AuditAction.UPDATE),
            (updated, deleted, AuditAction.DELETE),
        ],
    )
    assert {(e.actor, e.ip, e.user_agent) for e in entries} == {
        ("user:42", "203.0.113.9", WHO["user_agent"])
    }
    (other,) = repo.audit_entries(WS_B)
    assert (other.actor, other.ip, other.user_agent, other.before) == (None, None, None, None)
    # The write's own outbox event carries the same entry.
    events = repo.outbox_events(WS_A)
    assert [e.audit for e in events] == [e.model_dump(mode="json") for e in entries]
    # Convex keeps the entity's fields (camelCase, ms), without its system fields.
    stored = next(r.document for r in audit_rows(clean_convex) if r.document["id"] == entries[1].id)
    assert stored["before"]["email"] == "ada@example.com" and "_id" not in stored["before"]
    assert stored["after"]["score"] == 9.5 and stored["userAgent"] == WHO["user_agent"]


def test_a_convex_mutation_that_throws_leaves_no_audit_row(
    clean_convex: ConvexClient, convex_backend: LocalConvexBackend
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    lead = repo.upsert_entity(WS_A, {"email": "keep@example.com"})
    before = audit_rows(clean_convex)
    assert len(before) == 1
    with pytest.raises(Conflict):
        repo.upsert(WS_A, lead.model_dump() | {"score": 1.0}, expected_version=3)
    # A fault after the handler's writes (entity, outbox, audit), before commit.
    convex_backend.fail_next_mutation()
    with pytest.raises(FunctionFailed, match="injected fault"):
        repo.upsert(WS_A, lead.model_dump() | {"score": 2.0})
    convex_backend.fail_next_mutation()
    with pytest.raises(FunctionFailed, match="injected fault"):
        repo.delete(WS_A, lead.id)
    assert audit_rows(clean_convex) == before
    assert len(repo.outbox_events(WS_A)) == 1
    stored = repo.get(WS_A, lead.id)
    assert stored is not None and stored.version == 1


def history(repo: ConvexLeadRepository | PostgresLeadRepository, count: int) -> int:
    """Creates, updates and deletes over two workspaces, by a few actors; the writes made."""
    rng = random.Random(count)
    ids: list[tuple[str, str]] = []
    writes = 0
    for n in range(count):
        workspace = (WS_A, WS_B)[n % 2]
        with audit_context(actor=f"user:{n % 3}", ip=f"198.51.100.{n % 7}"):
            roll = rng.random()
            if roll < 0.4 or not ids:
                ids.append((workspace, repo.upsert(workspace, {"email": f"l{n}@example.com"})))
            elif roll < 0.85:
                ws, lead_id = rng.choice(ids)
                repo.upsert(ws, {"id": lead_id, "email": f"u{n}@example.com", "score": float(n)})
            else:
                ws, lead_id = rng.choice(ids)
                if not repo.delete(ws, lead_id):
                    continue  # deleted already: no write, no audit row
            writes += 1
    return writes


def test_the_worker_carries_convex_audit_rows_into_postgres_once_each(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    made = history(ConvexLeadRepository(clean_convex), 60)
    expected = convex_audit(clean_convex)
    assert len(expected) == made > 50

    # Replayed and reordered first: every event twice, shuffled, in small batches.
    changes = ConvexOutboxSource(clean_convex).fetch(10_000).changes
    assert all(c.audit is not None for c in changes)
    shuffled = changes * 2
    random.Random(4).shuffle(shuffled)
    applier = PostgresApplier(clean_postgres)
    for start in range(0, len(shuffled), 13):
        applier.apply(shuffled[start : start + 13])
    assert postgres_audit(clean_postgres) == expected

    # Then the worker, with live writes: the replication itself adds no audit row.
    made += history(ConvexLeadRepository(clean_convex), 30)
    worker = Worker(
        ConvexOutboxSource(clean_convex),
        PostgresApplier(clean_postgres),
        DeadLetterStore(clean_postgres),
        config=WorkerConfig(batch_size=25, max_attempts=3, **FAST),  # type: ignore[arg-type]
    )
    with running(worker):
        assert wait_until(lambda: len(postgres_audit(clean_postgres)) >= made)
        assert wait_until(lambda: postgres_audit(clean_postgres) == convex_audit(clean_convex))
    assert len(audit_rows(clean_convex)) == made


def test_the_worker_carries_postgres_audit_rows_into_convex_once_each(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    made = history(PostgresLeadRepository(clean_postgres), 50)
    expected = postgres_audit(clean_postgres)
    assert len(expected) == made > 40
    worker = Worker(
        PgOutboxSource(clean_postgres, owner="audit-test"),
        ConvexApplier(clean_convex),
        DeadLetterStore(clean_postgres),
        config=WorkerConfig(batch_size=20, max_attempts=3, **FAST),  # type: ignore[arg-type]
    )
    with running(worker):
        assert wait_until(lambda: convex_audit(clean_convex) == expected)
    # The replicated writes made no audit rows of their own, and a replay adds none.
    assert PgOutboxSource(clean_postgres, owner="replay").fetch(1).changes == []
    with clean_postgres.begin() as conn:
        conn.execute(text("UPDATE outbox_events SET status = 'pending'"))
    replay = PgOutboxSource(clean_postgres, owner="replay").fetch(1000)
    ConvexApplier(clean_convex).apply(replay.changes)
    assert convex_audit(clean_convex) == expected
    assert len(audit_rows(clean_convex)) == made


# -- the wrapper an existing app adopts --------------------------------------------


def acting_as(backend: LocalConvexBackend, subject: str) -> ConvexClient:
    """A client whose calls the functions see as made by the user ``subject``."""
    identity = {"subject": subject, "issuer": "https://issuer.example", "name": "Ada"}
    encoded = base64.b64encode(json.dumps(identity).encode()).decode()
    return ConvexClient(backend.url, admin_key=f"{backend.admin_key}:{encoded}")


def app_audit_rows(client: ConvexClient) -> list[dict[str, Any]]:
    rows = StreamingExport(client, table_name="migrationkitAuditLog").snapshot()
    return sorted((r.document for r in rows), key=lambda d: (d["at"], d["_creationTime"]))


def without_system_fields(document: dict[str, Any] | None) -> dict[str, Any] | None:
    if document is None:
        return None
    return {k: v for k, v in document.items() if k not in ("_id", "_creationTime")}


def test_each_write_through_the_apps_wrapper_leaves_one_audit_row(
    testapp: LocalConvexBackend, testapp_client: ConvexClient
) -> None:
    with acting_as(testapp, "user-1") as ada:
        user_id = ada.mutation("users:create", user(1))
        created = ada.query("users:get", {"id": user_id})
        ada.mutation("users:update", {"id": user_id, "name": "Renamed", "age": None})
        patched = ada.query("users:get", {"id": user_id})
    testapp_client.mutation("users:replace", {"id": user_id, "user": user(2)})  # an admin, no user
    replaced = testapp_client.query("users:get", {"id": user_id})
    with acting_as(testapp, "user-2") as grace:
        grace.mutation("users:remove", {"id": user_id})

    rows = app_audit_rows(testapp_client)
    assert [(r["table"], r["docId"], r["action"], r["actor"]) for r in rows] == [
        ("users", user_id, "create", "user-1"),
        ("users", user_id, "update", "user-1"),
        ("users", user_id, "update", None),  # no identity: recorded as not given
        ("users", user_id, "delete", "user-2"),
    ]
    states = [None, created, patched, replaced, None]
    for row, (before, after) in zip(rows, itertools.pairwise(states), strict=True):
        assert row["before"] == without_system_fields(before)
        assert row["after"] == without_system_fields(after)
    assert "age" in created and "age" not in rows[1]["after"]  # the patch removed it


def test_an_app_mutation_that_throws_leaves_no_audit_row(
    testapp: LocalConvexBackend, testapp_client: ConvexClient
) -> None:
    author = testapp_client.mutation("users:create", user(1))
    first = testapp_client.mutation("posts:create", post(1, author))
    before = app_audit_rows(testapp_client)
    assert [r["table"] for r in before] == ["users", "posts"]
    # Patches one post, then fails on the next: all or nothing.
    with pytest.raises(FunctionFailed, match="no post"):
        testapp_client.mutation("posts:retitle", {"ids": [first, "nope"], "title": "x"})
    testapp.fail_next_mutation()
    with pytest.raises(FunctionFailed, match="injected fault"):
        testapp_client.mutation("users:remove", {"id": author})
    assert app_audit_rows(testapp_client) == before


#: The test app's mirror config with the default selection (its audit log
#: included), the audit log kept whole as docs/audit-log.md advises.
AUDITED_CONFIG = (
    CONFIG.replace('exclude_tables = ["migrationkitAuditLog"]\n', "")
    + "\n[mirror.table.migrationkitAuditLog]\ndocument = true\n"
)


@contextmanager
def mirrored(
    backend: LocalConvexBackend, client: ConvexClient, url: URL, workdir: Path
) -> Iterator[tuple[Engine, list[Any]]]:
    """The app introspected (after a few writes) and migrated, then emptied again."""
    seed(client, users=2, posts=2)
    (workdir / "migrationkit.toml").write_text(AUDITED_CONFIG)
    done = migrationkit("introspect", env=cli_env(backend), cwd=workdir)
    assert done.returncode == 0, done.stderr
    migrate_with_models(url, workdir / "convex_models.py", workdir)
    models = selected_models(load_config(workdir / "migrationkit.toml"))
    engine = make_engine(url)
    backend.reset()
    try:
        yield engine, models
    finally:
        engine.dispose()
        unregister_mirrors(list(registered_mirrors()))
        for table in list(metadata.tables.values()):
            if table.schema == "app_convex":
                metadata.remove(table)


@pytest.fixture
def audited_mirror(
    testapp_client: ConvexClient, testapp: LocalConvexBackend, mirror_database: URL, tmp_path: Path
) -> Iterator[tuple[Engine, list[Any]]]:
    with mirrored(testapp, testapp_client, mirror_database, tmp_path) as found:
        yield found


def test_the_wrappers_audit_log_is_mirrored_like_any_table(
    testapp_client: ConvexClient, audited_mirror: tuple[Engine, list[Any]]
) -> None:
    engine, models = audited_mirror
    names = {m.mirror.qualified_convex_name for m in models}
    assert "migrationkitAuditLog" in names and "migrationkitOutbox" not in names
    ids = seed(testapp_client, users=6, posts=8)
    Backfill(testapp_client, engine, models).run()
    # Writes after the snapshot arrive by the change feed, their audit rows too.
    testapp_client.mutation("users:update", {"id": ids["users"][0], "name": "Later"})
    testapp_client.mutation("posts:remove", {"id": ids["posts"][0]})
    tail = MirrorTail(testapp_client, engine, models)
    while tail.run_once()[1]:
        pass
    convex = convex_documents(testapp_client, ["migrationkitAuditLog"])["migrationkitAuditLog"]
    postgres = postgres_documents(engine, models)["migrationkitAuditLog"]
    assert len(convex) == len(app_audit_rows(testapp_client)) > 6 + 8
    assert postgres == convex
    actions = sorted(d["action"] for d in postgres.values())
    assert actions.count("update") == 1 and actions.count("delete") == 1


@pytest.fixture
def tracking_app(tmp_path: Path) -> Iterator[LocalConvexBackend]:
    """The test app as `codegen app-outbox` writes it for the default selection:
    its audit log tracked by the outbox too (the checked-in app leaves it out)."""
    app = tmp_path / "app"
    shutil.copytree(convex_dir() / "testapp", app)
    (tmp_path / "node_modules").symlink_to(convex_dir() / "node_modules")
    shutil.copy(convex_dir() / "package.json", tmp_path / "package.json")
    config = app / "migrationkit" / "config.ts"
    tracked = '["events", "migrationkitAuditLog", "posts"'
    config.write_text(config.read_text().replace('["events", "posts"', tracked))
    with LocalConvexBackend(functions_dir=app) as backend:
        yield backend


def test_without_streaming_export_the_outbox_carries_the_audit_log_too(
    tracking_app: LocalConvexBackend, mirror_database: URL, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with (
        ConvexClient(tracking_app.url, admin_key=tracking_app.admin_key) as client,
        mirrored(tracking_app, client, mirror_database, work) as (engine, models),
    ):
        # What the codegen writes for this deployment and config is what the app runs.
        done = migrationkit(
            "codegen",
            "app-outbox",
            "--config",
            str(work / "migrationkit.toml"),
            "--out",
            str(tmp_path / "app" / "migrationkit"),
            "--check",
            env=cli_env(tracking_app),
            cwd=work,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        with acting_as(tracking_app, "user-9") as ada:
            user_id = ada.mutation("users:create", user(3))
            ada.mutation("users:update", {"id": user_id, "name": "Renamed"})
            ada.mutation("users:remove", {"id": user_id})
        outbox = [
            r.document for r in StreamingExport(client, table_name="migrationkitOutbox").snapshot()
        ]
        # Each write: its own row, and one for its audit row (never an audit of that).
        assert sorted(r["table"] for r in outbox) == ["migrationkitAuditLog"] * 3 + ["users"] * 3
        assert len(app_audit_rows(client)) == 3

        tail = AppOutboxTail(client, engine, models)
        while tail.run_once()[1]:
            pass
        convex = convex_documents(client, ["migrationkitAuditLog"])["migrationkitAuditLog"]
        postgres = postgres_documents(engine, models)["migrationkitAuditLog"]
        assert postgres == convex
        assert sorted((d["action"], d["actor"]) for d in postgres.values()) == [
            ("create", "user-9"),
            ("delete", "user-9"),
            ("update", "user-9"),
        ]
