"""`serve`'s alert thread: every POLL_S it looks whether the ledger changed (its highest
request rowid, the key table's version, the day) and, if so, reads where each budget stands
(alerts/spend.py), claims each threshold newly crossed (alerts/state.py) and sends the alert
to every channel (alerts/channels.py). It never touches the event loop: the proxy only starts
and stops it. A failure is logged once and shown in `/_meterfox/health`, never raised.

A threshold crossed while no daemon ran fires on the first check after the next start; several
thresholds of one budget crossed between two checks send one alert, for the highest.

The rules, the spend queries and the fired-state are imported by the thread's first check, not
with this module: `serve` builds the watcher before it listens and starts it after (issue 17)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from meterfox_cli.keys.budget import SpendCounter
from meterfox_cli.keys.proxy_keys import key_version

if TYPE_CHECKING:
    from meterfox_cli.alerts.channels import Channel
    from meterfox_cli.alerts.rules import Alert, Standing
    from meterfox_cli.config import AlertsConfig, BudgetConfig
    from meterfox_cli.store.backend import Ledger
    from meterfox_cli.store.dialect import LedgerConnection

log = logging.getLogger("meterfox.alerts")

POLL_S = 2.0  # a crossing fires within this (plus one check) of its record being written
STOP_WAIT_S = 2.0
BUSY_TIMEOUT_MS = 2000


class AlertWatcher:
    """Checks the budgets of the ledger's proxy keys (where the proxy reads them: the SQLite
    file, or the team's PostgreSQL ledger) and of `budget`, and the spike rule of `alerts`."""

    def __init__(
        self,
        ledger: Ledger,
        alerts: AlertsConfig,
        budget: BudgetConfig,
        channels: Sequence[Channel],
        *,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.alerts = alerts
        self.budget = budget
        self.channels = tuple(channels)
        self._poll_s = poll_s
        self._clock = clock
        self._conn: LedgerConnection | None = None
        self._mark: tuple[object, ...] | None = None
        self._key_spend = SpendCounter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_check_at: float | None = None
        self._error: str | None = None
        self._sent = 0

    # --- the thread -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="meterfox-alerts", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
        for channel in self.channels:
            channel.close()
        self._close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self._poll_s)

    # --- one check --------------------------------------------------------------------

    def check(self) -> list[Alert]:
        """Look once; the alerts sent. Nothing it meets is raised (the last failure is in
        health, logged when it starts and when it ends)."""
        now = self._clock()
        try:
            sent = self._check(now)
        except Exception as exc:  # the proxy must never see it
            error = str(exc) or type(exc).__name__
            if self._error is None:
                log.warning("alert check failed (retrying every %gs): %s", self._poll_s, error)
            self._close()
            with self._lock:
                self._error, self._last_check_at = error, now
            return []
        if self._error is not None:
            log.info("alert checks work again")
        with self._lock:
            self._error, self._last_check_at = None, now
            self._sent += len(sent)
        return sent

    def _check(self, now: float) -> list[Alert]:
        from meterfox_cli.alerts.rules import spike_alert
        from meterfox_cli.alerts.spend import budget_standings, day_spend, key_standings

        conn = self._ledger_conn()
        mark = self._changes(conn, now)
        if mark == self._mark:
            return []
        standings = key_standings(conn, self._key_spend, now)
        standings += budget_standings(conn, self.budget, now)
        sent = []  # each alert goes out as soon as it is claimed: a later failure loses none
        for standing in standings:
            alert = self._fire_budget(conn, standing, now)
            if alert is not None:
                sent.append(self._send(alert))
        if self.alerts.spike_factor is not None:
            spike = spike_alert(day_spend(conn, now), self.alerts.spike_factor, now)
            if spike is not None and self._claim(conn, spike, [spike.threshold]):
                sent.append(self._send(spike))
        self._mark = mark
        return sent

    def _fire_budget(self, conn: LedgerConnection, standing: Standing, now: float) -> Alert | None:
        from meterfox_cli.alerts.rules import budget_alert, crossed
        from meterfox_cli.alerts.state import already_fired

        reached = crossed(standing, self.alerts.thresholds)
        if not reached:
            return None
        done = already_fired(conn, standing.rule, standing.period_label)
        fresh = [threshold for threshold in reached if threshold not in done]
        if not fresh:
            return None
        new = self._claim(conn, budget_alert(standing, fresh[-1], now), fresh)
        return budget_alert(standing, new[-1], now) if new else None

    def _claim(self, conn: LedgerConnection, alert: Alert, thresholds: list[int]) -> list[int]:
        from meterfox_cli.alerts.state import claim

        with self.ledger.transaction(conn):
            return claim(conn, alert, thresholds)

    def _send(self, alert: Alert) -> Alert:
        for channel in self.channels:
            try:
                channel.send(alert)
            except Exception:  # a channel's own fault must not keep the others from sending
                log.exception("alert channel %s failed", channel.name)
        return alert

    def _changes(self, conn: LedgerConnection, now: float) -> tuple[object, ...]:
        """What a new check would see differently: the requests (their highest rowid), the
        keys (their version counter) and the local day (periods turn over at midnight)."""
        top = conn.execute("SELECT MAX(rowid) FROM requests").fetchone()[0]
        return (top, key_version(conn), datetime.fromtimestamp(now).date())

    def _ledger_conn(self) -> LedgerConnection:
        if self._conn is not None and self.ledger.is_lost(self._conn):
            self._close()
        if self._conn is None:
            self._conn = self.ledger.open_writer(BUSY_TIMEOUT_MS)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may fail too
                log.debug("closing an alert connection failed", exc_info=True)
        self._conn = None
        self._mark = None
        self._key_spend = SpendCounter()

    # --- health -----------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """What `/_meterfox/health` shows under `alerts` (cheap: it runs on the loop; nothing is
        imported before the first check, which imports the rules)."""
        with self._lock:
            return {
                "enabled": True,
                "every_s": self._poll_s,
                "last_check_at": None if self._last_check_at is None else _iso(self._last_check_at),
                "last_error": self._error,
                "sent": self._sent,
                "channels": [channel.name for channel in self.channels],
            }


def _iso(at: float) -> str:
    from meterfox_cli.alerts.rules import iso_utc  # imported by the check that set `at`

    return iso_utc(at)
