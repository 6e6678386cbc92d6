"""The latency sample (migration 014): one request in SAMPLE_TABLE_EVERY copied by triggers,
kept in step through updates and deletes, and read by a report's latency pass instead of the
requests when the window is too large to read whole."""

from __future__ import annotations

import sqlite3

from meterfox_cli.store import latency, migrations
from meterfox_cli.store.latency import SAMPLE_TABLE_EVERY
from meterfox_cli.store.queries import build_report
from meterfox_cli.store.select import Filters, TimeRange
from tests.fakes.records import Req, at, insert

ALL = TimeRange()
COLUMNS = "ts, id, day, provider, model, key_name, endpoint, host, latency_ms, ttfb_ms"


def sampled(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(f"SELECT {COLUMNS}, seq FROM latency_sample ORDER BY ts, id").fetchall()


def expected(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(
        f"SELECT {COLUMNS}, rowid / {SAMPLE_TABLE_EVERY} FROM requests "
        f"WHERE rowid % {SAMPLE_TABLE_EVERY} = 0 ORDER BY ts, id"
    ).fetchall()


def test_the_sample_is_one_request_in_n_and_follows_updates_and_deletes(conn):
    insert(conn, *(Req(at("2026-11-03 10:00") + i, latency_ms=float(i)) for i in range(100)))
    assert len(sampled(conn)) == 100 // SAMPLE_TABLE_EVERY
    assert sampled(conn) == expected(conn)
    conn.execute("UPDATE requests SET latency_ms = 1e6, model = 'x' WHERE rowid = ?", (32,))
    conn.execute("UPDATE requests SET cost_nanousd = 7")  # a re-pricing leaves it alone
    conn.execute("DELETE FROM requests WHERE rowid IN (16, 17)")
    conn.commit()
    assert sampled(conn) == expected(conn)
    assert (1e6, "x") in {(row[8], row[4]) for row in sampled(conn)}
    assert len(sampled(conn)) == 100 // SAMPLE_TABLE_EVERY - 1


def test_the_migration_fills_the_sample_from_the_requests_recorded_before(conn):
    insert(conn, *(Req(at("2026-11-03 10:00") + i) for i in range(50)))
    for event in ("insert", "delete", "update"):
        conn.execute(f"DROP TRIGGER IF EXISTS latency_sample_{event}")
    conn.execute("DROP TABLE latency_sample")
    migrations.m015_latency_sample(conn)
    conn.commit()
    assert len(sampled(conn)) == 3
    assert sampled(conn) == expected(conn)


def test_very_large_windows_read_the_sample_not_the_requests(conn, monkeypatch):
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 4)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 1)
    insert(conn, *(Req(at("2026-11-03 10:00"), latency_ms=float(i)) for i in range(1, 201)))
    report = build_report(conn, ("model",), ALL)
    # One in 50 wanted: one in 4 rows of the sample (seq 4, 8, 12: rowids 64, 128, 192), not
    # rowids 50, 100, 150, 200 from the requests.
    assert report.sample_every == report.rows[0].latency_sample_every == 4 * SAMPLE_TABLE_EVERY
    assert report.rows[0].latency_p50_ms == 128.0
    assert report.rows[0].requests == 200


def small_and_big(conn: sqlite3.Connection) -> None:
    insert(
        conn,
        *(Req(at("2026-11-03 10:00"), model="big", latency_ms=float(i)) for i in range(1, 201)),
        *(Req(at("2026-11-03 11:00"), model="small", cost_nano=1) for _ in range(40)),
    )


def test_thin_groups_are_read_from_every_row_of_the_sample(conn, monkeypatch):
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 4)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 5)
    monkeypatch.setattr(latency, "LATENCY_TOP_UP_MAX", 5)  # 15 rows in the sample: no one read
    small_and_big(conn)
    report = build_report(conn, ("model",), ALL)
    rows = {row.group: row for row in report.rows}
    assert rows["big"].latency_sample_every == 4 * SAMPLE_TABLE_EVERY
    assert rows["small"].latency_sample_every == SAMPLE_TABLE_EVERY
    assert rows["small"].latency_p50_ms == 500.0  # rowid 208 or 224: one of its own


def test_a_sample_small_enough_is_read_whole_once(conn, monkeypatch):
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 4)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 5)
    small_and_big(conn)
    report = build_report(conn, ("model",), ALL)
    assert {row.latency_sample_every for row in report.rows} == {SAMPLE_TABLE_EVERY}
    assert report.sample_every == SAMPLE_TABLE_EVERY
    big = next(row for row in report.rows if row.group == "big")
    assert big.latency_p50_ms == 96.0  # rowids 16, 32, …, 192: the 6th of 12


def test_with_a_tag_the_sample_table_is_read_from_half_the_rate(conn, monkeypatch):
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 20)
    insert(conn, *(Req(at("2026-11-03 10:00"), tags=(("team", "a"),)) for _ in range(200)))
    assert build_report(conn, ("model",), ALL).sample_every == 10  # the index, one in 10
    assert build_report(conn, ("tag:team",), ALL).sample_every == SAMPLE_TABLE_EVERY
    filtered = build_report(conn, ("model",), ALL, Filters(tags=(("team", "a"),)))
    assert filtered.sample_every == SAMPLE_TABLE_EVERY


ENV_P = ("env", "p")


def test_with_a_tag_a_small_sample_is_not_read_whole(conn, monkeypatch):
    """Every row read with a tag costs a lookup of its tags, so a sample that could be read
    whole once (as without a tag) is not: a tag filter's thin groups are topped up from every
    row of the sample and the others keep the sample's rate; a tag dimension's thin groups
    (nothing to narrow them by) keep it too."""
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 4)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 5)
    monkeypatch.setattr(latency, "LATENCY_TOP_UP_MAX", 11)  # the 15 rows: one read, untagged
    insert(
        conn,
        *(
            Req(
                at("2026-11-03 10:00"),
                model="big",
                latency_ms=float(i),
                tags=(("team", "a"), ENV_P),
            )
            for i in range(1, 201)
        ),
        *(
            Req(at("2026-11-03 11:00"), model="small", tags=(("team", "b"), ENV_P))
            for _ in range(40)
        ),
    )
    plain = build_report(conn, ("model",), ALL)
    assert {row.latency_sample_every for row in plain.rows} == {SAMPLE_TABLE_EVERY}
    everyone = Filters(tags=(ENV_P,))
    filtered = {row.group: row for row in build_report(conn, ("model",), ALL, everyone).rows}
    assert filtered["big"].latency_sample_every == 4 * SAMPLE_TABLE_EVERY
    assert filtered["big"].latency_p50_ms == 128.0  # seq 4, 8, 12: rowids 64, 128, 192
    assert filtered["small"].latency_sample_every == SAMPLE_TABLE_EVERY  # topped up
    assert filtered["small"].latency_p50_ms == 500.0
    by_tag = {row.group: row for row in build_report(conn, ("tag:team",), ALL).rows}
    assert by_tag["a"].latency_sample_every == by_tag["b"].latency_sample_every
    assert by_tag["b"].latency_sample_every == 4 * SAMPLE_TABLE_EVERY
    assert by_tag["a"].latency_p50_ms == 128.0
