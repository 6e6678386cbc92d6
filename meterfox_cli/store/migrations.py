"""The schema, as ordered, named migrations (`store.db.migrate` applies and records them).

A migration, once shipped, is never edited: a change to the schema is a new function at the end
of MIGRATIONS. tests/store/test_migrations.py migrates a blank database and checks the schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]


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


def m003_keys(conn: sqlite3.Connection) -> None:
    """Proxy keys (a SHA-256 hash, never the key), the index of stored provider keys (never the
    key: that is in the keyring or the encrypted file), and a version counter that triggers bump
    on every change, so a running daemon notices a revocation with one cheap read."""
    _run(
        conn,
        """
        CREATE TABLE proxy_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash BLOB NOT NULL UNIQUE,
            providers TEXT NOT NULL DEFAULT '[]',
            tags TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            expires_at REAL,
            revoked_at REAL,
            budget_nanousd INTEGER,
            budget_period TEXT
        );
        CREATE UNIQUE INDEX proxy_keys_live_name ON proxy_keys (name) WHERE revoked_at IS NULL;
        CREATE TABLE provider_keys (
            provider TEXT PRIMARY KEY,
            store TEXT NOT NULL,
            set_at REAL NOT NULL
        );
        CREATE TABLE key_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        );
        INSERT INTO key_state (id, version) VALUES (1, 0);
        CREATE INDEX requests_key_ts ON requests (key_name, ts);
        """,
    )
    for table in ("proxy_keys", "provider_keys"):
        for event in ("INSERT", "UPDATE", "DELETE"):
            conn.execute(
                f"CREATE TRIGGER {table}_{event.lower()}_bumps AFTER {event} ON {table} "
                "BEGIN UPDATE key_state SET version = version + 1 WHERE id = 1; END"
            )


# The report rollup: one row per (hour, day, provider, model, key, endpoint) holding exact sums,
# kept in step with `requests` by triggers (insert, delete, update) inside the same transaction,
# whoever writes. Reports read whole hours from it and only the partial hours at a window's
# edges from `requests`, so a month of a million requests sums in milliseconds.
# A request without a model is rolled up under model '' (reports show both as unknown).
ROLLUP_SUMS: tuple[tuple[str, str], ...] = (
    ("requests", "1"),
    ("errors", "({r}.status >= 400 OR {r}.outcome != 'ok')"),
    ("input_tokens", "{r}.input_tokens"),
    ("cached_tokens", "{r}.cached_tokens"),
    ("cache_write_tokens", "{r}.cache_write_tokens"),
    ("output_tokens", "{r}.output_tokens"),
    ("reasoning_tokens", "{r}.reasoning_tokens"),
    ("cost_nanousd", "IFNULL({r}.cost_nanousd, 0)"),
    ("priced_requests", "({r}.cost_nanousd IS NOT NULL)"),
    ("unpriced_requests", "({r}.cost_source = 'unpriced')"),
    ("unpriced_input_tokens", "IIF({r}.cost_source = 'unpriced', {r}.input_tokens, 0)"),
    ("unpriced_output_tokens", "IIF({r}.cost_source = 'unpriced', {r}.output_tokens, 0)"),
)
ROLLUP_KEYS: tuple[tuple[str, str], ...] = (
    ("hour", "CAST({r}.ts / 3600 AS INTEGER)"),
    ("day", "{r}.day"),
    ("provider", "{r}.provider"),
    ("model", "IFNULL({r}.model, '')"),
    ("key_name", "{r}.key_name"),
    ("endpoint", "{r}.endpoint"),
)


def _rollup_upsert(row: str, sign: str) -> str:
    """An UPSERT adding (sign '+') or taking away (sign '-') one request row's sums."""
    keys = ", ".join(name for name, _ in ROLLUP_KEYS)
    sums = ", ".join(name for name, _ in ROLLUP_SUMS)
    values = ", ".join(
        [expr.format(r=row) for _, expr in ROLLUP_KEYS]
        + [f"{sign}{expr.format(r=row)}" for _, expr in ROLLUP_SUMS]
    )
    updates = ", ".join(f"{name} = {name} + excluded.{name}" for name, _ in ROLLUP_SUMS)
    return (
        f"INSERT INTO request_rollup ({keys}, {sums}) VALUES ({values}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates};"
    )


def _rollup_prune(row: str) -> str:
    match = " AND ".join(f"{name} = {expr.format(r=row)}" for name, expr in ROLLUP_KEYS)
    return f"DELETE FROM request_rollup WHERE {match} AND requests = 0;"


