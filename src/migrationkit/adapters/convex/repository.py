"""The Convex repository: the ports, through the generated Convex functions.

Every call is one Convex function call over HTTP. The functions do the
writing (version bump, outbox event and audit row in one mutation); this
side validates input exactly as the other adapters do, converts entities to
Convex documents and back, passes the caller's ``audit_context`` along
(the functions record it as given, never a guess), and turns the
functions' ``ConvexError`` codes into the kit's errors.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from migrationkit.adapters.convex.changes import audit_entry, outbox_event
from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.documents import (
    DocumentCodec,
    ms_from_datetime,
)
from migrationkit.domain.audit import AuditEntry, current_audit_context
from migrationkit.domain.cursor import decode_cursor
from migrationkit.domain.entity import MANAGED_FIELDS, Entity
from migrationkit.domain.ids import check_entity_id, check_workspace_id
from migrationkit.domain.lead import Lead
from migrationkit.domain.outbox import OutboxEvent
from migrationkit.domain.query import MAX_LIMIT, ListQuery, Page, SegmentQuery, page_of
from migrationkit.domain.writes import check_expected_version, check_query, prepare_upsert
from migrationkit.errors import Conflict, FunctionFailed, NotFound, StageMoved, ValidationFailed
from migrationkit.schema.convex_fields import camel_case

E = TypeVar("E", bound=Entity)

# What the caller sends on upsert: the store stamps the rest.
_NOT_SENT = MANAGED_FIELDS | {"workspace_id"}


@contextmanager
def function_errors() -> Iterator[None]:
    """Map the codes the generated functions throw to the kit's errors."""
    try:
        yield
    except FunctionFailed as exc:
        data = exc.data if isinstance(exc.data, Mapping) else {}
        code = data.get("code")
        if code == "Conflict":
            raise Conflict(
                f"{exc.function}: expected version {data.get('expected')},"
                f" found {data.get('found')}"
            ) from exc
        if code == "StageMoved":
            raise StageMoved(
                f"{exc.function}: Convex is fenced off; {data.get('authority')} is authoritative"
            ) from exc
        if code == "NotFound":
            raise NotFound(f"{exc.function}: {data.get('id', 'the entity')} not found") from exc
        if code == "ValidationFailed":
            raise ValidationFailed(f"{exc.function}: {data.get('message', exc)}") from exc
        raise


class ConvexRepository(Generic[E]):
    def __init__(self, client: ConvexClient, model: type[E]) -> None:
        self.client = client
        self.model = model
        self.codec = DocumentCodec(model)
        self.module = camel_case(model.table_name)

    def _path(self, function: str) -> str:
        return f"{self.module}:{function}"

    # -- reads -------------------------------------------------------------

    def get(self, workspace_id: str, id: str) -> E | None:
        args = {"workspaceId": check_workspace_id(workspace_id), "id": check_entity_id(id)}
        with function_errors():
            document = self.client.query(self._path("get"), args)
        return None if document is None else self.codec.from_document(document)

    def list(self, workspace_id: str, query: ListQuery | None = None) -> Page[E]:
        workspace = check_workspace_id(workspace_id)
        q: ListQuery = check_query(query, ListQuery)
        return self._page(self._path("list"), workspace, q.cursor, q.limit, q.filters(), {})

    def _page(
        self,
        path: str,
        workspace: str,
        cursor: str | None,
        limit: int,
        filters: dict[str, Any],
        extra_args: dict[str, Any],
    ) -> Page[E]:
        name = self.model.entity_name
        after = decode_cursor(cursor, workspace, name, filters)
        # Numbers go as floats: the functions take v.number(), and a Python
        # int would travel as an Int64.
        args = {"workspaceId": workspace, "after": after, "limit": float(limit + 1), **extra_args}
        with function_errors():
            documents = self.client.query(path, args)
        return page_of(
            documents,
            limit,
            self.codec.from_document,
            workspace_id=workspace,
            entity=name,
            filters=filters,
        )

    # -- writes ------------------------------------------------------------

    def upsert(
        self,
        workspace_id: str,
        data: E | Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> str:
        return self.upsert_entity(workspace_id, data, expected_version=expected_version).id

    def upsert_entity(
        self,
        workspace_id: str,
        data: E | Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> E:
        """``upsert``, returning the entity as stored."""
        entity = prepare_upsert(self.model, workspace_id, data)
        expected = check_expected_version(expected_version)
        args = {
            "workspaceId": entity.workspace_id,
            "document": self.codec.to_document(entity, exclude=_NOT_SENT),
            "expectedVersion": None if expected is None else float(expected),
            "audit": _who(),
        }
        with function_errors():
            stored = self.client.mutation(self._path("upsert"), args)
        return self.codec.from_document(stored)

    def delete(self, workspace_id: str, id: str) -> bool:
        return self.delete_entity(workspace_id, id) is not None

    def delete_entity(self, workspace_id: str, id: str) -> E | None:
        """``delete``, returning the entity as deleted (``None`` if it already was)."""
        args = {
            "workspaceId": check_workspace_id(workspace_id),
            "id": check_entity_id(id),
            "audit": _who(),
        }
        with function_errors():
            result = self.client.mutation(self._path("remove"), args)
        return self.codec.from_document(result["document"]) if result["deleted"] else None

    # -- the outbox, as operators and tests read it ---------------------------

    def outbox_events(self, workspace_id: str) -> builtins.list[OutboxEvent]:
        """The workspace's recorded events, oldest first, payloads in the kit's shape."""
        args = {"workspaceId": check_workspace_id(workspace_id), "limit": float(MAX_LIMIT)}
        with function_errors():
            rows = self.client.query("outbox:forWorkspace", args)
        return [outbox_event(row, self.codec) for row in rows]

    def audit_entries(self, workspace_id: str) -> builtins.list[AuditEntry]:
        """The workspace's audit entries about this entity, oldest first."""
        args = {"workspaceId": check_workspace_id(workspace_id), "limit": float(MAX_LIMIT)}
        with function_errors():
            rows = self.client.query("outbox:auditEntries", args)
        name = self.model.entity_name
        return [
            AuditEntry.model_validate(audit_entry(row, self.codec))
            for row in rows
            if row.get("resourceType") == name
        ]


def _who() -> dict[str, str | None]:
    """The caller's ``audit_context``, as the write functions take it."""
    who = current_audit_context()
    return {"actor": who.actor, "ip": who.ip, "userAgent": who.user_agent}


class ConvexLeadRepository(ConvexRepository[Lead]):
    def __init__(self, client: ConvexClient) -> None:
        super().__init__(client, Lead)

    def list_by_segment(self, workspace_id: str, query: SegmentQuery) -> Page[Lead]:
        workspace = check_workspace_id(workspace_id)
        q: SegmentQuery = check_query(query, SegmentQuery)
        filters = {
            "segment": q.segment.value if q.segment else None,
            "emailDomain": q.email_domain,
            "createdAfter": ms_from_datetime(q.created_after) if q.created_after else None,
        }
        return self._page(
            "leadQueries:listBySegment", workspace, q.cursor, q.limit, q.filters(), filters
        )
