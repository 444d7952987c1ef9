"""The repository contract: one suite every ``LeadRepository`` adapter must pass.

Subclass ``LeadRepositoryContract`` in a test module; each test takes the
``lead_harness`` fixture, which the plugin parametrizes over every adapter
(or which you override to bring your own).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationkit.domain.audit import AuditAction, AuditEntry, audit_context
from migrationkit.domain.ids import new_id
from migrationkit.domain.lead import Lead, Segment
from migrationkit.domain.outbox import OutboxEvent
from migrationkit.domain.query import MAX_LIMIT, ListQuery, SegmentQuery
from migrationkit.errors import Conflict, InvalidCursor, NotFound, ValidationFailed
from migrationkit.ports.repository import LeadRepository
from migrationkit.testing.harness import LeadHarness

WS_A = "ws-alpha"
WS_B = "ws-beta"

#: Strings that trip naive quoting, formatting or encoding somewhere.
NASTY_STRINGS = [
    "Robert'); DROP TABLE leads;--",
    "' OR '1'='1",
    "\"double\" and 'single' and `back` quotes",
    "100% of %s and %(name)s and %% and {0} and {}",
    "back\\slash \\n \\u0000 \\x00 (escaped, not real)",
    "tab\tnewline\ncarriage\rend",
    "emoji 🚀🎉 and CJK 漢字 and RTL مرحبا",
    "e\u0301 vs \u00e9, zero\u200bwidth, BOM \ufeff, max BMP \uffff",
    "$integer $bytes _id _creationTime",
    "",
    " leading and trailing spaces ",
    "x" * 5000,
]


def all_live(repository: LeadRepository, workspace_id: str) -> list[Lead]:
    """Every live lead of a workspace, paging with the largest limit."""
    items: list[Lead] = []
    cursor: str | None = None
    while True:
        page = repository.list(workspace_id, ListQuery(cursor=cursor, limit=MAX_LIMIT))
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def user_fields(lead: Lead) -> dict[str, Any]:
    """What a caller wrote, without the fields the store manages."""
    return lead.model_dump(
        mode="json", exclude={"version", "created_at", "updated_at", "deleted_at"}
    )


def _audit_reader(repository: object) -> Callable[[str], list[AuditEntry]]:
    """The adapter's ``audit_entries``; the test is skipped for an adapter without one."""
    reader = getattr(repository, "audit_entries", None)
    if reader is None:
        pytest.skip(f"{type(repository).__name__} has no audit_entries(workspace_id)")
    return reader  # type: ignore[no-any-return]


def _write_order(entry: AuditEntry) -> tuple[str, int]:
    """Entries of one millisecond may come in either order: sort them by version."""
    return entry.resource_id, entry.after["version"] if entry.after else 0


def full_lead(workspace_id: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": new_id(),
        "workspace_id": workspace_id,
        "email": "ada@example.com",
        "segment": "enterprise",
        "score": 0.1 + 0.2,
        "tags": ["b", "a", "", "a"],
        "profile": {
            "company": "Analytical Engines Ltd",
            "title": None,
            "verified": True,
            "links": ["https://example.com/a", "https://example.com/b"],
            "address": {"street": None, "city": "London", "country": None},
            "notes": {"first": "met at a conference", "odd key: %s '\"": "välue ünïcødé"},
        },
    }
    data.update(overrides)
    return data


