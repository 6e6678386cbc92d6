"""`meterfox db copy`: a ledger moved between SQLite and PostgreSQL, both ways, with every
record and tag and every proxy key (budgets and revocations with it, the hash never the key), reporting the same afterwards; copying again adds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.errors import StoreError
from meterfox_cli.keys.budget import parse_budget
from meterfox_cli.keys.proxy_keys import (
    KeySpec,
    all_keys,
    create_key,
    revoke_key,
    rotate_key,
    set_budget,
)
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


def keys_of(ledger) -> list[tuple]:
    """Each key as `keys list` knows it (the hash, never the key), without the store's own id."""
    conn = ledger.open_writer(0)
    try:
        return sorted(
            (key.name, key.key_hash, key.revoked_at, key.budget, key.providers, key.tags)
            for key in all_keys(conn)
        )
    finally:
        conn.close()


def make_keys(ledger) -> str:
    """Three keys: one budgeted, one revoked, one rotated (its old one revoked). The live
    budgeted key's secret, which a copy must never print."""
    conn = ledger.open_writer(0)
    try:
        budgeted = create_key(conn, KeySpec("ci", budget=parse_budget("5/day"), tags=(("t", "x"),)))
        create_key(conn, KeySpec("old"))
        revoke_key(conn, "old")
        create_key(conn, KeySpec("app", providers=("openai",)))
        rotate_key(conn, "app")
        return budgeted.secret
    finally:
        conn.close()


def test_proxy_keys_with_budgets_and_revocations_copy_both_ways_once(tmp_path: Path, pg_url: str):
    sqlite, postgres = SqliteLedger(tmp_path / "a.db"), PostgresLedger(pg_url)
    sqlite.migrate()
    record_all(sqlite)
    make_keys(sqlite)
    first = copy_ledger(sqlite, postgres)
    assert (first.keys_read, first.keys_added) == (4, 4)
    assert copy_ledger(sqlite, postgres).keys_added == 0  # idempotent
    assert keys_of(postgres) == keys_of(sqlite)
    conn = postgres.open_writer(0)
    try:
        create_key(conn, KeySpec("later"))  # the target's own ids go on after the copied ones
    finally:
        conn.close()
    back = SqliteLedger(tmp_path / "b.db")
    assert copy_ledger(postgres, back).keys_added == 5
    assert copy_ledger(postgres, back).keys_added == 0
    assert keys_of(back) == keys_of(postgres)


def test_a_key_changed_in_the_target_is_kept_and_a_live_name_clash_is_refused(
    tmp_path: Path, pg_url: str
):
    sqlite, postgres = SqliteLedger(tmp_path / "a.db"), PostgresLedger(pg_url)
    sqlite.migrate()
    make_keys(sqlite)
    copy_ledger(sqlite, postgres)
    conn = postgres.open_writer(0)
    try:
        set_budget(conn, "ci", parse_budget("9/day"))  # changed on the team's ledger since
    finally:
        conn.close()
    again = copy_ledger(sqlite, postgres)
    assert (again.keys_added, again.keys_kept) == (0, ("ci",))
    assert dict((k[0], k[3]) for k in keys_of(postgres) if k[2] is None)["ci"] == parse_budget(
        "9/day"
    )
    other = SqliteLedger(tmp_path / "other.db")
    other.migrate()
    conn = other.open_writer(0)
    try:
        create_key(conn, KeySpec("ci"))  # another live key under a name the target uses
    finally:
        conn.close()
    before = keys_of(postgres)
    with pytest.raises(StoreError, match="already has a live proxy key named 'ci'"):
        copy_ledger(other, postgres)
    assert keys_of(postgres) == before


def test_db_copy_names_the_keys_and_never_prints_a_secret(pg_url: str, monkeypatch):
    monkeypatch.delenv("METERFOX_DATABASE_URL", raising=False)
    home = SqliteLedger(resolve_paths().database)
    home.migrate()
    secret = make_keys(home)
    done = CliRunner().invoke(main, ["db", "copy", "--to", pg_url])
    assert done.exit_code == 0, done.output
    assert "4 proxy keys: 4 new, 0 already there" in done.output
    assert secret not in done.output and secret[-20:] not in done.output