def m004_report_rollup(conn: sqlite3.Connection) -> None:
    keys = ", ".join(
        f"{name} {'INTEGER' if name == 'hour' else 'TEXT'} NOT NULL" for name, _ in ROLLUP_KEYS
    )
    sums = ", ".join(f"{name} INTEGER NOT NULL" for name, _ in ROLLUP_SUMS)
    key_names = ", ".join(name for name, _ in ROLLUP_KEYS)
    conn.execute(
        f"CREATE TABLE request_rollup ({keys}, {sums}, PRIMARY KEY ({key_names})) WITHOUT ROWID"
    )
    key_exprs = ", ".join(expr.format(r="requests") for _, expr in ROLLUP_KEYS)
    sum_exprs = ", ".join(f"SUM({expr.format(r='requests')})" for _, expr in ROLLUP_SUMS)
    conn.execute(
        f"INSERT INTO request_rollup SELECT {key_exprs}, {sum_exprs} FROM requests "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(ROLLUP_KEYS)))}"
    )
    # The latency pass of a report reads only this index (no table rows): ts for the window,
    # the dimensions and filters it may group on, and the two latencies.
    conn.execute(
        "CREATE INDEX requests_latency ON requests "
        "(ts, provider, model, key_name, day, latency_ms, ttfb_ms)"
    )
    conn.execute(
        "CREATE TRIGGER request_rollup_insert AFTER INSERT ON requests BEGIN "
        f"{_rollup_upsert('NEW', '+')} END"
    )
    conn.execute(
        "CREATE TRIGGER request_rollup_delete AFTER DELETE ON requests BEGIN "
        f"{_rollup_upsert('OLD', '-')} {_rollup_prune('OLD')} END"
    )
    conn.execute(
        "CREATE TRIGGER request_rollup_update AFTER UPDATE ON requests BEGIN "
        f"{_rollup_upsert('OLD', '-')} {_rollup_upsert('NEW', '+')} {_rollup_prune('OLD')} END"
    )


def m005_key_allow_unpriced(conn: sqlite3.Connection) -> None:
    """Whether a budgeted key may make requests MeterFox cannot price (they count as $0)."""
    conn.execute("ALTER TABLE proxy_keys ADD COLUMN allow_unpriced INTEGER NOT NULL DEFAULT 0")


def m006_billed_buckets(conn: sqlite3.Connection) -> None:
    """What the providers' own usage and cost APIs say they billed (`meterfox sync`), apart
    from the proxy's records: one row per bucket the API gave (provider, UTC bucket, model and
    the grouping ids), tokens in the normalised usage shape, and the cost with its source;
    and per provider the span synced so far (the earliest start, the latest end). No secret is ever stored here."""
    _run(
        conn,
        """
        CREATE TABLE billed_buckets (
            provider TEXT NOT NULL,
            bucket_start INTEGER NOT NULL,
            bucket_end INTEGER NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            project_id TEXT NOT NULL DEFAULT '',
            workspace_id TEXT NOT NULL DEFAULT '',
            api_key_id TEXT NOT NULL DEFAULT '',
            service_tier TEXT NOT NULL DEFAULT '',
            batch TEXT NOT NULL DEFAULT '',
            requests INTEGER,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cost_nanousd INTEGER,
            cost_source TEXT NOT NULL,
            synced_at REAL NOT NULL,
            PRIMARY KEY (provider, bucket_start, model, project_id, workspace_id, api_key_id,
                         service_tier, batch)
        ) WITHOUT ROWID;
        CREATE TABLE sync_state (
            provider TEXT PRIMARY KEY,
            synced_from INTEGER NOT NULL,
            synced_until INTEGER NOT NULL,
            synced_at REAL NOT NULL
        );
        """,
    )


def m007_request_host(conn: sqlite3.Connection) -> None:
    """Which daemon recorded each request (`[store] host`, else the machine's hostname), for a
    team's shared ledger and `report --by host`; '' for records from before it was kept."""
    conn.execute("ALTER TABLE requests ADD COLUMN host TEXT NOT NULL DEFAULT ''")


def m008_key_spend(conn: sqlite3.Connection) -> None:
    """Each key's recorded cost per hour, kept in step with `requests` by triggers in the same
    transaction, whoever writes: budgets read a key's spend this period from here (whole hours)
    and from `requests` (a period starting inside an hour), not by summing every request.
    The same table as PostgreSQL's (pg_migrations 004_proxy_keys), read by the same SQL."""
    hour = "CAST({r}.ts / 3600 AS INTEGER)"
    add = (
        "INSERT INTO key_spend SELECT NEW.key_name, {hour}, NEW.cost_nanousd "
        "WHERE NEW.cost_nanousd IS NOT NULL ON CONFLICT (key_name, hour) "
        "DO UPDATE SET cost_nanousd = cost_nanousd + excluded.cost_nanousd;"
    ).format(hour=hour.format(r="NEW"))
    take = (
        "UPDATE key_spend SET cost_nanousd = cost_nanousd - OLD.cost_nanousd "
        "WHERE OLD.cost_nanousd IS NOT NULL AND key_name = OLD.key_name AND hour = {hour};"
    ).format(hour=hour.format(r="OLD"))
    conn.execute(
        "CREATE TABLE key_spend (key_name TEXT NOT NULL, hour INTEGER NOT NULL, "
        "cost_nanousd INTEGER NOT NULL, PRIMARY KEY (key_name, hour)) WITHOUT ROWID"
    )
    conn.execute(
        f"INSERT INTO key_spend SELECT key_name, {hour.format(r='requests')}, SUM(cost_nanousd) "
        "FROM requests WHERE cost_nanousd IS NOT NULL GROUP BY 1, 2"
    )
    conn.execute(f"CREATE TRIGGER key_spend_insert AFTER INSERT ON requests BEGIN {add} END")
    conn.execute(f"CREATE TRIGGER key_spend_delete AFTER DELETE ON requests BEGIN {take} END")
    conn.execute(f"CREATE TRIGGER key_spend_update AFTER UPDATE ON requests BEGIN {take} {add} END")


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_requests", m001_requests),
    ("002_native_dedupe", m002_native_dedupe),
    ("003_keys", m003_keys),
    ("004_report_rollup", m004_report_rollup),
    ("005_key_allow_unpriced", m005_key_allow_unpriced),
    ("006_billed_buckets", m006_billed_buckets),
    ("007_request_host", m007_request_host),
    ("008_key_spend", m008_key_spend),
]
