"""Backfill: every mirrored table copied from one consistent Convex snapshot.

All tables are read at one ``snapshot`` timestamp: the first page fixes it
and every later page of every table passes it back, so the copy is one cut
of the deployment however many writes land meanwhile. Each page's rows and
the backfill's place (``sync_backfills``: snapshot, the next page's cursor,
rows so far) are written in one transaction, so a backfill killed at any
point resumes at the page after the last one committed: no row is lost, and
none is written twice (the ``_ts`` guard would make a second write harmless
anyway).

When every table is in, the change-feed tail's cursor is set to the
snapshot timestamp: ``document_deltas`` is exclusive of its cursor, so the
tail starts with the first commit after the cut, with no gap and no
duplicate, for every mirrored table at once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.errors import BadReply, MigrationKitError
from migrationkit.mirror.columns import mirror_columns
from migrationkit.mirror.feed import revision_from_export
from migrationkit.mirror.model import MirrorDocument
from migrationkit.mirror.writer import MirrorWriter
from migrationkit.schema.metadata import metadata
from migrationkit.schema.pipeline_tables import sync_backfills_table

__all__ = ["TAIL_CURSOR", "Backfill", "BackfillReport", "TableProgress"]

#: The ``sync_cursors`` name of the mirror tables' change-feed tail.
TAIL_CURSOR = "convex_mirror"
#: The system query Convex's dashboard counts a table's documents with.
TABLE_SIZE_QUERY = "_system/frontend/tableSize:default"


@dataclass
class TableProgress:
    """One table's state, as the progress display shows it."""

    table: str
    rows: int = 0
    done: bool = False
    #: Rows copied in this run (not before a resume), and since when.
    rows_this_run: int = 0
    started: float = field(default_factory=time.monotonic)
    #: The table's size when the copy began, where the deployment tells it
    #: (for the ETA; live documents, so the snapshot may hold a few more or less).
    expected: int | None = None

    @property
    def rows_per_second(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.rows_this_run / elapsed if elapsed > 0 else 0.0


@dataclass
class BackfillReport:
    snapshot: int
    tables: list[TableProgress]
    #: Tables that were already done before this run (a resume).
    resumed: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


ProgressCallback = Callable[[TableProgress], None]


def referenced_first(models: Sequence[type[MirrorDocument]]) -> list[type[MirrorDocument]]:
    """Models by name, each after the tables its foreign keys point into.

    Each page commits on its own, so a table with a foreign key (asked for
    in the config) must come after its target: a deferred constraint only
    waits for the end of one transaction.
    """
    by_name = {m.mirror.qualified_convex_name: m for m in models}
    ordered: list[type[MirrorDocument]] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        model = by_name[name]
        if model in ordered or name in visiting:
            return  # done, or a cycle: name order decides within it
        visiting.add(name)
        for column in mirror_columns(model):
            ref = column.refers_to
            if ref is not None and ref.foreign_key and ref.table in by_name:
                visit(ref.table)
        ordered.append(model)

    for name in sorted(by_name):
        visit(name)
    return ordered


class Backfill:
    """Copies the mirrored tables of ``models`` from ``client`` into PostgreSQL."""

    def __init__(
        self,
        client: ConvexClient,
        engine: Engine,
        models: Sequence[type[MirrorDocument]],
        *,
        name: str = "default",
        page_size: int | None = None,
        on_page: ProgressCallback | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.models = referenced_first(models)
        self.name = name
        self.writer = MirrorWriter(engine)
        self.state = sync_backfills_table(metadata)
        # pageSize only shrinks pages: a test's knob on the local backend.
        self._extra: dict[str, Any] = {"pageSize": page_size} if page_size else {}
        self.on_page = on_page

    def forget(self) -> None:
        """Drop this backfill's saved place: the next run starts a new snapshot."""
        with translated_errors(), self.engine.begin() as conn:
            conn.execute(delete(self.state).where(self.state.c.name == self.name))

    def saved(self) -> dict[str, dict[str, Any]]:
        """Per Convex table: the saved snapshot, page cursor, rows and done flag."""
        s = self.state
        with translated_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(s.c.convex_table, s.c.snapshot, s.c.page_cursor, s.c.rows, s.c.done).where(
                    s.c.name == self.name
                )
            ).all()
        return {
            r[0]: {"snapshot": int(r[1]), "cursor": r[2], "rows": int(r[3]), "done": bool(r[4])}
            for r in rows
        }

    def run(self) -> BackfillReport:
        saved = self.saved()
        snapshots = {entry["snapshot"] for entry in saved.values()}
        if len(snapshots) > 1:
            raise BadReply(
                f"backfill {self.name!r} has tables saved at different snapshots; run it with"
                " --restart"
            )
        snapshot: int | None = snapshots.pop() if snapshots else None
        report_tables: list[TableProgress] = []
        resumed: list[str] = []
        for model in self.models:
            table = model.mirror.qualified_convex_name
            entry = saved.get(table)
            progress = TableProgress(table, rows=entry["rows"] if entry else 0)
            report_tables.append(progress)
            if entry and entry["done"]:
                progress.done = True
                resumed.append(table)
                if self.on_page:
                    self.on_page(progress)
                continue
            progress.expected = self.table_size(model)
            snapshot = self._copy_table(
                model, progress, snapshot, entry["cursor"] if entry else None
            )
        if snapshot is None:  # nothing selected: still pin the cut the tail starts from
            snapshot = self.client.list_snapshot(extra_params={"pageSize": 1}).snapshot
        with translated_errors(), self.engine.begin() as conn:
            self._start_tail(conn, snapshot)
        return BackfillReport(snapshot=snapshot, tables=report_tables, resumed=resumed)

    def table_size(self, model: type[MirrorDocument]) -> int | None:
        """How many documents the table holds now, if the deployment says.

        Streaming export does not tell; the dashboard's system query
        ``_system/frontend/tableSize`` does, for the app's own tables (a
        component's are addressed by an internal id). Anything else (no
        such query, no rights) means no ETA, never a failed backfill.
        """
        if model.mirror.component:
            return None
        try:
            size = self.client.query(
                TABLE_SIZE_QUERY, {"componentId": None, "tableName": model.mirror.convex_table}
            )
        except MigrationKitError:
            return None
        if isinstance(size, bool) or not isinstance(size, int | float) or size < 0:
            return None
        return int(size)

    def _copy_table(
        self,
        model: type[MirrorDocument],
        progress: TableProgress,
        snapshot: int | None,
        cursor: str | None,
    ) -> int:
        spec = model.mirror
        extra = dict(self._extra)
        if spec.component:
            extra["component"] = spec.component
        while True:
            page = self.client.list_snapshot(
                snapshot=snapshot,
                cursor=cursor,
                table_name=spec.convex_table,
                extra_params=extra or None,
            )
            if snapshot is None:
                snapshot = page.snapshot
            revisions = [revision_from_export(value) for value in page.values]
            for revision in revisions:
                if revision.table != progress.table:
                    raise BadReply(
                        f"list_snapshot for {progress.table} returned a row of {revision.table}"
                    )
            done = not page.has_more
            rows_after = progress.rows + len(revisions)
            save = functools.partial(
                self._save,
                table=progress.table,
                snapshot=snapshot,
                cursor=page.cursor,
                rows=rows_after,
                done=done,
            )
            self.writer.write(revisions, after=save)
            progress.rows = rows_after
            progress.rows_this_run += len(revisions)
            progress.done = done
            if self.on_page:
                self.on_page(progress)
            if done:
                return snapshot
            cursor = page.cursor

    def _save(
        self,
        conn: Connection,
        table: str,
        snapshot: int,
        cursor: str | None,
        rows: int,
        done: bool,
    ) -> None:
        s = self.state
        stmt = pg_insert(s).values(
            name=self.name,
            convex_table=table,
            snapshot=snapshot,
            page_cursor=cursor,
            rows=rows,
            done=done,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[s.c.name, s.c.convex_table],
            set_={
                "page_cursor": stmt.excluded.page_cursor,
                "rows": stmt.excluded.rows,
                "done": stmt.excluded.done,
                "updated_at": func.now(),
            },
        )
        conn.execute(stmt)

    def _start_tail(self, conn: Connection, snapshot: int) -> None:
        CursorStore(self.engine).save_in(conn, TAIL_CURSOR, snapshot)
