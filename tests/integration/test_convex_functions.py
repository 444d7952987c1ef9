"""The generated Convex functions, called over HTTP on the local backend:
validators refuse bad arguments, and a write and its outbox event commit
together or not at all."""

from __future__ import annotations

from typing import Any

import pytest

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.repository import ConvexLeadRepository, function_errors
from migrationkit.domain.ids import new_id
from migrationkit.errors import (
    Conflict,
    FunctionFailed,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from migrationkit.testing.convex_backend import LocalConvexBackend


def _document(**overrides: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "email": "v@example.com",
        "segment": None,
        "score": 1.0,
        "tags": [],
        "profile": None,
    } | overrides


@pytest.mark.parametrize(
    "args",
    [
        {"workspaceId": "ws", "document": _document(score="high"), "expectedVersion": None},
        {"workspaceId": "ws", "document": _document(segment="galactic"), "expectedVersion": None},
        {"workspaceId": "ws", "document": _document(tags="a,b"), "expectedVersion": None},
        {"workspaceId": "ws", "document": _document(colour="red"), "expectedVersion": None},
        {"workspaceId": 7.0, "document": _document(), "expectedVersion": None},
        {"workspaceId": "ws", "document": _document()},  # a required argument missing
        {"workspaceId": "ws", "document": _document(), "expectedVersion": 1},  # Int64, not a number
    ],
    ids=["score", "segment", "tags", "unknown-field", "workspace", "missing-arg", "int64"],
)
def test_validators_refuse_bad_arguments(clean_convex: ConvexClient, args: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        clean_convex.mutation("leads:upsert", args)
    assert clean_convex.query("outbox:forWorkspace", {"workspaceId": "ws", "limit": 10.0}) == []


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("leads:get", {"workspaceId": "bad workspace", "id": new_id()}),
        ("leads:get", {"workspaceId": "ws", "id": "not-a-ulid"}),
        ("leads:list", {"workspaceId": "ws", "after": None, "limit": 0.0}),
        ("leads:list", {"workspaceId": "ws", "after": None, "limit": 2.5}),
    ],
)
def test_handlers_check_what_validators_cannot(
    clean_convex: ConvexClient, function: str, args: dict[str, Any]
) -> None:
    with pytest.raises(ValidationFailed), function_errors():
        clean_convex.query(function, args)


def test_a_mutation_that_fails_after_writing_leaves_nothing(
    convex_backend: LocalConvexBackend, clean_convex: ConvexClient
) -> None:
    repo = ConvexLeadRepository(clean_convex)
    lead_id = new_id()
    # The real upsert runs to the end (entity and event written), then the
    # backend fails the mutation before it commits.
    convex_backend.fail_next_mutation()
    with pytest.raises(FunctionFailed, match="injected"):
        repo.upsert("ws", {"id": lead_id, "email": "gone@example.com"})
    assert repo.get("ws", lead_id) is None
    assert repo.outbox_events("ws") == []
    # The next call is not affected.
    repo.upsert("ws", {"id": lead_id, "email": "kept@example.com"})
    assert [e.version for e in repo.outbox_events("ws")] == [1]


def test_function_error_codes_become_typed_errors(clean_convex: ConvexClient) -> None:
    repo = ConvexLeadRepository(clean_convex)
    lead_id = repo.upsert("ws", {"email": "c@example.com"})
    with pytest.raises(Conflict, match="expected version 5"):
        repo.upsert("ws", {"id": lead_id, "email": "c@example.com"}, expected_version=5)
    with pytest.raises(NotFound):
        repo.delete("ws", new_id())
    with pytest.raises(FunctionFailed) as caught:
        clean_convex.mutation("leads:purge", {"workspaceId": "ws", "id": lead_id})
    assert caught.value.data["code"] == "ValidationFailed"  # a live lead is never purged


def test_internal_functions_need_the_admin_key(convex_backend: LocalConvexBackend) -> None:
    args = {"workspaceId": "ws", "id": new_id()}
    # Without a key an internal function does not exist, as on a deployment.
    with ConvexClient(convex_backend.url) as anonymous, pytest.raises(FunctionFailed) as missing:
        anonymous.query("leads:get", args)
    assert "Could not find public function" in str(missing.value)
    with (
        ConvexClient(convex_backend.url, admin_key="local|not-the-key") as wrong,
        pytest.raises(PermissionDenied) as refused,
    ):
        wrong.query("leads:get", args)
    assert "not-the-key" not in str(refused.value)
    assert convex_backend.admin_key not in str(refused.value)
