"""Reading the time a person types (`7d`, `2026-11-01`, `month`) into unix seconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.store.select import TimeRange

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORMS = "7d, 24h, 30m, 2w, today, month, all, or a date/time (2026-11-01, 2026-11-01T09:00)"


def parse_when(value: str | None, now: float | None = None) -> float | None:
    """`7d` / `24h` / `30m` / `2w` ago, `today` or `month` (their local start), `all` (no
    bound), or an ISO date or datetime (local time unless it carries an offset)."""
    if value is None:
        return None
    text = value.strip().lower()
    now = time.time() if now is None else now
    if text == "all":
        return None
    if text == "today":
        return _local_midnight(datetime.fromtimestamp(now).date())
    if text == "month":
        return month_start(now)
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return now - int(text[:-1]) * _UNITS[text[-1]]
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError as exc:
        raise MeterFoxError(f"cannot read time {value!r}: use {FORMS}") from exc


def utc_when(value: str | None, now: float) -> float | None:
    """A time as typed; a bare date is that UTC day's midnight (the providers' days are UTC:
    `meterfox sync` and `reconcile`)."""
    if value is not None and _DATE.match(value.strip()):
        return datetime.fromisoformat(value.strip()).replace(tzinfo=UTC).timestamp()
    return parse_when(value, now)


def month_start(now: float | None = None) -> float:
    """Local midnight on the first of the current month."""
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return _local_midnight(today.replace(day=1))


def day_start(day: date) -> float:
    return _local_midnight(day)


def _local_midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day).timestamp()


def parse_window(since: str | None, until: str | None, now: float | None = None) -> TimeRange:
    """`--since` / `--until` as typed; a bound not given is open."""
    return TimeRange(parse_when(since, now), parse_when(until, now))


def resolve_window(since: str | None, until: str | None, now: float | None = None) -> TimeRange:
    """The window a report covers. With neither bound given: this month so far."""
    if since is None and until is None:
        return TimeRange(month_start(now), None)
    return parse_window(since, until, now)


def describe(window: TimeRange) -> str:
    """`2026-11-01 → now`, `all time`, `2026-11-01 09:30 → 2026-11-02`."""
    if window.since is None and window.until is None:
        return "all time"
    start = "the beginning" if window.since is None else _when(window.since)
    end = "now" if window.until is None else _when(window.until)
    return f"{start} → {end}"


def _when(ts: float) -> str:
    moment = datetime.fromtimestamp(ts)
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%d %H:%M")
