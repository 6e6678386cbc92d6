"""`meterfox db copy`: a ledger moved between SQLite and PostgreSQL, both ways, with every
record and tag, reporting the same afterwards; copying again adds nothing."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.copy import copy_ledger
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.queries import read_report
from meterfox_cli.store.sqlite import SqliteLedger
from tests.store.test_contract import ALL, EDGES, REQUESTS, record_all, summary

DIMS = (("host", "model"), ("provider", "tag:team"), ("day",))


def same_reports(left, right) -> None:
    for dims in DIMS:
        for window in (ALL, EDGES):
            assert summary(read_report(left, dims, window)) == summary(
                read_report(right, dims, window)
            )


def test_sqlite_to_postgresql_and_back_copies_each_record_once(tmp_path: Path, pg_url: str):
    sqlite, postgres = SqliteLedger(tmp_path / "a.db"), PostgresLedger(pg_url)
    sqlite.migrate()
    record_all(sqlite)
    first = copy_ledger(sqlite, postgres, batch=4)  # a blank server: migrated, then filled
    assert (first.read, first.added) == (len(REQUESTS), len(REQUESTS))
    assert copy_ledger(sqlite, postgres, batch=4).added == 0  # idempotent
    same_reports(sqlite, postgres)
    back = SqliteLedger(tmp_path / "b.db")
    assert copy_ledger(postgres, back).added == len(REQUESTS)
    assert copy_ledger(postgres, back).added == 0
    same_reports(back, sqlite)


def test_an_empty_ledger_copies_nothing(tmp_path: Path, pg_url: str):
    copied = copy_ledger(SqliteLedger(tmp_path / "none.db"), PostgresLedger(pg_url))
    assert (copied.read, copied.added) == (0, 0)


def test_db_copy_command_says_what_it_did_with_the_password_masked(pg_url: str, monkeypatch):
    monkeypatch.delenv("METERFOX_DATABASE_URL", raising=False)
    home = SqliteLedger(resolve_paths().database)  # the user's own ledger, copied to the team's
    home.migrate()
    record_all(home)
    secret_url = pg_url.replace("meterfox@", "meterfox:pw-not-shown@")  # trust auth ignores it
    done = CliRunner().invoke(main, ["db", "copy", "--to", secret_url])
    assert done.exit_code == 0, done.output
    assert "pw-not-shown" not in done.output
    assert f"{len(REQUESTS)} new, 0 already there" in done.output
    again = CliRunner().invoke(main, ["db", "copy", "--to", secret_url])
    assert f"0 new, {len(REQUESTS)} already there" in again.output
    refused = CliRunner().invoke(main, ["db", "copy", "--to", "mysql://h/db"])
    assert refused.exit_code == 2 and "postgresql://… or sqlite:PATH" in refused.output
