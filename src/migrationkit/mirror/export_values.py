"""One line of an export ZIP's ``documents.jsonl`` -> a document of Convex values.

Two formats, told apart by the table's ``generated_schema.jsonl``:

* **uniform** (exports since March 2026): lossless JSON. A bare integer is
  an Int64 (``int``), a number with ``.`` or an exponent a Float64;
  ``{"$bytes"}``, ``{"$float"}`` (NaN, the infinities) and ``{"$integer"}``
  objects carry what JSON cannot.
* **legacy**: Convex's clean JSON, where Int64 and bytes are *strings* and
  every number is a Float64. Which strings are which is read from the
  table's shape (line 1 of ``generated_schema.jsonl``) and, where the shape
  leaves it open, from the document's own override line (an "export
  context": ``"int64"``, ``"bytes"``, ``"float64inf"``,
  ``{"$float64NaN": b64}``, or arrays and objects of them). The rules are
  Convex's own importer's, so a document decodes to the value it had.

Errors are ``Undecodable`` with the path of the field; the ZIP reader adds
the table and the line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from migrationkit.adapters.convex.codec import INT64_MAX, INT64_MIN, format_path
from migrationkit.mirror.convex_types import ConvexType

__all__ = ["LegacyDecoder", "Undecodable", "decode_uniform", "parse_context"]

Loc = tuple[str | int, ...]


class Undecodable(Exception):
    """A line or value the reader cannot turn into Convex values."""

    def __init__(self, message: str, loc: Loc = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    @property
    def field(self) -> str:
        return format_path(self.loc) if self.loc else ""


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; neither format writes them bare.
    raise Undecodable(f"{name} is not JSON")


def _unb64(text: Any, what: str, loc: Loc) -> bytes:
    if type(text) is not str:
        raise Undecodable(f"{what} is not a base64 string", loc)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Undecodable(f"{what} is not valid base64", loc) from None


# --- uniform -------------------------------------------------------------------


def _special(obj: dict[str, Any], loc: Loc = ()) -> Any:
    """``{"$bytes"|"$float"|"$integer": b64}`` -> its value (``obj`` starts with a ``$`` key)."""
    key = next(iter(obj))
    if len(obj) != 1 or key not in ("$bytes", "$float", "$integer"):
        raise Undecodable(f"unknown value encoding {key!r:.40}", loc)
    raw = _unb64(obj[key], key, loc)
    if key == "$bytes":
        return raw
    if len(raw) != 8:
        raise Undecodable(f"{key} holds {len(raw)} bytes, expected 8", loc)
    if key == "$integer":
        return int.from_bytes(raw, "little", signed=True)
    value: float = struct.unpack("<d", raw)[0]
    return value


def _object_hook(obj: dict[str, Any]) -> Any:
    # Convex reads an object whose first key starts with "$" as an encoded value.
    if obj and next(iter(obj)).startswith("$"):
        return _special(obj)
    return obj


def _int_or_float(text: str) -> int | float:
    # Convex: an integer that fits Int64 is one, a larger one is a Float64.
    value = int(text)
    if INT64_MIN <= value <= INT64_MAX:
        return value
    return float(value)


_hooked = json.JSONDecoder(
    object_hook=_object_hook, parse_int=_int_or_float, parse_constant=_refuse_constant
)
# Every byte that is not a digit becomes a space: a run of 19 zeros is then
# an integer that may be past Int64, which orjson would keep as an int.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19


def decode_uniform(line: bytes) -> dict[str, Any]:
    """A uniform-format line -> the document (``Undecodable`` if it is not one)."""
    try:
        if b'"$' in line or _LONG_RUN in line.translate(_DIGITS):
            # An encoded value ($bytes, $float, $integer) or a long number:
            # the hooks read them, at a Python call per object or integer.
            doc = _hooked.decode(line.decode("utf-8"))
        else:
            # Nearly every line: plain JSON whose integers all fit Int64.
            doc = orjson.loads(line)
    except Undecodable as exc:
        # The hooks do not know where they are: walk the line again to say.
        raise _locate(line) or exc from None
    except RecursionError:
        raise Undecodable("nested too deeply to read") from None
    except (ValueError, OverflowError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise _locate(line) or Undecodable(f"not JSON ({exc})") from None
    if type(doc) is not dict:
        raise Undecodable(f"a document is a JSON object, not {type(doc).__name__}")
    return doc


def _locate(line: bytes) -> Undecodable | None:
    try:
        raw = json.loads(line, parse_constant=str)
    except (ValueError, RecursionError):
        return None
    try:
        _walk_uniform(raw, ())
    except Undecodable as exc:
        return exc
    return None


def _walk_uniform(value: Any, loc: Loc) -> None:
    if type(value) is list:
        for index, item in enumerate(value):
            _walk_uniform(item, (*loc, index))
    elif type(value) is dict:
        if value and next(iter(value)).startswith("$"):
            _special(value, loc)
            return
        for key, item in value.items():
            _walk_uniform(item, (*loc, key))
    elif type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        try:
            float(value)
        except OverflowError:
            raise Undecodable("number is out of Float64 range", loc) from None


# --- legacy --------------------------------------------------------------------

# Export contexts, as parsed from an override line.
INFER, INT64, FLOAT64_INF, BYTES = "infer", "int64", "float64inf", "bytes"
_STRING_CONTEXTS = (INFER, INT64, FLOAT64_INF, BYTES)
_I64_TEXT = re.compile(r"[+-]?[0-9]+")


class _NaN:
    """``{"$float64NaN": b64}``: the string is "NaN", and these are its bits."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


