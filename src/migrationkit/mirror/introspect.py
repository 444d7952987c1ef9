"""A deployment's ``/api/json_schemas`` reply -> one ``TableSchema`` per table.

The reply holds a JSON Schema (draft 07) per table, in one of two layouts:
flat (``{"table": schema}``), or with ``byComponent=true``
(``{"": {"table": schema}, "ratelimiter": {"limits": schema}}``, the app's
own tables under ``""``). Only the second tells components apart, so
``ConvexClient.json_schemas(by_component=True)`` asks for it; a backend that
ignores the parameter answers flat, which is read the same way.

Convex marks what plain JSON Schema cannot say with ``$description``:
``"Id(users)"`` for ``v.id("users")``, ``"int64 represented as base10
string"`` (``{"$integer": ...}`` objects in the encoded form), ``"base64
bytes"``, and ``"float64"`` on the ``anyOf`` a float with NaN or the
infinities becomes. Those are read first; the rest is ordinary JSON Schema.

A table gets no fields, only a ``fallback`` (its documents are then kept
whole in one ``jsonb`` column), when its documents have no single object
shape: ``NoSchemaForExport`` when nothing describes them (an open object,
``{}``, or no user field at all, which is what the real backend says of an
empty table), ``UnsupportedSchemaForExport`` for a union of objects. The
real backend refuses the whole request with those codes in some cases; the
command line then infers the tables from a ``list_snapshot`` instead
(``introspect_snapshot``).

Anything else that cannot be read is a ``BadReply`` naming the table and the
path inside it, never a silently wrong column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from migrationkit.errors import BadReply
from migrationkit.mirror.convex_types import ConvexType, FieldType, Kind, TableSchema

__all__ = [
    "NO_SCHEMA",
    "UNSUPPORTED_SCHEMA",
    "is_system_field",
    "table_from_json_schema",
    "tables_from_json_schemas",
]

NO_SCHEMA = "NoSchemaForExport"
UNSUPPORTED_SCHEMA = "UnsupportedSchemaForExport"

_ID_DESCRIPTION = re.compile(r"^Id\((?P<table>[^()]+)\)$")
_INT64_DESCRIPTIONS = ("int64", "int64 represented as base10 string")
_BYTES_DESCRIPTION = "base64 bytes"
# Keys that carry no type: documentation, and the $schema the backend adds.
_ANNOTATIONS = frozenset(
    {"$description", "$schema", "description", "title", "$comment", "examples", "default"}
)
# Encoded JSON's tagged objects: {"$integer": base64}, {"$bytes": ...}, {"$float": ...}.
_TAGGED: dict[str, Kind] = {"$integer": "int64", "$bytes": "bytes", "$float": "float64"}
_TABLE_SCHEMA_KEYS = frozenset({"type", "properties", "anyOf", "oneOf", "$schema", "const"})


def is_system_field(name: str) -> bool:
    """``_id``, ``_creationTime``, the delta metadata (``_ts``, ``_deleted``,
    ``_table``, ``_component``), and any ``_`` field Convex adds later:
    user fields cannot start with ``_``."""
    return name.startswith("_")


class _Unreadable(Exception):
    """A part of a schema the reader does not understand; ``path`` says where."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def tables_from_json_schemas(payload: Mapping[str, Any]) -> list[TableSchema]:
    """Every table the reply describes, sorted by qualified name.

    Raises ``BadReply`` naming the table and the path of anything unreadable.
    """
    if not isinstance(payload, Mapping):
        raise BadReply("json_schemas: the reply is not a JSON object")
    tables: list[TableSchema] = []
    for component, table, schema in _entries(payload):
        tables.append(table_from_json_schema(table, schema, component=component))
    tables.sort(key=lambda t: t.qualified_name)
    return tables


