"""Reading requests one by one: the latest, those after a rowid, and following new ones, on
PostgreSQL too, where several writers commit row ids out of order."""

from __future__ import annotations

import pytest

from meterfox_cli.pricing.quote import Price
from meterfox_cli.store import feed
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.rows import insert_records
from meterfox_cli.store.select import Filters, TimeRange
from meterfox_cli.usage import Reading
from tests.fakes.records import Req, at, insert, usage_record


def test_latest_is_oldest_first_and_filtered(conn):
    insert(conn, *(Req(at("2026-11-03 10:00") + i, model=f"m{i}") for i in range(5)))
    assert [line.model for line in feed.latest(conn, 3)] == ["m2", "m3", "m4"]
    assert [line.model for line in feed.latest(conn, 9, Filters(models=("m1",)))] == ["m1"]
    assert feed.latest(conn, 0) == []


def test_after_returns_what_was_committed_since(conn):
    insert(conn, Req(at("2026-11-03 10:00"), model="old"))
    mark = feed.last_rowid(conn)
    insert(conn, Req(at("2026-11-03 09:00"), model="late but new"))  # rowid order, not ts
    assert [line.model for line in feed.after(conn, mark)] == ["late but new"]


def test_follow_yields_new_batches_and_stops_at_its_deadline(conn):
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds
        if len(sleeps) == 2:  # a request arrives while tail waits
            insert(conn, Req(at("2026-11-03 10:00"), model="arrived"))

    batches = list(
        feed.follow(
            conn,
            feed.cursor_at_end(conn, clock[0]),
            interval=0.5,
            deadline=3.0,
            clock=lambda: clock[0],
            sleep=sleep,
        )
    )
    assert [[line.model for line in batch] for batch in batches] == [["arrived"]]
    assert clock[0] == pytest.approx(3.0)  # then it waited out the deadline, no further


def test_export_rows_carry_tags_and_respect_the_window(conn):
    insert(
        conn,
        Req(at("2026-11-03 10:00"), tags=(("team", "a"), ("env", "prod"))),
        Req(at("2026-11-04 10:00")),
    )
    rows = list(feed.export_rows(conn, TimeRange(at("2026-11-03 00:00"), at("2026-11-04 00:00"))))
    assert len(rows) == 1
    assert rows[0].tags == '{"env":"prod","team":"a"}'
    assert list(feed.export_rows(conn, TimeRange()))[1].tags == "{}"


def test_rows_committed_late_by_other_writers_are_followed_once_each(pg_url):
    """On PostgreSQL a row id is taken at INSERT and seen at COMMIT: writers interleave so
    that lower ids commit after higher ones were read, and one id is rolled back. `follow`
    delivers every committed row exactly once, and gives the rolled-back id up in time."""
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    a, b, reader = ledger.connect(), ledger.connect(), ledger.connect()

    def put(conn, model: str) -> None:
        """A row under the writer's own key (two daemons' rows of one key and hour wait on each
        other's commit in the key's spend row: that order cannot interleave)."""
        key = "ka" if conn is a else "kb"
        record = usage_record(model=model, reading=Reading(model=model), key_name=key)
        insert_records(conn, [(record, Price(1, "computed"))])

    a.execute("BEGIN")
    put(a, "r0")  # in flight when the follower starts
    put(b, "b0")  # committed before it starts: not new
    steps = [
        lambda: a.execute("COMMIT"),
        lambda: (a.execute("BEGIN"), put(a, "r1"), put(b, "r2")),  # b commits first
        lambda: a.execute("COMMIT"),
        lambda: (
            a.execute("BEGIN"),
            put(a, "r3"),
            b.execute("BEGIN"),
            put(b, "r4"),
            put(a, "r5"),
            b.execute("COMMIT"),
        ),
        lambda: a.execute("COMMIT"),
        lambda: (a.execute("BEGIN"), put(a, "gone"), a.execute("ROLLBACK"), put(b, "r6")),
    ]
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if steps:
            steps.pop(0)()

    try:
        batches = feed.follow(
            reader,
            feed.cursor_at_end(reader, clock[0]),
            interval=0.5,
            deadline=30.0,
            clock=lambda: clock[0],
            sleep=sleep,
        )
        seen = [line.model for batch in batches for line in batch]
    finally:
        for conn in (a, b, reader):
            conn.close()
    assert seen == ["r0", "r2", "r1", "r4", "r3", "r5", "r6"]


def test_a_gap_that_never_fills_is_given_up_after_the_wait(conn):
    insert(conn, *(Req(at("2026-11-03 10:00") + i, model=f"m{i}") for i in range(3)))
    conn.execute("DELETE FROM requests WHERE rowid = 2")  # a hole for good
    conn.commit()
    lines, cursor = feed.read_new(conn, feed.Cursor(0), now=0.0)
    assert [line.model for line in lines] == ["m0", "m2"]
    assert (cursor.low, cursor.above) == (1, {3})  # still waiting on 2
    assert feed.read_new(conn, cursor, now=1.0)[0] == []  # nothing twice
    lines, cursor = feed.read_new(conn, cursor, now=feed.GAP_WAIT_S)
    assert lines == [] and cursor == feed.Cursor(3)  # given up: nothing left to watch