Context = Any  # INFER | INT64 | FLOAT64_INF | BYTES | _NaN | list[Context] | dict[str, Context]


def parse_context(raw: Any, loc: Loc = ()) -> Context:
    """An override's JSON -> a context (``Undecodable`` for one Convex does not write)."""
    if type(raw) is str:
        if raw in _STRING_CONTEXTS:
            return raw
        raise Undecodable(f"unknown export context {raw!r:.40}", loc)
    if type(raw) is list:
        return [parse_context(item, (*loc, i)) for i, item in enumerate(raw)]
    if type(raw) is dict:
        if "$float64NaN" in raw:
            bits = _unb64(raw["$float64NaN"], "$float64NaN", loc)
            if len(bits) != 8:
                raise Undecodable("$float64NaN must hold 8 bytes", loc)
            nan: float = struct.unpack("<d", bits)[0]
            if nan == nan:
                raise Undecodable("$float64NaN holds a number that is not NaN", loc)
            return _NaN(nan)
        return {key: parse_context(item, (*loc, key)) for key, item in raw.items()}
    raise Undecodable(f"unknown export context {raw!r:.40}", loc)


def _members(options: tuple[ConvexType, ...]) -> list[ConvexType]:
    out: list[ConvexType] = []
    for option in options:
        if option.kind == "union":
            out.extend(_members(option.members))
        else:
            out.append(option)
    return out


class _Shape:
    """What a value at one path may be: a set of Convex types (Convex's shape options).

    The string rule is Convex's ``inferred_context_for_string``: when the
    options allow a JSON string to be read one way only, an ``infer`` string
    is read that way; when several, it stays a string. The shape line's
    float tokens (``inf``, ``normalfloat64``, ``float64``) all arrive here
    as ``float64``; a float64 then only decides when nothing else can be a
    string, which gives Convex's reading for every document that matches
    its shape (a NaN, and an infinity where the shape is ambiguous, always
    come with an override).
    """

    __slots__ = ("_element", "_fields", "_rest", "members", "needs_walk", "string_context")

    def __init__(self, options: tuple[ConvexType, ...]) -> None:
        self.members = _members(options)
        contexts: list[str] = []
        has_float = False
        for member in self.members:
            kind = member.kind
            found: tuple[str, ...] = ()
            if kind == "int64":
                found = (INT64,)
            elif kind == "bytes":
                found = (BYTES,)
            elif kind in ("string", "id") or (kind == "literal" and type(member.value) is str):
                found = (INFER,)
            elif kind == "any":
                found = (INFER, FLOAT64_INF, INT64, BYTES)
            elif kind == "float64":
                has_float = True
            contexts.extend(c for c in found if c not in contexts)
        if len(contexts) == 1:
            self.string_context: str = contexts[0]
        elif not contexts and has_float:
            self.string_context = FLOAT64_INF
        else:
            self.string_context = INFER
        self._element: _Shape | None = None
        self._fields: dict[str, _Shape] | None = None
        self._rest: _Shape | None = None
        # A value whose shape reads every string as a string and holds no
        # container needs no walk under an ``infer`` context.
        self.needs_walk = self.string_context != INFER or any(
            m.kind in ("array", "object", "record", "any") for m in self.members
        )

    def element(self) -> _Shape:
        if self._element is None:
            items = [m.items for m in self.members if m.kind == "array" and m.items is not None]
            items += [m for m in self.members if m.kind == "any"]
            self._element = _Shape(tuple(items))
        return self._element

    def field(self, name: str) -> _Shape:
        if self._fields is None:
            self._fields = {}
            named: dict[str, list[ConvexType]] = {}
            for m in self.members:
                if m.kind == "object":
                    for f in m.fields:
                        named.setdefault(f.name, []).append(f.type)
            rest = [m.items for m in self.members if m.kind == "record" and m.items is not None]
            rest += [m for m in self.members if m.kind == "any"]
            self._rest = _Shape(tuple(rest))
            # A named field's options include the records' and unknown's too.
            self._fields = {n: _Shape((*types, *rest)) for n, types in named.items()}
        found = self._fields.get(name)
        if found is not None:
            return found
        assert self._rest is not None
        return self._rest


