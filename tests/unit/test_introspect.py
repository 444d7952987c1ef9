"""Reading a deployment's tables: json_schemas replies, export shape lines, and
inference from "uniform" export documents, into the one TableSchema form."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from migrationkit.errors import BadReply, ValidationFailed
from migrationkit.mirror.convex_types import ConvexType, FieldType, TableSchema
from migrationkit.mirror.export_schema import (
    infer_schema,
    parse_shape,
    schema_from_generated_lines,
    schemas_from_export_zip,
)
from migrationkit.mirror.introspect import (
    NO_SCHEMA,
    UNSUPPORTED_SCHEMA,
    table_from_json_schema,
    tables_from_json_schemas,
)

T = ConvexType
STRING, FLOAT, INT, BOOL, BYTES, NULL, ANY = (
    T("string"),
    T("float64"),
    T("int64"),
    T("boolean"),
    T("bytes"),
    T("null"),
    T("any"),
)
DRAFT7 = "http://json-schema.org/draft-07/schema#"
DELTA_FIELDS = {
    "_table": {"type": "string"},
    "_component": {"type": "string"},
    "_ts": {"type": "integer"},
    "_deleted": {"type": "boolean"},
}


def table_schema(table: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A table's schema as the real backend writes it (deltaSchema=true, format=json)."""
    return {
        "type": "object",
        "properties": {
            "_creationTime": {"type": "number"},
            "_id": {"$description": f"Id({table})", "type": "string"},
            **fields,
            **DELTA_FIELDS,
        },
        "additionalProperties": False,
        "required": sorted(["_creationTime", "_id", *required]),
        "$schema": DRAFT7,
    }


def obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": sorted(required),
    }


def field_types(schema: TableSchema) -> dict[str, tuple[ConvexType, bool]]:
    return {f.name: (f.type, f.optional) for f in schema.fields}


# --- json_schemas ------------------------------------------------------------------


