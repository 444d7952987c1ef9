"""Compare one table of PostgreSQL with Convex at one cut, where the rows are.

Convex cannot checksum on its side: its documents at the cut are read once
(``list_snapshot`` pinned to the cut) and COPYed into a temporary table
shaped like the PostgreSQL table, through the same conversion the backfill
uses. From there everything runs in PostgreSQL, in one REPEATABLE READ
transaction, and only aggregates and the differing rows come back:

1. rows PostgreSQL holds from after the cut (a newer ``_ts`` or
   ``updated_at``) cannot be compared with the cut: their keys are set
   aside on both sides, and counted;
2. each row of both sides is hashed once (``md5`` of the row's canonical
   text, the same expression over the same column types on both sides) into
   a keyed, indexed table of hashes; per workspace, both sides' row counts
   and an order-independent checksum (the sum of the hashes);
3. where the checksums differ, key ranges are split at their median and
   checksummed again (bisection, as cross-database diff tools do) until a
   range is small enough to list its keys and hashes;
4. each differing key is classified: missing from PostgreSQL, extra in it,
   behind (an older version), or differing at the same version, with the
   fields that differ;
5. rows missing, extra or behind may be replication in flight: they are
   read again from PostgreSQL for up to ``settle`` seconds, and only those
   that stay different are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from sqlalchemy import Connection, Engine, text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.postgres.compiled import driver_errors
from migrationkit.adapters.postgres.errors import translated_errors
from migrationkit.mirror.writer import fast_bytea
from migrationkit.schema.identifiers import qualified, quote_ident
from migrationkit.verify.targets import VerifyTarget

__all__ = ["Difference", "TableResult", "WorkspaceCounts", "compare_table"]

Kind = Literal["missing", "extra", "behind", "differs"]
Key = tuple[Any, ...]

#: ``progress(table, documents read from Convex, done)``
ReadProgress = Callable[[str, int, bool], None]

_STAGE = "mk_verify_convex"


@dataclass(frozen=True)
class Difference:
    key: Key
    workspace: str | None
    kind: Kind
    #: For ``differs``: the columns whose values differ.
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f" in {self.workspace}" if self.workspace else ""
        what = {
            "missing": "missing from PostgreSQL",
            "extra": "in PostgreSQL only",
            "behind": "older in PostgreSQL",
            "differs": f"differs in {', '.join(self.fields)}",
        }[self.kind]
        return f"{'/'.join(str(k) for k in self.key)}{where}: {what}"


@dataclass
class WorkspaceCounts:
    convex: int = 0
    postgres: int = 0
    checksums_equal: bool = True


@dataclass
class TableResult:
    name: str
    cut: int
    convex_rows: int = 0
    postgres_rows: int = 0
    #: Rows PostgreSQL changed after the cut: set aside on both sides.
    changed_after_cut: int = 0
    workspaces: dict[str | None, WorkspaceCounts] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    #: Key ranges checksummed while narrowing down.
    ranges_checked: int = 0
    #: Rows that differed at the cut and were in step once replication caught up.
    settled: int = 0

    @property
    def passed(self) -> bool:
        # Every key that differs is located, so equal stores have no
        # differences; the counts are the cut's, and rows replication
        # delivered while settling may still make them differ.
        return not self.differences

    @property
    def row_count_diff(self) -> int:
        return self.postgres_rows - self.convex_rows


class _Sql:
    """The statements for one target; identifiers quoted, values bound."""

    def __init__(self, target: VerifyTarget, workspace: str | None) -> None:
        self.target = qualified(target.table)
        self.keys = ", ".join(quote_ident(k) for k in target.key)
        self.key_row = f"ROW({self.keys})" if len(target.key) > 1 else self.keys
        self.hash = f"md5(ROW({', '.join(quote_ident(c) for c in target.compared)})::text)"
        self.version = quote_ident(target.version)
        self.workspace_col = quote_ident(target.workspace) if target.workspace else "NULL::text"
        changed = target.changed_after
        scope = (
            f" AND {quote_ident(target.workspace)} = :workspace"
            if workspace and target.workspace
            else ""
        )
        # PostgreSQL's rows that are documents at the cut, and the staged Convex ones.
        self.sources = {
            "postgres": (self.target, f"({target.live}) AND NOT ({changed}){scope}"),
            "convex": (_STAGE, "TRUE"),
        }
        # Each side's keys with their hash, version and workspace, computed
        # once (``_hash_sides``): every range checksum then sums a column.
        self.sides = {side: (f"mk_verify_{side}_hashes", "TRUE") for side in self.sources}
        self.changed_after = changed

    def range_filter(self, lo: Key | None, hi: Key | None) -> tuple[str, dict[str, Any]]:
        parts, params = [], {}
        for bound, op, name in ((lo, ">=", "lo"), (hi, "<", "hi")):
            if bound is None:
                continue
            names = [f"{name}{i}" for i in range(len(bound))]
            params.update(dict(zip(names, bound, strict=True)))
            value = (
                f"ROW({', '.join(':' + n for n in names)})" if len(bound) > 1 else f":{names[0]}"
            )
            parts.append(f"{self.key_row} {op} {value}")
        return (" AND ".join(parts) or "TRUE"), params


def compare_table(
    engine: Engine,
    client: ConvexClient,
    target: VerifyTarget,
    cut: int,
    *,
    workspace: str | None = None,
    settle: float = 5.0,
    leaf: int = 64,
    page_size: int | None = None,
    progress: ReadProgress | None = None,
) -> TableResult:
    """Compare ``target`` at the Convex cut ``cut`` (nanoseconds).

    ``progress(table, rows, done)`` hears how many Convex documents have been
    read: reading Convex is most of a large table's time.
    """
    result = TableResult(target.name, cut)
    sql = _Sql(target, workspace)
    base = {"cut": target.cut_value(cut), "workspace": workspace}
    with translated_errors(), engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            _stage_convex(conn, client, target, cut, workspace, page_size, progress=progress)
            result.changed_after_cut = _set_aside(conn, target, sql, base)
            _hash_sides(conn, sql, base)
            _count(conn, sql, base, result)
            candidates = _narrow(conn, sql, base, result, leaf)
            differs = _fields(conn, target, sql, [c for c in candidates if c.kind == "differs"])
    in_flight = [c for c in candidates if c.kind != "differs"]
    settled = in_flight
    deadline = time.monotonic() + settle
    while settled:
        # Either store may be the one behind: PostgreSQL while Convex leads,
        # Convex while PostgreSQL does (pg_primary). Read PostgreSQL again
        # first (cheap), then both at a fresh cut, for the keys still open.
        settled = _settle(engine, target, sql, settled, min(1.0, _left(deadline)))
        if settled and _left(deadline) > 0:
            settled = _confirm(engine, client, target, sql, settled, workspace, page_size)
        if _left(deadline) <= 0:
            break
    result.settled = len(in_flight) - len(settled)
    result.differences = sorted(
        [*differs, *(c.difference for c in settled)], key=lambda d: (d.kind, d.key)
    )
    return result


def _stage_convex(
    conn: Connection,
    client: ConvexClient,
    target: VerifyTarget,
    cut: int,
    workspace: str | None,
    page_size: int | None,
    only: set[Key] | None = None,
    progress: ReadProgress | None = None,
) -> None:
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_STAGE} (LIKE {_Sql(target, None).target}) ON COMMIT DROP"
    )
    columns = ", ".join(quote_ident(c) for c in target.staged)
    at = [target.staged.index(k) for k in target.key]
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    with driver_errors(conn), driver.cursor() as cursor:
        fast_bytea(cursor)
        with cursor.copy(f"COPY {_STAGE} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(target.copy_types))
            read = 0
            if progress is not None:
                progress(target.name, 0, False)  # the clock of its rate starts here
            for value in _convex_rows(client, target, cut, page_size):
                row = target.row_of(value, workspace)
                if row is not None and (only is None or tuple(row[i] for i in at) in only):
                    copy.write_row(row)
                read += 1
                if progress is not None and read % 1000 == 0:
                    progress(target.name, read, False)
            if progress is not None:
                progress(target.name, read, True)
    conn.exec_driver_sql(
        f"CREATE INDEX ON {_STAGE} ({', '.join(quote_ident(k) for k in target.key)})"
    )
    conn.exec_driver_sql(f"ANALYZE {_STAGE}")


def _convex_rows(
    client: ConvexClient, target: VerifyTarget, cut: int, page_size: int | None
) -> Iterator[dict[str, Any]]:
    extra: dict[str, Any] = {"pageSize": page_size} if page_size else {}
    if target.component:
        extra["component"] = target.component
    cursor: str | None = None
    while True:
        page = client.list_snapshot(
            snapshot=cut, cursor=cursor, table_name=target.convex_table, extra_params=extra or None
        )
        yield from page.values
        if not page.has_more:
            return
        cursor = page.cursor


def _set_aside(conn: Connection, target: VerifyTarget, sql: _Sql, params: dict[str, Any]) -> int:
    """Drop from the Convex side the keys PostgreSQL wrote after the cut; how many."""
    join = " AND ".join(f"s.{quote_ident(k)} = t.{quote_ident(k)}" for k in target.key)
    statement = (
        f"DELETE FROM {_STAGE} s USING {sql.target} t"  # noqa: S608
        f" WHERE {join} AND t.{sql.changed_after}"
    )
    removed = conn.execute(text(statement), params).rowcount
    return int(removed)


def _hash_sides(conn: Connection, sql: _Sql, params: dict[str, Any]) -> None:
    """Both sides' rows as (key, workspace, version, hash, h): hashed once, indexed by key."""
    for side, (relation, where) in sql.sources.items():
        table = sql.sides[side][0]
        conn.execute(
            text(
                f"CREATE TEMPORARY TABLE {table} ON COMMIT DROP AS"  # noqa: S608
                f" SELECT {sql.keys}, ws, v, hash,"
                " ('x' || left(hash, 16))::bit(64)::bigint::numeric AS h"
                f" FROM (SELECT {sql.keys}, {sql.workspace_col} AS ws, {sql.version} AS v,"
                f" {sql.hash} AS hash FROM {relation} WHERE {where}) s"
            ),
            params,
        )
        conn.exec_driver_sql(f"CREATE INDEX ON {table} ({sql.keys})")
        conn.exec_driver_sql(f"ANALYZE {table}")


