"""An export ZIP's tables -> ``TableSchema``, without a deployment.

Each table in a ZIP has a ``generated_schema.jsonl`` beside its
``documents.jsonl``, in one of two formats:

* legacy: line 1 is a JSON string holding the table's inferred shape in
  Convex's own notation (``{"name": string, "age"?: int64 | null}``); later
  lines are per-document value overrides, which say nothing about types.
  Documents with different sets of fields give a union of object shapes;
  it is merged into one object, as ``/api/json_schemas`` does, and a
  string literal seen in every document reads as a plain string.
* "uniform" (exports since March 2026): the file holds just ``"uniform"``.
  There is no shape; documents are lossless (an Int64 is a bare JSON
  integer, every Float64 has a decimal point, bytes and special floats are
  ``$bytes``/``$float`` objects), so the shape is inferred by reading them.

Inference sees values, not the app's validators: ids are indistinguishable
from strings, a field is optional when some document lacks it, and a field
that held no value but ``null`` is stored as ``jsonb``. Literals are never
inferred (a CHECK from the values seen so far would refuse the next one).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrationkit.errors import ValidationFailed
from migrationkit.mirror.convex_types import ConvexType, FieldType, Kind, TableSchema
from migrationkit.mirror.introspect import NO_SCHEMA, UNSUPPORTED_SCHEMA, is_system_field

__all__ = [
    "UNIFORM",
    "UNIFORM_NOTE",
    "SchemaInference",
    "infer_schema",
    "parse_shape",
    "schema_from_generated_lines",
    "schemas_from_export_zip",
]

UNIFORM = "uniform"
#: Past this many distinct keys a nested object is read as a record (its keys
#: are data, such as ids), and a table's documents as having no one shape.
NESTED_KEYS_LIMIT = 64
TABLE_FIELDS_LIMIT = 1024

_FLOAT_TOKENS = ("normalfloat64", "float64", "-inf", "inf", "-0", "NaN")
# Longest first: "int64" must not be read as "inf" plus "t64".
_UNITS: tuple[tuple[str, ConvexType | None], ...] = (
    ("normalfloat64", ConvexType("float64")),
    ("field_name", ConvexType("string")),
    ("boolean", ConvexType("boolean")),
    ("float64", ConvexType("float64")),
    ("unknown", ConvexType("any")),
    ("string", ConvexType("string")),
    ("never", None),
    ("int64", ConvexType("int64")),
    ("bytes", ConvexType("bytes")),
    ("null", ConvexType("null")),
    ("-inf", ConvexType("float64")),
    ("inf", ConvexType("float64")),
    ("NaN", ConvexType("float64")),
    ("-0", ConvexType("float64")),
)


class _BadShape(ValueError):
    """Shape text that does not parse; the message says where."""


# --- legacy shape lines -------------------------------------------------------


def schema_from_generated_lines(
    table: str,
    component: str,
    lines: Iterable[str],
    *,
    table_names: Mapping[int, str] | None = None,
) -> TableSchema | None:
    """A table's ``generated_schema.jsonl`` lines -> its schema.

    ``None`` for the "uniform" format (no shape: infer it from the documents
    with :func:`infer_schema`). ``table_names`` maps the component's table
    numbers (``_tables/documents.jsonl``) to names, so ``id<10001>`` reads as
    ``v.id("users")``; an unknown number reads as a string.
    """
    qualified = f"{component}/{table}" if component else table
    where = f"{_prefix(component)}{table}/generated_schema.jsonl"
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise ValidationFailed(f"table {qualified}: {where} is empty")
    try:
        text = json.loads(first)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"table {qualified}: {where} line 1 is not JSON: {exc}") from None
    if text == UNIFORM:
        return None
    if not isinstance(text, str):
        raise ValidationFailed(f"table {qualified}: {where} line 1 is not a JSON string")
    try:
        return _table_from_shape(table, component, parse_shape(text, table_names or {}))
    except _BadShape as exc:
        raise ValidationFailed(
            f"table {qualified}: {where}: cannot read the shape: {exc}"
        ) from None


def parse_shape(text: str, table_names: Mapping[int, str] | None = None) -> ConvexType | None:
    """Convex's shape notation -> a type; ``None`` for ``never`` (no value at all).

    Raises ``ValueError`` saying where the text stops making sense.
    """
    parser = _ShapeParser(text, table_names or {})
    shape = parser.union()
    if parser.rest:
        raise _BadShape(f"unexpected text at {parser.rest[:40]!r}")
    return shape


class _ShapeParser:
    """Recursive descent over the printed shape; ``rest`` is what is left."""

    def __init__(self, text: str, table_names: Mapping[int, str]) -> None:
        self.rest = text
        self.table_names = table_names

    def union(self) -> ConvexType | None:
        members = [self.one()]
        while self.rest.startswith(" | "):
            self.rest = self.rest[3:]
            members.append(self.one())
        return _merge_union([m for m in members if m is not None])

    def one(self) -> ConvexType | None:
        for token, unit in _UNITS:
            if self.rest.startswith(token):
                self.rest = self.rest[len(token) :]
                return unit
        if self.take("{"):
            return self.object()
        if self.take("id<"):
            number = self.until(">")
            if not number.isdigit():
                raise _BadShape(f"id<{number}>: not a table number")
            name = self.table_names.get(int(number))
            return ConvexType("id", table=name) if name else ConvexType("string")
        for wrapper in ("array<", "set<"):
            if self.take(wrapper):
                items = self.union()
                self.expect(">")
                if wrapper == "set<":
                    return ConvexType("any")
                return ConvexType("array", items=items or ConvexType("any"))
        for wrapper in ("record<", "map<"):
            if self.take(wrapper):
                self.union()
                self.expect(", ")
                value = self.union()
                self.expect(">")
                if wrapper == "map<":
                    return ConvexType("any")
                return ConvexType("record", items=value or ConvexType("any"))
        if self.rest.startswith('"'):
            # A string literal seen in every document so far; the export
            # cannot say the app restricts it, so it is a plain string.
            self.quoted()
            return ConvexType("string")
        raise _BadShape(f"unexpected text at {self.rest[:40]!r}")

    def object(self) -> ConvexType:
        fields: list[FieldType] = []
        while not self.take("}"):
            name = self.quoted()
            optional = self.take("?")
            self.expect(": ")
            value = self.union()
            fields.append(FieldType(name, value or ConvexType("any"), optional=optional))
            if not self.take(", ") and not self.rest.startswith("}"):
                raise _BadShape(f"expected ', ' or '}}' at {self.rest[:40]!r}")
        return ConvexType("object", fields=tuple(sorted(fields, key=lambda f: f.name)))

    def quoted(self) -> str:
        # Rust's {:?} of a string: a JSON-like quoted string; its escapes
        # that JSON lacks (\u{...}, \') are rare in names and mapped here.
        found = re.match(r'"((?:[^"\\]|\\.)*)"', self.rest)
        if found is None:
            raise _BadShape(f"expected a quoted name at {self.rest[:40]!r}")
        self.rest = self.rest[found.end() :]
        body = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m[1], 16)), found[1])
        body = body.replace("\\'", "'")
        try:
            value: str = json.loads(f'"{body}"')
        except json.JSONDecodeError:
            raise _BadShape(f"cannot read the quoted name {found[0][:40]!r}") from None
        return value

    def take(self, token: str) -> bool:
        if self.rest.startswith(token):
            self.rest = self.rest[len(token) :]
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise _BadShape(f"expected {token!r} at {self.rest[:40]!r}")

    def until(self, token: str) -> str:
        index = self.rest.find(token)
        if index < 0:
            raise _BadShape(f"expected {token!r} at {self.rest[:40]!r}")
        found, self.rest = self.rest[:index], self.rest[index + len(token) :]
        return found


def _merge_union(members: list[ConvexType]) -> ConvexType | None:
    flat: list[ConvexType] = []
    for member in members:
        for inner in member.members if member.kind == "union" else (member,):
            if inner not in flat:
                flat.append(inner)
    if not flat:
        return None
    if any(m.kind == "any" for m in flat):
        return ConvexType("any")
    return flat[0] if len(flat) == 1 else ConvexType("union", members=tuple(flat))


def _table_from_shape(table: str, component: str, shape: ConvexType | None) -> TableSchema:
    if shape is None or shape.kind == "any":
        return TableSchema(table, component, fallback=NO_SCHEMA, notes=("the export has no shape",))
    if shape.kind == "union":
        if not all(m.kind == "object" for m in shape.members):
            return TableSchema(
                table,
                component,
                fallback=UNSUPPORTED_SCHEMA,
                notes=("some documents are not objects",),
            )
        shape = _merge_objects(shape.members)
    if shape.kind != "object":
        raise _BadShape(f"a table's shape must be an object, not {shape.kind}")
    fields = tuple(f for f in shape.fields if not is_system_field(f.name))
    if not fields:
        return TableSchema(table, component, fallback=NO_SCHEMA, notes=("no field is known",))
    return TableSchema(table, component, fields=fields)


def _merge_objects(objects: Sequence[ConvexType]) -> ConvexType:
    """One object for a union of object shapes, as ``/api/json_schemas`` reduces
    it: a field missing from some variant is optional, its types united.

    Shape inference keeps documents with different sets of fields apart
    (``{"a": string} | {"a": string, "b"?: int64}``), so most tables with an
    optional field have such a union; a table of several kinds of documents
    (a ``v.union`` of objects) comes out the same way.
    """
    names = sorted({f.name for o in objects for f in o.fields})
    merged = []
    for name in names:
        found = [f for o in objects for f in o.fields if f.name == name]
        optional = len(found) < len(objects) or any(f.optional for f in found)
        united = _merge_union([f.type for f in found]) or ConvexType("any")
        merged.append(FieldType(name, united, optional=optional))
    return ConvexType("object", fields=tuple(merged))


# --- inference from "uniform" documents -----------------------------------------


@dataclass
class _Seen:
    """What one field (or array element, or record value) held so far."""

    kinds: set[Kind] = field(default_factory=set)
    items: _Seen | None = None
    keys: dict[str, _Seen] | None = None
    #: For an object: in how many of them each key appeared.
    key_counts: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    record: bool = False


def _observe(seen: _Seen, value: Any) -> None:
    if value is None:
        seen.kinds.add("null")
    elif value is True or value is False:
        seen.kinds.add("boolean")
    elif isinstance(value, int):
        seen.kinds.add("int64")
    elif isinstance(value, float):
        seen.kinds.add("float64")
    elif isinstance(value, str):
        seen.kinds.add("string")
    elif isinstance(value, bytes | bytearray):
        seen.kinds.add("bytes")
    elif isinstance(value, list):
        seen.kinds.add("array")
        if seen.items is None:
            seen.items = _Seen()
        for item in value:
            _observe(seen.items, item)
    elif isinstance(value, Mapping):
        tagged = _tagged(value)
        if tagged is not None:
            seen.kinds.add(tagged)
            return
        seen.kinds.add("object")
        _observe_object(seen, value, NESTED_KEYS_LIMIT)
    else:
        raise ValueError(f"{type(value).__name__} is not a JSON value")


_TAGGED: dict[str, Kind] = {"$bytes": "bytes", "$float": "float64", "$integer": "int64"}


def _tagged(value: Mapping[str, Any]) -> Kind | None:
    # The lossless export writes bytes and NaN/infinities as one-key objects.
    if len(value) == 1:
        return _TAGGED.get(next(iter(value)))
    return None


def _observe_object(seen: _Seen, value: Mapping[str, Any], limit: int) -> None:
    seen.objects += 1
    if seen.record:
        assert seen.items is not None
        for item in value.values():
            _observe(seen.items, item)
        return
    if seen.keys is None:
        seen.keys = {}
    for key, item in value.items():
        child = seen.keys.get(key)
        if child is None:
            child = seen.keys[key] = _Seen()
        seen.key_counts[key] = seen.key_counts.get(key, 0) + 1
        _observe(child, item)
    if len(seen.keys) > limit:
        _to_record(seen)


def _to_record(seen: _Seen) -> None:
    # Keys that keep changing are data: merge every value seen into one.
    merged = _Seen()
    for child in (seen.keys or {}).values():
        _absorb(merged, child)
    seen.record, seen.items, seen.keys, seen.key_counts = True, merged, None, {}


def _absorb(into: _Seen, other: _Seen) -> None:
    into.kinds |= other.kinds
    if other.items is not None:
        if into.items is None:
            into.items = _Seen()
        _absorb(into.items, other.items)
    if other.keys is not None:
        for key, child in other.keys.items():
            if into.keys is None:
                into.keys = {}
            target = into.keys.setdefault(key, _Seen())
            _absorb(target, child)
            into.key_counts[key] = into.key_counts.get(key, 0) + other.key_counts.get(key, 0)
    into.objects += other.objects
    into.record = into.record or other.record


def _resolve(seen: _Seen) -> ConvexType:
    members: list[ConvexType] = []
    for kind in sorted(seen.kinds):
        if kind == "array":
            items = seen.items
            members.append(
                ConvexType("array", items=_resolve(items) if items and items.kinds else _ANY)
            )
        elif kind == "object":
            members.append(_resolve_object(seen))
        else:
            members.append(ConvexType(kind))
    if not members:
        return _ANY
    return members[0] if len(members) == 1 else ConvexType("union", members=tuple(members))


_ANY = ConvexType("any")


def _resolve_object(seen: _Seen) -> ConvexType:
    if seen.record:
        items = seen.items
        return ConvexType("record", items=_resolve(items) if items and items.kinds else _ANY)
    fields = tuple(
        FieldType(name, _resolve(child), optional=seen.key_counts[name] < seen.objects)
        for name, child in sorted((seen.keys or {}).items())
    )
    return ConvexType("object", fields=fields)


UNIFORM_NOTE = "Read off the documents of a uniform export: v.id() fields are plain strings."


class SchemaInference:
    """:func:`infer_schema` one document at a time, so one pass over a stream
    that mixes tables (a ``list_snapshot``) can feed one inference per table.

    Memory grows with the number of distinct fields, not of documents.
    """

    def __init__(self, table: str, component: str = "") -> None:
        self.table = table
        self.component = component
        self._top = _Seen(keys={})
        self._count = 0

    @property
    def qualified_name(self) -> str:
        return f"{self.component}/{self.table}" if self.component else self.table

    @property
    def overflowed(self) -> bool:
        """Past ``TABLE_FIELDS_LIMIT`` distinct fields: later documents change nothing."""
        return self._top.record

    def add(self, document: Mapping[str, Any]) -> None:
        """Take one document in; raises ``ValidationFailed`` naming it if it is not one."""
        self._count += 1
        if self.overflowed:
            return
        if not isinstance(document, Mapping):
            raise ValidationFailed(
                f"table {self.qualified_name}: document {self._count} is not a JSON object"
            )
        user = {k: v for k, v in document.items() if not is_system_field(k)}
        try:
            _observe_object(self._top, user, TABLE_FIELDS_LIMIT)
        except ValueError as exc:
            raise ValidationFailed(
                f"table {self.qualified_name}: document {self._count}: {exc}"
            ) from None

    def schema(self, note: str = UNIFORM_NOTE) -> TableSchema:
        """The table's schema from what was added; ``note`` goes with its fields
        (never a count: the module must not change when only the data does)."""
        table, component = self.table, self.component
        if self.overflowed:
            return TableSchema(
                table,
                component,
                fallback=NO_SCHEMA,
                notes=(f"more than {TABLE_FIELDS_LIMIT} distinct fields",),
            )
        if self._top.objects == 0:
            return TableSchema(
                table, component, fallback=NO_SCHEMA, notes=("no documents to infer from",)
            )
        resolved = _resolve_object(self._top)
        if not resolved.fields:
            return TableSchema(
                table, component, fallback=NO_SCHEMA, notes=("no document has a field",)
            )
        return TableSchema(table, component, fields=resolved.fields, notes=(note,))


def infer_schema(
    table: str,
    component: str,
    documents: Iterable[Mapping[str, Any]],
    *,
    note: str = UNIFORM_NOTE,
) -> TableSchema:
    """A table's schema read off its documents (a "uniform" export).

    Documents are as ``json.loads`` gives them from the lossless export (or
    already decoded: ``bytes`` values are bytes). Streams: memory grows with
    the number of distinct fields, not of documents.
    """
    inference = SchemaInference(table, component)
    for document in documents:
        inference.add(document)
        if inference.overflowed:
            break
    return inference.schema(note)


# --- reading the ZIP ----------------------------------------------------------------


def _prefix(component: str) -> str:
    """``a/b`` -> ``_components/a/_components/b/``; the app's own tables: ``""``."""
    return "".join(f"_components/{part}/" for part in component.split("/") if part)