def test_every_kind_of_the_clean_json_schema() -> None:
    clean_float = {
        "$description": "float64",
        "anyOf": [{"type": "number"}, {"type": "string", "$description": "-inf, inf, or NaN"}],
    }
    schema = table_schema(
        "messages",
        {
            "body": {"type": "string"},
            "score": {"type": "number"},
            "ratio": clean_float,
            "n": {"$description": "int64 represented as base10 string", "type": "string"},
            "ok": {"type": "boolean"},
            "data": {"$description": "base64 bytes", "type": "string"},
            "author": {"$description": "Id(users)", "type": "string"},
            "file": {"$description": "Id(_storage)", "type": "string"},
            "parent": {
                "anyOf": [{"$description": "Id(messages)", "type": "string"}, {"type": "null"}]
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "empty": {"type": "array", "items": False},
            "meta": obj({"a": {"type": "string"}, "b": {"type": "number"}}, ["a"]),
            "anything": {},
            "nothing": {"type": "null"},
            "opt": {"type": "string"},
            "mixed": {"anyOf": [{"type": "number"}, {"type": "string"}]},
        },
        [
            *("body", "score", "ratio", "n", "ok", "data", "author", "file", "parent", "tags"),
            *("empty", "meta", "anything", "nothing", "mixed"),
        ],
    )
    read = table_from_json_schema("messages", schema)
    assert read.fallback is None
    assert read.name == "messages" and read.component == ""
    assert [f.name for f in read.fields] == sorted(f.name for f in read.fields)
    assert field_types(read) == {
        "anything": (ANY, False),
        "author": (T("id", table="users"), False),
        "body": (STRING, False),
        "data": (BYTES, False),
        "empty": (T("array", items=ANY), False),
        "file": (T("id", table="_storage"), False),
        "meta": (
            T("object", fields=(FieldType("a", STRING), FieldType("b", FLOAT, optional=True))),
            False,
        ),
        "mixed": (T("union", members=(FLOAT, STRING)), False),
        "n": (INT, False),
        "nothing": (NULL, False),
        "ok": (BOOL, False),
        "opt": (STRING, True),
        "parent": (T("union", members=(T("id", table="messages"), NULL)), False),
        "ratio": (FLOAT, False),
        "score": (FLOAT, False),
        "tags": (T("array", items=STRING), False),
    }


def test_the_encoded_json_forms_read_the_same() -> None:
    schema = table_schema(
        "t",
        {
            "n": {
                "$description": "int64",
                "type": "object",
                "properties": {"$integer": {"type": "string"}},
            },
            "data": {
                "type": "object",
                "$description": "base64 bytes",
                "properties": {"$bytes": {"type": "string"}},
            },
            "f": {
                "$description": "float64",
                "anyOf": [
                    {"type": "number"},
                    {
                        "type": "object",
                        "$description": "-0, -inf, inf, or NaN",
                        "properties": {"$float": {"type": "string"}},
                    },
                ],
            },
        },
        ["n", "data", "f"],
    )
    assert field_types(table_from_json_schema("t", schema)) == {
        "data": (BYTES, False),
        "f": (FLOAT, False),
        "n": (INT, False),
    }


def test_records_literals_and_type_lists() -> None:
    schema = table_schema(
        "t",
        {
            # The schema-validator path nests the value schema under "type".
            "counts": {
                "type": "object",
                "$description": "Record with keys of type string",
                "additionalProperties": {"type": {"type": "number"}},
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "open": {"type": "object"},
            "status": {"anyOf": [{"const": "draft"}, {"const": "published"}]},
            "kind": {"enum": ["a", "b"]},
            "one": {"const": 1.5},
            "maybe": {"type": ["string", "null"]},
        },
        ["counts", "labels", "open", "status", "kind", "one", "maybe"],
    )
    literal = T("literal", value="draft"), T("literal", value="published")
    assert field_types(table_from_json_schema("t", schema)) == {
        "counts": (T("record", items=FLOAT), False),
        "kind": (T("union", members=(T("literal", value="a"), T("literal", value="b"))), False),
        "labels": (T("record", items=STRING), False),
        "maybe": (T("union", members=(STRING, NULL)), False),
        "one": (T("literal", value=1.5), False),
        "open": (T("record", items=ANY), False),
        "status": (T("union", members=literal), False),
    }


def test_components_are_namespaced_with_by_component() -> None:
    limits = table_schema("limits", {"key": {"type": "string"}}, ["key"])
    users = table_schema("users", {"name": {"type": "string"}}, ["name"])
    tables = tables_from_json_schemas(
        {"ratelimiter": {"limits": limits}, "": {"users": users, "limits": limits}}
    )
    assert [t.qualified_name for t in tables] == ["limits", "ratelimiter/limits", "users"]
    assert tables[1].component == "ratelimiter" and tables[1].name == "limits"


def test_the_flat_layout_is_read_as_the_apps_own_tables() -> None:
    users = table_schema("users", {"name": {"type": "string"}}, ["name"])
    posts = table_schema("posts", {"title": {"type": "string"}}, ["title"])
    tables = tables_from_json_schemas({"users": users, "posts": posts})
    assert [(t.component, t.name) for t in tables] == [("", "posts"), ("", "users")]


@pytest.mark.parametrize(
    ("schema", "fallback"),
    [
        ({"type": "object", "properties": {}, "additionalProperties": True}, NO_SCHEMA),
        ({"$schema": DRAFT7}, NO_SCHEMA),
        (True, NO_SCHEMA),
        # What the real backend says of an empty table: system fields only.
        (table_schema("t", {}, []), NO_SCHEMA),
        (
            {
                "anyOf": [
                    obj({"kind": {"const": "a"}}, ["kind"]),
                    obj({"x": {"type": "number"}}, []),
                ]
            },
            UNSUPPORTED_SCHEMA,
        ),
    ],
)
def test_tables_without_one_object_shape_fall_back(schema: Any, fallback: str) -> None:
    read = table_from_json_schema("t", schema)
    assert read.fallback == fallback
    assert read.fields == ()
    assert read.notes  # the reason, shown in the generated module


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        (table_schema("users", {"x": {"type": "tuple"}}, []), "at x: unknown type 'tuple'"),
        (
            table_schema("users", {"p": obj({"q": {"type": "array", "items": [{}]}}, [])}, []),
            "at p.q: tuple arrays",
        ),
        (table_schema("users", {"x": "string"}, []), "at x: expected a schema object"),
        (
            table_schema("users", {"x": {"anyOf": []}}, []),
            "at x.anyOf: anyOf must be a non-empty list",
        ),
        (
            table_schema("users", {"x": {"type": "array", "items": {"type": 3}}}, []),
            "at x[]: 'type' must be a name",
        ),
        ([1, 2], "at (document): a table schema must be an object"),
        ({"type": "string"}, "a table schema must be an object type"),
        (
            {**table_schema("users", {"x": {"type": "string"}}, []), "required": "x"},
            "at required: expected a list of field names",
        ),
    ],
)
def test_unreadable_schemas_name_the_table_and_the_path(schema: Any, where: str) -> None:
    with pytest.raises(BadReply) as caught:
        tables_from_json_schemas({"": {"users": schema}})
    assert "table users" in str(caught.value)
    assert where in str(caught.value)


