"""The tables of a deployment that refuses ``/api/json_schemas``, read off a snapshot.

The real backend describes a table by the shape of its stored documents;
when that shape is no object and the schema cannot stand in for it, it
fails the *whole* ``json_schemas`` request (HTTP 400) with one of:

* ``NoSchemaForExport``: the deployment has no schema at all (the
  message names no table);
* ``NoTableDefinitionForExport``: the schema does not define the table;
* ``UnsupportedSchemaForExport``: the table's schema is a union of objects
  (or, naming no table, holds a nested union of objects somewhere).

``list_snapshot`` keeps working, so the tables and their types are read off
one pinned snapshot instead: one pass over the app's tables, then one per
component the first pass did not show (real deployments may list only the
app's own tables without a ``component`` parameter), each table's
documents fed to its own :class:`~migrationkit.mirror.export_schema.SchemaInference`,
never held whole. The table the refusal names is kept whole (document
only), its fallback reason the refusal's code; when it names none, a table
whose documents have no one object shape falls back by itself.

What inference cannot know: ids look like any other string (``v.id()``
fields become text, with no foreign key), a field missing from some
document is optional, and a table with no document in the snapshot is not
seen at all (one the mirror config names is kept, document only).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from migrationkit.adapters.convex._export import SnapshotPage
from migrationkit.errors import BadReply, ValidationFailed
from migrationkit.mirror.convex_types import TableSchema
from migrationkit.mirror.export_schema import SchemaInference
from migrationkit.mirror.introspect import NO_SCHEMA, UNSUPPORTED_SCHEMA

__all__ = [
    "NO_TABLE_DEFINITION",
    "REFUSAL_CODES",
    "SNAPSHOT_NOTE",
    "Refusal",
    "SnapshotReader",
    "SnapshotTables",
    "tables_from_snapshot",
]

NO_TABLE_DEFINITION = "NoTableDefinitionForExport"
REFUSAL_CODES = frozenset({NO_SCHEMA, NO_TABLE_DEFINITION, UNSUPPORTED_SCHEMA})
SNAPSHOT_NOTE = (
    "json_schemas was refused, so the types were read off the documents of a"
    " list_snapshot: v.id() fields are plain strings (text, no foreign key)."
)
_NAMED_TABLE = re.compile(r'table "(?P<table>[^"]+)"')
_WHY = {
    UNSUPPORTED_SCHEMA: "json_schemas refused it: its schema is a union of object types",
    NO_TABLE_DEFINITION: (
        "json_schemas refused it: its documents have no object shape and the schema"
        " does not define the table"
    ),
    NO_SCHEMA: "json_schemas refused it: its documents have no object shape and there is no schema",
}


@dataclass(frozen=True)
class Refusal:
    """Why ``json_schemas`` was refused: the code, and the table its message names."""

    code: str
    table: str | None = None

    @classmethod
    def of(cls, error: ValidationFailed) -> Refusal | None:
        """The refusal a ``ValidationFailed`` from ``ConvexClient.json_schemas``
        stands for; ``None`` if it is another bad request."""
        first = error.errors[0] if error.errors else {}
        code = first.get("type")
        if code not in REFUSAL_CODES:
            return None
        message = first.get("msg")
        found = _NAMED_TABLE.search(message) if isinstance(message, str) else None
        return cls(str(code), found["table"] if found else None)

    def __str__(self) -> str:
        return f'{self.code}, table "{self.table}"' if self.table else self.code


class SnapshotReader(Protocol):
    """What is read of the deployment: ``ConvexClient.list_snapshot``."""

    def list_snapshot(
        self,
        *,
        snapshot: int | None = None,
        cursor: str | None = None,
        table_name: str | None = None,
        extra_params: Mapping[str, str | int] | None = None,
    ) -> SnapshotPage: ...


@dataclass(frozen=True)
class SnapshotTables:
    """The tables found, sorted by qualified name, and what the user should hear."""

    tables: list[TableSchema]
    #: Qualified names the refusal or the config named that had no document.
    unseen: list[str]


def tables_from_snapshot(
    client: SnapshotReader,
    refusal: Refusal,
    *,
    components: Iterable[str] = (),
    expected: Iterable[str] = (),
) -> SnapshotTables:
    """Every table of one pinned snapshot, its schema inferred from its documents.

    ``components``: component paths to list besides those the snapshot
    shows (the mirror config's). ``expected``: qualified table names the
    config names; those with no document are kept, document only.
    """
    reader = _Reader(client)
    reader.read(None)
    seen_components = {component for component, _ in reader.inferences} | {""}
    for component in sorted(set(components) - seen_components):
        reader.read(component)
    schemas = {
        _qualified(component, table): inference.schema(SNAPSHOT_NOTE)
        for (component, table), inference in reader.inferences.items()
    }
    unseen: list[str] = []
    if refusal.table is not None:
        named = [name for name, s in schemas.items() if s.name == refusal.table]
        if not named:
            # The backend met the table, so it exists; an app table is the best guess.
            named = [refusal.table]
            unseen.append(refusal.table)
        for name in named:
            component, _, table = name.rpartition("/")
            why = _WHY.get(refusal.code, f"json_schemas refused it ({refusal.code})")
            schemas[name] = TableSchema(table, component, fallback=refusal.code, notes=(why,))
    for name in sorted(set(expected) - set(schemas)):
        component, _, table = name.rpartition("/")
        empty = SchemaInference(table, component).schema()
        schemas[name] = replace(
            empty, notes=("no document in the snapshot: an empty table, or a misspelt name",)
        )
        unseen.append(name)
    tables = sorted(schemas.values(), key=lambda t: t.qualified_name)
    return SnapshotTables(tables, sorted(set(unseen)))


def _qualified(component: str, table: str) -> str:
    return f"{component}/{table}" if component else table


class _Reader:
    """Pages of one pinned snapshot, routed to one inference per table."""

    def __init__(self, client: SnapshotReader) -> None:
        self.client = client
        self.snapshot: int | None = None
        self.inferences: dict[tuple[str, str], SchemaInference] = {}

    def read(self, component: str | None) -> None:
        """Every page: all of what the deployment lists, or one component's tables."""
        params = None if component is None else {"component": component}
        cursor: str | None = None
        while True:
            page = self.client.list_snapshot(
                snapshot=self.snapshot, cursor=cursor, extra_params=params
            )
            self.snapshot = page.snapshot
            for row in page.values:
                self._add(row, component)
            if not page.has_more:
                return
            cursor = page.cursor

    def _add(self, row: Mapping[str, Any], wanted: str | None) -> None:
        table = row.get("_table")
        component = row.get("_component", "")
        if not isinstance(table, str) or not table or not isinstance(component, str):
            raise BadReply(
                "Convex list_snapshot: a document without a string _table and _component"
            )
        if table.startswith("_") or (wanted is not None and component != wanted):
            return  # system tables (_storage...) are not the app's data
        key = (component, table)
        inference = self.inferences.get(key)
        if inference is None:
            inference = self.inferences[key] = SchemaInference(table, component)
        inference.add(row)
