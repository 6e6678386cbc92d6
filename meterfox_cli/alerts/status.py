"""What `meterfox alerts` shows, read in one place: each budget's standing now, the spike
rule's days, and the latest firings from the state table."""

from __future__ import annotations

from dataclasses import dataclass

from meterfox_cli.alerts.rules import DaySpend, Standing
from meterfox_cli.alerts.spend import budget_standings, day_spend, key_standings
from meterfox_cli.alerts.state import Fired, history
from meterfox_cli.config import BudgetConfig
from meterfox_cli.keys.budget import SpendCounter
from meterfox_cli.store.backend import Ledger


@dataclass(frozen=True)
class AlertStatus:
    standings: tuple[Standing, ...]
    days: DaySpend | None  # None: nothing recorded yet
    fired: tuple[Fired, ...]


def read_status(ledger: Ledger, budget: BudgetConfig, now: float) -> AlertStatus:
    """The budgets' standings (each budgeted proxy key's, read from the ledger where the proxy
    reads keys, and `budget`'s), today against the trailing days, and the latest firings."""
    standings: list[Standing] = []
    keys = ledger.read_connection()  # keys may exist before any record
    if keys is not None:
        try:
            standings += key_standings(keys, SpendCounter(), now)
        finally:
            keys.close()
    reader = ledger.open_reader()
    if reader is None:  # nothing recorded yet: the budgets stand at zero
        return AlertStatus(tuple(standings + budget_standings(None, budget, now)), None, ())
    try:
        standings += budget_standings(reader, budget, now)
        days = day_spend(reader, now)
        fired = history(reader)
    finally:
        reader.close()
    return AlertStatus(tuple(standings), days, tuple(fired))