_TABLES_ENTRY = re.compile(
    r"^(?P<wrap>.*?)(?P<components>(?:_components/[^/]+/)*)_tables/documents\.jsonl$"
)


@dataclass(frozen=True)
class _ComponentEntries:
    component: str
    base: str  # the folder inside the ZIP holding this component's tables


def _components(names: Iterable[str]) -> list[_ComponentEntries]:
    found: list[_ComponentEntries] = []
    for name in names:
        matched = _TABLES_ENTRY.match(name)
        if matched is None:
            continue
        parts = [p for p in matched["components"].split("/") if p and p != "_components"]
        found.append(_ComponentEntries("/".join(parts), matched["wrap"] + matched["components"]))
    # One wrapper folder at most: keep the shallowest root a reader would pick.
    return sorted(found, key=lambda c: c.component)


def _lines(archive: zipfile.ZipFile, name: str) -> Iterator[str]:
    with archive.open(name) as raw:
        yield from io.TextIOWrapper(raw, encoding="utf-8")


def schemas_from_export_zip(path: Path) -> list[TableSchema]:
    """Every table of an export ZIP (components included), sorted by qualified name.

    Reads only ``_tables/documents.jsonl`` and each table's
    ``generated_schema.jsonl``, plus, for a "uniform" export, the table's
    ``documents.jsonl``, one line at a time.
    """
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ValidationFailed(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValidationFailed(f"{path}: not a readable ZIP ({exc})") from None
    with archive:
        names = set(archive.namelist())
        components = _components(names)
        if not components:
            raise ValidationFailed(
                f"{path}: not a Convex export (no _tables/documents.jsonl inside)"
            )
        tables: list[TableSchema] = []
        for entry in components:
            tables.extend(_component_tables(archive, names, entry, path))
    tables.sort(key=lambda t: t.qualified_name)
    return tables


def _component_tables(
    archive: zipfile.ZipFile, names: set[str], entry: _ComponentEntries, path: Path
) -> list[TableSchema]:
    listing = f"{entry.base}_tables/documents.jsonl"
    numbers: dict[int, str] = {}
    for line_number, line in enumerate(_lines(archive, listing), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            numbers[int(row["id"])] = str(row["name"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValidationFailed(
                f'{path}: {listing} line {line_number}: expected {{"name": ..., "id": ...}}'
            ) from None
    out: list[TableSchema] = []
    for table in sorted(numbers.values()):
        if table.startswith("_"):
            continue  # _storage and other system tables: not the app's data
        schema_name = f"{entry.base}{table}/generated_schema.jsonl"
        schema: TableSchema | None = None
        if schema_name in names:
            schema = schema_from_generated_lines(
                table, entry.component, _lines(archive, schema_name), table_names=numbers
            )
        if schema is None:
            schema = infer_schema(table, entry.component, _documents(archive, names, entry, table))
        out.append(schema)
    return out


def _documents(
    archive: zipfile.ZipFile, names: set[str], entry: _ComponentEntries, table: str
) -> Iterator[Any]:
    name = f"{entry.base}{table}/documents.jsonl"
    if name not in names:
        return
    for line_number, line in enumerate(_lines(archive, name), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"{name} line {line_number}: not JSON ({exc})") from None
