"""Convex values <-> JSON.

Convex has more value types than JSON: Int64 and Float64 are distinct,
floats include NaN, the infinities and -0.0, and there are byte strings.
Its *encoded JSON* keeps them apart losslessly:

    Python value            encoded JSON
    ----------------------  -------------------------------------------------
    None, bool, str         as is
    float (finite, not -0)  a JSON number
    float NaN, +-inf, -0.0  {"$float": base64 of the 8-byte little-endian double}
    int (Int64)             {"$integer": base64 of the 8-byte little-endian int}
    bytes                   {"$bytes": base64}
    list (or tuple)         an array
    dict                    an object whose keys are valid field names

Arguments are always parsed as encoded JSON, so a bare JSON number is a
Float64 on the server: a Python ``int`` becomes an Int64 (as the official
Python client does). Pass a ``float`` where the function expects
``v.number()``.

Replies come in one of two formats, chosen by the ``format`` of the request:
``convex_encoded_json`` (lossless, read with :func:`decode_value`) or
``json`` (lossy, read with :func:`decode_json_format`).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from typing import Any, TypeAlias

from migrationkit.errors import BadReply, ValidationFailed

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "JSONValue",
    "Path",
    "decode_json_format",
    "decode_value",
    "encode_args",
    "encode_value",
    "field_name_problem",
    "format_path",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
Path: TypeAlias = tuple[str | int, ...]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_FIELD_NAME_LENGTH = 1024


def format_path(loc: Path) -> str:
    """``("items", 3, "when")`` -> ``items[3].when``; the empty path is ``<root>``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<root>"


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- encoding ---------------------------------------------------------------


def encode_value(value: object) -> JSONValue:
    """A Python value -> Convex encoded JSON, ready for ``json.dumps``.

    Raises ``ValidationFailed`` naming the path of the first value that has
    no Convex counterpart (a set, a datetime, an int outside Int64, a bad
    field name...). The offending value itself is not echoed: it may be
    user data.
    """
    return _encode_at(value, ())


def encode_args(args: Mapping[str, object] | None) -> dict[str, JSONValue]:
    """Function arguments -> encoded JSON. Convex arguments are always an object."""
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise ValidationFailed(
            f"function arguments must be a mapping of field names to values,"
            f" not {type(args).__name__}",
            [{"loc": ("args",), "msg": "not a mapping", "type": "type_error"}],
        )
    encoded = _encode_at(args, ("args",))
    assert isinstance(encoded, dict)
    return encoded


