"""Convex documents -> mirror rows, checked column by column.

A document arrives as decoded Convex values (``int`` is an Int64, ``float``
a Float64, ``bytes`` bytes), from the streaming export or an export ZIP.
Each value is checked against its column here, in Python, so a value that
does not fit is a ``ValidationFailed`` naming the table, the document and
the field, before anything is sent. Checks are plain ``isinstance`` tests
prepared once per model: this runs for every document of a backfill.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from migrationkit.errors import ValidationFailed
from migrationkit.mirror.columns import MirrorColumn, mirror_columns
from migrationkit.mirror.model import MirrorDocument

__all__ = ["MirrorRevision", "RowMaker", "jsonb_value", "row_maker", "to_encoded_json"]

Row = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SYSTEM = frozenset({"_id", "_creationTime"})


@dataclass(frozen=True, slots=True)
class MirrorRevision:
    """One revision of one document: what the writer stores.

    ``document`` holds the document's fields as decoded Convex values,
    ``_id`` and ``_creationTime`` included; it is empty for a delete.
    """

    table: str  # qualified Convex name: "users" or "component/table"
    id: str
    ts: int
    deleted: bool
    document: Mapping[str, Any]


class _Bad(Exception):
    """A value that does not fit; the row maker adds where it was."""


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


_pack_int64 = struct.Struct("<q").pack
_pack_float64 = struct.Struct("<d").pack


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _encode_json(value: Any) -> Any:
    # Convex's encoded JSON: what JSON cannot tell apart keeps a tag. Exact
    # types first (what JSON decoding gives, and so nearly every value);
    # strings are passed over without a call: they are most of a document.
    kind = type(value)
    if kind is dict:
        return {
            (k if type(k) is str else str(k)): (v if type(v) is str else _encode_json(v))
            for k, v in value.items()
        }
    if kind is list:
        return [item if type(item) is str else _encode_json(item) for item in value]
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Bad("holds an integer outside the Int64 range")
        return {"$integer": _b64(_pack_int64(value))}
    if kind is float:
        if math.isfinite(value) and (value != 0.0 or math.copysign(1.0, value) > 0):
            return value
        return {"$float": _b64(_pack_float64(value))}
    if kind is str or value is None or kind is bool:
        return value
    if kind is bytes:
        return {"$bytes": _b64(value)}
    return _encode_other(value)


def _encode_other(value: Any) -> Any:
    # Subclasses, tuples, other mappings: rare, so the isinstance tests wait here.
    if isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return _encode_json(float(value))
    if isinstance(value, int):
        return _encode_json(int(value))
    if isinstance(value, bytes):
        return _encode_json(bytes(value))
    if isinstance(value, list | tuple):
        return [_encode_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _encode_json(v) for k, v in value.items()}
    raise _Bad(f"{type(value).__name__} is not a Convex value")


def jsonb_value(value: Any) -> bytes:
    """A decoded Convex value in jsonb's binary COPY form: the version byte
    (1), then its encoded JSON. The writer sends it as it is, without a
    Python call per value in the driver."""
    try:
        data = orjson.dumps(_encode_json(value))
    except orjson.JSONEncodeError as exc:
        # orjson refuses what is not valid UTF-8 (a lone surrogate) and
        # nesting past 255 levels (Convex allows 16).
        raise _Bad(f"cannot be written as JSON ({exc})") from None
    if b"\\u0000" in data:
        # PostgreSQL's jsonb cannot hold U+0000 in a string.
        raise _Bad("holds a NUL character (U+0000), which jsonb cannot store")
    return b"\x01" + data


def to_encoded_json(value: Any) -> str:
    """A decoded Convex value as JSON text in Convex's encoded JSON (lossless)."""
    return jsonb_value(value)[1:].decode("utf-8")


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _Bad(f"expected a string, got {_describe(value)}")
    if "\x00" in value:
        raise _Bad("holds a NUL character (U+0000), which PostgreSQL text cannot store")
    return value


def _float(value: Any) -> float:
    if type(value) is float:
        return value
    raise _Bad(f"expected a float64, got {_describe(value)}")


def _int64(value: Any) -> int:
    if type(value) is int:
        return value
    raise _Bad(f"expected an int64, got {_describe(value)}")


def _bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _Bad(f"expected a boolean, got {_describe(value)}")


def _bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    raise _Bad(f"expected bytes, got {_describe(value)}")


_KINDS: dict[type, str] = {
    str: "a string",
    float: "a float64",
    int: "an int64",
    bool: "a boolean",
    bytes: "bytes",
    list: "an array",
    dict: "an object",
}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return _KINDS.get(type(value), type(value).__name__)


def _checker(column: MirrorColumn) -> Callable[[Any], Any]:
    if column.kind in ("text", "id"):
        return _text
    if column.kind == "enum":
        allowed = frozenset(column.enum_values)

        def enum(value: Any) -> str:
            if type(value) is not str or value not in allowed:
                raise _Bad(f"expected one of {sorted(allowed)}, got {value!r:.60}")
            return value

        return enum
    if column.kind == "json":
        return jsonb_value
    return {"float64": _float, "int64": _int64, "boolean": _bool, "bytes": _bytes}[column.kind]