_legacy = json.JSONDecoder(parse_int=float, parse_constant=_refuse_constant)


def _decode_string(text: str, context: Any, loc: Loc) -> Any:
    if context == INFER:
        return text
    if context == INT64:
        if _I64_TEXT.fullmatch(text) is None:
            raise Undecodable(f"{text!r:.40} is not an int64", loc)
        value = int(text)
        if not INT64_MIN <= value <= INT64_MAX:
            raise Undecodable(f"{text!r:.40} is outside the int64 range", loc)
        return value
    if context == BYTES:
        return _unb64(text, "bytes", loc)
    if context == FLOAT64_INF:
        if text == "Infinity":
            return float("inf")
        if text == "-Infinity":
            return float("-inf")
        raise Undecodable(f"{text!r:.40} is not Infinity or -Infinity", loc)
    if isinstance(context, _NaN):
        if text != "NaN":
            raise Undecodable(f"{text!r:.40} is not NaN, as its override says", loc)
        return context.value
    raise Undecodable("an array or object override for a string", loc)


def _apply(value: Any, context: Context, shape: _Shape, loc: Loc) -> Any:
    kind = type(value)
    if kind is str:
        if context == INFER:
            return (
                value
                if shape.string_context == INFER
                else (_decode_string(value, shape.string_context, loc))
            )
        if type(context) is list or type(context) is dict:
            raise Undecodable("an array or object override for a string", loc)
        return _decode_string(value, context, loc)
    if kind is list:
        if context == INFER:
            element = shape.element()
            if not element.needs_walk:
                return value
            return [_apply(item, INFER, element, (*loc, i)) for i, item in enumerate(value)]
        if type(context) is not list:
            raise Undecodable("the override for an array is not an array", loc)
        if len(context) != len(value):
            raise Undecodable("the override's array length differs from the value's", loc)
        element = shape.element()
        return [
            _apply(item, ctx, element, (*loc, i))
            for i, (item, ctx) in enumerate(zip(value, context, strict=True))
        ]
    if kind is dict:
        if context == INFER:
            return {k: _apply(v, INFER, shape.field(k), (*loc, k)) for k, v in value.items()}
        if type(context) is not dict:
            raise Undecodable("the override for an object is not an object", loc)
        return {
            k: _apply(v, context.get(k, INFER), shape.field(k), (*loc, k)) for k, v in value.items()
        }
    if context != INFER:
        raise Undecodable(f"an override for a {_json_kind(value)}", loc)
    return value  # null, boolean, number (always a Float64 here)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return "boolean" if type(value) is bool else "number"


class LegacyDecoder:
    """Decodes the lines of one legacy-format table.

    ``shape`` is the table's document type as its shape line gives it
    (``export_schema.parse_shape``; ``_id`` and ``_creationTime``
    included), or ``None`` when there is none: every string then stays a
    string unless an override says otherwise, as in Convex's importer.
    ``overrides`` maps a document id to its parsed context
    (``parse_context``); each is used once and dropped.
    """

    def __init__(self, shape: ConvexType | None, overrides: Mapping[str, Context]) -> None:
        self.overrides = dict(overrides)
        self._shape = _Shape((shape,) if shape is not None else ())

    def decode(self, line: bytes) -> dict[str, Any]:
        try:
            raw = _legacy.decode(line.decode("utf-8"))
        except RecursionError:
            raise Undecodable("nested too deeply to read") from None
        except (ValueError, OverflowError) as exc:
            raise Undecodable(f"not JSON ({exc})") from None
        if type(raw) is not dict:
            raise Undecodable(f"a document is a JSON object, not {type(raw).__name__}")
        doc_id = raw.get("_id")
        context = self.overrides.pop(doc_id, INFER) if type(doc_id) is str else INFER
        try:
            doc: dict[str, Any] = _apply(raw, context, self._shape, ())
        except RecursionError:
            raise Undecodable("nested too deeply to read") from None
        return doc
