"""Import an export ZIP (``npx convex export``) into the mirror tables.

Every table the config selects must have a registered mirror model; the
check runs before anything is written. Then all tables go in ONE
transaction: each table's documents stream from the ZIP through the row
checks (``RowMaker.document_row``: ``row`` without a revision object) into
``MirrorWriter.load`` (COPY into a staging table, one ``_ts``-guarded
upsert; an empty table gets the rows by COPY directly, the same end state
for half the server's work). Each table is locked
against other writers until the import commits. A bad value, a damaged
member, a document twice in one table or a lost connection anywhere rolls
the whole import back: the database is left as it was.

Which ``_ts`` imported rows get: ``snapshot_ts``, 0 by default. An export
ZIP carries no commit timestamps, and 0 is older than any revision the
change feed can deliver, so a later backfill or tail always replaces an
imported row and never loses to it. Importing the same ZIP again changes
nothing (the guard keeps rows whose ``_ts`` is not older); importing a newer
export over an older one needs a larger ``snapshot_ts``. Given the export's
snapshot timestamp, ``start_tail`` also saves the mirror tail's cursor
there, in the same transaction, so the tail resumes with the first commit
after the export.

Files in ``_storage`` are not imported: they are counted and reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine

from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.errors import UnknownEntity, ValidationFailed
from migrationkit.mirror.backfill import TAIL_CURSOR
from migrationkit.mirror.config import MirrorConfig
from migrationkit.mirror.export_zip import ExportTable, ExportZip, StorageListing
from migrationkit.mirror.model import MirrorDocument, registered_mirrors
from migrationkit.mirror.rows import Row, row_maker
from migrationkit.mirror.writer import MirrorWriter

__all__ = ["ImportProgress", "ImportReport", "TableImport", "import_zip", "plan_import"]

_INT64_MAX = 2**63 - 1
# Rows between progress updates: often enough to watch, rare enough to cost nothing.
_PROGRESS_EVERY = 20_000


class ImportProgress(Protocol):
    """Told the rows of each table as they go (``cli_support.RowProgress`` is one)."""

    def update(self, table: str, rows: int, *, done: bool, total: int | None = None) -> None: ...


@dataclass
class TableImport:
    table: str  # qualified Convex name
    pg_table: str
    format: str
    rows: int = 0
    #: Rows inserted or replaced (0 for rows already there at the same or a newer _ts).
    applied: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ImportReport:
    path: Path
    snapshot_ts: int
    tables: list[TableImport] = field(default_factory=list)
    #: Tables of the export the config excludes (not read).
    skipped: list[str] = field(default_factory=list)
    #: Convex system tables in the export other than _tables and _storage (not read).
    system: list[str] = field(default_factory=list)
    #: Tables the config selects and has models for that the export does not hold.
    absent: list[str] = field(default_factory=list)
    #: The ``_storage`` listings: files in the export, not copied.
    storage: list[StorageListing] = field(default_factory=list)
    tail_started: bool = False

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def storage_files(self) -> int:
        return sum(s.files for s in self.storage)

    @property
    def storage_bytes(self) -> int:
        return sum(s.bytes for s in self.storage)


def plan_import(
    export: ExportZip, config: MirrorConfig
) -> tuple[list[tuple[ExportTable, type[MirrorDocument]]], list[str]]:
    """Pair each selected table with its model; the tables the config skips.

    Raises ``UnknownEntity`` naming every selected table without a model.
    """
    models = {m.mirror.qualified_convex_name: m for m in registered_mirrors()}
    plan: list[tuple[ExportTable, type[MirrorDocument]]] = []
    skipped: list[str] = []
    unknown: list[str] = []
    for table in export.tables:
        name = table.qualified_name
        if not config.selects(name):
            skipped.append(name)
        elif name in models:
            plan.append((table, models[name]))
        else:
            unknown.append(name)
    if unknown:
        raise UnknownEntity(
            f"{export.path}: unknown table{'s' if len(unknown) > 1 else ''}"
            f" {', '.join(unknown)}: no mirror model is registered for"
            f" {'them' if len(unknown) > 1 else 'it'} (re-run `migrationkit introspect`,"
            " or list them in exclude_tables); nothing was imported"
        )
    return plan, skipped


def _check_ts(snapshot_ts: int) -> int:
    if isinstance(snapshot_ts, bool) or not isinstance(snapshot_ts, int):
        raise ValidationFailed(f"snapshot_ts is an integer, not {type(snapshot_ts).__name__}")
    if not 0 <= snapshot_ts <= _INT64_MAX:
        raise ValidationFailed(f"snapshot_ts must be between 0 and {_INT64_MAX}")
    return snapshot_ts


def import_zip(
    engine: Engine,
    path: Path | str,
    config: MirrorConfig | None = None,
    *,
    snapshot_ts: int = 0,
    start_tail: bool = False,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Import the export ZIP at ``path`` into the mirror tables, in one transaction.

    The models must be registered already (``loading.import_models``).
    Raises ``ExportUnreadable`` (a damaged ZIP, an unreadable line),
    ``ValidationFailed`` (a value that does not fit its column: table, line
    and field named), ``UnknownEntity`` (a selected table without a model);
    after any of them nothing was written.
    """
    config = config or MirrorConfig()
    ts = _check_ts(snapshot_ts)
    with ExportZip(path) as export:
        plan, skipped = plan_import(export, config)
        in_export = {t.qualified_name for t in export.tables}
        report = ImportReport(
            path=export.path,
            snapshot_ts=ts,
            skipped=skipped,
            system=export.skipped_system,
            absent=sorted(
                m.mirror.qualified_convex_name
                for m in registered_mirrors()
                if config.selects(m.mirror.qualified_convex_name)
                and m.mirror.qualified_convex_name not in in_export
            ),
            storage=export.storage,
        )
        writer = MirrorWriter(engine)
        with translated_errors(), engine.begin() as conn:
            for table, model in plan:
                result = TableImport(
                    table.qualified_name, model.mirror.qualified_pg_name, table.format
                )
                started = time.perf_counter()
                rows = _rows(export, table, model, ts, result, progress)
                result.applied = writer.load(conn, model, rows, snapshot=True)
                result.seconds = time.perf_counter() - started
                report.tables.append(result)
                if progress is not None:
                    progress.update(result.table, result.rows, done=True)
            if start_tail:
                CursorStore(engine).save_in(conn, TAIL_CURSOR, ts)
                report.tail_started = True
    return report


def _rows(
    export: ExportZip,
    table: ExportTable,
    model: type[MirrorDocument],
    ts: int,
    result: TableImport,
    progress: ImportProgress | None,
) -> Iterator[Row]:
    """The table's documents as checked rows, one at a time."""
    make = row_maker(model).document_row
    place = f"{export.path}:{table.documents_member} line "
    count = 0
    for number, document in export.documents(table):
        doc_id = document["_id"]
        try:
            row = make(doc_id, ts, document)
        except ValidationFailed:
            # Made again, to name the place: writing it for every row would cost more.
            make(doc_id, ts, document, place + str(number))
            raise
        yield row
        count += 1
        if count % _PROGRESS_EVERY == 0:
            result.rows = count
            if progress is not None:
                progress.update(table.qualified_name, count, done=False)
    result.rows = count
