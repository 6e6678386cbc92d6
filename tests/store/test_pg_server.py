"""The suite's own PostgreSQL server (tests/pg.py) answers, and a test's database is its own."""

from __future__ import annotations

import psycopg
import pytest

from tests import pg


def test_the_server_answers_on_loopback(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        (version,) = conn.execute("SHOW server_version_num").fetchone()
        (addr,) = conn.execute("SELECT inet_server_addr()::text").fetchone()
    assert int(version) >= 130000
    assert addr.startswith("127.0.0.1")


def test_each_test_gets_an_empty_database(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        (tables,) = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == 0


def test_without_the_server_binaries_the_fixture_fails_saying_what_to_run(monkeypatch) -> None:
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])  # a machine without the package
    with pytest.raises(pytest.fail.Exception, match="run scripts/test"):
        pg.server_bin_dir()