def _aggregate(sql: _Sql) -> str:
    return "count(*), coalesce(sum(h), 0)"


def _count(conn: Connection, sql: _Sql, params: dict[str, Any], result: TableResult) -> None:
    sums: dict[tuple[str | None, str], Any] = {}
    for side, (relation, where) in sql.sides.items():
        rows = conn.execute(
            text(
                f"SELECT ws, {_aggregate(sql)} FROM {relation}"  # noqa: S608
                f" WHERE {where} GROUP BY 1"
            ),
            params,
        ).all()
        for workspace, count, checksum in rows:
            setattr(result.workspaces.setdefault(workspace, WorkspaceCounts()), side, int(count))
            sums[(workspace, side)] = checksum
    for workspace, counts in result.workspaces.items():
        counts.checksums_equal = sums.get((workspace, "convex")) == sums.get(
            (workspace, "postgres")
        )
    result.convex_rows = sum(c.convex for c in result.workspaces.values())
    result.postgres_rows = sum(c.postgres for c in result.workspaces.values())


@dataclass
class _Candidate:
    key: Key
    workspace: str | None
    kind: Kind
    convex: tuple[str, int] | None  # (hash, version) at the cut
    postgres: tuple[str, int] | None

    @property
    def difference(self) -> Difference:
        return Difference(self.key, self.workspace, self.kind)


