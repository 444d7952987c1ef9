"""Reading export ZIPs: both value formats, components, a wrapper folder,
legacy overrides, damaged archives and bad lines, and streaming."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest

from migrationkit.errors import ExportUnreadable, ValidationFailed
from migrationkit.mirror.export_zip import ExportZip

# --- helpers ------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0, 0.0 from -0.0, and compares NaN by its bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return sorted(a) == sorted(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def f64(value: float) -> str:
    return b64(struct.pack("<d", value))


def i64(value: int) -> str:
    return b64(struct.pack("<q", value))


def jsonl(*rows: Any) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_zip(path: Path, files: dict[str, str], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def read_all(path: Path) -> dict[str, list[dict[str, Any]]]:
    with ExportZip(path) as export:
        return {t.qualified_name: [doc for _, doc in export.documents(t)] for t in export.tables}


UNIFORM = '"uniform"\n'
NAN_BITS = struct.pack("<Q", 0x7FF8_0000_0000_0001)  # a NaN with a payload
NAN = struct.unpack("<d", NAN_BITS)[0]


def legacy_schema(shape: str, *overrides: dict[str, Any]) -> str:
    return json.dumps(shape) + "\n" + jsonl(*overrides)


# --- uniform ------------------------------------------------------------------

RAW = b64(b"\x00\x01\xff")
UNIFORM_LINES = (
    '{"_id":"u1","_creationTime":1700000000000.5,"n":42,"big":9223372036854775807,'
    '"neg":-9223372036854775808,"f":1.0,"z":-0.0,"e":1e300,"s":"text","t":true,"nil":null,'
    f'"inf":{{"$float":"{f64(math.inf)}"}},"ninf":{{"$float":"{f64(-math.inf)}"}},'
    f'"nan":{{"$float":"{b64(NAN_BITS)}"}},"raw":{{"$bytes":"{RAW}"}},'
    f'"i":{{"$integer":"{i64(-7)}"}},'
    f'"nested":{{"list":[1,2.5,{{"$bytes":"{b64(b"x")}"}},[{{"$integer":"{i64(3)}"}}]],'
    '"o":{"k":"v","dollar":"$not special"}}}\n'
    '{"_id":"u2","_creationTime":1700000000001.0,"huge":123456789012345678901234,'
    '"u64":10000000000000000000,"low":-9223372036854775809}\n'
)


def test_uniform_values_decode_exactly(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "e.zip",
        {
            "README.md": "# Welcome to your Convex snapshot export!\n",
            "_tables/documents.jsonl": jsonl({"name": "users", "id": 10001}),
            "users/generated_schema.jsonl": UNIFORM,
            "users/documents.jsonl": UNIFORM_LINES,
        },
    )
    docs = read_all(path)["users"]
    expected = {
        "_id": "u1",
        "_creationTime": 1700000000000.5,
        "n": 42,
        "big": 2**63 - 1,
        "neg": -(2**63),
        "f": 1.0,
        "z": -0.0,
        "e": 1e300,
        "s": "text",
        "t": True,
        "nil": None,
        "inf": math.inf,
        "ninf": -math.inf,
        "nan": NAN,
        "raw": b"\x00\x01\xff",
        "i": -7,
        "nested": {"list": [1, 2.5, b"x", [3]], "o": {"k": "v", "dollar": "$not special"}},
    }
    assert same(docs[0], expected), docs[0]
    # Past Int64, Convex reads an integer as a Float64.
    assert same(docs[1]["huge"], 123456789012345678901234.0)
    assert same(docs[1]["u64"], 1e19) and same(docs[1]["low"], -9223372036854775809.0)
    with ExportZip(path) as export:
        (table,) = export.tables
        assert (table.name, table.component, table.format) == ("users", "", "uniform")
        assert list(export.schema_lines(table)) == ['"uniform"']
        assert [n for n, _ in export.documents(table)] == [1, 2]


def test_components_nested_and_order(tmp_path: Path) -> None:
    doc = '{"_id":"x","_creationTime":1.0}\n'
    path = write_zip(
        tmp_path / "e.zip",
        {
            "_tables/documents.jsonl": jsonl({"name": "b", "id": 1}, {"name": "a", "id": 2}),
            "a/generated_schema.jsonl": UNIFORM,
            "a/documents.jsonl": doc,
            "b/generated_schema.jsonl": UNIFORM,
            "b/documents.jsonl": doc,
            "_components/limiter/_tables/documents.jsonl": jsonl({"name": "limits", "id": 1}),
            "_components/limiter/limits/generated_schema.jsonl": UNIFORM,
            "_components/limiter/limits/documents.jsonl": doc,
            "_components/a/_components/b/_tables/documents.jsonl": jsonl({"name": "t", "id": 1}),
            "_components/a/_components/b/t/generated_schema.jsonl": UNIFORM,
            "_components/a/_components/b/t/documents.jsonl": doc,
        },
    )
    with ExportZip(path) as export:
        names = [(t.component, t.name, t.qualified_name) for t in export.tables]
    # The export's table-number order within a component, components by path.
    assert names == [
        ("", "b", "b"),
        ("", "a", "a"),
        ("a/b", "t", "a/b/t"),
        ("limiter", "limits", "limiter/limits"),
    ]


@pytest.mark.parametrize("with_listing", [True, False])
def test_wrapper_folder(tmp_path: Path, with_listing: bool) -> None:
    files = {
        "snapshot/users/generated_schema.jsonl": UNIFORM,
        "snapshot/users/documents.jsonl": '{"_id":"u1","_creationTime":1.0,"n":1}\n',
        "snapshot/_components/c/_tables/documents.jsonl": jsonl({"name": "t", "id": 1}),
        "snapshot/_components/c/t/generated_schema.jsonl": UNIFORM,
        "snapshot/_components/c/t/documents.jsonl": '{"_id":"t1","_creationTime":1.0}\n',
        "__MACOSX/snapshot/._users": "junk",
    }
    if with_listing:
        files["snapshot/_tables/documents.jsonl"] = jsonl({"name": "users", "id": 10001})
    docs = read_all(write_zip(tmp_path / "e.zip", files))
    expected = {
        "users": [{"_id": "u1", "_creationTime": 1.0, "n": 1}],
        "c/t": [{"_id": "t1", "_creationTime": 1.0}],
    }
    assert same(docs, expected)


def test_a_lone_table_folder_is_not_a_wrapper(tmp_path: Path) -> None:
    files = {"users/documents.jsonl": '{"_id":"u1","_creationTime":1.0}\n'}
    assert list(read_all(write_zip(tmp_path / "e.zip", files))) == ["users"]


def test_storage_listed_and_system_tables_skipped(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "e.zip",
        {
            "_tables/documents.jsonl": jsonl({"name": "users", "id": 1}),
            "users/generated_schema.jsonl": UNIFORM,
            "users/documents.jsonl": "",
            "_scheduled_functions/documents.jsonl": '{"_id":"s"}\n',
            "_storage/documents.jsonl": jsonl(
                {"_id": "s1", "_creationTime": 1.0, "sha256": "x", "size": 3, "contentType": None},
                {
                    "_id": "s2",
                    "_creationTime": 1.0,
                    "sha256": "y",
                    "size": 10,
                    "contentType": "image/png",
                },
            ),
            "_storage/s1": "abc",
            "_storage/s2.png": "0123456789",
            "_components/c/_tables/documents.jsonl": "",
            "_components/c/_storage/documents.jsonl": "",
        },
    )
    with ExportZip(path) as export:
        assert [t.name for t in export.tables] == ["users"]
        assert list(export.documents(export.tables[0])) == []
        assert [(s.component, s.files, s.bytes) for s in export.storage] == [
            ("", 2, 13),
            ("c", 0, 0),
        ]
        assert export.skipped_system == ["_scheduled_functions"]


def test_a_listed_table_without_documents_is_empty(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "e.zip", {"_tables/documents.jsonl": jsonl({"name": "t", "id": 1})})
    assert read_all(path) == {"t": []}


# --- legacy -------------------------------------------------------------------

LEGACY_SHAPE = (
    '{"_creationTime": normalfloat64, "_id": id<10001>, "n": int64, "data": bytes,'
    ' "name": string, "score": float64, "when": inf | -inf, "ids": array<int64>,'
    ' "maybe"?: int64 | null, "counts": record<field_name, int64>,'
    ' "mixed": int64 | string, "anything": unknown, "lit": "a" | "b",'
    ' "deep": {"a": array<{"v": int64 | bytes}>, "b": bytes}}'
)


def legacy_files(*documents: dict[str, Any], overrides: tuple[dict[str, Any], ...] = ()) -> dict:
    return {
        "_tables/documents.jsonl": jsonl({"name": "things", "id": 10001}),
        "things/generated_schema.jsonl": legacy_schema(LEGACY_SHAPE, *overrides),
        "things/documents.jsonl": jsonl(*documents),
    }


def test_legacy_reads_strings_by_the_shape(tmp_path: Path) -> None:
    doc = {
        "_id": "d1",
        "_creationTime": 1700000000000,
        "n": "-42",
        "data": b64(b"\x00\x01"),
        "name": "12",
        "score": 3,
        "when": "-Infinity",
        "ids": ["1", "2"],
        "counts": {"x": "5"},
        "mixed": "5",  # an int64 | string with no override: a string
        "anything": "7",
        "lit": "a",
        "deep": {"a": [], "b": b64(b"q")},
    }
    (got,) = read_all(write_zip(tmp_path / "e.zip", legacy_files(doc)))["things"]
    expected = {
        "_id": "d1",
        "_creationTime": 1700000000000.0,  # every legacy number is a Float64
        "n": -42,
        "data": b"\x00\x01",
        "name": "12",
        "score": 3.0,
        "when": -math.inf,
        "ids": [1, 2],
        "counts": {"x": 5},
        "mixed": "5",
        "anything": "7",
        "lit": "a",
        "deep": {"a": [], "b": b"q"},
    }
    assert same(got, expected), got


def test_legacy_overrides_in_arrays_and_objects(tmp_path: Path) -> None:
    doc = {
        "_id": "d2",
        "_creationTime": 1.5,
        "mixed": "9",
        "anything": {"list": ["1", "AAE=", "NaN", "Infinity", "plain"], "obj": {"i": "3"}},
        "score": "NaN",
        "deep": {"a": [{"v": "4"}, {"v": "AAE="}], "b": "AAE="},
    }
    override = {
        "d2": {
            "mixed": "int64",
            "anything": {
                "list": ["int64", "bytes", {"$float64NaN": b64(NAN_BITS)}, "float64inf", "infer"],
                "obj": {"i": "int64"},
            },
            "score": {"$float64NaN": b64(NAN_BITS)},
            "deep": {"a": [{"v": "int64"}, {"v": "bytes"}]},
        }
    }
    other = {"_id": "d3", "_creationTime": 2.0, "mixed": "9", "anything": "9"}
    docs = read_all(write_zip(tmp_path / "e.zip", legacy_files(doc, other, overrides=(override,))))
    expected = {
        "_id": "d2",
        "_creationTime": 1.5,
        "mixed": 9,
        "anything": {"list": [1, b"\x00\x01", NAN, math.inf, "plain"], "obj": {"i": 3}},
        "score": NAN,
        "deep": {"a": [{"v": 4}, {"v": b"\x00\x01"}], "b": b"\x00\x01"},
    }
    assert same(docs["things"][0], expected), docs["things"][0]
    # No override for d3: its ambiguous strings stay strings.
    assert same(docs["things"][1], other | {"_creationTime": 2.0})


def test_legacy_without_a_schema_file_keeps_strings(tmp_path: Path) -> None:
    files = {"t/documents.jsonl": jsonl({"_id": "a", "_creationTime": 1, "n": "5", "x": 2})}
    with ExportZip(write_zip(tmp_path / "e.zip", files)) as export:
        (table,) = export.tables
        assert table.format == "legacy"
        (doc,) = [d for _, d in export.documents(table)]
    assert same(doc, {"_id": "a", "_creationTime": 1.0, "n": "5", "x": 2.0})


def test_legacy_top_level_union_of_objects(tmp_path: Path) -> None:
    shape = (
        '{"_creationTime": normalfloat64, "_id": string, "kind": "a", "n": int64}'
        ' | {"_creationTime": normalfloat64, "_id": string, "kind": "b", "b": bytes}'
    )
    files = {
        "u/generated_schema.jsonl": legacy_schema(shape),
        "u/documents.jsonl": jsonl(
            {"_id": "1", "_creationTime": 1, "kind": "a", "n": "10"},
            {"_id": "2", "_creationTime": 1, "kind": "b", "b": "AAE="},
        ),
    }
    docs = read_all(write_zip(tmp_path / "e.zip", files))["u"]
    assert same(docs[0]["n"], 10) and same(docs[1]["b"], b"\x00\x01")


# --- errors -------------------------------------------------------------------


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "e.zip"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ExportUnreadable, match="not a readable ZIP"):
        ExportZip(path)
    with pytest.raises(ExportUnreadable, match="no such file"):
        ExportZip(tmp_path / "missing.zip")


def test_a_zip_that_is_no_export(tmp_path: Path) -> None:
    with pytest.raises(ExportUnreadable, match="no Convex export"):
        ExportZip(write_zip(tmp_path / "e.zip", {"notes.txt": "hello"}))


def many_lines(count: int) -> str:
    return "".join(
        f'{{"_id":"id{n}","_creationTime":{n}.5,"n":{n},"s":"some text {n}"}}\n'
        for n in range(count)
    )


def test_a_truncated_file(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "e.zip", {"users/documents.jsonl": many_lines(5000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportUnreadable, match="not a readable ZIP"):
        ExportZip(path)


def _patch_central_entry(path: Path, member: str, offset: int, value: int) -> None:
    """Change one 4-byte field of ``member``'s central directory entry."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    name = member.encode()
    while at >= 0:
        if data[at + 46 : at + 46 + len(name)] == name:
            struct.pack_into("<I", data, at + offset, value)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} not found")