def test_a_component_entry_that_is_not_a_table_map_is_refused() -> None:
    with pytest.raises(BadReply, match="component 'ratelimiter'"):
        tables_from_json_schemas({"": {}, "ratelimiter": {"type": "object"}})


# --- legacy shape lines ------------------------------------------------------------


def test_legacy_shape_lines_read_every_kind() -> None:
    shape = (
        '{"_creationTime": normalfloat64, "_id": id<10001>, "author": id<10001>,'
        ' "body": string, "counts": record<field_name, int64>, "data": bytes,'
        ' "flags": array<boolean>, "kind": "click", "meta": {"a": string, "b"?: float64},'
        ' "n": int64, "note"?: string | null, "odd": NaN | inf | -inf | normalfloat64,'
        ' "raw": unknown, "vals": array<int64 | field_name>, "lost": id<99999>,'
        ' "nothing": array<never>}'
    )
    lines = [json.dumps(shape), '{"someid": {"vals": ["int64", "infer"]}}']
    read = schema_from_generated_lines("posts", "", lines, table_names={10001: "users"})
    assert read is not None and read.fallback is None
    assert field_types(read) == {
        "author": (T("id", table="users"), False),
        "body": (STRING, False),
        "counts": (T("record", items=INT), False),
        "data": (BYTES, False),
        "flags": (T("array", items=BOOL), False),
        # A literal in a shape is only what was seen so far: a plain string.
        "kind": (STRING, False),
        "lost": (STRING, False),
        "meta": (
            T("object", fields=(FieldType("a", STRING), FieldType("b", FLOAT, optional=True))),
            False,
        ),
        "n": (INT, False),
        "note": (T("union", members=(STRING, NULL)), True),
        "nothing": (T("array", items=ANY), False),
        "odd": (FLOAT, False),
        "raw": (ANY, False),
        "vals": (T("array", items=T("union", members=(INT, STRING))), False),
    }


def test_legacy_unions_of_objects_merge_as_json_schemas_does() -> None:
    union = (
        '{"_id": id<1>, "kind": "click", "x": normalfloat64, "n": int64}'
        ' | {"_id": id<1>, "kind": "view", "page": field_name, "n"?: string}'
    )
    read = schema_from_generated_lines("events", "", [json.dumps(union)])
    assert read is not None and read.fallback is None
    assert field_types(read) == {
        "kind": (STRING, False),
        "n": (T("union", members=(INT, STRING)), True),
        "page": (STRING, True),
        "x": (FLOAT, True),
    }


def test_legacy_shapes_without_one_object_fall_back() -> None:
    read = schema_from_generated_lines("t", "", [json.dumps('{"a": string} | string')])
    assert read is not None and read.fallback == UNSUPPORTED_SCHEMA
    for shape in ("unknown", "never", '{"_creationTime": normalfloat64, "_id": id<1>}'):
        read = schema_from_generated_lines("t", "c", [json.dumps(shape)])
        assert read is not None and read.fallback == NO_SCHEMA
        assert read.component == "c"


