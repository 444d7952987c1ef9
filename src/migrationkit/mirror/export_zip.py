"""A streaming reader of the ZIP ``npx convex export`` writes.

Layout (per component; the app's own at the root, a component's under
``_components/<name>/``, nested as ``_components/a/_components/b/``)::

    _tables/documents.jsonl          {"name": "users", "id": 10001} per table
    <table>/documents.jsonl          one document per line
    <table>/generated_schema.jsonl   "uniform", or a legacy shape + overrides
    _storage/documents.jsonl         one line per stored file (listed only)
    _storage/<id><.ext>              the files themselves (not read)

A folder wrapping all of it is allowed, as Convex's own importer allows it.
Nothing is extracted and no table is held in memory: ``documents()`` reads
its member through ``zipfile`` in chunks and yields one decoded document
per line. For a legacy table, the override lines of its schema (one per
document whose values the shape leaves ambiguous) are kept in a dict by
document id, used once each.

File storage is out of scope: ``_storage`` rows are counted (files, bytes)
so the import can say what it did not copy.
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

from migrationkit.errors import ExportUnreadable
from migrationkit.mirror.export_schema import parse_shape, schema_from_generated_lines
from migrationkit.mirror.export_values import (
    LegacyDecoder,
    Undecodable,
    decode_uniform,
    parse_context,
)

__all__ = ["ExportFormat", "ExportTable", "ExportZip", "StorageListing"]

ExportFormat = Literal["uniform", "legacy"]

_DOCUMENTS = "documents.jsonl"
_SCHEMA = "generated_schema.jsonl"
_MEMBER = re.compile(
    r"^(?P<prefix>(?:_components/[^/]+/)*)(?P<table>[^/]+)/"
    r"(?P<file>documents\.jsonl|generated_schema\.jsonl)$"
)
_COMPONENT = re.compile(r"_components/([^/]+)/")
# Read size: large enough that the per-chunk work vanishes, small enough
# that memory does not grow with the table.
_CHUNK = 1 << 20
# What a damaged member raises while it is read (CRC, cut-short data).
_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, OSError)


@dataclass(frozen=True)
class ExportTable:
    """One table of the export."""

    name: str
    #: "" for the app's own tables, "a" or "a/b" for a (nested) component's.
    component: str
    format: ExportFormat
    #: The ZIP member of its documents, or None for a table listed but without one (empty).
    documents_member: str | None
    #: Its ``generated_schema.jsonl`` member, if any.
    schema_member: str | None
    #: Line 1 of ``generated_schema.jsonl`` as written (``"uniform"`` or a shape).
    schema_line: str | None
    #: Uncompressed size of ``documents.jsonl`` in bytes (for progress).
    size: int

    @property
    def qualified_name(self) -> str:
        """``table`` for the app's own tables, ``component/table`` for a component's."""
        return f"{self.component}/{self.name}" if self.component else self.name


@dataclass(frozen=True)
class StorageListing:
    """The ``_storage`` rows of one component: files the export holds, not imported."""

    component: str
    member: str
    files: int
    bytes: int


def _component_path(prefix: str) -> str:
    return "/".join(_COMPONENT.findall(prefix))


class ExportZip:
    """An export ZIP, opened for reading: its tables, its storage listing, its documents.

    Raises ``ExportUnreadable`` when the file is not a readable ZIP or has no
    Convex export in it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise ExportUnreadable(f"{self.path}: no such file") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ExportUnreadable(f"{self.path}: not a readable ZIP file ({exc})") from None
        try:
            self.wrapper = self._find_wrapper()
            self.tables, self.storage, self.skipped_system = self._read_layout()
        except BaseException:
            self._zip.close()
            raise

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> ExportZip:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- layout ----------------------------------------------------------------

    def _names(self) -> list[str]:
        # macOS's archiver adds resource forks under __MACOSX/: never data.
        return [
            info.filename
            for info in self._zip.infolist()
            if not info.is_dir() and not info.filename.startswith("__MACOSX/")
        ]

    def _find_wrapper(self) -> str:
        names = self._names()
        marker = f"_tables/{_DOCUMENTS}"
        roots = set()
        for name in names:
            if name == marker or name.endswith("/" + marker):
                # The wrapper is what comes before the first component folder.
                prefix = name[: -len(marker)]
                roots.add(
                    prefix.split("_components/", 1)[0] if "_components/" in prefix else prefix
                )
        if len(roots) > 1:
            raise ExportUnreadable(
                f"{self.path}: holds more than one export ({', '.join(sorted(roots))})"
            )
        if roots:
            return roots.pop()
        # No table list: a folder is a wrapper if everything is in it and it
        # is not itself a table (which would hold documents.jsonl directly).
        firsts = {name.split("/", 1)[0] for name in names if "/" in name}
        if len(firsts) == 1 and all("/" in name for name in names):
            first = firsts.pop()
            if first != "_components" and f"{first}/{_DOCUMENTS}" not in names:
                return first + "/"
        return ""

    def _read_layout(self) -> tuple[list[ExportTable], list[StorageListing], list[str]]:
        found: dict[tuple[str, str], dict[str, str]] = {}
        listed: dict[str, list[str]] = {}
        storage: list[StorageListing] = []
        system: list[str] = []
        for name in self._names():
            if not name.startswith(self.wrapper):
                continue
            match = _MEMBER.match(name[len(self.wrapper) :])
            if match is None:
                continue
            component = _component_path(match["prefix"])
            table, kind = match["table"], match["file"]
            if table == "_tables":
                if kind == _DOCUMENTS:
                    listed[component] = self._table_list(name)
            elif table == "_storage":
                if kind == _DOCUMENTS:
                    storage.append(self._storage_listing(component, name))
            elif table.startswith("_"):
                # Other system tables: Convex's own importer skips them too.
                if kind == _DOCUMENTS:
                    system.append(f"{component}/{table}" if component else table)
            else:
                found.setdefault((component, table), {})[kind] = name
        for component, names in listed.items():
            for table in names:
                found.setdefault((component, table), {})
        if not found and not listed:
            raise ExportUnreadable(
                f"{self.path}: no Convex export in it (no <table>/documents.jsonl,"
                " no _tables/documents.jsonl)"
            )

        def order(key: tuple[str, str]) -> tuple[str, int, str]:
            component, table = key
            names = listed.get(component, [])
            # Table-number order as the export lists it; unlisted ones after.
            return (component, names.index(table) if table in names else len(names), table)

        tables = [self._table(c, t, found[(c, t)]) for c, t in sorted(found, key=order)]
        return tables, sorted(storage, key=lambda s: s.component), sorted(system)

    def _table(self, component: str, name: str, members: dict[str, str]) -> ExportTable:
        documents = members.get(_DOCUMENTS)
        schema = members.get(_SCHEMA)
        line: str | None = None
        export_format: ExportFormat = "legacy"
        if schema is not None:
            first = next(iter(self._lines(schema, name)), None)
            if first is not None:
                line = self._text(first[1], schema, name, first[0])
                export_format = self._format_of(schema, line)
        size = self._zip.getinfo(documents).file_size if documents else 0
        return ExportTable(name, component, export_format, documents, schema, line, size)

    def _format_of(self, member: str, line: str) -> ExportFormat:
        try:
            first = json.loads(line)
        except ValueError:
            first = None
        if type(first) is not str:
            raise ExportUnreadable(
                f'{self.path}:{member} line 1: not a JSON string (expected "uniform"'
                " or a legacy shape)"
            )
        return "uniform" if first == "uniform" else "legacy"

    def _table_list(self, member: str) -> list[str]:
        names: list[str] = []
        for number, line in self._lines(member, "_tables"):
            try:
                entry = json.loads(line)
                names.append(str(entry["name"]))
            except (ValueError, KeyError, TypeError):
                raise ExportUnreadable(
                    f"{self.path}:{member} line {number}: not a table entry"
                    ' ({"name": ..., "id": ...})'
                ) from None
        return names

    def _storage_listing(self, component: str, member: str) -> StorageListing:
        files = total = 0
        for number, line in self._lines(member, "_storage"):
            try:
                entry = json.loads(line)
            except ValueError:
                raise ExportUnreadable(f"{self.path}:{member} line {number}: not JSON") from None
            files += 1
            size: Any = entry.get("size") if type(entry) is dict else None
            # A number, or a decimal string in a legacy (clean JSON) export.
            if type(size) in (int, float) or (type(size) is str and size.isdigit()):
                total += int(size)
        return StorageListing(component, member, files, total)

    # --- reading ---------------------------------------------------------------

    def where(self, member: str, line: int) -> str:
        """``export.zip:users/documents.jsonl line 12``: how errors name a place."""
        return f"{self.path}:{member} line {line}"

    def _lines(self, member: str, table: str) -> Iterator[tuple[int, bytes]]:
        """(line number, bytes) of a member, read in chunks; empty lines are skipped.

        Lines stay bytes: the JSON reader takes them as they are, and checks
        the UTF-8 as it goes.
        """
        number = 0
        try:
            # read1: what one decompression step gives, without a copy into a full chunk.
            with cast(zipfile.ZipExtFile, self._zip.open(member)) as stream:
                pending = b""
                while True:
                    chunk = stream.read1(_CHUNK)
                    if not chunk:
                        break
                    if pending:
                        chunk = pending + chunk
                    end = chunk.rfind(b"\n")
                    if end < 0:
                        pending = chunk
                        continue
                    pending = chunk[end + 1 :]
                    for line in chunk[:end].split(b"\n"):
                        number += 1
                        if line:
                            yield number, line
                if pending:
                    number += 1
                    yield number, pending
        except _READ_ERRORS as exc:
            raise ExportUnreadable(
                f"{self.path}:{member} (table {table}): damaged after line {number} ({exc})",
                [{"loc": (table, number + 1), "msg": str(exc), "type": "damaged"}],
            ) from None

    def _text(self, raw: bytes, member: str, table: str, line: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _unreadable(self.where(member, line), table, line, "", "not UTF-8") from None

    def documents(self, table: ExportTable) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, document) for every document of ``table``, in file order.

        A document holds decoded Convex values (``int`` an Int64, ``float`` a
        Float64, ``bytes``, ``str``, ``bool``, ``None``, lists, dicts),
        ``_id`` and ``_creationTime`` included.
        """
        member = table.documents_member
        if member is None:
            return
        decode: Callable[[bytes], dict[str, Any]]
        decode = decode_uniform if table.format == "uniform" else self._legacy(table).decode
        name = table.qualified_name
        for number, line in self._lines(member, name):
            try:
                document = decode(line)
            except Undecodable as exc:
                where = self.where(member, number)
                raise _unreadable(where, name, number, exc.field, exc.message) from None
            if type(document.get("_id")) is not str:
                raise _unreadable(
                    self.where(member, number), name, number, "_id", "missing or not a string"
                )
            yield number, document

    def schema_lines(self, table: ExportTable) -> Iterator[str]:
        """The lines of ``table``'s ``generated_schema.jsonl``, as written."""
        if table.schema_member is None:
            return
        for number, line in self._lines(table.schema_member, table.qualified_name):
            yield self._text(line, table.schema_member, table.qualified_name, number)

    def _legacy(self, table: ExportTable) -> LegacyDecoder:
        if table.schema_line is None or table.schema_member is None:
            return LegacyDecoder(None, {})
        member = table.schema_member
        # The table-level reading checks the line and names what is wrong;
        # decoding needs the whole document type, top-level unions included.
        try:
            schema_from_generated_lines(table.name, table.component, [table.schema_line])
            shape = parse_shape(json.loads(table.schema_line))
        except Exception as exc:  # ValidationFailed, or the shape parser's private error
            raise ExportUnreadable(
                f"{self.where(member, 1)} (table {table.qualified_name}): cannot read the shape:"
                f" {exc}"
            ) from None
        overrides: dict[str, Any] = {}
        for number, line in self._lines(member, table.qualified_name):
            if number == 1:
                continue
            try:
                entry = json.loads(line)
                if type(entry) is not dict or len(entry) != 1:
                    raise Undecodable('an override line is {"<document id>": <context>}')
                ((doc_id, raw),) = entry.items()
                overrides[doc_id] = parse_context(raw)
            except ValueError as exc:
                raise _unreadable(
                    self.where(member, number),
                    table.qualified_name,
                    number,
                    "",
                    f"not JSON ({exc})",
                ) from None
            except Undecodable as exc:
                raise _unreadable(
                    self.where(member, number), table.qualified_name, number, exc.field, exc.message
                ) from None
        return LegacyDecoder(shape, overrides)


def _unreadable(where: str, table: str, line: int, field: str, message: str) -> ExportUnreadable:
    at = f" field {field}:" if field else ""
    return ExportUnreadable(
        f"{where} (table {table}):{at} {message}",
        [{"loc": (table, line, field), "msg": message, "type": "export"}],
    )