def test_a_truncated_member(tmp_path: Path) -> None:
    member = "users/documents.jsonl"
    path = write_zip(tmp_path / "e.zip", {member: many_lines(100_000), "README.md": "x"})
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo(member).compress_size
    _patch_central_entry(path, member, 20, size // 3)  # compressed size: cut short
    with ExportZip(path) as export:
        (table,) = export.tables
        seen = 0
        with pytest.raises(ExportUnreadable) as caught:
            for _ in export.documents(table):
                seen += 1
    message = str(caught.value)
    assert "users/documents.jsonl" in message and "table users" in message
    assert f"damaged after line {seen}" in message
    assert 0 < seen < 100_000


def test_a_crc_error(tmp_path: Path) -> None:
    member = "users/documents.jsonl"
    path = write_zip(tmp_path / "e.zip", {member: many_lines(100)}, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    at = data.find(b"some text 50")
    data[at] = ord("S")  # still JSON, but not what the CRC covers
    path.write_bytes(bytes(data))
    with ExportZip(path) as export, pytest.raises(ExportUnreadable, match="CRC"):
        for _ in export.documents(export.tables[0]):
            pass


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"_id":"a","_creationTime":1.0,"x":', "", "not JSON"),
        ('{"_id":"a","_creationTime":1.0,"x":NaN}', "", "not JSON"),
        ('["not", "an object"]', "", "a JSON object"),
        ('{"_creationTime":1.0}', "_id", "missing"),
        ('{"_id":"a","_creationTime":1.0,"x":{"y":[1,{"$set":[]}]}}', "x.y[1]", "'$set'"),
        ('{"_id":"a","_creationTime":1.0,"x":{"$bytes":"%%%"}}', "x", "not valid base64"),
        ('{"_id":"a","_creationTime":1.0,"x":{"$integer":"AAE="}}', "x", "expected 8"),
        ('{"_id":"a","_creationTime":1.0,"x":{"$bytes":"AA==","more":1}}', "x", "'$bytes'"),
    ],
)
def test_uniform_bad_lines_name_table_line_and_field(
    tmp_path: Path, line: str, field: str, message: str
) -> None:
    good = '{"_id":"ok","_creationTime":1.0}\n'
    files = {
        "_components/c/_tables/documents.jsonl": jsonl({"name": "t", "id": 1}),
        "_components/c/t/generated_schema.jsonl": UNIFORM,
        "_components/c/t/documents.jsonl": good + good + line + "\n" + good,
    }
    with (
        ExportZip(write_zip(tmp_path / "e.zip", files)) as export,
        pytest.raises(ExportUnreadable, match=re.escape(message)) as caught,
    ):
        list(export.documents(export.tables[0]))
    text = str(caught.value)
    assert "_components/c/t/documents.jsonl line 3" in text
    assert "(table c/t)" in text
    if field:
        assert f"field {field}:" in text
    assert isinstance(caught.value, ValidationFailed)
    assert caught.value.errors[0]["loc"] == ("c/t", 3, field)


