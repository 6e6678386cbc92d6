"""Per-key budgets: an amount of USD per calendar day, week or month (local time).

A key's spend is the sum of the recorded costs (`requests.cost_nanousd`) of its requests since
the start of the current period, the same local calendar the reports' `day` column uses, read
from the ledger's `key_spend` (kept by the database in step with `requests`, so every daemon
sharing a ledger reads the same). Unpriced requests count as zero here. Admission adds every
live reservation in the ledger, whoever took it (keys/reservations.py); a running daemon's own
view adds what its requests in flight reserved and what finished ones cost before their records
are read (keys/ledger.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from meterfox_cli.errors import KeyError_
from meterfox_cli.money import format_usd, from_nanousd, to_nanousd
from meterfox_cli.store.dialect import HOUR_S, LedgerConnection, dialect_of

IDS_PER_QUERY = 500  # request ids per `IN (…)` list


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
    """Each budgeted key's spend this period, as the ledger keeps it, and which of the requests
    this daemon still counts itself (keys/ledger.py) the ledger now holds, read in one snapshot
    so no request counts twice or not at all. The ledger keeps the spend (`key_spend`, per key
    and hour, updated in the transaction that records the request), so every daemon sharing it
    reads the same sums, whichever wrote them. Blocking: for the key watcher's thread, never
    the event loop."""

    def __init__(self) -> None:
        self._starts: dict[str, float] = {}
        # The ids, among those the last refresh was asked about, whose records it found.
        self.counted: tuple[str, ...] = ()

    @property
    def starts(self) -> Mapping[str, float]:
        """Each budgeted key's period start, as of the last refresh."""
        return self._starts

    def refresh(
        self,
        conn: LedgerConnection,
        periods: Mapping[str, Period],
        now: float,
        pending: Collection[str] = (),
    ) -> dict[str, int]:
        starts = {name: period_start(period, now) for name, period in periods.items()}
        spend: dict[str, int] = {}
        counted: list[str] = []
        if starts or pending:
            conn.execute(dialect_of(conn).begin_snapshot_sql)
            try:
                spend = {name: spend_since(conn, name, start) for name, start in starts.items()}
                counted = recorded_ids(conn, pending)
            finally:
                conn.execute("COMMIT")
        self._starts = starts
        self.counted = tuple(counted)
        return spend


# A key's recorded cost since a time: whole hours from `key_spend`, and from `requests` the part
# of an hour before the first whole one. Parameters: `spend_parameters`.
SPEND_SQL = (
    "(SELECT COALESCE(SUM(cost_nanousd), 0) FROM key_spend WHERE key_name = ? AND hour >= ?) "
    "+ (SELECT COALESCE(SUM(cost_nanousd), 0) FROM requests "
    "WHERE key_name = ? AND ts >= ? AND ts < ?)"
)


def spend_parameters(name: str, since: float) -> tuple[str, int, str, float, float]:
    first_hour = math.ceil(since / HOUR_S)
    return (name, first_hour, name, since, first_hour * HOUR_S)


def spend_since(conn: LedgerConnection, name: str, since: float) -> int:
    """The recorded cost of a key's requests since `since`, in nano-USD (unpriced count 0):
    whole hours from `key_spend`, and from `requests` the part of an hour before the first
    whole one (a period that starts on the hour, as most do, reads none)."""
    row = conn.execute(f"SELECT {SPEND_SQL}", spend_parameters(name, since)).fetchone()
    return int(row[0])


def recorded_ids(conn: LedgerConnection, ids: Collection[str]) -> list[str]:
    """Those of `ids` whose request is in the ledger."""
    wanted = list(ids)
    found: list[str] = []
    for at in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[at : at + IDS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        found += [
            row[0] for row in conn.execute(f"SELECT id FROM requests WHERE id IN ({marks})", chunk)
        ]
    return found
