"""Ordered, named schema migrations, recorded in the database as they are applied.

A migration, once shipped, is never edited: a change to the schema is a new function at the end
of MIGRATIONS. tests/store/test_migrations.py migrates a blank database and checks the schema.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Migration = Callable[[sqlite3.Connection], None]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT on an autocommit connection; ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _run(conn: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated DDL inside the caller's transaction (executescript would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def m001_requests(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            day TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT,
            endpoint TEXT NOT NULL,
            method TEXT NOT NULL,
            status INTEGER NOT NULL,
            streamed INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            key_name TEXT NOT NULL,
            ttfb_ms REAL,
            latency_ms REAL NOT NULL,
            usage_known INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            units TEXT,
            price_context TEXT,
            dedupe_key TEXT,
            reported_cost_usd TEXT,
            cost_nanousd INTEGER,
            cost_source TEXT NOT NULL DEFAULT 'unpriced',
            price_detail TEXT
        );
        CREATE INDEX requests_ts ON requests (ts);
        CREATE INDEX requests_day ON requests (day);
        CREATE TABLE request_tags (
            request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (request_id, name)
        ) WITHOUT ROWID;
        CREATE INDEX request_tags_name ON request_tags (name, value);
        """,
    )


def m002_native_dedupe(conn: sqlite3.Connection) -> None:
    """At most one record with usage per billable unit seen more than once (a Replicate
    prediction polled twice). The writer checks first; the index makes the rule hold, and the
    check fast."""
    _run(
        conn,
        """
        CREATE UNIQUE INDEX requests_dedupe ON requests (dedupe_key)
            WHERE dedupe_key IS NOT NULL AND usage_known = 1;
        """,
    )


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_requests", m001_requests),
    ("002_native_dedupe", m002_native_dedupe),
]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return their names."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        with transaction(conn):
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                continue  # another process applied it while we waited for the lock
            migration(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
        applied.append(name)
    return applied