def creation_time(ms: Any) -> datetime | None:
    """``_creationTime`` (float ms since the epoch) as a timestamptz value."""
    if type(ms) is not float and type(ms) is not int:
        return None
    # timedelta keeps microseconds; the raw float column keeps the rest.
    return _EPOCH + timedelta(milliseconds=ms)


def _absent_ok() -> None:
    return None


def _absent_refused() -> None:
    raise _Bad("is missing (the field is required)")


class RowMaker:
    """Turns revisions of one mirror model into rows of its table's columns.

    Column order: ``_id, _creation_time, _creation_time_ms, _ts, _deleted``,
    then ``workspace_id`` if the model has one, then the model's columns (or
    ``document`` for a document-only table).
    """

    def __init__(self, model: type[MirrorDocument]) -> None:
        self.model = model
        spec = model.mirror
        self.table = spec.qualified_convex_name
        self.columns = () if spec.document_only else mirror_columns(model)
        self._fields = [(c.convex_name, c.column, c.nullable, _checker(c)) for c in self.columns]
        # The same, for the fast path: what a field's value goes through.
        self._fast = [
            (c.convex_name, _checker(c), _absent_ok if c.nullable else _absent_refused)
            for c in self.columns
        ]
        self._known = frozenset(c.convex_name for c in self.columns) | _SYSTEM
        self._excluded = frozenset(spec.excluded)
        self._workspace = spec.workspace_field
        self._document_only = spec.document_only
        width = len(self._fields) + (1 if spec.document_only else 0)
        self._empty: Row = (None,) * (width + (1 if self._workspace else 0))

    @property
    def column_names(self) -> list[str]:
        head = ["_id", "_creation_time", "_creation_time_ms", "_ts", "_deleted"]
        if self._workspace:
            head.append("workspace_id")
        if self._document_only:
            return [*head, "document"]
        return head + [c.column for c in self.columns]

    def row(self, revision: MirrorRevision, where: str = "") -> Row:
        """The row for ``revision``; ``where`` (e.g. "line 12") goes into errors."""
        if revision.deleted:
            return (revision.id, None, None, revision.ts, True, *self._empty)
        return self.document_row(revision.id, revision.ts, revision.document, where)

    def document_row(self, doc_id: str, ts: int, doc: Mapping[str, Any], where: str = "") -> Row:
        """``row`` of a live revision, without making one: what an import calls per document."""
        ms = doc.get("_creationTime")
        if type(ms) is int:
            ms = float(ms)
        head = (doc_id, creation_time(ms), ms, ts, False)
        if not self._document_only:
            fast = self._fast_values(doc)
            if fast is not None:
                return head + fast
        return self._checked_row(doc_id, doc, head, where)

    def _fast_values(self, doc: Mapping[str, Any]) -> Row | None:
        """The values of a document that fits, or None: then the full check says why.

        A comprehension without the bookkeeping of where it is: this runs
        for every document of an import or a backfill.
        """
        get = doc.get
        try:
            values = [
                check(value) if (value := get(name)) is not None else absent()
                for name, check, absent in self._fast
            ]
        except _Bad:
            return None
        if len(doc) > len(self._fast) + 2 or not self._known.issuperset(doc):
            excluded = self._excluded
            if not excluded or any(k not in self._known and k not in excluded for k in doc):
                return None
        if self._workspace:
            workspace = get(self._workspace)
            if workspace is not None and type(workspace) is not str:
                return None
            return (workspace, *values)
        return tuple(values)

    def _checked_row(self, doc_id: str, doc: Mapping[str, Any], head: Row, where: str) -> Row:
        """The row, checked field by field, with errors saying which field and why."""
        field = ""
        try:
            values: list[Any] = []
            if self._workspace:
                workspace = doc.get(self._workspace)
                if workspace is not None and type(workspace) is not str:
                    raise _Bad(f"workspace field {self._workspace!r} is not a string")
                values.append(workspace)
            if self._document_only:
                values.append(jsonb_value({k: v for k, v in doc.items() if k not in _SYSTEM}))
                return head + tuple(values)
            for field, _column, nullable, check in self._fields:
                value = doc.get(field)
                if value is None:
                    if not nullable:
                        raise _Bad("is missing (the field is required)")
                    values.append(None)
                else:
                    values.append(check(value))
            field = ""
            if len(doc) > len(self._fields) + 2 or not self._known.issuperset(doc):
                unknown = sorted(k for k in doc if k not in self._known and k not in self._excluded)
                if unknown:
                    raise _Bad(
                        f"has fields the model does not know: {', '.join(unknown)}"
                        " (re-run introspect, or exclude them in the config)"
                    )
        except _Bad as exc:
            at = f" field {field!r}" if field else ""
            place = f" ({where})" if where else ""
            raise ValidationFailed(
                f"table {self.table}: document {doc_id}{place}:{at} {exc}",
                [{"loc": (self.table, doc_id, field), "msg": str(exc), "type": "mirror"}],
            ) from None
        return head + tuple(values)


_MAKERS: dict[type[MirrorDocument], RowMaker] = {}


def row_maker(model: type[MirrorDocument]) -> RowMaker:
    maker = _MAKERS.get(model)
    if maker is None:
        maker = _MAKERS[model] = RowMaker(model)
    return maker
