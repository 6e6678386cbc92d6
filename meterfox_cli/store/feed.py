"""Reading requests one by one, in the order they were recorded: `meterfox tail`, the
dashboard's Live page and `meterfox export`, on either backend. All only read (a read-only
connection works while `serve` writes, thanks to WAL or PostgreSQL's MVCC), and stream: rows
are fetched as they are used, never all held in memory.

Following (`Cursor`) delivers every committed row once, even when row ids commit out of
order: PostgreSQL takes a row's id at INSERT and shows the row at COMMIT, so another daemon's
lower id may appear after a higher one was read. A follower delivers rows past such a gap at
once and keeps watching the gap for GAP_WAIT_S; an id still missing then is given up (rolled
back, skipped by a conflicting insert, or deleted). SQLite's single writer commits in id order:
there a gap is only a deleted row, and waiting on it changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from meterfox_cli.store.dialect import LedgerConnection, dialect_of, streamed
from meterfox_cli.store.rows import LINE_COLUMNS, RequestLine, request_lines, tags_column
from meterfox_cli.store.select import NO_FILTERS, Filters, TimeRange, filter_sql, window_sql


def _where(filters: Filters, extra: list[str], params: list[object]) -> tuple[str, list[object]]:
    clauses, filter_params = filter_sql(filters, "r")
    clauses = [*clauses, *extra]
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), [*filter_params, *params]


def latest(conn: LedgerConnection, limit: int, filters: Filters = NO_FILTERS) -> list[RequestLine]:
    """The last `limit` requests recorded, oldest first."""
    if limit <= 0:
        return []
    where, params = _where(filters, [], [])
    sql = f"SELECT {LINE_COLUMNS} FROM requests r {where} ORDER BY r.rowid DESC LIMIT ?"
    lines = list(request_lines(conn.execute(sql, [*params, limit])))
    return lines[::-1]


def last_rowid(conn: LedgerConnection) -> int:
    return conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM requests").fetchone()[0]


def after(
    conn: LedgerConnection, rowid: int, filters: Filters = NO_FILTERS, limit: int = 1000
) -> list[RequestLine]:
    """Requests recorded after `rowid` (rowids grow as records are committed), oldest first."""
    where, params = _where(filters, ["r.rowid > ?"], [rowid])
    sql = f"SELECT {LINE_COLUMNS} FROM requests r {where} ORDER BY r.rowid LIMIT ?"
    return list(request_lines(conn.execute(sql, [*params, limit])))


GAP_WAIT_S = 10.0  # how long a missing row id may take to commit after a later one was read
START_SPAN = 1000  # row ids below the newest that may still be uncommitted when a follower starts


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a follower is. Every row id up to `low` was delivered or given up; above it,
    `above` were delivered past a gap; each (id, since) of `marks` says that ids missing below
    `id` have been missing since `since` (a clock value)."""

    low: int
    above: frozenset[int] = frozenset()
    marks: tuple[tuple[int, float], ...] = ()

    def advanced(self, delivered: list[int], now: float) -> Cursor:
        """After delivering `delivered` at `now`: gaps that waited GAP_WAIT_S are given up."""
        above = self.above.union(delivered)
        marks = self.marks
        if above and (not marks or marks[-1][0] < max(above)):
            marks = (*marks, (max(above), now))
        low = max([self.low, *(top for top, since in marks if now - since >= GAP_WAIT_S)])
        while low + 1 in above:
            low += 1
        return Cursor(
            low,
            frozenset(rowid for rowid in above if rowid > low),
            tuple((top, since) for top, since in marks if top > low),
        )


def cursor_at_end(conn: LedgerConnection, now: float) -> Cursor:
    """A cursor past every row committed now, still waiting on the ids of the last START_SPAN
    that are missing (an insert not committed yet)."""
    top = last_rowid(conn)
    low = max(top - START_SPAN, 0)
    present = [row[0] for row in conn.execute("SELECT rowid FROM requests WHERE rowid > ?", [low])]
    return Cursor(low).advanced(present, now)


def read_new(
    conn: LedgerConnection,
    cursor: Cursor,
    now: float,
    filters: Filters = NO_FILTERS,
    limit: int = 1000,
) -> tuple[list[RequestLine], Cursor]:
    """Requests committed since `cursor` and not yet delivered, in row id order (up to
    `limit`), and the cursor after them."""
    rows = after(conn, cursor.low, filters, limit + len(cursor.above))
    new = [line for line in rows if line.rowid not in cursor.above][:limit]
    return new, cursor.advanced([line.rowid for line in new], now)


def follow(
    conn: LedgerConnection,
    cursor: Cursor,
    filters: Filters = NO_FILTERS,
    *,
    interval: float = 0.5,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[RequestLine]]:
    """Batches of new requests as they are committed, polling every `interval` seconds,
    until `deadline` (a `clock()` value) passes, or forever. Empty batches are not yielded."""
    while deadline is None or clock() < deadline:
        batch, cursor = read_new(conn, cursor, clock(), filters)
        if batch:
            yield batch
            continue
        wait = interval if deadline is None else min(interval, max(deadline - clock(), 0))
        sleep(wait)


def export_rows(
    conn: LedgerConnection, window: TimeRange, filters: Filters = NO_FILTERS
) -> Iterator[RequestLine]:
    """Every request in the window with its tags, oldest first, fetched as iterated."""
    window_clause, window_params = window_sql(window)
    where, params = _where(filters, [window_clause] if window_clause else [], window_params)
    tags = tags_column(dialect_of(conn))
    sql = f"SELECT {LINE_COLUMNS}, {tags} FROM requests r {where} ORDER BY r.ts, r.rowid"
    cursor = streamed(conn, sql, params)
    try:
        yield from request_lines(cursor)
    finally:
        cursor.close()
