"""Which thresholds have fired, in the ledger's `alerts_fired` table (migration
008_alerts_fired; 004 on PostgreSQL): a threshold is claimed by inserting its row, so it fires
once per rule and period whatever restarts, and one daemon of a team's shared ledger sends it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from meterfox_cli.alerts.rules import Alert
from meterfox_cli.store.dialect import LedgerConnection, dialect_of

_COLUMNS = (
    "rule", "period_start", "threshold", "fired_at", "spend_nanousd", "budget_nanousd", "message"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fired:
    """One row of the table: what fired when, and what it said."""

    rule: str
    period_start: str
    threshold: int
    fired_at: float
    spend_nanousd: int
    budget_nanousd: int
    message: str


def claim(conn: LedgerConnection, alert: Alert, thresholds: Sequence[int]) -> list[int]:
    """Record `thresholds` of the alert's rule and period as fired (in the caller's
    transaction); the ones no one had recorded before, so this caller sends them."""
    sql = dialect_of(conn).insert_ignoring("alerts_fired", _COLUMNS)
    row = (alert.spend_nanousd, alert.budget_nanousd, alert.text)
    return [
        threshold
        for threshold in sorted(thresholds)
        if conn.execute(sql, (alert.rule, alert.period_label, threshold, alert.at, *row)).rowcount
        == 1
    ]


def already_fired(conn: LedgerConnection, rule: str, period_label: str) -> set[int]:
    """The thresholds of `rule` already fired in the period that starts on `period_label`."""
    rows = conn.execute(
        "SELECT threshold FROM alerts_fired WHERE rule = ? AND period_start = ?",
        (rule, period_label),
    ).fetchall()
    return {int(row[0]) for row in rows}


def history(conn: LedgerConnection, limit: int = 50) -> list[Fired]:
    """The latest firings, newest first."""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM alerts_fired "
        "ORDER BY fired_at DESC, rule, threshold DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        Fired(str(r[0]), str(r[1]), int(r[2]), float(r[3]), int(r[4]), int(r[5]), str(r[6]))
        for r in rows
    ]
