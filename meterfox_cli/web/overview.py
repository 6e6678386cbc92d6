"""The Overview's figures, each read through `store/queries.build_report` (the query behind
`meterfox report`), so the page and the terminal cannot disagree: spend today / this week /
this month and the projected month end, 30 days of daily spend stacked by a dimension, the top
models and keys with their token mix, keys' budgets, the unpriced share, and per provider the
error rate and latency. Top tags come separately (`top_tags`): they read request rows, not the
hourly rollup, so the page loads them after the rest."""

from __future__ import annotations

import sqlite3
import time
from datetime import date, timedelta

from meterfox_cli.keys.budget import Period, next_period_start, period_start
from meterfox_cli.keys.proxy_keys import list_keys
from meterfox_cli.store.queries import ReportRow, build_report
from meterfox_cli.store.select import TimeRange
from meterfox_cli.timewindow import day_start, month_start
from meterfox_cli.web.shapes import key_json, money, token_mix

DAY_S = 86400
CHART_DAYS = 30
BURN_DAYS = 7
TOP = 8
STACK_BY = ("provider", "model", "key")


def overview(conn: sqlite3.Connection, by: str = "provider", now: float | None = None) -> dict:
    now = time.time() if now is None else now
    month = TimeRange(month_start(now), None)
    conn.execute("BEGIN")  # one snapshot for every figure
    try:
        month_total = _total(conn, month)
        burn = _total(conn, TimeRange(now - BURN_DAYS * DAY_S, now)).cost_nanousd or 0
        per_day = burn / BURN_DAYS
        left_days = (next_period_start(Period.MONTH, now) - now) / DAY_S
        month_nano = month_total.cost_nanousd or 0
        return {
            "now": now,
            "spend": {
                "today": money(_total(conn, TimeRange(day_start(_today(now)), None)).cost_nanousd),
                "week": money(_total(conn, TimeRange(period_start(Period.WEEK, now))).cost_nanousd),
                "month": money(month_total.cost_nanousd),
                "projected_month": money(round(month_nano + per_day * left_days)),
                "burn_per_day": money(round(per_day)),
            },
            "month": _counts(month_total),
            "daily": _daily(conn, by, now),
            "top_models": _top(conn, "model", month),
            "top_keys": _top(conn, "key", month),
            "keys": [key_json(item) for item in list_keys(conn, now) if item.key.budget],
            "providers": _providers(conn, month),
        }
    finally:
        conn.execute("COMMIT")


def top_tags(conn: sqlite3.Connection, now: float | None = None, names: int = 3) -> list[dict]:
    """For the most used tag names this month, their top values by cost."""
    now = time.time() if now is None else now
    month = TimeRange(month_start(now), None)
    found = conn.execute(
        "SELECT t.name FROM request_tags t JOIN requests r ON r.id = t.request_id "
        "WHERE r.ts >= ? GROUP BY t.name ORDER BY COUNT(*) DESC LIMIT ?",
        (month.since, names),
    ).fetchall()
    return [{"tag": name, "rows": _top(conn, f"tag:{name}", month)} for (name,) in found]


def _today(now: float) -> date:
    return date.fromtimestamp(now)


def _total(conn: sqlite3.Connection, window: TimeRange) -> ReportRow:
    return build_report(conn, (), window, latency=False).total


def _counts(row: ReportRow) -> dict[str, object]:
    needing = row.priced_requests + row.unpriced_requests
    return {
        "requests": row.requests,
        "errors": row.errors,
        "unpriced_requests": row.unpriced_requests,
        "unpriced_share": (row.unpriced_requests / needing) if needing else 0.0,
        "tokens": token_mix(row),
    }


def _daily(conn: sqlite3.Connection, by: str, now: float) -> dict[str, object]:
    by = by if by in STACK_BY else "provider"
    last = _today(now)
    first = last - timedelta(days=CHART_DAYS - 1)
    report = build_report(conn, ("day", by), TimeRange(day_start(first), None), latency=False)
    days = [(first + timedelta(days=i)).isoformat() for i in range(CHART_DAYS)]
    series: dict[str, list[int]] = {}
    for row in report.rows:
        day, group = row.dims
        values = series.setdefault(group or "(unknown)", [0] * CHART_DAYS)
        if day in days:
            values[days.index(day)] += row.cost_nanousd or 0
    ordered = sorted(series.items(), key=lambda item: -sum(item[1]))
    return {"by": by, "days": days, "series": [{"name": n, "nanousd": v} for n, v in ordered]}


def _top(conn: sqlite3.Connection, dim: str, window: TimeRange) -> list[dict]:
    rows = build_report(conn, (dim,), window, latency=False).rows[:TOP]
    return [
        {
            "name": row.group,
            "requests": row.requests,
            "cost": money(row.cost_nanousd),
            "unpriced_requests": row.unpriced_requests,
            "tokens": token_mix(row),
        }
        for row in rows
    ]


def _providers(conn: sqlite3.Connection, window: TimeRange) -> list[dict]:
    report = build_report(conn, ("provider",), window)
    return [
        {
            "name": row.group,
            "requests": row.requests,
            "errors": row.errors,
            "error_rate": row.errors / row.requests if row.requests else 0.0,
            "latency_p50_ms": row.latency_p50_ms,
            "latency_p95_ms": row.latency_p95_ms,
            "cost": money(row.cost_nanousd),
        }
        for row in report.rows
    ]
