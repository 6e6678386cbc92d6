"""Report queries. Grouping and sums happen in SQLite; money stays in integer nano-USD."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal

from meterfox_cli.errors import MeterFoxError

UNKNOWN_GROUP = "(unknown)"
UNTAGGED_GROUP = "(untagged)"

_COLUMNS = {
    "model": "r.model",
    "provider": "r.provider",
    "endpoint": "r.endpoint",
    "day": "r.day",
    "key": "r.key_name",
}


@dataclass(frozen=True, slots=True)
class ReportRow:
    group: str
    requests: int
    errors: int
    input_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None  # None when no request in the group could be priced
    unpriced_requests: int


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: float | None = None  # unix seconds, inclusive
    until: float | None = None  # unix seconds, exclusive


def group_by(conn: sqlite3.Connection, by: str, window: TimeRange) -> list[ReportRow]:
    """One row per group, most expensive first."""
    join, key, params = _grouping(by)
    where, where_params = _window(window)
    sql = f"""
        SELECT COALESCE({key}, ?) AS grp,
               COUNT(*),
               SUM(r.outcome != 'ok' OR r.status >= 400),
               SUM(r.input_tokens), SUM(r.cached_tokens), SUM(r.cache_write_tokens),
               SUM(r.output_tokens), SUM(r.reasoning_tokens),
               SUM(r.cost_nanousd),
               SUM(r.cost_source = 'unpriced')
        FROM requests r {join}
        {where}
        GROUP BY grp
        ORDER BY SUM(r.cost_nanousd) IS NULL, SUM(r.cost_nanousd) DESC, COUNT(*) DESC, grp
    """
    default = UNTAGGED_GROUP if by.startswith("tag:") else UNKNOWN_GROUP
    rows = conn.execute(sql, (default, *params, *where_params)).fetchall()
    return [_row(row) for row in rows]


def _row(row: tuple) -> ReportRow:
    group, requests, errors, inp, cached, write, out, reasoning, nano, unpriced = row
    return ReportRow(
        group=group,
        requests=requests,
        errors=errors or 0,
        input_tokens=inp or 0,
        cached_tokens=cached or 0,
        cache_write_tokens=write or 0,
        output_tokens=out or 0,
        reasoning_tokens=reasoning or 0,
        cost_usd=None if nano is None else Decimal(nano).scaleb(-9),
        unpriced_requests=unpriced or 0,
    )


def _grouping(by: str) -> tuple[str, str, tuple[str, ...]]:
    if by.startswith("tag:"):
        name = by[4:].strip().lower()
        if not name:
            raise MeterFoxError("--by tag:NAME needs a tag name, e.g. --by tag:feature")
        join = "LEFT JOIN request_tags t ON t.request_id = r.id AND t.name = ?"
        return join, "t.value", (name,)
    if by not in _COLUMNS:
        known = ", ".join([*_COLUMNS, "tag:NAME"])
        raise MeterFoxError(f"cannot group by {by!r}; use one of: {known}")
    return "", _COLUMNS[by], ()


def _window(window: TimeRange) -> tuple[str, tuple[float, ...]]:
    clauses, params = [], []
    if window.since is not None:
        clauses.append("r.ts >= ?")
        params.append(window.since)
    if window.until is not None:
        clauses.append("r.ts < ?")
        params.append(window.until)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
