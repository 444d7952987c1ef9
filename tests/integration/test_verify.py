"""verify on real PostgreSQL and the local Convex backend: equal stores pass; a
changed field, a missing row, an extra row and a row in the wrong workspace
are each found and named; concurrent writes give no false mismatch."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.mirror.backfill import TAIL_CURSOR, Backfill
from migrationkit.mirror.tail import MirrorTail
from migrationkit.verify.engine import Difference
from migrationkit.verify.runner import VerifyReport, verify
from migrationkit.verify.targets import VerifyTarget, mirror_target

from .testapp_support import Churn, Deployment, seed, tail_until_caught_up

pytestmark = pytest.mark.postgres


def targets(deployment: Deployment) -> list[VerifyTarget]:
    return [mirror_target(m) for m in deployment.models]


@pytest.fixture
def mirrored(testapp_client: ConvexClient, deployment: Deployment) -> Deployment:
    seed(testapp_client, users=30, posts=50)
    Backfill(testapp_client, deployment.engine, deployment.models).run()
    tail_until_caught_up(testapp_client, deployment)
    return deployment


def run(client: ConvexClient, deployment: Deployment, **options: object) -> VerifyReport:
    options.setdefault("tail_cursor", TAIL_CURSOR)
    options.setdefault("settle", 0.5)
    return verify(deployment.engine, client, targets(deployment), **options)  # type: ignore[arg-type]


def differences(report: VerifyReport, table: str) -> list[Difference]:
    return next(t for t in report.tables if t.name == table).differences


def one_id(deployment: Deployment, table: str) -> str:
    with deployment.engine.connect() as conn:
        return str(
            conn.execute(
                text(f"SELECT _id FROM app_convex.{table} WHERE NOT _deleted ORDER BY _id LIMIT 1")
            ).scalar_one()
        )


def execute(deployment: Deployment, sql: str, **params: object) -> None:
    """A fault planted as the kit's own writer would make it (a bug, a bad restore):
    an application's write would be captured, stamped with a new ``_ts`` and sent
    to Convex instead (docs/mirror-tables.md)."""
    with deployment.engine.begin() as conn:
        conn.execute(text("SELECT set_config('migrationkit.replicating', 'on', true)"))
        conn.execute(text(sql), params)


def test_equal_stores_pass_and_the_run_is_recorded(
    testapp_client: ConvexClient, mirrored: Deployment
) -> None:
    report = run(testapp_client, mirrored)
    assert report.passed, [d.describe() for t in report.tables for d in t.differences]
    assert report.cut_source == "tail cursor"
    users = next(t for t in report.tables if t.name == "users")
    assert users.convex_rows == users.postgres_rows == 30
    assert set(users.workspaces) == {"team-a", "team-b"}
    assert all(c.checksums_equal for c in users.workspaces.values())
    with mirrored.engine.connect() as conn:
        row = conn.execute(
            text("SELECT passed, mismatches, convex_rows FROM verify_runs WHERE id = :id"),
            {"id": report.run_id},
        ).one()
    assert row == (True, 0, sum(t.convex_rows for t in report.tables))


def test_a_changed_field_is_found_and_named(
    testapp_client: ConvexClient, mirrored: Deployment
) -> None:
    target = one_id(mirrored, "users")
    execute(mirrored, "UPDATE app_convex.users SET name = 'tampered' WHERE _id = :i", i=target)
    report = run(testapp_client, mirrored)
    assert not report.passed
    (found,) = differences(report, "users")
    assert (found.key, found.kind, found.fields) == ((target,), "differs", ("name",))
    assert "differs in name" in found.describe()


def test_a_missing_row_is_found(testapp_client: ConvexClient, mirrored: Deployment) -> None:
    target = one_id(mirrored, "posts")
    execute(mirrored, "DELETE FROM app_convex.posts WHERE _id = :i", i=target)
    report = run(testapp_client, mirrored)
    (found,) = differences(report, "posts")
    assert (found.key, found.kind) == ((target,), "missing")
    posts = next(t for t in report.tables if t.name == "posts")
    assert posts.row_count_diff == -1


def test_an_extra_row_is_found(testapp_client: ConvexClient, mirrored: Deployment) -> None:
    execute(
        mirrored,
        "INSERT INTO app_convex.limits (_id, _ts, _deleted, _creation_time_ms, key, count,"
        " reset_at) VALUES ('ghost', 1, false, 1.0, 'k', 1, 1.0)",
    )
    report = run(testapp_client, mirrored)
    (found,) = differences(report, "ratelimiter/limits")
    assert (found.key, found.kind) == (("ghost",), "extra")


def test_a_row_in_the_wrong_workspace_is_found(
    testapp_client: ConvexClient, mirrored: Deployment
) -> None:
    target = one_id(mirrored, "users")
    execute(
        mirrored, "UPDATE app_convex.users SET workspace_id = 'team-z' WHERE _id = :i", i=target
    )
    report = run(testapp_client, mirrored)
    (found,) = differences(report, "users")
    assert found.kind == "differs" and found.fields == ("workspace_id",)
    users = next(t for t in report.tables if t.name == "users")
    assert users.workspaces["team-z"].postgres == 1
    assert users.workspaces["team-z"].convex == 0


def test_many_differences_are_located_by_bisection(
    testapp_client: ConvexClient, mirrored: Deployment
) -> None:
    execute(
        mirrored,
        "UPDATE app_convex.posts SET title = title || '!' WHERE _id IN"
        " (SELECT _id FROM app_convex.posts ORDER BY _id LIMIT 3)",
    )
    report = verify(
        mirrored.engine, testapp_client, targets(mirrored), tail_cursor=TAIL_CURSOR, settle=0
    )
    posts = next(t for t in report.tables if t.name == "posts")
    assert [d.fields for d in posts.differences] == [("title",)] * 3
    # Narrowed by ranges (the leaf is 64 rows; posts has 50 here, so one leaf).
    assert posts.ranges_checked >= 1


def test_one_workspace_can_be_verified_alone(
    testapp_client: ConvexClient, mirrored: Deployment
) -> None:
    target = one_id(mirrored, "users")
    execute(mirrored, "UPDATE app_convex.users SET name = 'x' WHERE _id = :i", i=target)
    with mirrored.engine.connect() as conn:
        broken = conn.execute(
            text("SELECT workspace_id FROM app_convex.users WHERE _id = :i"), {"i": target}
        ).scalar_one()
    other = "team-a" if broken == "team-b" else "team-b"
    users = [mirror_target(m) for m in mirrored.models if m.mirror.convex_table == "users"]
    clean = verify(mirrored.engine, testapp_client, users, workspace=other, settle=0)
    assert clean.passed and set(clean.tables[0].workspaces) == {other}
    dirty = verify(mirrored.engine, testapp_client, users, workspace=broken, settle=0)
    assert not dirty.passed


@pytest.mark.parametrize("cut", ["tail cursor", "fresh snapshot"])
def test_concurrent_writes_give_no_false_mismatch(
    testapp_client: ConvexClient, mirrored: Deployment, cut: str
) -> None:
    stop = threading.Event()
    tail = MirrorTail(testapp_client, mirrored.engine, mirrored.models)
    tailing = threading.Thread(target=tail.run, args=(stop,), daemon=True)
    tailing.start()
    ids = {"users": [], "posts": [], "scratch": []}  # type: dict[str, list[str]]
    churn = Churn(testapp_client, ids | _existing(mirrored))
    try:
        with churn.running():
            reports = [
                run(
                    testapp_client,
                    mirrored,
                    tail_cursor=TAIL_CURSOR if cut == "tail cursor" else None,
                    settle=10,
                )
                for _ in range(3)
            ]
    finally:
        stop.set()
        tailing.join(timeout=30)
    assert churn.writes > 20
    for report in reports:
        assert report.cut_source == cut
        assert report.passed, [d.describe() for t in report.tables for d in t.differences]


def _existing(deployment: Deployment) -> dict[str, list[str]]:
    with deployment.engine.connect() as conn:
        return {
            table: [r[0] for r in conn.execute(text(f"SELECT _id FROM app_convex.{table}"))]
            for table in ("users", "posts")
        }


def test_the_last_verify_of_each_table_is_exported_as_metrics(
    testapp_client: ConvexClient, mirrored: Deployment
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from migrationkit.observability.verify_metrics import VerifyCollector

    target = one_id(mirrored, "posts")
    execute(mirrored, "DELETE FROM app_convex.posts WHERE _id = :i", i=target)
    run(testapp_client, mirrored, settle=0)
    registry = CollectorRegistry()
    registry.register(VerifyCollector(mirrored.engine))
    exported = generate_latest(registry).decode()
    assert 'migrationkit_row_count_diff{table="posts"} -1.0' in exported
    assert 'migrationkit_verify_mismatches{table="posts"} 1.0' in exported
    assert 'migrationkit_verify_passed{table="posts"} 0.0' in exported
    assert 'migrationkit_verify_passed{table="users"} 1.0' in exported
    assert 'migrationkit_verify_age_seconds{table="users"}' in exported
