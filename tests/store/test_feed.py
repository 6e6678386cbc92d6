"""Reading requests one by one: the latest, those after a rowid, and following new ones."""

from __future__ import annotations

import pytest

from meterfox_cli.store import feed
from meterfox_cli.store.select import Filters, TimeRange
from tests.fakes.records import Req, at, insert


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
            feed.last_rowid(conn),
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