class LeadRepositoryContract:
    """Behaviour every LeadRepository must show, whatever the store."""

    # -- the port ----------------------------------------------------------

    def test_implements_the_port(self, lead_harness: LeadHarness) -> None:
        assert isinstance(lead_harness.repository, LeadRepository)

    def test_missing_get_is_none(self, lead_harness: LeadHarness) -> None:
        assert lead_harness.repository.get(WS_A, new_id()) is None

    # -- round trips -------------------------------------------------------

    def test_round_trip_keeps_nested_objects_arrays_and_none(
        self, lead_harness: LeadHarness
    ) -> None:
        repo = lead_harness.repository
        data = full_lead(WS_A)
        lead_id = repo.upsert(WS_A, data)
        stored = repo.get(WS_A, lead_id)
        assert stored is not None
        expected = Lead.model_validate(data)
        assert user_fields(stored) == user_fields(expected)
        assert stored.profile is not None and stored.profile.title is None
        assert stored.profile.address is not None and stored.profile.address.street is None
        assert stored.tags == ["b", "a", "", "a"]  # order and duplicates kept
        assert stored.score == 0.1 + 0.2  # the exact double, not a rounded one

    def test_round_trip_of_optional_fields_left_empty(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "min@example.com"})
        stored = repo.get(WS_A, lead_id)
        assert stored is not None
        assert (stored.segment, stored.profile, stored.tags, stored.score) == (None, None, [], 0.0)

    def test_upsert_accepts_a_model_instance(self, lead_harness: LeadHarness) -> None:
        lead = Lead(workspace_id=WS_A, email="m@example.com", segment=Segment.SMB, score=-3.5)
        assert lead_harness.repository.upsert(WS_A, lead) == lead.id
        stored = lead_harness.repository.get(WS_A, lead.id)
        assert stored is not None and user_fields(stored) == user_fields(lead)

    def test_extreme_floats_round_trip(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        for value in (5e-324, 1.7976931348623157e308, -0.0, 123456789.123456789):
            lead_id = repo.upsert(WS_A, {"email": "f@example.com", "score": value})
            stored = repo.get(WS_A, lead_id)
            assert stored is not None and stored.score == value

    @pytest.mark.parametrize("nasty", NASTY_STRINGS, ids=range(len(NASTY_STRINGS)))
    def test_strings_are_stored_verbatim(self, lead_harness: LeadHarness, nasty: str) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(
            WS_A,
            {
                "email": "s@example.com",
                "tags": [nasty, nasty[::-1]],
                "profile": {"company": nasty, "notes": {"note": nasty}},
            },
        )
        stored = repo.get(WS_A, lead_id)
        assert stored is not None and stored.profile is not None
        assert stored.tags == [nasty, nasty[::-1]]
        assert stored.profile.company == nasty
        assert stored.profile.notes == {"note": nasty}
        # Nothing else was touched by what the string might have meant as SQL.
        assert [lead.id for lead in all_live(repo, WS_A)] == [lead_id]

    @settings(
        max_examples=40,
        deadline=None,
        # The same method runs once per adapter; each example writes a fresh lead.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        text=st.text(
            alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
            max_size=60,
        ),
        tags=st.lists(
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                max_size=10,
            ),
            max_size=5,
        ),
    )
    def test_any_unicode_text_round_trips(
        self, lead_harness: LeadHarness, text: str, tags: list[str]
    ) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(
            WS_A, {"email": "h@example.com", "tags": tags, "profile": {"title": text}}
        )
        stored = repo.get(WS_A, lead_id)
        assert stored is not None and stored.profile is not None
        assert (stored.tags, stored.profile.title) == (tags, text)

    # -- tenancy -----------------------------------------------------------

    def test_same_id_in_two_workspaces_stays_apart(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        shared_id = new_id()
        repo.upsert(WS_A, {"id": shared_id, "email": "a@alpha.example"})
        repo.upsert(WS_B, {"id": shared_id, "email": "b@beta.example"})
        repo.upsert(WS_B, {"id": shared_id, "email": "b2@beta.example"})
        a, b = repo.get(WS_A, shared_id), repo.get(WS_B, shared_id)
        assert a is not None and b is not None
        assert (a.email, a.version) == ("a@alpha.example", 1)
        assert (b.email, b.version) == ("b2@beta.example", 2)
        assert repo.delete(WS_A, shared_id) is True
        assert repo.get(WS_A, shared_id) is None
        still = repo.get(WS_B, shared_id)
        assert still is not None and still.email == "b2@beta.example"
        assert [x.workspace_id for x in all_live(repo, WS_B)] == [WS_B]
        assert all_live(repo, WS_A) == []

    def test_workspace_in_data_must_match_the_call(self, lead_harness: LeadHarness) -> None:
        with pytest.raises(ValidationFailed, match="workspace_id"):
            lead_harness.repository.upsert(WS_A, {"workspace_id": WS_B, "email": "x@example.com"})
        assert all_live(lead_harness.repository, WS_A) == []
        assert all_live(lead_harness.repository, WS_B) == []

    # -- versions ----------------------------------------------------------

    def test_version_increases_by_one_per_write(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "v@example.com"})
        versions = []
        for n in range(3):
            stored = repo.get(WS_A, lead_id)
            assert stored is not None
            versions.append(stored.version)
            repo.upsert(WS_A, {"id": lead_id, "email": f"v{n}@example.com", "version": 999})
        assert versions == [1, 2, 3]
        final = repo.get(WS_A, lead_id)
        assert final is not None and final.version == 4  # a caller's "version" is ignored
        repo.delete(WS_A, lead_id)
        assert [e.version for e in lead_harness.outbox_events(WS_A)] == [1, 2, 3, 4, 5]

    def test_timestamps_are_kept_and_stamped(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "t@example.com"})
        first = repo.get(WS_A, lead_id)
        time.sleep(0.005)
        repo.upsert(WS_A, {"id": lead_id, "email": "t2@example.com"})
        second = repo.get(WS_A, lead_id)
        assert first is not None and second is not None
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at
        assert first.created_at.utcoffset() == timedelta(0)

    def test_expected_version_guards_the_write(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        lead_id = new_id()
        repo.upsert(WS_A, {"id": lead_id, "email": "c@example.com"}, expected_version=0)
        with pytest.raises(Conflict):
            repo.upsert(WS_A, {"id": lead_id, "email": "c@example.com"}, expected_version=0)
        with pytest.raises(Conflict):
            repo.upsert(WS_A, {"id": lead_id, "email": "lost@example.com"}, expected_version=5)
        repo.upsert(WS_A, {"id": lead_id, "email": "won@example.com"}, expected_version=1)
        stored = repo.get(WS_A, lead_id)
        assert stored is not None and (stored.email, stored.version) == ("won@example.com", 2)
        assert len(lead_harness.outbox_events(WS_A)) == 2

    def test_two_threads_updating_one_entity_lose_no_update(
        self, lead_harness: LeadHarness
    ) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "race@example.com", "score": 0.0})
        per_thread = 15
        errors: list[BaseException] = []

        def increment() -> None:
            try:
                for _ in range(per_thread):
                    while True:  # read-modify-write, retried on a lost race
                        current = repo.get(WS_A, lead_id)
                        assert current is not None
                        data = current.model_dump() | {"score": current.score + 1}
                        try:
                            repo.upsert(WS_A, data, expected_version=current.version)
                            break
                        except Conflict:
                            continue
            except BaseException as exc:  # surfaced in the main thread below
                errors.append(exc)

        threads = [threading.Thread(target=increment) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        final = repo.get(WS_A, lead_id)
        assert final is not None
        assert final.score == 2 * per_thread
        assert final.version == 1 + 2 * per_thread

    def test_concurrent_blind_upserts_each_get_their_own_version(
        self, lead_harness: LeadHarness
    ) -> None:
        repo = lead_harness.repository
        lead_id = new_id()
        per_thread = 20

        def write(tag: str) -> None:
            for n in range(per_thread):
                repo.upsert(WS_A, {"id": lead_id, "email": f"{tag}{n}@example.com"})

        threads = [threading.Thread(target=write, args=(tag,)) for tag in ("x", "y")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        final = repo.get(WS_A, lead_id)
        assert final is not None and final.version == 2 * per_thread
        versions = sorted(e.version for e in lead_harness.outbox_events(WS_A))
        assert versions == list(range(1, 2 * per_thread + 1))

    # -- listing -----------------------------------------------------------

    def test_list_pages_in_id_order(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        ids = sorted(repo.upsert(WS_A, {"email": f"p{n}@example.com"}) for n in range(12))
        pages = []
        cursor = None
        while True:
            page = repo.list(WS_A, ListQuery(cursor=cursor, limit=5))
            pages.append([lead.id for lead in page.items])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [len(p) for p in pages] == [5, 5, 2]
        assert [i for p in pages for i in p] == ids

    def test_exact_multiple_of_limit_ends_without_an_empty_page(
        self, lead_harness: LeadHarness
    ) -> None:
        repo = lead_harness.repository
        for n in range(4):
            repo.upsert(WS_A, {"email": f"e{n}@example.com"})
        first = repo.list(WS_A, ListQuery(limit=2))
        second = repo.list(WS_A, ListQuery(cursor=first.next_cursor, limit=2))
        assert len(first.items) == len(second.items) == 2
        assert second.next_cursor is None

    def test_pagination_visits_every_row_once_under_concurrent_inserts(
        self, lead_harness: LeadHarness
    ) -> None:
        repo = lead_harness.repository
        existing = {repo.upsert(WS_A, {"email": f"old{n}@example.com"}) for n in range(60)}
        inserted: list[str] = []
        stop = threading.Event()

        def insert_while_paging() -> None:
            n = 0
            while not stop.is_set() and n < 200:
                inserted.append(repo.upsert(WS_A, {"email": f"new{n}@example.com"}))
                n += 1

        writer = threading.Thread(target=insert_while_paging)
        writer.start()
        seen: list[str] = []
        cursor = None
        try:
            while True:
                page = repo.list(WS_A, ListQuery(cursor=cursor, limit=7))
                seen.extend(lead.id for lead in page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
                time.sleep(0.002)  # let the writer in between pages
        finally:
            stop.set()
            writer.join(timeout=60)
        assert len(seen) == len(set(seen)), "a row was returned twice"
        assert existing <= set(seen), "a row that existed before paging was skipped"
        assert set(seen) <= existing | set(inserted)
        assert seen == sorted(seen)
        assert inserted, "the writer never ran"

    def test_cursor_is_bound_to_its_query(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        for n in range(3):
            repo.upsert(WS_A, {"email": f"c{n}@example.com", "segment": "smb"})
            repo.upsert(WS_B, {"email": f"c{n}@example.com", "segment": "smb"})
        cursor = repo.list(WS_A, ListQuery(limit=1)).next_cursor
        assert cursor is not None
        with pytest.raises(InvalidCursor):
            repo.list(WS_B, ListQuery(cursor=cursor, limit=1))
        with pytest.raises(InvalidCursor):
            repo.list_by_segment(WS_A, SegmentQuery(segment=Segment.SMB, cursor=cursor))
        for garbage in ("", "not-a-cursor", "eyJ2IjoxfQ", "🚀"):
            with pytest.raises(InvalidCursor):
                repo.list(WS_A, ListQuery(cursor=garbage))

    def test_segment_domain_and_created_after_filters(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        early = [
            repo.upsert(WS_A, {"email": "a@acme.example", "segment": "startup"}),
            repo.upsert(WS_A, {"email": "b@Other.example", "segment": "startup"}),
            repo.upsert(WS_A, {"email": "c@acme.example", "segment": "smb"}),
        ]
        boundary = repo.get(WS_A, early[-1])
        assert boundary is not None
        time.sleep(0.005)
        late = [
            repo.upsert(WS_A, {"email": "d@ACME.example", "segment": "startup"}),
            repo.upsert(WS_A, {"email": "e@acme.example"}),
        ]
        repo.upsert(WS_B, {"email": "f@acme.example", "segment": "startup"})
        deleted = repo.upsert(WS_A, {"email": "g@acme.example", "segment": "startup"})
        repo.delete(WS_A, deleted)

        def ids(**filters: Any) -> set[str]:
            return {x.id for x in repo.list_by_segment(WS_A, SegmentQuery(**filters)).items}

        assert ids(segment=Segment.STARTUP) == {early[0], early[1], late[0]}
        assert ids(segment="smb") == {early[2]}
        assert ids(email_domain="acme.example") == {early[0], early[2], late[0], late[1]}
        assert ids(email_domain="ACME.Example") == {early[0], early[2], late[0], late[1]}
        assert ids(segment="startup", email_domain="acme.example") == {early[0], late[0]}
        assert ids(created_after=boundary.created_at) == set(late)
        assert ids(segment="enterprise") == set()
        assert ids(email_domain="cme.example") == set()  # a suffix is not the domain

    def test_segment_query_pages(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        wanted = sorted(
            repo.upsert(WS_A, {"email": f"x{n}@example.com", "segment": "smb"}) for n in range(7)
        )
        for n in range(5):
            repo.upsert(WS_A, {"email": f"y{n}@example.com", "segment": "startup"})
        seen: list[str] = []
        cursor = None
        while True:
            query = SegmentQuery(segment=Segment.SMB, cursor=cursor, limit=3)
            page = repo.list_by_segment(WS_A, query)
            seen.extend(lead.id for lead in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == wanted

    # -- deletes -----------------------------------------------------------

    def test_delete_hides_the_row_and_is_harmless_twice(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "d@example.com"})
        keep_id = repo.upsert(WS_A, {"email": "k@example.com"})
        assert repo.delete(WS_A, lead_id) is True
        assert repo.get(WS_A, lead_id) is None
        assert [x.id for x in all_live(repo, WS_A)] == [keep_id]
        assert repo.delete(WS_A, lead_id) is False
        assert len(lead_harness.outbox_events(WS_A)) == 3  # the second delete recorded nothing

    def test_delete_of_an_unknown_id_says_so(self, lead_harness: LeadHarness) -> None:
        with pytest.raises(NotFound):
            lead_harness.repository.delete(WS_A, new_id())
        assert lead_harness.outbox_events(WS_A) == []

    def test_upsert_after_delete_revives_with_the_next_version(
        self, lead_harness: LeadHarness
    ) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "r@example.com"})
        repo.delete(WS_A, lead_id)
        repo.upsert(WS_A, {"id": lead_id, "email": "r2@example.com"})
        revived = repo.get(WS_A, lead_id)
        assert revived is not None
        assert (revived.version, revived.deleted_at, revived.email) == (3, None, "r2@example.com")

    # -- the outbox --------------------------------------------------------

    def test_each_write_leaves_exactly_one_outbox_event(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, full_lead(WS_A))
        after_insert = repo.get(WS_A, lead_id)
        repo.upsert(WS_A, full_lead(WS_A, id=lead_id, email="new@example.com", profile=None))
        after_update = repo.get(WS_A, lead_id)
        repo.delete(WS_A, lead_id)
        assert after_insert is not None and after_update is not None

        events = lead_harness.outbox_events(WS_A)
        assert [(e.topic, e.version) for e in events] == [
            ("lead.upsert", 1),
            ("lead.upsert", 2),
            ("lead.delete", 3),
        ]
        assert all(isinstance(e, OutboxEvent) for e in events)
        assert {e.entity_id for e in events} == {lead_id}
        assert {(e.entity, e.workspace_id) for e in events} == {("lead", WS_A)}
        assert len({e.event_id for e in events}) == 3
        assert len({e.dedupe_key for e in events}) == 3
        assert events[0].payload == after_insert.model_dump(mode="json")
        assert events[1].payload == after_update.model_dump(mode="json")
        deleted_payload = events[2].payload
        assert deleted_payload["deleted_at"] is not None and deleted_payload["version"] == 3
        assert Lead.model_validate(deleted_payload).email == "new@example.com"
        assert events[2].occurred_at >= events[1].occurred_at
        assert lead_harness.outbox_events(WS_B) == []

    # -- the audit log -----------------------------------------------------
    # Read through ``repository.audit_entries(workspace_id)`` where the
    # adapter has it (every built-in one does); skipped otherwise.

    def test_each_write_leaves_exactly_one_audit_entry(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        audit_entries = _audit_reader(repo)
        with audit_context("user:ada", ip="192.0.2.1", user_agent="contract/1"):
            lead_id = repo.upsert(WS_A, full_lead(WS_A))
            created = repo.get(WS_A, lead_id)
            repo.upsert(WS_A, full_lead(WS_A, id=lead_id, email="new@example.com"))
            updated = repo.get(WS_A, lead_id)
            repo.delete(WS_A, lead_id)
            repo.delete(WS_A, lead_id)  # deleted already: no write, no entry
        assert created is not None and updated is not None

        entries = sorted(audit_entries(WS_A), key=_write_order)
        assert [(e.action, e.resource_type, e.resource_id) for e in entries] == [
            (AuditAction.CREATE, "lead", lead_id),
            (AuditAction.UPDATE, "lead", lead_id),
            (AuditAction.DELETE, "lead", lead_id),
        ]
        assert [e.before for e in entries[:2]] == [None, created.model_dump(mode="json")]
        assert [e.after for e in entries[:2]] == [
            created.model_dump(mode="json"),
            updated.model_dump(mode="json"),
        ]
        assert entries[2].before == updated.model_dump(mode="json")
        assert entries[2].after is not None and entries[2].after["deleted_at"] is not None
        assert {(e.actor, e.ip, e.user_agent) for e in entries} == {
            ("user:ada", "192.0.2.1", "contract/1")
        }
        # The write's one outbox event carries its entry.
        events = sorted(lead_harness.outbox_events(WS_A), key=lambda e: e.version)
        assert [e.audit for e in events] == [e.model_dump(mode="json") for e in entries]
        assert audit_entries(WS_B) == []

    def test_a_write_with_no_audit_context_has_no_actor(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        audit_entries = _audit_reader(repo)
        repo.upsert(WS_A, {"email": "anon@example.com"})
        (entry,) = audit_entries(WS_A)
        assert (entry.actor, entry.ip, entry.user_agent) == (None, None, None)

    def test_a_refused_write_leaves_no_audit_entry(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        audit_entries = _audit_reader(repo)
        lead_id = repo.upsert(WS_A, {"email": "keep@example.com"})
        with pytest.raises(Conflict):
            repo.upsert(WS_A, {"id": lead_id, "email": "x@example.com"}, expected_version=5)
        with pytest.raises(ValidationFailed):
            repo.upsert(WS_A, {"id": lead_id, "email": "not-an-email"})
        with pytest.raises(NotFound):
            repo.delete(WS_A, new_id())
        assert [e.action for e in audit_entries(WS_A)] == [AuditAction.CREATE]

    # -- bad input ---------------------------------------------------------

    def test_bad_input_gives_the_typed_error_and_changes_nothing(
        self, lead_harness: LeadHarness
    ) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "keep@example.com", "segment": "smb"})
        before = (all_live(repo, WS_A), lead_harness.outbox_events(WS_A))
        good = {"email": "ok@example.com"}
        calls: list[tuple[str, Callable[[], object]]] = [
            ("empty workspace get", lambda: repo.get("", lead_id)),
            ("empty workspace upsert", lambda: repo.upsert("", good)),
            ("empty workspace delete", lambda: repo.delete("", lead_id)),
            ("workspace of wrong type", lambda: repo.get(42, lead_id)),  # type: ignore[arg-type]
            ("workspace with a space", lambda: repo.list("a b")),
            ("workspace too long", lambda: repo.list("w" * 65)),
            ("malformed id get", lambda: repo.get(WS_A, "not-a-ulid")),
            ("malformed id delete", lambda: repo.delete(WS_A, "1234")),
            ("id of wrong type", lambda: repo.get(WS_A, 7)),  # type: ignore[arg-type]
            ("malformed id in data", lambda: repo.upsert(WS_A, good | {"id": "x' OR 1=1"})),
            ("invalid email", lambda: repo.upsert(WS_A, {"email": "not-an-email"})),
            ("email of wrong type", lambda: repo.upsert(WS_A, {"email": 123})),
            ("missing email", lambda: repo.upsert(WS_A, {"segment": "smb"})),
            ("score of wrong type", lambda: repo.upsert(WS_A, good | {"score": "high"})),
            ("score not finite", lambda: repo.upsert(WS_A, good | {"score": float("nan")})),
            ("unknown segment", lambda: repo.upsert(WS_A, good | {"segment": "galactic"})),
            ("tags not a list", lambda: repo.upsert(WS_A, good | {"tags": "a,b"})),
            ("tag not a string", lambda: repo.upsert(WS_A, good | {"tags": [1, None]})),
            ("profile not an object", lambda: repo.upsert(WS_A, good | {"profile": [1]})),
            ("unknown field", lambda: repo.upsert(WS_A, good | {"colour": "red"})),
            ("unknown nested field", lambda: repo.upsert(WS_A, good | {"profile": {"x": 1}})),
            ("NUL in a string", lambda: repo.upsert(WS_A, good | {"tags": ["a\x00b"]})),
            (
                "non-ASCII map key",
                lambda: repo.upsert(WS_A, good | {"profile": {"notes": {"ключ": "v"}}}),
            ),
            (
                "map key with $",
                lambda: repo.upsert(WS_A, good | {"profile": {"notes": {"$x": ""}}}),
            ),
            ("empty map key", lambda: repo.upsert(WS_A, good | {"profile": {"notes": {"": ""}}})),
            ("lone surrogate", lambda: repo.upsert(WS_A, good | {"tags": ["\ud800"]})),
            ("data not a mapping", lambda: repo.upsert(WS_A, "email=x@example.com")),  # type: ignore[arg-type]
            ("negative expected_version", lambda: repo.upsert(WS_A, good, expected_version=-1)),
            ("limit 0", lambda: repo.list(WS_A, ListQuery(limit=0))),
            ("limit 10,001", lambda: repo.list(WS_A, ListQuery(limit=MAX_LIMIT + 1))),
            ("limit of wrong type", lambda: repo.list(WS_A, ListQuery(limit="10"))),  # type: ignore[arg-type]
            ("query of wrong type", lambda: repo.list(WS_A, {"limit": 5})),  # type: ignore[arg-type]
            ("malformed cursor", lambda: repo.list(WS_A, ListQuery(cursor="%%%"))),
            (
                "unknown segment filter",
                lambda: repo.list_by_segment(WS_A, SegmentQuery(segment="x")),  # type: ignore[arg-type]
            ),
            ("domain with @", lambda: repo.list_by_segment(WS_A, SegmentQuery(email_domain="a@b"))),
            (
                "naive created_after",
                lambda: repo.list_by_segment(
                    WS_A,
                    SegmentQuery(created_after="2020-01-01"),  # type: ignore[arg-type]
                ),
            ),
        ]
        for what, call in calls:
            with pytest.raises(ValidationFailed):
                call()
                pytest.fail(f"{what}: accepted")
        assert (all_live(repo, WS_A), lead_harness.outbox_events(WS_A)) == before

    def test_validation_errors_say_what_is_wrong(self, lead_harness: LeadHarness) -> None:
        with pytest.raises(ValidationFailed) as caught:
            lead_harness.repository.upsert(WS_A, {"email": "nope", "score": "high"})
        locations = {tuple(e["loc"]) for e in caught.value.errors}
        assert {("email",), ("score",)} <= locations
        assert "email" in str(caught.value) and "score" in str(caught.value)

    def test_returned_entities_are_copies(self, lead_harness: LeadHarness) -> None:
        repo = lead_harness.repository
        lead_id = repo.upsert(WS_A, {"email": "copy@example.com", "tags": ["a"]})
        first = repo.get(WS_A, lead_id)
        assert first is not None
        first.tags.append("mutated")
        again = repo.get(WS_A, lead_id)
        assert again is not None and again.tags == ["a"]