def _range_summary(
    conn: Connection, sql: _Sql, params: dict[str, Any], lo: Key | None, hi: Key | None
) -> dict[str, tuple[int, Any]]:
    where, bounds = sql.range_filter(lo, hi)
    out = {}
    for side, (relation, side_where) in sql.sides.items():
        count, checksum = conn.execute(
            text(f"SELECT {_aggregate(sql)} FROM {relation} WHERE {side_where} AND {where}"),  # noqa: S608
            params | bounds,
        ).one()
        out[side] = (int(count), checksum)
    return out


def _median(
    conn: Connection,
    sql: _Sql,
    params: dict[str, Any],
    side: str,
    lo: Key | None,
    hi: Key | None,
    count: int,
) -> Key | None:
    relation, side_where = sql.sides[side]
    where, bounds = sql.range_filter(lo, hi)
    row = conn.execute(
        text(
            f"SELECT {sql.keys} FROM {relation} WHERE {side_where} AND {where}"  # noqa: S608
            f" ORDER BY {sql.keys} OFFSET :middle LIMIT 1"
        ),
        params | bounds | {"middle": count // 2},
    ).first()
    return None if row is None else tuple(row)


def _rows_in(
    conn: Connection,
    sql: _Sql,
    params: dict[str, Any],
    side: str,
    lo: Key | None,
    hi: Key | None,
) -> dict[Key, tuple[str, int, str | None]]:
    relation, side_where = sql.sides[side]
    where, bounds = sql.range_filter(lo, hi)
    rows = conn.execute(
        text(
            f"SELECT hash, v, ws, {sql.keys}"  # noqa: S608
            f" FROM {relation} WHERE {side_where} AND {where}"
        ),
        params | bounds,
    ).all()
    return {tuple(r[3:]): (r[0], int(r[1]), r[2]) for r in rows}


def _narrow(
    conn: Connection, sql: _Sql, params: dict[str, Any], result: TableResult, leaf: int
) -> list[_Candidate]:
    found: list[_Candidate] = []
    ranges: list[tuple[Key | None, Key | None]] = [(None, None)]
    while ranges:
        lo, hi = ranges.pop()
        result.ranges_checked += 1
        summary = _range_summary(conn, sql, params, lo, hi)
        if summary["convex"] == summary["postgres"]:
            continue
        larger = max(summary, key=lambda side: summary[side][0])
        count = summary[larger][0]
        middle = _median(conn, sql, params, larger, lo, hi, count) if count > leaf else None
        if middle is not None and middle != lo:
            ranges += [(middle, hi), (lo, middle)]
            continue
        convex = _rows_in(conn, sql, params, "convex", lo, hi)
        postgres = _rows_in(conn, sql, params, "postgres", lo, hi)
        for key in sorted(convex.keys() | postgres.keys()):
            c, p = convex.get(key), postgres.get(key)
            if c is not None and p is not None and c[0] == p[0]:
                continue
            workspace = (c or p)[2] if (c or p) else None  # type: ignore[index]
            found.append(_classify(key, workspace, c, p))
    return [f for f in found if f is not None]


def _classify(
    key: Key,
    workspace: str | None,
    convex: tuple[str, int, str | None] | None,
    postgres: tuple[str, int, str | None] | None,
) -> _Candidate:
    c = None if convex is None else (convex[0], convex[1])
    p = None if postgres is None else (postgres[0], postgres[1])
    if c is None:
        return _Candidate(key, workspace, "extra", c, p)
    if p is None:
        return _Candidate(key, workspace, "missing", c, p)
    if p[1] < c[1]:
        return _Candidate(key, workspace, "behind", c, p)
    return _Candidate(key, workspace, "differs", c, p)


def _key_filter(
    target: VerifyTarget, keys: Sequence[Key], alias: str
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    rows = []
    for i, key in enumerate(keys):
        names = [f"k{i}_{j}" for j in range(len(key))]
        params.update(dict(zip(names, key, strict=True)))
        rows.append(f"({', '.join(':' + n for n in names)})")
    columns = ", ".join(f"{alias}.{quote_ident(k)}" for k in target.key)
    return f"({columns}) IN ({', '.join(rows)})", params


def _fields(
    conn: Connection, target: VerifyTarget, sql: _Sql, candidates: list[_Candidate]
) -> list[Difference]:
    if not candidates:
        return []
    join = " AND ".join(f"s.{quote_ident(k)} = t.{quote_ident(k)}" for k in target.key)
    checks = ", ".join(
        f"CASE WHEN t.{quote_ident(c)} IS DISTINCT FROM s.{quote_ident(c)} THEN '{c}' END"
        for c in target.compared
    )
    where, params = _key_filter(target, [c.key for c in candidates], "t")
    rows = conn.execute(
        text(
            f"SELECT {', '.join('t.' + quote_ident(k) for k in target.key)}, ARRAY[{checks}]"  # noqa: S608
            f" FROM {sql.target} t JOIN {_STAGE} s ON {join} WHERE {where}"
        ),
        params,
    ).all()
    fields = {tuple(r[: len(target.key)]): tuple(f for f in r[-1] if f) for r in rows}
    return [Difference(c.key, c.workspace, "differs", fields.get(c.key, ())) for c in candidates]


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _confirm(
    engine: Engine,
    client: ConvexClient,
    target: VerifyTarget,
    sql: _Sql,
    candidates: list[_Candidate],
    workspace: str | None,
    page_size: int | None,
) -> list[_Candidate]:
    """The candidates on which the stores still differ at a fresh Convex cut."""
    extra = {"component": target.component} if target.component else None
    cut = client.list_snapshot(table_name=target.convex_table, extra_params=extra).snapshot
    keys = {c.key for c in candidates}
    where, params = _key_filter(target, sorted(keys), "t")
    read = (
        f"SELECT {', '.join('t.' + quote_ident(k) for k in target.key)}, {sql.hash}, {sql.version}"  # noqa: S608
        " FROM {relation} t WHERE {where}"
    )
    with translated_errors(), engine.connect() as conn, conn.begin():
        _stage_convex(conn, client, target, cut, workspace, page_size, only=keys)
        convex = {
            tuple(r[: len(target.key)]): tuple(r[-2:])
            for r in conn.execute(text(read.format(relation=_STAGE, where=where)), params)
        }
        live = f"{where} AND ({target.live})"
        postgres = {
            tuple(r[: len(target.key)]): tuple(r[-2:])
            for r in conn.execute(text(read.format(relation=sql.target, where=live)), params)
        }
    return [c for c in candidates if convex.get(c.key) != postgres.get(c.key)]


def _settle(
    engine: Engine, target: VerifyTarget, sql: _Sql, candidates: list[_Candidate], seconds: float
) -> list[_Candidate]:
    """The candidates still different after up to ``seconds`` of replication."""
    deadline = time.monotonic() + seconds
    pending = list(candidates)
    while True:
        where, params = _key_filter(target, [c.key for c in pending], "t")
        with translated_errors(), engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT {', '.join('t.' + quote_ident(k) for k in target.key)}, {sql.hash},"  # noqa: S608
                    f" {sql.version}, ({target.live}) FROM {sql.target} t WHERE {where}"
                ),
                params,
            ).all()
        now = {tuple(r[: len(target.key)]): (r[-3], int(r[-2]), bool(r[-1])) for r in rows}
        pending = [c for c in pending if not _caught_up(c, now.get(c.key))]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.2)


def _caught_up(candidate: _Candidate, now: tuple[str, int, bool] | None) -> bool:
    if candidate.kind == "extra":
        # PostgreSQL held a row Convex did not: fine once it is gone or rewritten.
        return now is None or not now[2] or (candidate.postgres or ("", -1))[1] != now[1]
    assert candidate.convex is not None
    if now is None or not now[2]:
        return False
    hash_, version, _ = now
    # Past the cut's version (a later write reached PostgreSQL), or at it and equal.
    return version > candidate.convex[1] or (
        version == candidate.convex[1] and hash_ == candidate.convex[0]
    )
