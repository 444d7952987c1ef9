"""Retention and workspace deletion on a real PostgreSQL and the local Convex
backend: the plan is the run on a fixed clock, on both sides of every day
boundary of the policy; archived rows and pending events; purges reaching
Convex; the recreated-id rule through the real appliers; a workspace
deletion cancelled (nothing deleted) and completed (nothing left)."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from sqlalchemy import Engine, func, insert, select, text
from typer.testing import CliRunner

from migrationkit.adapters.convex.applier import ConvexApplier
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.delta_source import ConvexDeltaSource
from migrationkit.adapters.convex.outbox_source import ConvexOutboxSource
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.adapters.convex.streaming_export import StreamingExport
from migrationkit.adapters.postgres.applier import PostgresApplier
from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.outbox_source import PgOutboxSource
from migrationkit.adapters.postgres.repository import PostgresLeadRepository
from migrationkit.domain.change import Change
from migrationkit.domain.ids import new_id
from migrationkit.errors import Conflict, NotFound
from migrationkit.retention import cli as retention_cli
from migrationkit.retention.planner import plan
from migrationkit.retention.policy import RetentionPolicy, load_policy
from migrationkit.retention.replica import ConvexReplica
from migrationkit.retention.runner import RetentionRunner
from migrationkit.retention.steps import Action
from migrationkit.retention.workspaces import (
    CANCELLED,
    NOTICE,
    PURGED,
    REQUESTED,
    WorkspaceDeletions,
    WorkspaceEvent,
)
from migrationkit.schema.metadata import current_metadata, metadata
from migrationkit.schema.outbox_tables import outbox_table
from tests.integration.conftest import convex_leads, postgres_leads

pytestmark = pytest.mark.postgres

NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
WS, OTHER = "ws-retention", "ws-keep"
MS = timedelta(milliseconds=1)
OUTBOX = outbox_table(metadata)


class SetClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def policy() -> RetentionPolicy:
    return load_policy("spec/data-retention.yaml")


def days(n: float) -> timedelta:
    return timedelta(days=n)


def tombstone(engine: Engine, workspace: str, deleted_at: datetime | None) -> str:
    """A lead written and (unless ``deleted_at`` is None) soft-deleted through the repository."""
    clock = SetClock((deleted_at or NOW) - days(10))
    repo = PostgresLeadRepository(engine, clock)
    lead_id = repo.upsert(workspace, {"email": f"{new_id().lower()}@example.com"})
    if deleted_at is not None:
        clock.at = deleted_at
        repo.delete(workspace, lead_id)
    return lead_id


def outbox_event(engine: Engine, status: str, occurred_at: datetime, workspace: str = WS) -> str:
    event_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(OUTBOX).values(
                event_id=event_id,
                workspace_id=workspace,
                topic="lead.upsert",
                entity="lead",
                entity_id=new_id(),
                version=1,
                occurred_at=occurred_at,
                dedupe_key=event_id,
                payload={},
                status=status,
            )
        )
    return event_id


def audit_entry(engine: Engine, at: datetime) -> str | None:
    audit = current_metadata().tables.get("audit_logs")
    if audit is None:
        return None
    entry_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(audit).values(
                id=entry_id,
                workspace_id=WS,
                action="update",
                resource_type="lead",
                resource_id=new_id(),
                at=at,
            )
        )
    return entry_id


def ids(engine: Engine, table: str, column: str = "id", workspace: str | None = None) -> set[str]:
    t = current_metadata().tables[table]
    query = select(t.c[column])
    if workspace is not None:
        query = query.where(t.c.workspace_id == workspace)
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def count(engine: Engine, table: str, workspace: str) -> int:
    t = current_metadata().tables[table]
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(t).where(t.c.workspace_id == workspace)
            ).scalar_one()
        )


# -- the plan is the run --------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1000, 2])
def test_plan_equals_run_on_both_sides_of_every_day_boundary(
    clean_postgres: Engine, policy: RetentionPolicy, batch_size: int
) -> None:
    engine = clean_postgres
    # Leads: archive at 365 days, hard delete at 2555 (inclusive: exactly N days is due).
    kept_leads = {tombstone(engine, WS, NOW - age) for age in (days(364), days(365) - MS)}
    live = tombstone(engine, WS, None)
    archived = {
        tombstone(engine, WS, NOW - age)
        for age in (days(365), days(366), days(2554), days(2555) - MS)
    }
    deleted = {tombstone(engine, WS, NOW - age) for age in (days(2555), days(2556))}
    other = tombstone(engine, OTHER, NOW - days(400))
    # Outbox: only done and dead events age out; 90 days archive, 365 delete.
    outbox_kept, outbox_archived, outbox_deleted = set(), set(), set()
    for status in ("done", "dead", "pending", "processing"):
        settled = status in ("done", "dead")
        for age in (days(89), days(90) - MS, days(90), days(91), days(364), days(365), days(366)):
            event = outbox_event(engine, status, NOW - age)
            if not settled or age < days(90):
                outbox_kept.add(event)
            elif age < days(365):
                outbox_archived.add(event)
            else:
                outbox_deleted.add(event)
    audits = {age: audit_entry(engine, NOW - days(age)) for age in (2554, 2555, 2556)}

    planned = plan(engine, policy, NOW)
    runner = RetentionRunner(engine, policy, batch_size=batch_size)
    done = runner.run(NOW)

    assert planned.lines() == done.lines()
    rows = done.rows
    assert rows[("leads", WS, Action.ARCHIVE)] == len(archived) == 4
    assert rows[("leads", WS, Action.DELETE)] == len(deleted) == 2
    assert rows[("leads", OTHER, Action.ARCHIVE)] == 1
    assert rows[("outbox_events", WS, Action.ARCHIVE)] == len(outbox_archived) == 6
    assert rows[("outbox_events", WS, Action.DELETE)] == len(outbox_deleted) == 4
    # What is left and where it went.
    assert ids(engine, "leads", workspace=WS) == kept_leads | {live}
    assert ids(engine, "leads_archive") == archived | {other}
    assert outbox_kept <= ids(engine, "outbox_events", "event_id")
    assert not (outbox_archived | outbox_deleted) & ids(engine, "outbox_events", "event_id")
    assert ids(engine, "outbox_events_archive", "event_id") == outbox_archived
    if audits[2554] is not None:
        assert rows[("audit_logs", WS, Action.DELETE)] >= 2
        left = ids(engine, "audit_logs")
        assert audits[2554] in left and audits[2555] not in left and audits[2556] not in left
    # Every row that left leads waits for Convex (no replica here).
    assert done.convex_queue == len(archived) + len(deleted) + 1
    if batch_size == 2:
        assert runner.batches > 2 * len(done.lines())  # really in small transactions
    # Nothing is due any more at the same moment.
    assert plan(engine, policy, NOW).lines() == []


def test_archived_rows_keep_every_column_and_age_out_of_the_archive(
    clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    engine = clean_postgres
    lead_id = tombstone(engine, WS, NOW - days(2554))
    with engine.connect() as conn:
        before = conn.execute(text("SELECT * FROM leads WHERE id = :id"), {"id": lead_id}).one()
    RetentionRunner(engine, policy).run(NOW)
    with engine.connect() as conn:
        after = conn.execute(
            text("SELECT * FROM leads_archive WHERE id = :id"), {"id": lead_id}
        ).one()
    assert after._mapping["archived_at"] == NOW
    assert {k: v for k, v in after._mapping.items() if k != "archived_at"} == dict(before._mapping)
    # A day later it is 2555 days old: the plan says so, and the run deletes it.
    later = NOW + days(1)
    planned = plan(engine, policy, later)
    assert ("leads_archive", WS, Action.DELETE, 1) in planned.lines()
    assert RetentionRunner(engine, policy).run(later).lines() == planned.lines()
    assert ids(engine, "leads_archive") == set()


def test_a_pending_event_is_never_touched_however_old(
    clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    engine = clean_postgres
    old = NOW - days(5000)
    pending = {outbox_event(engine, s, old) for s in ("pending", "processing")}
    RetentionRunner(engine, policy).run(NOW)
    assert ids(engine, "outbox_events", "event_id") == pending


def test_a_tombstone_brought_back_to_life_is_not_archived(
    clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    # Deleted long enough ago to archive, then written again by the
    # application: live rows are never archived, whatever their history.
    engine = clean_postgres
    lead_id = tombstone(engine, WS, NOW - days(400))
    PostgresLeadRepository(engine, SetClock(NOW)).upsert(
        WS, {"id": lead_id, "email": "back@example.com"}
    )
    assert RetentionRunner(engine, policy).run(NOW).lines() == []
    assert postgres_leads(engine)[(WS, lead_id)][1:] == (False, "back@example.com")


def test_a_row_someone_holds_is_skipped_not_waited_for(
    clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    engine = clean_postgres
    held, free = (tombstone(engine, WS, NOW - days(400)) for _ in range(2))
    with engine.connect() as other:
        with other.begin():
            other.execute(text("SELECT 1 FROM leads WHERE id = :id FOR UPDATE"), {"id": held})
            started = time.monotonic()
            first = RetentionRunner(engine, policy, batch_size=1).run(NOW)
            assert time.monotonic() - started < 10
        assert first.rows[("leads", WS, Action.ARCHIVE)] == 1
        assert ids(engine, "leads_archive") == {free}
    # Released: the next run takes it, and the plan said so.
    assert plan(engine, policy, NOW).rows[("leads", WS, Action.ARCHIVE)] == 1
    RetentionRunner(engine, policy).run(NOW)
    assert ids(engine, "leads_archive") == {free, held}


# -- purges reach Convex --------------------------------------------------------------


def replicate_convex_to_postgres(client: ConvexClient, engine: Engine) -> list[Change]:
    source = ConvexOutboxSource(client)
    batch = source.fetch(500)
    PostgresApplier(engine).apply(batch.changes)
    source.ack(batch)
    return list(batch.changes)


def test_a_lead_archived_in_postgres_leaves_convex_too(
    clean_convex: ConvexClient, clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    gone = repo.upsert(WS, {"email": "gone@example.com"})
    kept = repo.upsert(WS, {"email": "kept@example.com"})
    repo.delete(WS, gone)
    replicate_convex_to_postgres(clean_convex, clean_postgres)
    later = datetime.now(UTC) + days(366)

    # Without Convex the removal waits in the queue; Convex still has it.
    first = RetentionRunner(clean_postgres, policy).run(later)
    assert first.lines() == [("leads", WS, Action.ARCHIVE, 1)] and first.convex_queue == 1
    assert (WS, gone) in convex_leads(clean_convex)
    assert plan(clean_postgres, policy, later).convex_queue == 1

    # A run that reaches Convex drains it: the tombstone leaves Convex too.
    second = RetentionRunner(clean_postgres, policy, replica=ConvexReplica(clean_convex)).run(later)
    assert second.convex_purged == 1 and second.convex_queue == 0
    assert set(convex_leads(clean_convex)) == {(WS, kept)}
    assert set(postgres_leads(clean_postgres)) == {(WS, kept)}
    assert ids(clean_postgres, "leads_archive") == {gone}


# -- the recreated-id rule -------------------------------------------------------------


def recreate_in_convex(client: ConvexClient, lead_id: str, email: str) -> None:
    time.sleep(0.005)  # a later millisecond: a new life of the id
    client.mutation("leads:purge", {"workspaceId": WS, "id": lead_id})
    client.mutation(
        "leads:upsert",
        {"workspaceId": WS, "document": {"id": lead_id, "email": email}, "expectedVersion": 0.0},
    )


def test_a_recreated_purged_id_wins_over_its_old_tombstone_outbox_path(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    lead_id = repo.upsert(WS, {"email": "first@example.com"})
    repo.upsert(WS, {"id": lead_id, "email": "first.v2@example.com"})
    repo.delete(WS, lead_id)
    old_life = replicate_convex_to_postgres(clean_convex, clean_postgres)
    assert postgres_leads(clean_postgres)[(WS, lead_id)] == (3, True, "first.v2@example.com")

    recreate_in_convex(clean_convex, lead_id, "second@example.com")
    replicate_convex_to_postgres(clean_convex, clean_postgres)
    # Version 1 of the new life beats version 3 of the old one.
    assert postgres_leads(clean_postgres)[(WS, lead_id)] == (1, False, "second@example.com")

    # A late copy of the old life's changes (new event ids: not in the inbox) changes nothing.
    late = [dataclasses.replace(c, event_id=new_id()) for c in old_life]
    result = PostgresApplier(clean_postgres).apply(late)
    assert result.applied == 0 and result.stale == len(late)
    assert postgres_leads(clean_postgres)[(WS, lead_id)] == (1, False, "second@example.com")


def test_a_recreated_purged_id_wins_over_its_old_tombstone_in_one_feed_batch(
    clean_convex: ConvexClient, clean_postgres: Engine
) -> None:
    # The change feed carries the old life's delete, its purge and the new
    # life's insert; applied in one batch, the new life is what remains.
    start = StreamingExport(clean_convex)
    list(start.snapshot())
    assert start.snapshot_ts is not None
    source = ConvexDeltaSource(clean_convex, CursorStore(clean_postgres))
    source.start_at(start.snapshot_ts)
    repo = ConvexLeadRepository(clean_convex)
    lead_id = repo.upsert(WS, {"email": "first@example.com"})
    repo.upsert(WS, {"id": lead_id, "email": "first.v2@example.com"})
    repo.delete(WS, lead_id)
    recreate_in_convex(clean_convex, lead_id, "second@example.com")
    batch = source.fetch(500)
    assert [c.kind.value for c in batch.changes if c.entity == "lead"] == [
        "upsert",
        "upsert",
        "delete",
        "purge",
        "upsert",
    ]
    PostgresApplier(clean_postgres).apply(batch.changes)
    assert postgres_leads(clean_postgres) == {(WS, lead_id): (1, False, "second@example.com")}


def test_an_id_recreated_in_postgres_wins_in_convex_over_the_tombstone_it_still_has(
    clean_convex: ConvexClient, clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    # PostgreSQL is primary (the rollback window): retention archived the
    # tombstone here, Convex was not told yet, and the id is created again.
    pg = PostgresLeadRepository(clean_postgres)
    lead_id = pg.upsert(WS, {"email": "first@example.com"})
    pg.delete(WS, lead_id)
    source = PgOutboxSource(clean_postgres, owner="test")
    applier = ConvexApplier(clean_convex)
    batch = source.fetch(100)
    applier.apply(batch.changes)
    source.ack(batch)
    assert convex_leads(clean_convex)[(WS, lead_id)] == (2, True, "first@example.com")

    runner = RetentionRunner(clean_postgres, policy)
    assert runner.run(datetime.now(UTC) + days(366)).convex_queue == 1
    time.sleep(0.005)
    pg.upsert(WS, {"id": lead_id, "email": "second@example.com"})
    batch = source.fetch(100)
    assert applier.apply(batch.changes).applied == 1
    source.ack(batch)
    assert convex_leads(clean_convex)[(WS, lead_id)] == (1, False, "second@example.com")

    # The queued purge names the old life: Convex keeps the new one.
    replica = ConvexReplica(clean_convex)
    assert RetentionRunner(clean_postgres, policy, replica=replica).drain() == 0
    assert convex_leads(clean_convex)[(WS, lead_id)] == (1, False, "second@example.com")
    assert plan(clean_postgres, policy, NOW).convex_queue == 0


# -- workspace deletion --------------------------------------------------------------


def seed_workspace(client: ConvexClient, engine: Engine, workspace: str) -> None:
    """Leads in both stores (replicated), a tombstone archived, an event archived."""
    repo = ConvexLeadRepository(client)
    for n in range(3):
        repo.upsert(workspace, {"email": f"{workspace}.{n}@example.com"})
    doomed = repo.upsert(workspace, {"email": f"{workspace}.old@example.com"})
    repo.delete(workspace, doomed)
    replicate_convex_to_postgres(client, engine)
    PostgresLeadRepository(engine).upsert(workspace, {"email": f"{workspace}.pg@example.com"})
    outbox_event(engine, "done", NOW - days(100), workspace)


def tenant_rows(engine: Engine, workspace: str) -> dict[str, int]:
    """Rows of ``workspace`` per tenant table, the audit log apart."""
    counts = {}
    for table in current_metadata().sorted_tables:
        if "workspace_id" in table.c and table.name != "audit_logs":
            counts[table.name] = count(engine, table.name, workspace)
    return counts


def convex_rows(client: ConvexClient, workspace: str) -> dict[str, int]:
    leads = [k for k in convex_leads(client) if k[0] == workspace]
    events = client.query("outbox:forWorkspace", {"workspaceId": workspace, "limit": 10000.0})
    return {"leads": len(leads), "outbox": len(events)}


def topics(deletions: WorkspaceDeletions) -> list[tuple[str, Any]]:
    seen: list[WorkspaceEvent] = []
    deletions.publish(seen.append)
    return [(e.topic, e.payload.get("days_before")) for e in seen]


def test_a_workspace_deletion_cancelled_inside_the_grace_period_deletes_nothing(
    clean_convex: ConvexClient, clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    seed_workspace(clean_convex, clean_postgres, WS)
    RetentionRunner(clean_postgres, policy).run(NOW)  # some rows archived, as in life
    before_pg, before_convex = tenant_rows(clean_postgres, WS), convex_rows(clean_convex, WS)
    assert before_pg["leads"] and before_pg["outbox_events"] and before_convex["leads"]
    deletions = WorkspaceDeletions(
        clean_postgres, policy.workspace_deletion, replica=ConvexReplica(clean_convex)
    )
    t0 = NOW
    request = deletions.request(WS, "owner@example.com", t0)
    assert request.due_at == t0 + days(30)
    assert deletions.request(WS, "someone.else@example.com", t0 + days(1)).id == request.id
    assert deletions.tick(t0 + days(23)).purged == []
    cancelled = deletions.cancel(WS, "owner@example.com", t0 + days(29.9))
    assert cancelled.status == "cancelled"
    with pytest.raises(NotFound):
        deletions.cancel(WS, "owner@example.com", t0 + days(29.95))

    assert deletions.tick(t0 + days(31)).purged == []
    assert deletions.tick(t0 + days(400)).purged == []
    assert tenant_rows(clean_postgres, WS) == before_pg
    assert convex_rows(clean_convex, WS) == before_convex
    assert topics(deletions) == [(REQUESTED, None), (NOTICE, 7), (CANCELLED, None)]
    assert deletions.current(WS) == cancelled


def test_a_completed_workspace_deletion_leaves_no_row_of_it_in_either_store(
    clean_convex: ConvexClient, clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    for workspace in (WS, OTHER):
        seed_workspace(clean_convex, clean_postgres, workspace)
    RetentionRunner(clean_postgres, policy).run(NOW)
    kept_pg, kept_convex = tenant_rows(clean_postgres, OTHER), convex_rows(clean_convex, OTHER)
    deletions = WorkspaceDeletions(
        clean_postgres, policy.workspace_deletion, replica=ConvexReplica(clean_convex)
    )
    t0 = NOW
    request = deletions.request(WS, "owner@example.com", t0)
    # Notices at 7, 3 and 1 days before, each once however often the tick runs.
    for at in (23, 23.5, 24, 27, 27.1, 29.5, 29.9):
        assert deletions.tick(t0 + days(at)).purged == []
    assert tenant_rows(clean_postgres, WS)["leads"] > 0  # nothing purged before due
    with pytest.raises(Conflict):
        deletions.cancel(WS, "owner@example.com", t0 + days(30))

    ticked = deletions.tick(t0 + days(30))
    assert [p.id for p in ticked.purged] == [request.id]
    purged = deletions.current(WS)
    assert purged is not None and purged.status == "purged" and purged.purged_at == t0 + days(30)
    assert purged.purged_rows is not None and purged.purged_rows["convex"]["leads"] == 4

    assert set(tenant_rows(clean_postgres, WS).values()) == {0}
    assert convex_rows(clean_convex, WS) == {"leads": 0, "outbox": 0}
    assert tenant_rows(clean_postgres, OTHER) == kept_pg
    assert convex_rows(clean_convex, OTHER) == kept_convex
    assert topics(deletions) == [
        (REQUESTED, None),
        (NOTICE, 7),
        (NOTICE, 3),
        (NOTICE, 1),
        (PURGED, None),
    ]
    assert deletions.tick(t0 + days(31)).purged == []  # done once
    audit = current_metadata().tables.get("audit_logs")
    if audit is not None:
        with clean_postgres.connect() as conn:
            entry = conn.execute(select(audit).where(audit.c.resource_type == "workspace")).one()
        assert entry.workspace_id == WS and entry.resource_id == request.id
        assert entry.action == "delete" and entry.actor == "owner@example.com"


def test_a_missed_notice_window_is_skipped_not_sent_late(
    clean_postgres: Engine, policy: RetentionPolicy
) -> None:
    deletions = WorkspaceDeletions(clean_postgres, policy.workspace_deletion)
    deletions.request(WS, "owner@example.com", NOW)
    deletions.tick(NOW + days(28))  # the 7-day window passed unseen: only the 3-day notice
    assert topics(deletions) == [(REQUESTED, None), (NOTICE, 3)]


# -- the command -----------------------------------------------------------------------


def test_the_command_plans_then_runs_on_a_fixed_clock(
    clean_postgres: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEX_URL", raising=False)
    app = typer.Typer()
    retention_cli.register(app)
    url = clean_postgres.url.render_as_string(hide_password=False)
    tombstone(clean_postgres, WS, NOW - days(365))
    tombstone(clean_postgres, WS, NOW - days(364))
    at = ["--now", NOW.isoformat(), "--url", url]
    runner = CliRunner()

    planned = runner.invoke(app, ["retention", "plan", *at, "--json"])
    assert planned.exit_code == 0, planned.output
    leads = [r for r in json.loads(planned.output)["rows"] if r["table"] == "leads"]
    assert leads == [{"table": "leads", "workspace": WS, "action": "archive", "rows": 1}]

    ran = runner.invoke(app, ["retention", "run", *at, "--batch-size", "1", "--json"])
    assert ran.exit_code == 0, ran.output
    # Progress goes to stderr (plain lines: not a terminal); stdout stays JSON.
    document = json.loads(ran.stdout)
    assert "leads (archive): done, 1 rows" in ran.stderr
    assert document["rows"] == json.loads(planned.output)["rows"]
    assert document["convex_queue"] == 1 and document["workspaces"]["purged"] == []

    table = runner.invoke(app, ["retention", "plan", *at])
    assert table.exit_code == 0 and "retention plan as of 2031-06-01T12:00:00+00:00" in table.output

    requested = runner.invoke(app, ["retention", "workspace", "request", WS, "--by", "ops", *at])
    assert requested.exit_code == 0 and "due 2031-07-01T12:00:00+00:00" in requested.output
    status = runner.invoke(app, ["retention", "workspace", "status", WS, "--url", url])
    assert "pending, requested by ops" in status.output
    cancelled = runner.invoke(app, ["retention", "workspace", "cancel", WS, "--by", "ops", *at])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
