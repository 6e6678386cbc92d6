"""Reading requests one by one, in the order they were recorded: `meterfox tail` and
`meterfox export`. Both only read (a read-only connection works while `serve` writes, thanks to
WAL), and both stream: rows are fetched as they are used, never all held in memory.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from meterfox_cli.store.select import NO_FILTERS, Filters, TimeRange, filter_sql, window_sql

_COLUMNS = (
    "r.rowid, r.id, r.ts, r.day, r.provider, r.model, r.endpoint, r.method, r.status, "
    "r.outcome, r.streamed, r.key_name, r.ttfb_ms, r.latency_ms, r.usage_known, "
    "r.input_tokens, r.cached_tokens, r.cache_write_tokens, r.output_tokens, "
    "r.reasoning_tokens, r.cost_nanousd, r.cost_source"
)
_TAGS = "(SELECT json_group_object(t.name, t.value) FROM request_tags t WHERE t.request_id = r.id)"


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One recorded request, as `tail` shows it and `export` writes it."""

    rowid: int
    id: str
    ts: float
    day: str
    provider: str
    model: str | None
    endpoint: str
    method: str
    status: int
    outcome: str
    streamed: bool
    key_name: str
    ttfb_ms: float | None
    latency_ms: float
    usage_known: bool
    input_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanousd: int | None
    cost_source: str
    tags: str = "{}"  # a JSON object

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self.cost_nanousd is None else Decimal(self.cost_nanousd).scaleb(-9)


def _line(row: tuple) -> RequestLine:
    values = list(row)
    values[10] = bool(values[10])  # streamed
    values[14] = bool(values[14])  # usage_known
    if len(values) > 22 and values[22] is None:
        values[22] = "{}"
    return RequestLine(*values)


def _where(filters: Filters, extra: list[str], params: list[object]) -> tuple[str, list[object]]:
    clauses, filter_params = filter_sql(filters, "r")
    clauses = [*clauses, *extra]
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), [*filter_params, *params]


def latest(
    conn: sqlite3.Connection, limit: int, filters: Filters = NO_FILTERS
) -> list[RequestLine]:
    """The last `limit` requests recorded, oldest first."""
    if limit <= 0:
        return []
    where, params = _where(filters, [], [])
    sql = f"SELECT {_COLUMNS} FROM requests r {where} ORDER BY r.rowid DESC LIMIT ?"
    rows = conn.execute(sql, [*params, limit]).fetchall()
    return [_line(row) for row in reversed(rows)]


def last_rowid(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT IFNULL(MAX(rowid), 0) FROM requests").fetchone()[0]


def after(
    conn: sqlite3.Connection, rowid: int, filters: Filters = NO_FILTERS, limit: int = 1000
) -> list[RequestLine]:
    """Requests recorded after `rowid` (rowids grow as records are committed), oldest first."""
    where, params = _where(filters, ["r.rowid > ?"], [rowid])
    sql = f"SELECT {_COLUMNS} FROM requests r {where} ORDER BY r.rowid LIMIT ?"
    return [_line(row) for row in conn.execute(sql, [*params, limit])]


def follow(
    conn: sqlite3.Connection,
    rowid: int,
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
        batch = after(conn, rowid, filters)
        if batch:
            rowid = batch[-1].rowid
            yield batch
            continue
        wait = interval if deadline is None else min(interval, max(deadline - clock(), 0))
        sleep(wait)


def export_rows(
    conn: sqlite3.Connection, window: TimeRange, filters: Filters = NO_FILTERS
) -> Iterator[RequestLine]:
    """Every request in the window with its tags, oldest first, fetched as iterated."""
    window_clause, window_params = window_sql(window)
    where, params = _where(filters, [window_clause] if window_clause else [], window_params)
    sql = f"SELECT {_COLUMNS}, {_TAGS} FROM requests r {where} ORDER BY r.ts, r.rowid"
    cursor = conn.execute(sql, params)
    try:
        while batch := cursor.fetchmany(2000):
            for row in batch:
                yield _line(row)
    finally:
        cursor.close()
