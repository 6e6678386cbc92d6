"""The report tests' database: the shared `conn` with three requests recorded in it (two priced,
one unpriced, over two days and two providers)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.fakes.records import Req, at, insert


@pytest.fixture
def recorded_conn(conn: sqlite3.Connection) -> sqlite3.Connection:
    insert(
        conn,
        Req(
            at("2026-11-03 10:00"),
            provider="openai",
            model="gpt-4o",
            cost_nano=12_345_678_123_456_789,
            input_tokens=3,
            output_tokens=4,
            latency_ms=1500.0,
            ttfb_ms=300.0,
            tags=(("feature", "search"),),
        ),
        Req(at("2026-11-04 10:00"), provider="groq", model="llama", cost_nano=1, latency_ms=80.0),
        Req(
            at("2026-11-04 11:00"),
            provider="openai",
            model="ft:custom",
            cost_nano=None,
            unpriced=True,
            input_tokens=1000,
            output_tokens=20,
        ),
    )
    return conn
