"""Upgrades never lose the books: a database from the oldest schema (migration 001 alone) is
migrated forward by today's `meterfox report` and gives the totals its rows add up to; a
database from a newer meterfox is refused in one sentence and left byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from meterfox_cli.store.db import connect
from meterfox_cli.store.migrations import MIGRATIONS, m001_requests
from tests.cli.conftest import run_meterfox

# Rows as meterfox wrote them with schema 001: (id, provider, model, status, outcome, input,
# output, cost in nano-USD or None for unpriced, cost_source).
ROWS_001 = [
    ("r1", "openai", "gpt-4o", 200, "ok", 1200, 300, 6_000_000, "genai-prices"),
    ("r2", "openai", "gpt-4o", 200, "ok", 800, 100, 3_000_000, "genai-prices"),
    ("r3", "openai", "gpt-4o-mini", 429, "ok", 0, 0, None, "unpriced"),
    ("r4", "anthropic", "claude-sonnet-4", 200, "ok", 5000, 700, 25_500_000, "genai-prices"),
    ("r5", "anthropic", "claude-sonnet-4", 200, "client_closed", 40, 0, 120_000, "genai-prices"),
    ("r6", "gemini", None, 200, "ok", 10, 5, None, "unpriced"),
]


def build_schema_001_database(path: Path, now: float) -> None:
    """The database meterfox's first schema made: migration 001's SQL, its _migrations row,
    and requests in that schema's shape (no host column, no rollup)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    m001_requests(conn)
    conn.execute("INSERT INTO _migrations VALUES ('001_requests', ?)", (now - 86400,))
    for offset, (rid, provider, model, status, outcome, tin, tout, cost, source) in enumerate(
        ROWS_001
    ):
        ts = now - 3600 - offset
        conn.execute(
            "INSERT INTO requests (id, ts, day, provider, model, endpoint, method, status, "
            "streamed, outcome, key_name, latency_ms, usage_known, input_tokens, "
            "output_tokens, cost_nanousd, cost_source) "
            "VALUES (?, ?, date(?, 'unixepoch', 'localtime'), ?, ?, '/v1/x', 'POST', ?, 0, ?, "
            "'', 10.0, 1, ?, ?, ?, ?)",
            (rid, ts, ts, provider, model, status, outcome, tin, tout, cost, source),
        )
    conn.close()


def totals_by_hand() -> dict[str, dict[str, int | None]]:
    totals: dict[str, dict[str, int | None]] = {}
    for _, provider, _, status, outcome, tin, tout, cost, _ in ROWS_001:
        row = totals.setdefault(
            provider,
            {
                "requests": 0,
                "errors": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_nanousd": None,
            },
        )
        row["requests"] += 1
        row["errors"] += status >= 400 or outcome != "ok"
        row["input_tokens"] += tin
        row["output_tokens"] += tout
        if cost is not None:  # a group with no priced request has no cost: null, not $0
            row["cost_nanousd"] = (row["cost_nanousd"] or 0) + cost
    return totals


async def test_todays_report_migrates_a_schema_001_database_and_gives_its_totals(meterfox_home):
    meterfox_home.mkdir(parents=True)
    db = meterfox_home / "meterfox.db"
    build_schema_001_database(db, time.time())

    done = await run_meterfox("report", "--since", "all", "--by", "provider", "--format", "json")
    assert done.returncode == 0, done.stderr
    got = {
        row["provider"]: {name: row[name] for name in totals_by_hand()["openai"]}
        for row in json.loads(done.stdout)
    }
    assert got == totals_by_hand()
    conn = sqlite3.connect(db)
    applied = [name for (name,) in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert applied == [name for name, _ in MIGRATIONS]  # brought forward by its first use
    conn.close()


def fingerprint(db: Path) -> dict[str, str]:
    """The SHA-256 of the database and of any -wal, -shm or -journal beside it."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(db.parent.glob(f"{db.name}*"))
    }


@pytest.fixture
def future_database(meterfox_home: Path) -> Path:
    """Today's schema plus a migration this meterfox does not know, closed cleanly (WAL
    folded in), as a newer meterfox leaves it."""
    meterfox_home.mkdir(parents=True, mode=0o700)
    db = meterfox_home / "meterfox.db"
    conn = connect(db)
    conn.execute("INSERT INTO _migrations VALUES ('999_from_the_future', ?)", (time.time(),))
    conn.close()
    return db


@pytest.mark.parametrize(
    "args",
    [
        ("report", "--since", "all"),
        ("keys", "list"),
        ("db", "migrate"),
        ("db", "backup", "copy.db"),
        ("serve", "--port", "1"),
        ("tail", "--once"),
    ],
)
async def test_a_newer_database_is_refused_in_one_sentence_and_left_untouched(
    future_database, args, tmp_path
):
    before = fingerprint(future_database)
    assert list(before) == ["meterfox.db"]
    args = tuple(str(tmp_path / a) if a == "copy.db" else a for a in args)

    done = await run_meterfox(*args)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"meterfox: the ledger {future_database} has migrations this meterfox does not know "
        "(999_from_the_future): upgrade meterfox"
    ]
    assert fingerprint(future_database) == before  # not a byte, no -wal, no -shm
    assert not (tmp_path / "copy.db").exists()


async def test_doctor_fails_on_a_newer_database_without_touching_it(future_database):
    before = fingerprint(future_database)
    done = await run_meterfox("doctor")
    assert done.returncode == 1
    assert "FAIL database" in done.stdout and "999_from_the_future" in done.stdout
    assert fingerprint(future_database) == before