def _entries(payload: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    # With byComponent the app's own tables sit under "", a key no table can
    # have; its absence means the flat layout.
    if "" not in payload:
        return [("", str(name), schema) for name, schema in payload.items()]
    out: list[tuple[str, str, Any]] = []
    for component, tables in payload.items():
        if not isinstance(tables, Mapping) or _TABLE_SCHEMA_KEYS & set(tables):
            raise BadReply(
                f"json_schemas: component {component or '(app)'!r}: expected an object of"
                " tables, got a schema or a scalar"
            )
        out.extend((str(component), str(name), schema) for name, schema in tables.items())
    return out


def table_from_json_schema(table: str, schema: Any, *, component: str = "") -> TableSchema:
    """One table's JSON Schema -> its ``TableSchema`` (fields, or a fallback)."""
    qualified = f"{component}/{table}" if component else table
    try:
        return _table(table, component, schema)
    except _Unreadable as exc:
        raise BadReply(
            f"json_schemas: table {qualified}: at {exc.path or '(document)'}: {exc.problem}"
        ) from None


def _table(table: str, component: str, schema: Any) -> TableSchema:
    def fallback(code: str, reason: str) -> TableSchema:
        # The first note of a fallback table says why it has no fields.
        return TableSchema(table, component, fallback=code, notes=(reason,))

    if schema is True or schema is False or _is_open(schema):
        return fallback(NO_SCHEMA, "no schema describes the documents")
    if not isinstance(schema, Mapping):
        raise _Unreadable("", f"a table schema must be an object, got {_describe(schema)}")
    members = _union_members(schema, "")
    if members is not None:
        read = [_type(m, f"anyOf[{i}]") for i, m in enumerate(members)]
        if sum(1 for t in read if t.kind == "object") > 1:
            return fallback(UNSUPPORTED_SCHEMA, "a union of object types")
        return fallback(UNSUPPORTED_SCHEMA, "the documents are not all objects")
    if _types_of(schema, "") != ["object"]:
        raise _Unreadable("", f"a table schema must be an object type, got {_brief(schema)}")
    extra = schema.get("additionalProperties", True)
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise _Unreadable("properties", f"expected an object, got {_describe(properties)}")
    user = {name: sub for name, sub in properties.items() if not is_system_field(name)}
    if extra is not False:
        return fallback(NO_SCHEMA, "the documents may hold any fields")
    if not user:
        return fallback(NO_SCHEMA, "no field is known (an empty table, or no schema)")
    fields = _fields(user, schema.get("required", []), "")
    return TableSchema(table, component, fields=fields)


def _fields(properties: Mapping[str, Any], required: Any, path: str) -> tuple[FieldType, ...]:
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _Unreadable(_join(path, "required"), "expected a list of field names")
    needed = set(required)
    return tuple(
        FieldType(name, _type(properties[name], _join(path, name)), optional=name not in needed)
        for name in sorted(properties)
    )


def _type(schema: Any, path: str) -> ConvexType:
    if schema is True:
        return ConvexType("any")
    if schema is False:
        # "Never": only the element type of arrays that were always empty.
        return ConvexType("any")
    if not isinstance(schema, Mapping):
        raise _Unreadable(path, f"expected a schema object, got {_describe(schema)}")
    special = _convex_special(schema, path)
    if special is not None:
        return special
    if "const" in schema:
        return _literal(schema["const"], path)
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise _Unreadable(path, "enum must be a non-empty list")
        return _union([_literal(v, path) for v in values])
    members = _union_members(schema, path)
    if members is not None:
        return _union([_type(m, _join(path, f"anyOf[{i}]")) for i, m in enumerate(members)])
    types = _types_of(schema, path)
    if not types:
        if set(schema) <= _ANNOTATIONS:
            return ConvexType("any")
        raise _Unreadable(path, f"no type in {_brief(schema)}")
    return _union([_one_type(t, schema, path) for t in types])


def _one_type(name: str, schema: Mapping[str, Any], path: str) -> ConvexType:
    if name == "string":
        return ConvexType("string")
    if name == "number":
        return ConvexType("float64")
    if name == "integer":
        return ConvexType("int64")
    if name == "boolean":
        return ConvexType("boolean")
    if name == "null":
        return ConvexType("null")
    if name == "array":
        items = schema.get("items", True)
        if isinstance(items, list):
            raise _Unreadable(path, "tuple arrays (items as a list) have no Convex type")
        return ConvexType("array", items=_type(items, f"{path}[]"))
    if name == "object":
        return _object(schema, path)
    raise _Unreadable(path, f"unknown type {name!r}")


def _object(schema: Mapping[str, Any], path: str) -> ConvexType:
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise _Unreadable(_join(path, "properties"), "expected an object")
    if properties:
        return ConvexType("object", fields=_fields(properties, schema.get("required", []), path))
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return ConvexType("object")
    # A record: v.record(k, v). The real backend nests the value schema under
    # "type" ({"additionalProperties": {"type": {...}}}); unwrap that.
    if isinstance(extra, Mapping) and isinstance(extra.get("type"), Mapping):
        extra = extra["type"]
    return ConvexType("record", items=_type(extra, f"{path}{{}}"))


def _convex_special(schema: Mapping[str, Any], path: str) -> ConvexType | None:
    """The types Convex encodes as strings, objects or an ``anyOf``."""
    description = schema.get("$description")
    declared = schema.get("type")
    if isinstance(description, str):
        found = _ID_DESCRIPTION.match(description)
        if found and declared == "string":
            return ConvexType("id", table=found["table"])
        if description in _INT64_DESCRIPTIONS and declared in ("string", "object", "number"):
            return ConvexType("int64")
        if description == _BYTES_DESCRIPTION and declared in ("string", "object"):
            return ConvexType("bytes")
        if description == "float64" and "anyOf" in schema:
            return ConvexType("float64")
    if declared == "string" and schema.get("contentEncoding") == "base64":
        return ConvexType("bytes")
    if declared == "string" and schema.get("pattern") in ("^-?[0-9]+$", "^-?\\d+$"):
        return ConvexType("int64")
    if declared == "object":
        properties = schema.get("properties")
        if isinstance(properties, Mapping) and len(properties) == 1:
            key = next(iter(properties))
            tagged = _TAGGED.get(key)
            if tagged is not None:
                return ConvexType(tagged)
    members = _union_members(schema, path)
    if members is not None and len(members) == 2 and _is_special_float(members):
        return ConvexType("float64")
    return None


def _is_special_float(members: list[Any]) -> bool:
    # A float64 that may hold NaN or an infinity: a number, or a string (clean
    # JSON) or {"$float": ...} object (encoded JSON) for the special values.
    if not all(isinstance(m, Mapping) for m in members):
        return False
    kinds = [m.get("type") for m in members]
    if "number" not in kinds:
        return False
    other = members[kinds.index("number") ^ 1]
    if other.get("type") == "string":
        text = f"{other.get('$description', '')} {other.get('enum', '')}"
        return "NaN" in text or "inf" in text.lower()
    properties = other.get("properties")
    return (
        other.get("type") == "object" and isinstance(properties, Mapping) and "$float" in properties
    )


def _literal(value: Any, path: str) -> ConvexType:
    if isinstance(value, bool | str | int | float):
        return ConvexType("literal", value=value)
    if value is None:
        return ConvexType("null")
    raise _Unreadable(
        path, f"a literal must be a string, number or boolean, got {_describe(value)}"
    )


def _union(members: list[ConvexType]) -> ConvexType:
    flat: list[ConvexType] = []
    for member in members:
        for inner in member.members if member.kind == "union" else (member,):
            if inner not in flat:
                flat.append(inner)
    if any(m.kind == "any" for m in flat):
        return ConvexType("any")
    return flat[0] if len(flat) == 1 else ConvexType("union", members=tuple(flat))


def _union_members(schema: Mapping[str, Any], path: str) -> list[Any] | None:
    for key in ("anyOf", "oneOf"):
        if key in schema:
            members = schema[key]
            if not isinstance(members, list) or not members:
                raise _Unreadable(_join(path, key), f"{key} must be a non-empty list")
            return members
    return None


def _types_of(schema: Mapping[str, Any], path: str) -> list[str]:
    declared = schema.get("type")
    if declared is None:
        return []
    names = declared if isinstance(declared, list) else [declared]
    if not all(isinstance(n, str) for n in names):
        raise _Unreadable(path, f"'type' must be a name or a list of names, got {declared!r:.80}")
    return list(names)


def _is_open(schema: Any) -> bool:
    """``{}`` (only annotations): anything goes."""
    return isinstance(schema, Mapping) and set(schema) <= _ANNOTATIONS


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", int: "a number"}.get(
        type(value), type(value).__name__
    )


def _brief(schema: Mapping[str, Any]) -> str:
    text = repr(dict(schema))
    return text if len(text) <= 80 else text[:77] + "..."
