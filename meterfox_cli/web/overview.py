"""The Overview's figures, read through `store/queries.build_report` (the query behind
`meterfox report`), so the page and the terminal cannot disagree.

`overview`: one grouped read (day × provider × model × key, from the hourly rollup) gives spend
today / this week / this month, the projected month end, 30 days of daily spend stacked by a
dimension, the top models and keys with their token mix; sums of integer nano-USD, so the month
is exactly `meterfox report`'s total. `providers` (error rate, and latency percentiles from
the latency rollup) and `top_tags` (from the tag rollup, per tag name) are separate reads
the page makes in parallel. These run in the dashboard's read worker, which imports this
module (not `web/routes`, nor aiohttp) to run them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from datetime import date, timedelta

from meterfox_cli.keys.budget import Period, next_period_start, period_start
from meterfox_cli.keys.proxy_keys import list_keys
from meterfox_cli.store.dimensions import label
from meterfox_cli.store.latency import provider_latency
from meterfox_cli.store.queries import ReportRow, build_report
from meterfox_cli.store.select import TimeRange
from meterfox_cli.timewindow import day_start, month_start
from meterfox_cli.web.shapes import key_json, money

DAY_S = 86400
CHART_DAYS = 30
BURN_DAYS = 7  # the projection's burn rate: the average of the last seven whole days
TOP = 8
TAG_NAMES = 3
STACK_BY = ("provider", "model", "key")
_DIMS = ("day", "provider", "model", "key")
_COUNTED = (
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "priced_requests",
    "unpriced_requests",
)


def overview(conn: sqlite3.Connection, by: str = "provider", now: float | None = None) -> dict:
    now = time.time() if now is None else now
    today = date.fromtimestamp(now)
    month_first = date.fromtimestamp(month_start(now))
    week_first = date.fromtimestamp(period_start(Period.WEEK, now))
    chart_first = today - timedelta(days=CHART_DAYS - 1)
    burn_first = today - timedelta(days=BURN_DAYS)
    first = min(month_first, week_first, chart_first, burn_first)
    rows = build_report(conn, _DIMS, TimeRange(day_start(first), None), latency=False).rows

    def since(day: date, before: date | None = None) -> list[ReportRow]:
        low, high = day.isoformat(), before.isoformat() if before else "9999"
        return [row for row in rows if low <= (row.dims[0] or "") < high]

    month = _sum(since(month_first))
    per_day = _sum(since(burn_first, today))["cost_nanousd"] / BURN_DAYS
    left_days = (next_period_start(Period.MONTH, now) - now) / DAY_S
    return {
        "now": now,
        "spend": {
            "today": money(_sum(since(today))["cost_nanousd"]),
            "week": money(_sum(since(week_first))["cost_nanousd"]),
            "month": money(month["cost_nanousd"]),
            "projected_month": money(round(month["cost_nanousd"] + per_day * left_days)),
            "burn_per_day": money(round(per_day)),
        },
        "month": _counts(month),
        "daily": _daily(since(chart_first), by, chart_first),
        "top_models": _top(since(month_first), "model"),
        "top_keys": _top(since(month_first), "key"),
        "keys": [key_json(item) for item in list_keys(conn, now) if item.key.budget],
    }


def providers(conn: sqlite3.Connection, now: float | None = None) -> list[dict]:
    """This month per provider: requests, cost, error rate, and p50/p95 latency from the
    latency rollup (to within half a bucket: store/latency.py)."""
    month = TimeRange(month_start(now), None)
    snapshot = not conn.in_transaction  # one snapshot for the sums and the latencies
    if snapshot:
        conn.execute("BEGIN")
    try:
        report = build_report(conn, ("provider",), month, latency=False)
        latency = provider_latency(conn, month)
    finally:
        if snapshot:
            conn.execute("COMMIT")
    unseen = {"latency_p50_ms": None, "latency_p95_ms": None}
    return [
        {
            "name": row.group,
            "requests": row.requests,
            "errors": row.errors,
            "error_rate": row.errors / row.requests if row.requests else 0.0,
            **latency.get(row.group, unseen),
            "cost": money(row.cost_nanousd),
        }
        for row in report.rows
    ]


def providers_json(conn: sqlite3.Connection) -> dict:
    return {"providers": providers(conn)}


def tags_json(conn: sqlite3.Connection) -> dict:
    return {"tags": top_tags(conn)}


# The first few distinct tag names, one index seek each (a DISTINCT would scan every tag row).
_FIRST_TAG_NAMES = (
    "WITH RECURSIVE names(name) AS (SELECT min(name) FROM request_tags UNION ALL "
    "SELECT (SELECT min(name) FROM request_tags WHERE name > names.name) FROM names "
    "WHERE names.name IS NOT NULL) SELECT name FROM names WHERE name IS NOT NULL LIMIT ?"
)


def top_tags(conn: sqlite3.Connection, now: float | None = None) -> list[dict]:
    """For the first few tag names, their top values by cost this month."""
    month = TimeRange(month_start(now), None)
    names = conn.execute(_FIRST_TAG_NAMES, (TAG_NAMES,)).fetchall()
    found = []
    for (name,) in names:
        rows = build_report(conn, (f"tag:{name}",), month, latency=False).rows[:TOP]
        if rows:
            found.append({"tag": name, "rows": [_named(row.group, _sum([row])) for row in rows]})
    return found


def _sum(rows: Iterable[ReportRow]) -> dict[str, int]:
    total = dict.fromkeys(_COUNTED, 0)
    for row in rows:
        for name in _COUNTED:
            total[name] += getattr(row, name) or 0
    return total


def _mix(sums: dict[str, int]) -> dict[str, int]:
    return {
        "input": sums["input_tokens"],
        "cached": sums["cached_tokens"],
        "output": sums["output_tokens"],
        "reasoning": sums["reasoning_tokens"],
    }


def _counts(sums: dict[str, int]) -> dict[str, object]:
    needing = sums["priced_requests"] + sums["unpriced_requests"]
    return {
        "requests": sums["requests"],
        "errors": sums["errors"],
        "unpriced_requests": sums["unpriced_requests"],
        "unpriced_share": sums["unpriced_requests"] / needing if needing else 0.0,
        "tokens": _mix(sums),
    }


def _named(name: str, sums: dict[str, int]) -> dict[str, object]:
    return {
        "name": name,
        "requests": sums["requests"],
        "cost": money(sums["cost_nanousd"] if sums["priced_requests"] else None),
        "unpriced_requests": sums["unpriced_requests"],
        "tokens": _mix(sums),
    }


def _grouped(rows: list[ReportRow], dim: str) -> dict[str, list[ReportRow]]:
    """Rows by the label of one of their dimensions (`(unknown)` for a missing model)."""
    index = _DIMS.index(dim)
    groups: dict[str, list[ReportRow]] = {}
    for row in rows:
        groups.setdefault(label((dim,), (row.dims[index],)), []).append(row)
    return groups


def _top(rows: list[ReportRow], dim: str) -> list[dict]:
    named = [_named(name, _sum(group)) for name, group in _grouped(rows, dim).items()]
    named.sort(key=lambda item: (-(item["cost"]["nanousd"] or 0), -item["requests"]))
    return named[:TOP]


def _daily(rows: list[ReportRow], by: str, first: date) -> dict[str, object]:
    by = by if by in STACK_BY else "provider"
    days = [(first + timedelta(days=i)).isoformat() for i in range(CHART_DAYS)]
    position = {day: i for i, day in enumerate(days)}
    series: dict[str, list[int]] = {}
    for name, group in _grouped(rows, by).items():
        values = series.setdefault(name, [0] * CHART_DAYS)
        for row in group:
            if row.dims[0] in position:
                values[position[row.dims[0]]] += row.cost_nanousd or 0
    ordered = sorted(series.items(), key=lambda item: -sum(item[1]))
    return {"by": by, "days": days, "series": [{"name": n, "nanousd": v} for n, v in ordered]}
