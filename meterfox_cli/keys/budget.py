"""Per-key budgets: an amount of USD per calendar day, week or month (local time).

A key's spend is the sum of the recorded costs (`requests.cost_nanousd`) of its requests since
the start of the current period, the same local calendar the reports' `day` column uses.
Unpriced requests count as zero here; a running daemon adds what its requests in flight have
reserved and what finished ones cost before their records are read (keys/ledger.py).
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from meterfox_cli.errors import KeyError_
from meterfox_cli.money import format_usd, from_nanousd, to_nanousd


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


_PERIOD_WORDS = {
    "d": Period.DAY,
    "day": Period.DAY,
    "daily": Period.DAY,
    "w": Period.WEEK,
    "week": Period.WEEK,
    "weekly": Period.WEEK,
    "mo": Period.MONTH,
    "month": Period.MONTH,
    "monthly": Period.MONTH,
}
_BUDGET = re.compile(r"^\$?\s*(?P<amount>[0-9]+(?:\.[0-9]+)?)\s*/\s*(?P<period>[a-z]+)$")


@dataclass(frozen=True, slots=True)
class Budget:
    nanousd: int
    period: Period

    @property
    def usd(self) -> Decimal:
        return from_nanousd(self.nanousd)

    def __str__(self) -> str:
        return f"{format_usd(self.nanousd)}/{self.period}"


def parse_budget(text: str) -> Budget:
    """`25/month`, `$2.50/day`, `100/week` → a Budget."""
    match = _BUDGET.match(text.strip().lower())
    period = _PERIOD_WORDS.get(match.group("period")) if match else None
    if match is None or period is None:
        raise KeyError_(f"cannot read budget {text!r}: write AMOUNT/PERIOD, e.g. 25/month or 2/day")
    try:
        amount = Decimal(match.group("amount"))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise KeyError_(f"cannot read budget amount {text!r}: write e.g. 25/month") from exc
    if amount <= 0:
        raise KeyError_(f"budget {text!r} must be above zero: write e.g. 25/month")
    return Budget(to_nanousd(amount), period)


def period_start(period: Period, now: float) -> float:
    """Unix time of the start of the local calendar day / week (Monday) / month holding `now`."""
    return _midnight(_first_day(period, now))


def next_period_start(period: Period, now: float) -> float:
    """Unix time the next period begins (when a spent budget is available again)."""
    first = _first_day(period, now)
    if period is Period.DAY:
        following = first + timedelta(days=1)
    elif period is Period.WEEK:
        following = first + timedelta(days=7)
    elif first.month == 12:
        following = first.replace(year=first.year + 1, month=1)
    else:
        following = first.replace(month=first.month + 1)
    return _midnight(following)


def _first_day(period: Period, now: float) -> date:
    # Whole seconds: fromtimestamp rounds to microseconds, which can carry 23:59:59.9999995
    # into the next day.
    day = datetime.fromtimestamp(math.floor(now)).date()
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return day


def _midnight(day: date) -> float:
    """The first instant of a local day (where DST skips midnight, the end of the gap)."""
    return datetime.combine(day, dt_time()).timestamp()


class SpendCounter:
    """Each budgeted key's spend this period, kept current cheaply.

    The first refresh, a new period or a changed set of budgets sums each key's rows since its
    period began (an index range scan on `requests (key_name, ts)`); every other refresh only
    reads rows added since the last one (a rowid range), so a busy month costs nothing extra.
    Blocking: for the key watcher's thread, never the event loop.
    """

    def __init__(self) -> None:
        self._starts: dict[str, float] = {}
        self._spend: dict[str, int] = {}
        self._cursor: int | None = None  # the highest requests rowid already counted
        # The ids of the budgeted keys' rows the last refresh saw for the first time, so the
        # daemon's ledger can stop counting those requests itself (none on the first refresh).
        self.counted: tuple[str, ...] = ()

    @property
    def starts(self) -> Mapping[str, float]:
        """Each budgeted key's period start, as of the last refresh."""
        return self._starts

    def refresh(
        self, conn: sqlite3.Connection, periods: Mapping[str, Period], now: float
    ) -> dict[str, int]:
        starts = {name: period_start(period, now) for name, period in periods.items()}
        conn.execute("BEGIN")  # one snapshot for the cursor and the sums
        try:
            top = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM requests").fetchone()[0]
            cursor = self._cursor
            rows = self._new_rows(conn, starts, cursor, top) if cursor is not None else []
            if starts != self._starts:
                self._spend = {
                    name: spend_since(conn, name, start) for name, start in starts.items()
                }
            else:
                for _, name, ts, cost in rows:
                    if cost is not None and ts >= starts[name]:
                        self._spend[name] = self._spend.get(name, 0) + cost
        finally:
            conn.execute("COMMIT")
        self._starts = starts
        self._cursor = top
        self.counted = tuple(row[0] for row in rows)
        return dict(self._spend)

    @staticmethod
    def _new_rows(
        conn: sqlite3.Connection, starts: dict[str, float], cursor: int, top: int
    ) -> list[tuple[str, str, float, int | None]]:
        if not starts or top <= cursor:
            return []
        marks = ",".join("?" * len(starts))
        return conn.execute(
            f"SELECT id, key_name, ts, cost_nanousd FROM requests WHERE rowid > ? AND rowid <= ? "
            f"AND key_name IN ({marks})",
            (cursor, top, *starts),
        ).fetchall()


def spend_since(conn: sqlite3.Connection, name: str, since: float) -> int:
    """The recorded cost of a key's requests since `since`, in nano-USD (unpriced count 0)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(cost_nanousd), 0) FROM requests WHERE key_name = ? AND ts >= ?",
        (name, since),
    ).fetchone()
    return int(row[0])