@pytest.mark.parametrize(
    ("doc", "override", "field", "message"),
    [
        ({"n": "4x"}, None, "n", "not an int64"),
        ({"n": "99999999999999999999"}, None, "n", "outside the int64 range"),
        ({"data": "@@"}, None, "data", "not valid base64"),
        ({"when": "forever"}, None, "when", "not Infinity"),
        ({"mixed": "5"}, {"mixed": "set"}, "", "unknown export context"),
        ({"anything": ["1"]}, {"anything": ["int64", "int64"]}, "anything", "length"),
        ({"anything": "x"}, {"anything": {"$float64NaN": b64(NAN_BITS)}}, "anything", "not NaN"),
        ({"anything": 3}, {"anything": "int64"}, "anything", "override for a number"),
    ],
)
def test_legacy_bad_values_name_the_field(
    tmp_path: Path, doc: dict[str, Any], override: Any, field: str, message: str
) -> None:
    document = {"_id": "d1", "_creationTime": 1.0, **doc}
    overrides = ({"d1": override},) if override is not None else ()
    files = legacy_files({"_id": "d0", "_creationTime": 1.0}, document, overrides=overrides)
    with (
        ExportZip(write_zip(tmp_path / "e.zip", files)) as export,
        pytest.raises(ExportUnreadable, match=re.escape(message)) as caught,
    ):
        list(export.documents(export.tables[0]))
    text = str(caught.value)
    assert "(table things)" in text
    if override is not None and "unknown export context" in message:
        assert "things/generated_schema.jsonl line 2" in text
    else:
        assert "things/documents.jsonl line 2" in text
        assert f"field {field}:" in text