def test_the_uniform_format_has_no_shape() -> None:
    assert schema_from_generated_lines("t", "", ['"uniform"\n']) is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "is empty"),
        (["not json"], "line 1 is not JSON"),
        (["42"], "line 1 is not a JSON string"),
        ([json.dumps('{"a": strin}')], "cannot read the shape: unexpected text at 'strin}'"),
        ([json.dumps('{"a": array<string}')], "expected '>'"),
        ([json.dumps("string")], "must be an object"),
    ],
)
def test_unreadable_shape_lines_name_the_file(lines: list[str], message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        schema_from_generated_lines("t", "ratelimiter", lines)
    text = str(caught.value)
    assert "table ratelimiter/t" in text
    assert "_components/ratelimiter/t/generated_schema.jsonl" in text
    assert message in text


def test_shape_names_with_escapes() -> None:
    parsed = parse_shape('{"a \\"b\\"": string, "c\\\\d"?: int64}')
    assert parsed == T(
        "object", fields=(FieldType('a "b"', STRING), FieldType("c\\d", INT, optional=True))
    )


# --- inference from uniform documents ----------------------------------------------


def test_inference_reads_every_kind_from_lossless_documents() -> None:
    documents = [
        {
            "_id": "a",
            "_creationTime": 1.5,
            "name": "Ada",
            "credits": 5,
            "age": 30.0,
            "ok": True,
            "avatar": {"$bytes": "AAE="},
            "ratio": {"$float": "AAAAAAAA+H8="},
            "tags": ["x"],
            "profile": {"bio": "hi", "links": []},
            "maybe": None,
            "mixed": 1,
        },
        {
            "_id": "b",
            "_creationTime": 2.5,
            "name": "Bob",
            "credits": 7,
            "age": 31.5,
            "ok": False,
            "avatar": b"\x00",
            "ratio": 0.5,
            "tags": [],
            "profile": {"links": ["l"]},
            "maybe": "now",
            "mixed": "one",
            "extra": 1.0,
        },
    ]
    read = infer_schema("users", "", iter(documents))
    assert read.fallback is None
    profile = T(
        "object",
        fields=(
            FieldType("bio", STRING, optional=True),
            FieldType("links", T("array", items=STRING)),
        ),
    )
    assert field_types(read) == {
        "age": (FLOAT, False),
        "avatar": (BYTES, False),
        "credits": (INT, False),
        "extra": (FLOAT, True),
        "maybe": (T("union", members=(NULL, STRING)), False),
        "mixed": (T("union", members=(INT, STRING)), False),
        "name": (STRING, False),
        "ok": (BOOL, False),
        "profile": (profile, False),
        "ratio": (FLOAT, False),
        "tags": (T("array", items=STRING), False),
    }


def test_inference_turns_objects_keyed_by_data_into_records() -> None:
    documents = [{"byUser": {f"user{i}": i for i in range(100)}}]
    read = infer_schema("t", "", documents)
    assert field_types(read) == {"byUser": (T("record", items=INT), False)}


def test_inference_without_documents_or_fields_falls_back() -> None:
    assert infer_schema("t", "", []).fallback == NO_SCHEMA
    assert infer_schema("t", "", [{"_id": "a", "_creationTime": 1.0}]).fallback == NO_SCHEMA


def test_inference_refuses_what_is_not_a_document() -> None:
    with pytest.raises(ValidationFailed, match="table c/t: document 2 is not a JSON object"):
        infer_schema("t", "c", [{"a": 1}, [1, 2]])


# --- export ZIP ----------------------------------------------------------------------


def write_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def jsonl(*rows: Any) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_an_export_zip_legacy_and_uniform_with_a_component_and_a_wrapper(tmp_path: Path) -> None:
    users_shape = '{"_creationTime": normalfloat64, "_id": id<10001>, "name": string}'
    posts_shape = '{"_creationTime": normalfloat64, "_id": id<10002>, "author": id<10001>}'
    export = write_zip(
        tmp_path / "export.zip",
        {
            "snap/README.md": "# Welcome to your Convex snapshot export!",
            "snap/_tables/documents.jsonl": jsonl(
                {"name": "users", "id": 10001}, {"name": "posts", "id": 10002}
            ),
            "snap/users/documents.jsonl": jsonl({"_id": "u1", "name": "Ada"}),
            "snap/users/generated_schema.jsonl": jsonl(users_shape),
            "snap/posts/documents.jsonl": jsonl({"_id": "p1", "author": "u1"}),
            "snap/posts/generated_schema.jsonl": jsonl(posts_shape),
            "snap/_storage/documents.jsonl": "",
            "snap/_components/ratelimiter/_tables/documents.jsonl": jsonl(
                {"name": "limits", "id": 10001}
            ),
            "snap/_components/ratelimiter/limits/documents.jsonl": jsonl(
                {"_id": "l1", "_creationTime": 1.0, "key": "a", "count": 3, "resetAt": 2.0},
                {"_id": "l2", "_creationTime": 1.0, "key": "b", "count": 4, "resetAt": 2.5},
            ),
            "snap/_components/ratelimiter/limits/generated_schema.jsonl": jsonl("uniform"),
        },
    )
    tables = schemas_from_export_zip(export)
    assert [t.qualified_name for t in tables] == ["posts", "ratelimiter/limits", "users"]
    posts, limits, users = tables
    assert field_types(posts) == {"author": (T("id", table="users"), False)}
    assert field_types(users) == {"name": (STRING, False)}
    assert field_types(limits) == {
        "count": (INT, False),
        "key": (STRING, False),
        "resetAt": (FLOAT, False),
    }


def test_what_is_not_an_export_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="no such file"):
        schemas_from_export_zip(tmp_path / "missing.zip")
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(ValidationFailed, match="not a readable ZIP"):
        schemas_from_export_zip(tmp_path / "bad.zip")
    other = write_zip(tmp_path / "other.zip", {"readme.txt": "hi"})
    with pytest.raises(ValidationFailed, match="not a Convex export"):
        schemas_from_export_zip(other)
    broken = write_zip(tmp_path / "broken.zip", {"_tables/documents.jsonl": "{nope}\n"})
    with pytest.raises(ValidationFailed, match=r"_tables/documents.jsonl line 1"):
        schemas_from_export_zip(broken)
