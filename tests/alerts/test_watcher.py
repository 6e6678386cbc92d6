"""The alert thread's check in-process, over a real SQLite ledger: a budget crossed fires once
(a second check, and a new watcher after a "restart", send nothing), a check that cannot read
the ledger is logged once and shown in health, and works again when the ledger does."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from meterfox_cli.alerts.channels import LogChannel
from meterfox_cli.alerts.watcher import AlertWatcher
from meterfox_cli.cli import main
from meterfox_cli.config import AlertsConfig, BudgetConfig
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.sqlite import SqliteLedger
from tests.fakes.records import Req, insert
from tests.store.test_contract import keyed, record_priced


def watcher(path: Path) -> AlertWatcher:
    budget = BudgetConfig(monthly=Decimal(1))
    return AlertWatcher(SqliteLedger(path), AlertsConfig(desktop=False), budget, [LogChannel()])


def test_a_crossing_fires_once_across_checks_and_watchers(conn, caplog):
    caplog.set_level(logging.WARNING, "meterfox.alerts")
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    first = watcher(path)
    assert first.check() == []
    insert(conn, Req(ts=time.time(), cost_nano=6 * 10**8))  # $0.60 of $1
    assert [a.threshold for a in first.check()] == [50]
    assert first.check() == []  # nothing new
    insert(conn, Req(ts=time.time(), cost_nano=10**6))  # new rows, no new threshold
    assert first.check() == []
    first.stop()
    second = watcher(path)  # a restart
    assert second.check() == []
    insert(conn, Req(ts=time.time(), cost_nano=5 * 10**8))  # $1.101: 80 and 100 at once
    assert [a.threshold for a in second.check()] == [100]
    second.stop()
    logged = [r.getMessage() for r in caplog.records if r.name == "meterfox.alerts"]
    assert len(logged) == 2
    assert logged[0].startswith("MeterFox: the monthly budget crossed 50% of its $1.00/month")
    assert logged[1].startswith("MeterFox: the monthly budget crossed 100% of its $1.00/month")
    fired = conn.execute("SELECT threshold FROM alerts_fired ORDER BY threshold").fetchall()
    assert fired == [(50,), (80,), (100,)]  # 80 recorded with 100, not sent on its own


def test_a_failing_check_is_logged_once_shown_in_health_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO, "meterfox.alerts")
    path = tmp_path / "ledger.db"
    path.mkdir()  # a directory where the database should be: it cannot be opened
    broken = watcher(path)
    assert broken.check() == []
    assert broken.check() == []
    assert caplog.text.count("alert check failed") == 1
    health = broken.health()
    assert health["last_error"] and "cannot open the database" in health["last_error"]
    path.rmdir()
    assert broken.check() == []
    assert broken.health()["last_error"] is None
    assert "alert checks work again" in caplog.text
    broken.stop()


def test_a_key_budget_set_with_meterfox_keys_on_a_postgresql_ledger_fires(pg_url, monkeypatch):
    """Keys and budgets live in the team's ledger: the watcher and `meterfox alerts` read them
    there, as the proxy does (not from a local keys file)."""
    monkeypatch.setenv("METERFOX_DATABASE_URL", pg_url)
    cli = CliRunner()
    assert cli.invoke(main, ["db", "migrate"]).exit_code == 0
    made = cli.invoke(main, ["keys", "create", "ci", "--budget", "1/day"])
    assert made.exit_code == 0, made.output
    ledger = PostgresLedger(pg_url)
    record_priced(ledger, [keyed("ci", time.time(), 6 * 10**8)])  # $0.60 of $1/day
    team = AlertWatcher(ledger, AlertsConfig(desktop=False), BudgetConfig(), [LogChannel()])
    try:
        fired = team.check()
    finally:
        team.stop()
    assert [(a.rule, a.threshold) for a in fired] == [("key:ci", 50)]
    shown = cli.invoke(main, ["alerts"])
    assert shown.exit_code == 0, shown.output
    assert "ci" in shown.output and "$0.60" in shown.output
