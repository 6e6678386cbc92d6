"""Latency percentiles over a real SQLite database: nearest rank per group, and the sample a
large window takes (with the groups it leaves thin read in full)."""

from __future__ import annotations

import pytest

from meterfox_cli.store import latency
from meterfox_cli.store.dimensions import parse_dimensions
from meterfox_cli.store.latency import nearest_rank
from meterfox_cli.store.queries import build_report
from meterfox_cli.store.select import TimeRange
from tests.fakes.records import Req, at, insert

ALL = TimeRange()


def by_group(rows) -> dict:
    return {row.group: row for row in rows}


def test_latency_percentiles_are_nearest_rank_per_group(conn):
    insert(
        conn,
        *(
            Req(at("2026-11-03 10:00"), model="a", latency_ms=float(ms), ttfb_ms=ms / 10)
            for ms in range(1, 101)
        ),
        Req(at("2026-11-03 10:00"), model="b", latency_ms=42.0),
    )
    report = build_report(conn, ("model",), ALL)
    rows = by_group(report.rows)
    assert (rows["a"].latency_p50_ms, rows["a"].latency_p95_ms) == (50.0, 95.0)
    assert rows["a"].ttfb_p50_ms == 5.0
    assert (rows["b"].latency_p50_ms, rows["b"].latency_p95_ms, rows["b"].ttfb_p50_ms) == (
        42.0,
        42.0,
        None,
    )
    assert report.total.latency_p50_ms == 50.0  # rank 51 of 101
    assert report.sample_every == 1


def test_large_windows_take_latency_from_a_systematic_sample(conn, monkeypatch):
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 10)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 1)
    insert(conn, *(Req(at("2026-11-03 10:00"), latency_ms=float(i)) for i in range(1, 41)))
    report = build_report(conn, ("model",), ALL)
    assert report.sample_every == 4
    # rowids 4, 8, …, 40 carry latencies 4, 8, …, 40: the sample's nearest-rank median is 20.
    assert report.rows[0].latency_p50_ms == 20.0
    assert report.rows[0].latency_sample_every == 4
    assert report.rows[0].requests == 40  # sums never sample


@pytest.mark.parametrize("by", ["model", "day", "week", "month", "provider,model"])
def test_groups_the_sample_leaves_thin_are_read_in_full(conn, monkeypatch, by):
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 20)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 5)
    insert(
        conn,
        *(Req(at("2026-11-03 10:00"), model="big", latency_ms=float(i)) for i in range(200)),
        *(
            Req(at("2026-12-05 10:00"), model=None, provider="groq", latency_ms=float(ms))
            for ms in (7, 9, 11)
        ),
    )
    report = build_report(conn, parse_dimensions(by), ALL)
    big, small = report.rows  # the big group is dearer: 200 requests at the same price
    assert big.latency_sample_every == report.sample_every == 11
    assert small.latency_sample_every == 1
    assert (small.latency_p50_ms, small.latency_p95_ms) == (9.0, 11.0)  # exact
    assert report.total.latency_sample_every == 11


def test_reading_small_groups_in_full_never_drags_in_a_big_one(conn, monkeypatch):
    """The full read filters on each dimension's values, so it matches their cross product:
    (day 1 or 2) × (openai or groq) would include the big (day 1, openai) group."""
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 20)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 5)
    monkeypatch.setattr(latency, "LATENCY_TOP_UP_MAX", 50)
    day1, day2 = at("2026-11-03 10:00"), at("2026-11-04 10:00")
    insert(
        conn,
        *(Req(day1, provider="openai", cost_nano=100) for _ in range(200)),
        Req(day1, provider="groq", cost_nano=2),
        Req(day1, provider="groq", cost_nano=2),
        *(Req(day2, provider="openai", cost_nano=1) for _ in range(3)),
    )
    rows = by_group(build_report(conn, ("day", "provider"), ALL).rows)
    assert rows["2026-11-03 / openai"].latency_sample_every == 11
    assert rows["2026-11-03 / groq"].latency_sample_every == 1  # the smallest: read in full
    assert rows["2026-11-04 / openai"].latency_sample_every == 11  # would have widened it


def test_tag_groups_cannot_be_read_again_and_stay_sampled(conn, monkeypatch):
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 30)  # one in 7: the index
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 5)
    insert(
        conn,
        *(Req(at("2026-11-03 10:00"), tags=(("team", "a"),)) for _ in range(200)),
        *(Req(at("2026-11-03 10:00"), tags=(("team", "b"),)) for _ in range(3)),
    )
    report = build_report(conn, ("tag:team",), ALL)
    assert {row.latency_sample_every for row in report.rows} == {7}


def test_nearest_rank():
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([3.0], 0.95) == 3.0
    assert nearest_rank([1.0, 2.0], 0.5) == 1.0
    assert nearest_rank([float(i) for i in range(1, 21)], 0.95) == 19.0
