"""Row-level security, checked as ordinary (non-superuser) roles: superusers
bypass RLS, so a test run as one would prove nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from migrationkit.adapters.postgres import PostgresLeadRepository, make_engine
from migrationkit.errors import PermissionDenied
from migrationkit.schema import rls, tenant_tables

WS_A, WS_B = "tenant-a", "tenant-b"


def _login_role(admin: Engine, name: str, group: str) -> None:
    with admin.begin() as conn:
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
        conn.execute(text(f"GRANT {group} TO {name}"))


@pytest.fixture(scope="module")
def role_engines(
    migrationkit_engine: Engine, migrationkit_database_url: URL
) -> Iterator[dict[str, Engine]]:
    _login_role(migrationkit_engine, "mk_rls_app", rls.APP_ROLE)
    _login_role(migrationkit_engine, "mk_rls_reader", rls.READONLY_ROLE)
    engines = {
        role: make_engine(migrationkit_database_url.set(username=login, password=login))
        for role, login in (("app", "mk_rls_app"), ("reader", "mk_rls_reader"))
    }
    for engine in engines.values():
        with engine.connect() as conn:
            is_super = conn.execute(
                text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
            ).scalar_one()
            assert is_super is False, "the RLS probe role must not bypass RLS"
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def seeded(clean_postgres: Engine) -> dict[str, str]:
    """One lead in each workspace, written through the adapter as the admin."""
    repo = PostgresLeadRepository(clean_postgres)
    return {
        WS_A: repo.upsert(WS_A, {"email": "a@tenant-a.example"}),
        WS_B: repo.upsert(WS_B, {"email": "b@tenant-b.example"}),
    }


def _scalar(engine: Engine, sql: str, workspace: str | None = None) -> object:
    with engine.begin() as conn:
        if workspace is not None:
            conn.execute(text("SELECT set_config('app.workspace_id', :w, true)"), {"w": workspace})
        return conn.execute(text(sql)).scalar()


def test_rls_is_enabled_and_forced_on_every_tenant_table(migrationkit_engine: Engine) -> None:
    with migrationkit_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE relname = ANY(:names) AND relkind = 'r'"
            ),
            {"names": tenant_tables()},
        ).all()
    assert {r[0] for r in rows} == set(tenant_tables()) >= {"leads", "outbox_events"}
    assert all(r[1] and r[2] for r in rows), rows


def test_session_of_workspace_a_sees_nothing_of_b(
    role_engines: dict[str, Engine], seeded: dict[str, str]
) -> None:
    app = role_engines["app"]
    for table in tenant_tables():
        workspaces = _scalar(app, f"SELECT array_agg(DISTINCT workspace_id) FROM {table}", WS_A)
        assert workspaces in (None, [WS_A]), (table, workspaces)
    assert _scalar(app, "SELECT count(*) FROM leads", WS_A) == 1
    assert _scalar(app, "SELECT count(*) FROM outbox_events", WS_A) == 1
    assert _scalar(app, f"SELECT count(*) FROM leads WHERE id = '{seeded[WS_B]}'", WS_A) == 0


def test_session_without_a_workspace_sees_nothing_at_all(
    role_engines: dict[str, Engine], seeded: dict[str, str]
) -> None:
    for engine in role_engines.values():
        for table in tenant_tables():
            assert _scalar(engine, f"SELECT count(*) FROM {table}") == 0, table


def test_workspace_a_cannot_write_into_b(
    role_engines: dict[str, Engine], seeded: dict[str, str], clean_postgres: Engine
) -> None:
    app = role_engines["app"]
    with pytest.raises(Exception, match="row-level security"):
        _scalar(
            app,
            "INSERT INTO leads (id, workspace_id, version, created_at, updated_at, email, score)"
            f" VALUES ('{seeded[WS_A][:-1]}Z', '{WS_B}', 1, now(), now(), 'x@b.example', 0)"
            " RETURNING 1",
            WS_A,
        )
    assert (
        _scalar(
            app, "WITH u AS (UPDATE leads SET score = 99 RETURNING 1) SELECT count(*) FROM u", WS_A
        )
        == 1
    )  # only A's own row
    with pytest.raises(Exception, match="row-level security"):
        _scalar(app, f"UPDATE leads SET workspace_id = '{WS_B}' RETURNING 1", WS_A)
    assert (
        _scalar(
            app,
            "WITH d AS (DELETE FROM leads WHERE workspace_id = 'tenant-b'"
            " RETURNING 1) SELECT count(*) FROM d",
            WS_A,
        )
        == 0
    )
    admin_view = PostgresLeadRepository(clean_postgres).get(WS_B, seeded[WS_B])
    assert admin_view is not None and admin_view.score == 0.0 and admin_view.version == 1


def test_the_adapter_works_as_an_ordinary_role(
    role_engines: dict[str, Engine], seeded: dict[str, str]
) -> None:
    repo = PostgresLeadRepository(role_engines["app"])
    lead_id = repo.upsert(WS_A, {"email": "own@tenant-a.example"})
    assert repo.delete(WS_A, lead_id) is True
    assert {x.id for x in repo.list(WS_A).items} == {seeded[WS_A]}
    assert repo.get(WS_A, seeded[WS_B]) is None
    # The setting is transaction-local: a pooled connection carries no scope on.
    assert _scalar(role_engines["app"], "SELECT count(*) FROM leads") == 0


def test_read_only_role_reads_its_workspace_and_writes_nothing(
    role_engines: dict[str, Engine], seeded: dict[str, str]
) -> None:
    reader = role_engines["reader"]
    assert _scalar(reader, "SELECT count(*) FROM leads", WS_A) == 1
    with pytest.raises(PermissionDenied):
        PostgresLeadRepository(reader).upsert(WS_A, {"email": "nope@tenant-a.example"})
    with pytest.raises(Exception, match="permission denied"):
        _scalar(reader, "UPDATE leads SET score = 1 RETURNING 1", WS_A)