def test_a_bad_legacy_shape(tmp_path: Path) -> None:
    files = {
        "t/generated_schema.jsonl": legacy_schema("{not a shape"),
        "t/documents.jsonl": jsonl({"_id": "a", "_creationTime": 1.0}),
    }
    with (
        ExportZip(write_zip(tmp_path / "e.zip", files)) as export,
        pytest.raises(ExportUnreadable, match=re.escape("t/generated_schema.jsonl line 1")),
    ):
        list(export.documents(export.tables[0]))


def test_a_schema_file_that_is_not_a_string(tmp_path: Path) -> None:
    files = {"t/generated_schema.jsonl": "{}\n", "t/documents.jsonl": ""}
    with pytest.raises(ExportUnreadable, match="not a JSON string"):
        ExportZip(write_zip(tmp_path / "e.zip", files))


# --- streaming ----------------------------------------------------------------


def test_reading_a_large_member_streams(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    count = 200_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_tables/documents.jsonl", jsonl({"name": "big", "id": 1}))
        archive.writestr("big/generated_schema.jsonl", UNIFORM)
        with archive.open("big/documents.jsonl", "w") as member:
            for n in range(count):
                member.write(
                    f'{{"_id":"id{n:07d}","_creationTime":{n}.25,"n":{n},'
                    f'"tags":["a","b"],"profile":{{"city":"Paris","visits":{n}}}}}\n'.encode()
                )
    with ExportZip(path) as export:
        (table,) = export.tables
        assert table.size > 20_000_000  # the member is far larger than the bound below
        tracemalloc.start()
        try:
            last = 0
            for last, doc in export.documents(table):
                assert doc["n"] == last - 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert last == count
    # One read chunk (1 MiB) and its lines, whatever the member's size.
    assert peak < 8_000_000, peak
