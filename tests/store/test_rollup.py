"""The report rollup stays equal to the requests table, whoever inserts, updates or deletes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from meterfox_cli.records import Outcome
from meterfox_cli.store.db import migrate
from meterfox_cli.store.migrations import MIGRATIONS, ROLLUP_KEYS, ROLLUP_SUMS
from meterfox_cli.store.rows import REQUEST_COLUMNS, request_row
from tests.fakes.records import Req, at, insert

KEYS = ", ".join(name for name, _ in ROLLUP_KEYS)
SUMS = ", ".join(name for name, _ in ROLLUP_SUMS)


def rollup(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(f"SELECT {KEYS}, {SUMS} FROM request_rollup ORDER BY {KEYS}").fetchall()


def recomputed(conn: sqlite3.Connection) -> list[tuple]:
    """The rollup as it should be, summed from scratch."""
    keys = ", ".join(expr.format(r="requests") for _, expr in ROLLUP_KEYS)
    sums = ", ".join(f"SUM({expr.format(r='requests')})" for _, expr in ROLLUP_SUMS)
    order = ", ".join(str(i + 1) for i in range(len(ROLLUP_KEYS)))
    return conn.execute(
        f"SELECT {keys}, {sums} FROM requests GROUP BY {order} ORDER BY {order}"
    ).fetchall()


MIX = (
    Req(at("2026-11-03 10:05"), model="a", cost_nano=10, input_tokens=5),
    Req(at("2026-11-03 10:55"), model="a", cost_nano=None, unpriced=True, output_tokens=9),
    Req(
        at("2026-11-03 11:00"),
        model=None,
        key="ci",
        status=500,
        outcome=Outcome.UPSTREAM_ERROR,
        cost_nano=None,
    ),
    Req(
        at("2026-11-04 23:59:59"), provider="groq", model="b", cost_nano=7, tags=(("feature", "x"),)
    ),
)


def test_inserts_are_rolled_up_per_hour(conn):
    insert(conn, *MIX)
    assert rollup(conn) == recomputed(conn)
    hours = {row[0] for row in rollup(conn)}
    assert len(hours) == 3
    first = next(row for row in rollup(conn) if row[3] == "a")
    assert first[6:9] == (2, 0, 105)  # two requests, no errors, 5 + 100 input tokens


def test_an_update_moves_the_request_between_rollup_rows(conn):
    insert(conn, *MIX)
    conn.execute(
        "UPDATE requests SET cost_nanousd = 99, cost_source = 'computed' "
        "WHERE cost_source = 'unpriced'"
    )
    conn.execute("UPDATE requests SET model = 'renamed' WHERE model = 'b'")
    assert rollup(conn) == recomputed(conn)
    assert not conn.execute("SELECT 1 FROM request_rollup WHERE model = 'b'").fetchone()


def test_deletes_are_taken_away_and_empty_rows_removed(conn):
    insert(conn, *MIX)
    conn.execute("DELETE FROM requests WHERE model = 'a'")
    assert rollup(conn) == recomputed(conn)
    conn.execute("DELETE FROM requests")
    assert rollup(conn) == []


def insert_before_host(conn: sqlite3.Connection, *requests: Req) -> None:
    """Requests as a version before 007_request_host wrote them (no `host` column)."""
    rows = [request_row(req.record(), req.price()) for req in requests]
    columns = [name for name in REQUEST_COLUMNS if name != "host"]
    marks = ", ".join("?" * len(columns))
    conn.executemany(
        f"INSERT INTO requests ({', '.join(columns)}) VALUES ({marks})",
        [[row[name] for name in columns] for row in rows],
    )


def test_the_migration_rolls_up_requests_recorded_before_it(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    first_name, first = MIGRATIONS[0]
    first(conn)  # a database from the version before the rollup…
    conn.execute("INSERT INTO _migrations VALUES (?, 0)", (first_name,))
    insert_before_host(conn, *MIX)  # …holding requests recorded then
    assert "004_report_rollup" in migrate(conn)
    assert rollup(conn) == recomputed(conn)
    assert len(rollup(conn)) == 3  # two requests share a rollup row
    insert(conn, Req(at("2026-11-03 10:30"), model="a"))  # and it keeps up from then on
    assert rollup(conn) == recomputed(conn)
    conn.close()


def per_day(conn: sqlite3.Connection) -> tuple[list[tuple], list[tuple]]:
    """day_rollup, and the hourly rollup summed per UTC day: they must be equal."""
    keys = "day, provider, model, key_name, endpoint"
    sums = ", ".join(f"SUM({name})" for name, _ in ROLLUP_SUMS)
    daily = conn.execute(
        f"SELECT utc_day, {keys}, {sums} FROM day_rollup GROUP BY 1, 2, 3, 4, 5, 6 "
        "HAVING SUM(requests) != 0 ORDER BY 1, 2, 3, 4, 5, 6"
    ).fetchall()
    hourly = conn.execute(
        f"SELECT hour / 24, {keys}, {sums} FROM request_rollup GROUP BY 1, 2, 3, 4, 5, 6 "
        "ORDER BY 1, 2, 3, 4, 5, 6"
    ).fetchall()
    return daily, hourly


def test_the_day_rollup_is_the_hourly_rollup_per_utc_day(conn):
    insert(conn, *MIX)
    daily, hourly = per_day(conn)
    assert daily == hourly and len(daily) == 3  # two requests share a day and group
    conn.execute("UPDATE requests SET cost_nanousd = 99, cost_source = 'computed'")
    conn.execute("UPDATE requests SET ts = ts + 86400 WHERE model = 'b'")
    assert per_day(conn)[0] == per_day(conn)[1]
    conn.execute("DELETE FROM requests WHERE model = 'a'")
    assert per_day(conn)[0] == per_day(conn)[1]
    conn.execute("DELETE FROM requests")
    assert conn.execute("SELECT count(*) FROM day_rollup").fetchone() == (0,)
