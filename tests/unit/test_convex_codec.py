"""Convex values <-> encoded JSON: exact wire forms, refusals with paths, lossless round trips."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrationkit.adapters.convex.codec import (
    INT64_MAX,
    INT64_MIN,
    decode_json_format,
    decode_value,
    encode_args,
    encode_value,
)
from migrationkit.errors import BadReply, ValidationFailed

# --- helpers ------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0, 0.0 from -0.0, and NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def over_the_wire(value: Any) -> Any:
    """Encode, write JSON text as a request would, read it back as a reply would."""
    text = json.dumps(encode_value(value), allow_nan=False, ensure_ascii=False)
    return decode_value(json.loads(text))


field_names = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=24
).filter(lambda name: not name.startswith("$"))

special_floats = st.sampled_from(
    [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, -1.7976931348623157e308, 1e16]
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX, 0, -1, 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    special_floats,
    st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    st.binary(max_size=64),
)
convex_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(field_names, children, max_size=6),
    ),
    max_leaves=40,
)


def walk(value: Any) -> list[Any]:
    out = [value]
    if isinstance(value, list):
        for item in value:
            out += walk(item)
    elif isinstance(value, dict):
        for item in value.values():
            out += walk(item)
    return out


# --- round trips --------------------------------------------------------------


@settings(max_examples=300)
@given(convex_values)
def test_every_value_survives_the_wire(value: Any) -> None:
    assert same(over_the_wire(value), value)


@settings(max_examples=200)
@given(convex_values)
def test_encoded_json_never_holds_a_bare_integer_or_a_non_finite_number(value: Any) -> None:
    for node in walk(encode_value(value)):
        assert not (isinstance(node, int) and not isinstance(node, bool))
        if isinstance(node, float):
            assert math.isfinite(node)
            assert not (node == 0.0 and math.copysign(1.0, node) < 0)


def test_deep_nesting_survives() -> None:
    value: Any = b"leaf"
    for depth in range(300):
        value = [value, -0.0] if depth % 2 else {"k": value, "n": depth}
    assert same(over_the_wire(value), value)


# --- exact wire forms ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (None, None),
        (True, True),
        (False, False),
        ("héllo ✓", "héllo ✓"),
        (1.5, 1.5),
        (0.0, 0.0),
        (1, {"$integer": "AQAAAAAAAAA="}),
        (-1, {"$integer": "//////////8="}),
        (0, {"$integer": "AAAAAAAAAAA="}),
        (INT64_MAX, {"$integer": "/////////38="}),
        (INT64_MIN, {"$integer": "AAAAAAAAAIA="}),
        (-0.0, {"$float": "AAAAAAAAAIA="}),
        (math.inf, {"$float": "AAAAAAAA8H8="}),
        (-math.inf, {"$float": "AAAAAAAA8P8="}),
        (math.nan, {"$float": "AAAAAAAA+H8="}),
        (b"", {"$bytes": ""}),
        (b"\x00\xff", {"$bytes": "AP8="}),
        (bytearray(b"hi"), {"$bytes": "aGk="}),
        ((1.0, "a"), [1.0, "a"]),
        ({"a": [1.0, {"b": None}]}, {"a": [1.0, {"b": None}]}),
    ],
)
def test_exact_encoded_json(value: Any, encoded: Any) -> None:
    assert encode_value(value) == encoded
    assert type(encode_value(value)) is type(encoded)


def test_a_bool_is_a_bool_not_an_int64() -> None:
    assert encode_value(True) is True
    assert encode_value({"flag": False}) == {"flag": False}


def test_encode_args_defaults_to_an_empty_object_and_wants_a_mapping() -> None:
    assert encode_args(None) == {}
    assert encode_args({"n": 2}) == {"n": {"$integer": "AgAAAAAAAAA="}}
    with pytest.raises(ValidationFailed, match="mapping"):
        encode_args([1, 2])  # type: ignore[arg-type]


# --- refusals -----------------------------------------------------------------


@pytest.mark.parametrize("number", [INT64_MAX + 1, INT64_MIN - 1, 10**30])
def test_integers_outside_int64_are_refused_with_their_path(number: int) -> None:
    with pytest.raises(ValidationFailed, match=r"Int64 range at items\[2\]\.count") as caught:
        encode_value({"items": [None, None, {"count": number}]})
    assert caught.value.errors[0]["loc"] == ("items", 2, "count")
    assert str(number) not in str(caught.value)


@pytest.mark.parametrize(
    "bad",
    [{1, 2}, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), object(), Decimal("1.5"), 1j, frozenset()],
    ids=["set", "datetime", "object", "Decimal", "complex", "frozenset"],
)
def test_values_without_a_convex_counterpart_are_refused_with_their_path(bad: object) -> None:
    with pytest.raises(ValidationFailed) as caught:
        encode_value({"lead": {"tags": ["ok", bad]}})
    assert "lead.tags[1]" in str(caught.value)
    assert type(bad).__name__ in str(caught.value)
    assert caught.value.errors[0]["loc"] == ("lead", "tags", 1)


def test_a_refused_value_is_not_echoed() -> None:
    with pytest.raises(ValidationFailed) as caught:
        encode_value({"secret": {"hunter2-password"}})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("$type", "starts with '\\$'"),
        ("a" * 1025, "longer than 1024"),
        ("café", "printable ASCII"),
        ("tab\there", "printable ASCII"),
        ("del\x7f", "printable ASCII"),
        (7, "must be str"),
        (("a",), "must be str"),
    ],
)
def test_bad_field_names_are_refused_with_the_path_of_their_object(key: Any, reason: str) -> None:
    with pytest.raises(ValidationFailed, match=reason) as caught:
        encode_value({"outer": [{key: 1.0}]})
    assert "outer[0]" in str(caught.value)
    assert caught.value.errors[0]["loc"] == ("outer", 0)


def test_longest_and_odd_but_valid_field_names_pass() -> None:
    names = ["a" * 1024, "_id", "with space", "~!@#%^&*()", "a$b"]
    encoded = encode_value(dict.fromkeys(names, 1.0))
    assert isinstance(encoded, dict)
    assert list(encoded) == names


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValidationFailed, match="nested too deeply"):
        encode_value({"loop": loop})


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValidationFailed, match=r"lone surrogate .* at name"):
        encode_value({"name": "bad\ud800"})


# --- decoding -----------------------------------------------------------------


def test_plain_json_numbers_decode_as_floats() -> None:
    decoded = decode_value({"n": 3, "f": 2.5, "list": [0, -7], "t": True, "s": "3"})
    assert same(decoded, {"n": 3.0, "f": 2.5, "list": [0.0, -7.0], "t": True, "s": "3"})


def test_encoded_types_decode_to_python_types() -> None:
    decoded = decode_value(
        {
            "i": {"$integer": "/////////38="},
            "f": {"$float": "AAAAAAAAAIA="},
            "nan": {"$float": "AAAAAAAA+H8="},
            "b": {"$bytes": "AP8="},
            "empty": {"$bytes": ""},
        }
    )
    assert decoded["i"] == INT64_MAX and type(decoded["i"]) is int
    assert same(decoded["f"], -0.0)
    assert math.isnan(decoded["nan"])
    assert decoded["b"] == b"\x00\xff" and decoded["empty"] == b""


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ({"$set": []}, "unknown encoded type"),
        ({"$map": []}, "unknown encoded type"),
        ({"$integer": "AQAAAAAAAAA=", "extra": 1}, "other fields"),
        ({"$integer": "AQAAAA=="}, "expected 8"),
        ({"$float": "AQ=="}, "expected 8"),
        ({"$integer": "not base64!"}, "not valid base64"),
        ({"$bytes": 12}, "not a base64 string"),
    ],
)
def test_malformed_encoded_values_are_bad_replies(reply: Any, problem: str) -> None:
    with pytest.raises(BadReply, match=problem) as caught:
        decode_value({"rows": [reply]})
    assert "rows[0]" in str(caught.value)


def test_a_number_beyond_float64_is_a_bad_reply() -> None:
    with pytest.raises(BadReply, match="Float64"):
        decode_value([10**400])


def test_json_format_is_lossy_as_documented() -> None:
    reply = json.loads(
        '{"n": 3, "x": 1.5, "big": "9007199254740993", "bytes": "AP8=",'
        ' "nan": "NaN", "inf": "Infinity", "ok": true, "nested": [1, null, {"$k": 2}]}'
    )
    decoded = decode_json_format(reply)
    assert same(
        decoded,
        {
            "n": 3.0,
            "x": 1.5,
            "big": "9007199254740993",
            "bytes": "AP8=",
            "nan": "NaN",
            "inf": "Infinity",
            "ok": True,
            "nested": [1.0, None, {"$k": 2.0}],
        },
    )


@given(st.recursive(st.integers(-(2**53), 2**53) | st.booleans() | st.none(), st.lists))
def test_json_format_turns_every_number_into_a_float_and_nothing_else(value: Any) -> None:
    decoded = decode_json_format(value)
    for before, after in zip(walk(value), walk(decoded), strict=True):
        if isinstance(before, bool) or before is None:
            assert after is before
        elif isinstance(before, int):
            assert type(after) is float and after == before
