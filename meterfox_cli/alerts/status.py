"""What `meterfox alerts` shows, read in one place: each budget's standing now, the spike
rule's days, and the latest firings from the state table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterfox_cli.alerts.rules import DaySpend, Standing
from meterfox_cli.alerts.spend import budget_standings, day_spend, key_standings
from meterfox_cli.alerts.state import Fired, history
from meterfox_cli.config import BudgetConfig
from meterfox_cli.keys.budget import SpendCounter
from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.db import connect


@dataclass(frozen=True)
class AlertStatus:
    standings: tuple[Standing, ...]
    days: DaySpend | None  # None: nothing recorded yet
    fired: tuple[Fired, ...]


def read_status(
    ledger: Ledger, keys_db: Path | None, budget: BudgetConfig, now: float
) -> AlertStatus:
    """The budgets' standings (key budgets from `keys_db`, when given and present), today
    against the trailing days, and the latest firings."""
    standings: list[Standing] = []
    if keys_db is not None and keys_db.exists():
        conn = connect(keys_db)
        try:
            standings += key_standings(conn, SpendCounter(), now)
        finally:
            conn.close()
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
