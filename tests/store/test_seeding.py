"""The benchmark's seeding scripts, which fill the ledgers the report figures are measured on,
leave every rollup equal to the requests summed: `bench/seed_db.py` (records, and `--grow-to`'s
copies, through the writer's insert) and `bench/seed_pg.py` (COPY, then the rollups rebuilt)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.seed_db import grow_to
from bench.seed_db import seed as seed_sqlite
from bench.seed_pg import seed as seed_pg
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.sqlite import SqliteLedger
from tests.store.summed import assert_summed


def test_seed_db_and_its_growth_keep_the_rollups(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "meterfox.db")
    seed_sqlite(ledger.path, 600, 3, 7, time.time())
    assert_summed(ledger)
    grow_to(ledger.path, 1500)
    conn = ledger.open_writer()
    try:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] >= 1500
    finally:
        conn.close()
    assert_summed(ledger)


def test_seed_pg_rebuilds_the_rollups_after_its_copy(pg_url: str) -> None:
    seed_pg(pg_url, 900, 3, 7, limit_s=120, copies=3)
    assert_summed(PostgresLedger(pg_url))