def _refuse(loc: Path, message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(
        f"cannot send this value to Convex: {message} at {format_path(loc)}",
        [{"loc": loc, "msg": message, "type": kind}],
    )


def _encode_at(value: object, loc: Path) -> JSONValue:
    try:
        return _encode(value, loc)
    except RecursionError:
        raise _refuse(loc, "the value is nested too deeply (or contains itself)", "depth") from None


def _encode(value: object, loc: Path) -> JSONValue:
    # bool before int: bool is a subclass of int, and True is not Int64 1.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _check_unicode(value, loc)
        return str(value)
    if isinstance(value, float):
        return _encode_float(float(value))
    if isinstance(value, int):
        return _encode_int(int(value), loc)
    if isinstance(value, bytes | bytearray):
        return {"$bytes": _b64(bytes(value))}
    if isinstance(value, list | tuple):
        return [_encode(item, (*loc, i)) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            _check_field_name(key, loc)
            out[key] = _encode(item, (*loc, key))
        return out
    raise _refuse(loc, f"{type(value).__name__} has no Convex counterpart", "type_error")


def _encode_float(value: float) -> JSONValue:
    # JSON has no NaN or infinities, and most parsers fold -0.0 into 0.
    if math.isfinite(value) and not (value == 0.0 and math.copysign(1.0, value) < 0):
        return value
    return {"$float": _b64(struct.pack("<d", value))}


def _encode_int(value: int, loc: Path) -> JSONValue:
    if not INT64_MIN <= value <= INT64_MAX:
        raise _refuse(loc, "integer is outside the Int64 range", "int64_range")
    return {"$integer": _b64(value.to_bytes(8, "little", signed=True))}


def _check_unicode(value: str, loc: Path) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(loc, "string holds a lone surrogate (not valid Unicode)", "unicode") from None


def _check_field_name(key: object, loc: Path) -> None:
    if not isinstance(key, str):
        raise _refuse(loc, f"field name of type {type(key).__name__} (must be str)", "field_name")
    problem = field_name_problem(key)
    if problem:
        raise _refuse(loc, f"field name {_short(key)} {problem}", "field_name")


def field_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Convex field name, or ``None`` if it can."""
    if not name:
        return "is empty"
    if len(name) > MAX_FIELD_NAME_LENGTH:
        return f"is longer than {MAX_FIELD_NAME_LENGTH} characters"
    if name.startswith("$"):
        return "starts with '$' (reserved for encoded values)"
    if not all(32 <= ord(ch) <= 126 for ch in name):
        return "holds a character outside printable ASCII (32..126)"
    return None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- decoding ---------------------------------------------------------------


def decode_value(json_value: object) -> Any:
    """A reply value under ``format: "convex_encoded_json"`` -> Python.

    Every plain JSON number is a Float64, so ``3`` decodes to ``3.0``;
    ``$integer`` -> ``int``, ``$float`` -> ``float``, ``$bytes`` -> ``bytes``.
    Any other object key starting with ``$`` is a ``BadReply``.

    Parse the JSON text with ``json.loads`` (which keeps integers exact)
    before calling this.
    """
    return decode_at(json_value, ())


def decode_at(json_value: object, loc: Path) -> Any:
    """:func:`decode_value` for a value found at ``loc`` in a larger reply (named in errors)."""
    try:
        return _decode(json_value, loc)
    except RecursionError:
        raise _bad(loc, "nested too deeply to read") from None


def _bad(loc: Path, message: str) -> BadReply:
    return BadReply(f"Convex reply value at {format_path(loc)}: {message}")


def _decode(value: object, loc: Path) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise _bad(loc, "number is out of Float64 range") from None
    if isinstance(value, list):
        return [_decode(item, (*loc, i)) for i, item in enumerate(value)]
    if isinstance(value, dict):
        special = [key for key in value if isinstance(key, str) and key.startswith("$")]
        if special:
            return _decode_special(value, special[0], loc)
        return {key: _decode(item, (*loc, key)) for key, item in value.items()}
    raise _bad(loc, f"{type(value).__name__} is not a JSON value")


def _decode_special(value: dict[Any, Any], key: str, loc: Path) -> Any:
    if key not in ("$integer", "$float", "$bytes"):
        raise _bad(loc, f"unknown encoded type {_short(key)}")
    if len(value) != 1:
        raise _bad(loc, f"{key} object has other fields beside {key}")
    raw = _unb64(value[key], key, loc)
    if key == "$bytes":
        return raw
    if len(raw) != 8:
        raise _bad(loc, f"{key} holds {len(raw)} bytes, expected 8")
    if key == "$integer":
        return int.from_bytes(raw, "little", signed=True)
    result: float = struct.unpack("<d", raw)[0]
    return result


def _unb64(text: object, key: str, loc: Path) -> bytes:
    if not isinstance(text, str):
        raise _bad(loc, f"{key} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(loc, f"{key} is not valid base64") from None


def decode_json_format(json_value: object) -> Any:
    """A reply value under ``format: "json"`` -> Python. Lossy by design:

    - every JSON number becomes a ``float`` (Float64 is the only number type
      this format writes as a number);
    - an Int64 arrives as a decimal *string* (``"42"``) and stays a string;
    - bytes arrive as a base64 *string* and stay a string;
    - NaN and the infinities arrive as the strings ``"NaN"``, ``"Infinity"``,
      ``"-Infinity"`` and stay strings, and -0.0 may arrive as ``0``.

    Nothing in the reply says which strings were numbers or bytes: use
    ``convex_encoded_json`` (:func:`decode_value`) whenever types matter.
    """
    try:
        return _decode_json(json_value, ())
    except RecursionError:
        raise BadReply("Convex reply value is nested too deeply to read") from None


def _decode_json(value: object, loc: Path) -> Any:
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise _bad(loc, "number is out of Float64 range") from None
    if isinstance(value, list):
        return [_decode_json(item, (*loc, i)) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _decode_json(item, (*loc, key)) for key, item in value.items()}
    raise _bad(loc, f"{type(value).__name__} is not a JSON value")
