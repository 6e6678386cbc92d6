"""Where each budget stands now, read from the ledger through the code that already sums it:
a key's spend as its budget counts it (keys/budget.py), totals per month, provider and tag as
`meterfox report` sums them (store/queries.py), and the days the spike rule compares."""

from __future__ import annotations

from datetime import datetime, timedelta

from meterfox_cli.alerts.rules import DaySpend, Standing
from meterfox_cli.config import BudgetConfig
from meterfox_cli.keys.budget import Period, SpendCounter, next_period_start, period_start
from meterfox_cli.keys.proxy_keys import KeyStatus, all_keys
from meterfox_cli.money import to_nanousd
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.queries import build_report
from meterfox_cli.store.select import NO_FILTERS, Filters, TimeRange

TRAILING_DAYS = 7


def key_standings(conn: LedgerConnection, counter: SpendCounter, now: float) -> list[Standing]:
    """Each live budgeted proxy key's spend this period (keys live in the ledger, either store),
    counted as the key watcher counts it: `counter` reads only the rows added since its last
    refresh, so a check of a busy month costs little."""
    live = [
        key
        for key in all_keys(conn)
        if key.budget is not None and key.status(now) is KeyStatus.ACTIVE
    ]
    spend = counter.refresh(conn, {key.name: key.budget.period for key in live if key.budget}, now)
    found = []
    for key in live:
        assert key.budget is not None
        start = period_start(key.budget.period, now)
        found.append(
            Standing(
                rule=f"key:{key.name}",
                subject=f"proxy key {key.name!r}",
                spend_nanousd=spend.get(key.name, 0),
                budget_nanousd=key.budget.nanousd,
                period=str(key.budget.period),
                period_start=start,
                period_end=next_period_start(key.budget.period, now),
                command=f"meterfox report --key {key.name} --since {_since(start)}",
            )
        )
    return found


def budget_standings(
    conn: LedgerConnection | None, budget: BudgetConfig, now: float
) -> list[Standing]:
    """The `[budget]` budgets' spend this calendar month, overall, per provider and per tag
    (none yet without a ledger to read: `conn` None)."""
    start, end = period_start(Period.MONTH, now), next_period_start(Period.MONTH, now)
    since = _since(start)
    wanted: list[tuple[str, str, int, Filters, str]] = []
    if budget.monthly is not None:
        wanted.append(("monthly", "the monthly budget", to_nanousd(budget.monthly), NO_FILTERS, ""))
    for provider, usd in budget.providers:
        wanted.append(
            (
                f"provider:{provider}",
                f"{provider}'s monthly budget",
                to_nanousd(usd),
                Filters(providers=(provider,)),
                f" --provider {provider}",
            )
        )
    for (name, value), usd in budget.tags:
        wanted.append(
            (
                f"tag:{name}={value}",
                f"tag {name}={value}'s monthly budget",
                to_nanousd(usd),
                Filters(tags=((name, value),)),
                f" --tag {name}={value}",
            )
        )
    return [
        Standing(
            rule=rule,
            subject=subject,
            spend_nanousd=0 if conn is None else total_spend(conn, TimeRange(start, None), filters),
            budget_nanousd=nanousd,
            period="month",
            period_start=start,
            period_end=end,
            command=f"meterfox report --since {since}{flags}",
        )
        for rule, subject, nanousd, filters, flags in wanted
    ]


def day_spend(conn: LedgerConnection, now: float) -> DaySpend:
    """Today's spend and the TRAILING_DAYS whole local days before it."""
    today = datetime.fromtimestamp(now).date()
    start = _midnight(today)
    first = _midnight(today - timedelta(days=TRAILING_DAYS))
    return DaySpend(
        today_nanousd=total_spend(conn, TimeRange(start, None)),
        trailing_nanousd=total_spend(conn, TimeRange(first, start)),
        trailing_days=TRAILING_DAYS,
        day_start=start,
        day_end=_midnight(today + timedelta(days=1)),
    )


def total_spend(conn: LedgerConnection, window: TimeRange, filters: Filters = NO_FILTERS) -> int:
    """The priced spend in `window`, as `meterfox report` totals it (nano-USD)."""
    report = build_report(conn, (), window, filters, latency=False)
    return report.total.cost_nanousd or 0


def _midnight(day) -> float:
    return datetime.combine(day, datetime.min.time()).timestamp()


def _since(start: float) -> str:
    return f"{datetime.fromtimestamp(start):%Y-%m-%d}"
