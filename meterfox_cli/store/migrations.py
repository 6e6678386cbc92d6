"""The schema, as ordered, named migrations (`store.db.migrate` applies and records them).

A migration, once shipped, is never edited: a change to the schema is a new function at the end
of MIGRATIONS. tests/store/test_migrations.py migrates a blank database and checks the schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from meterfox_cli.store.latency import LATENCY_BUCKET_SQL, SAMPLE_TABLE_EVERY
from meterfox_cli.store.tagsets import request_tags_sql, tagset_sql

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


RollupKeys = tuple[tuple[str, str], ...]


def _rollup_upsert(
    row: str, sign: str, table: str = "request_rollup", key_exprs: RollupKeys = ROLLUP_KEYS
) -> str:
    """An UPSERT adding (sign '+') or taking away (sign '-') one request row's sums in a
    rollup `table` keyed by `key_exprs` (the hourly rollup, or the daily one of 011)."""
    keys = ", ".join(name for name, _ in key_exprs)
    sums = ", ".join(name for name, _ in ROLLUP_SUMS)
    values = ", ".join(
        [expr.format(r=row) for _, expr in key_exprs]
        + [f"{sign}{expr.format(r=row)}" for _, expr in ROLLUP_SUMS]
    )
    updates = ", ".join(f"{name} = {name} + excluded.{name}" for name, _ in ROLLUP_SUMS)
    return (
        f"INSERT INTO {table} ({keys}, {sums}) VALUES ({values}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates};"
    )


def _rollup_prune(
    row: str, table: str = "request_rollup", key_exprs: RollupKeys = ROLLUP_KEYS
) -> str:
    match = " AND ".join(f"{name} = {expr.format(r=row)}" for name, expr in key_exprs)
    return f"DELETE FROM {table} WHERE {match} AND requests = 0;"


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


ALERTS_FIRED = """
CREATE TABLE alerts_fired (
    rule TEXT NOT NULL,
    period_start TEXT NOT NULL,
    threshold INTEGER NOT NULL,
    fired_at DOUBLE PRECISION NOT NULL,
    spend_nanousd BIGINT NOT NULL,
    budget_nanousd BIGINT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (rule, period_start, threshold)
)"""


def m008_alerts_fired(conn: sqlite3.Connection) -> None:
    """Each alert threshold that fired (alerts/state.py): a rule (`key:NAME`, `monthly`,
    `provider:NAME`, `tag:NAME=VALUE`, `spike`), the start of its period, the percent, and what
    was said. The key makes each fire once per period, across restarts and daemons."""
    conn.execute(ALERTS_FIRED)


# The tag rollup: one row per (UTC day, local day, provider, model, key, endpoint, tag set) with
# the same exact sums as request_rollup, where the tag set is the request's whole set of tags as
# one string (store/tagsets.py; '' when untagged). A report grouped or filtered by tags reads it
# for the whole UTC days of its window and `requests` for the partial days at the edges. Days,
# not hours: a tag set multiplies the rows, and a day holds them to a few per combination.
# Kept by triggers on both tables. The writer inserts a request and then its tags, so a tagged
# request first lands under '' and each tag moves it to its larger set; the rows a move leaves at
# zero requests stay (a read skips groups of zero requests); deletes prune them.
TAG_ROLLUP_KEYS: tuple[tuple[str, str], ...] = (
    ("utc_day", "CAST({r}.ts / 86400 AS INTEGER)"),
    *((name, expr) for name, expr in ROLLUP_KEYS if name != "hour"),
)
_TAG_KEY_NAMES = ", ".join([*(name for name, _ in TAG_ROLLUP_KEYS), "tagset"])
_TAG_SUM_NAMES = ", ".join(name for name, _ in ROLLUP_SUMS)
_TAG_CONFLICT = (
    f"ON CONFLICT ({_TAG_KEY_NAMES}) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name, _ in ROLLUP_SUMS)
    + ";"
)


def _tag_values(row: str, tagset: str, sign: str) -> str:
    return ", ".join(
        [expr.format(r=row) for _, expr in TAG_ROLLUP_KEYS]
        + [tagset]
        + [f"{sign}{expr.format(r=row)}" for _, expr in ROLLUP_SUMS]
    )


def _tag_upsert(row: str, tagset: str, sign: str) -> str:
    """Add or take away the sums of the request row `row` (NEW or OLD) under `tagset`."""
    return (
        f"INSERT INTO tag_rollup ({_TAG_KEY_NAMES}, {_TAG_SUM_NAMES}) "
        f"VALUES ({_tag_values(row, tagset, sign)}) {_TAG_CONFLICT}"
    )


def tag_move(request_id: str, tagset: str, sign: str) -> str:
    """Add or take away the sums of the stored request `request_id` under `tagset`."""
    return (
        f"INSERT INTO tag_rollup ({_TAG_KEY_NAMES}, {_TAG_SUM_NAMES}) "
        f"SELECT {_tag_values('r', tagset, sign)} FROM requests r WHERE r.id = {request_id} "
        f"{_TAG_CONFLICT}"
    )


def _tag_prune(row: str, tagset: str) -> str:
    match = " AND ".join(f"{name} = {expr.format(r=row)}" for name, expr in TAG_ROLLUP_KEYS)
    return f"DELETE FROM tag_rollup WHERE {match} AND tagset = {tagset} AND requests = 0;"


def _tag_prune_stored(request_id: str, tagset: str) -> str:
    match = " AND ".join(
        f"tag_rollup.{name} = {expr.format(r='r')}" for name, expr in TAG_ROLLUP_KEYS
    )
    return (
        f"DELETE FROM tag_rollup WHERE requests = 0 AND tagset = {tagset} AND EXISTS "
        f"(SELECT 1 FROM requests r WHERE r.id = {request_id} AND {match});"
    )


def m009_tag_rollup(conn: sqlite3.Connection) -> None:
    keys = ", ".join(
        f"{name} {'INTEGER' if name == 'utc_day' else 'TEXT'} NOT NULL"
        for name, _ in TAG_ROLLUP_KEYS
    )
    sums = ", ".join(f"{name} INTEGER NOT NULL" for name, _ in ROLLUP_SUMS)
    conn.execute(
        f"CREATE TABLE tag_rollup ({keys}, tagset TEXT NOT NULL, {sums}, "
        f"PRIMARY KEY ({_TAG_KEY_NAMES})) WITHOUT ROWID"
    )
    pair = "length(name) || ':' || name || length(value) || ':' || value"
    sets = (
        f"SELECT request_id, group_concat({pair}, '') AS tagset FROM "
        "(SELECT request_id, name, value FROM request_tags ORDER BY request_id, name) "
        "GROUP BY request_id"
    )
    key_exprs = ", ".join(expr.format(r="r") for _, expr in TAG_ROLLUP_KEYS)
    sum_exprs = ", ".join(f"SUM({expr.format(r='r')})" for _, expr in ROLLUP_SUMS)
    conn.execute(
        f"INSERT INTO tag_rollup ({_TAG_KEY_NAMES}, {_TAG_SUM_NAMES}) "
        f"SELECT {key_exprs}, IFNULL(s.tagset, ''), {sum_exprs} FROM requests r "
        f"LEFT JOIN ({sets}) s ON s.request_id = r.id "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(TAG_ROLLUP_KEYS) + 1))}"
    )
    new_set = tagset_sql(request_tags_sql("NEW.id"))
    old_set = tagset_sql(request_tags_sql("OLD.id"))
    conn.execute(
        "CREATE TRIGGER tag_rollup_request_insert AFTER INSERT ON requests BEGIN "
        f"{_tag_upsert('NEW', new_set, '+')} END"
    )
    conn.execute(
        "CREATE TRIGGER tag_rollup_request_delete AFTER DELETE ON requests BEGIN "
        f"{_tag_upsert('OLD', old_set, '-')} {_tag_prune('OLD', old_set)} END"
    )
    conn.execute(
        "CREATE TRIGGER tag_rollup_request_update AFTER UPDATE ON requests BEGIN "
        f"{_tag_upsert('OLD', old_set, '-')} {_tag_upsert('NEW', new_set, '+')} "
        f"{_tag_prune('OLD', old_set)} END"
    )
    # A tag added or taken away moves its request from one tag set to another.
    with_new = tagset_sql(request_tags_sql("NEW.request_id"))
    before_new = tagset_sql(request_tags_sql("NEW.request_id", without="NEW.name"))
    conn.execute(
        "CREATE TRIGGER tag_rollup_tag_insert AFTER INSERT ON request_tags BEGIN "
        f"{tag_move('NEW.request_id', before_new, '-')} "
        f"{tag_move('NEW.request_id', with_new, '+')} END"
    )
    without_old = tagset_sql(request_tags_sql("OLD.request_id"))
    with_old = tagset_sql(
        f"{request_tags_sql('OLD.request_id')} UNION ALL SELECT OLD.name, OLD.value"
    )
    conn.execute(
        "CREATE TRIGGER tag_rollup_tag_delete AFTER DELETE ON request_tags BEGIN "
        f"{tag_move('OLD.request_id', with_old, '-')} "
        f"{tag_move('OLD.request_id', without_old, '+')} "
        f"{_tag_prune_stored('OLD.request_id', with_old)} END"
    )
    conn.execute(
        "CREATE TRIGGER tag_rollup_tag_update BEFORE UPDATE ON request_tags BEGIN "
        "SELECT RAISE(ABORT, 'request_tags rows are not updated: delete and insert'); END"
    )


def _latency_step(row: str, sign: str) -> str:
    day, bucket = (
        f"CAST({row}.ts / 86400 AS INTEGER)",
        LATENCY_BUCKET_SQL.format(ms=f"{row}.latency_ms"),
    )
    return (
        f"INSERT INTO latency_rollup (utc_day, provider, bucket, requests) "
        f"VALUES ({day}, {row}.provider, {bucket}, {sign}1) "
        "ON CONFLICT (utc_day, provider, bucket) DO UPDATE SET requests = requests + excluded.requests;"
    )


def m010_latency_rollup(conn: sqlite3.Connection) -> None:
    """How many requests per UTC day, provider and latency bucket (store/latency.py): the
    dashboard's p50/p95 per provider from a few thousand counts instead of every request."""
    conn.execute(
        "CREATE TABLE latency_rollup (utc_day INTEGER NOT NULL, provider TEXT NOT NULL, "
        "bucket INTEGER NOT NULL, requests INTEGER NOT NULL, "
        "PRIMARY KEY (utc_day, provider, bucket)) WITHOUT ROWID"
    )
    bucket = LATENCY_BUCKET_SQL.format(ms="latency_ms")
    conn.execute(
        "INSERT INTO latency_rollup SELECT CAST(ts / 86400 AS INTEGER), provider, "
        f"{bucket}, COUNT(*) FROM requests GROUP BY 1, 2, 3"
    )
    conn.execute(
        "CREATE TRIGGER latency_rollup_insert AFTER INSERT ON requests BEGIN "
        f"{_latency_step('NEW', '+')} END"
    )
    conn.execute(
        "CREATE TRIGGER latency_rollup_delete AFTER DELETE ON requests BEGIN "
        f"{_latency_step('OLD', '-')} END"
    )
    conn.execute(
        "CREATE TRIGGER latency_rollup_update AFTER UPDATE OF ts, provider, latency_ms "
        f"ON requests BEGIN {_latency_step('OLD', '-')} {_latency_step('NEW', '+')} END"
    )


def _day_step(row: str, sign: str) -> str:
    return _rollup_upsert(row, sign, "day_rollup", TAG_ROLLUP_KEYS)


def _day_prune(row: str) -> str:
    return _rollup_prune(row, "day_rollup", TAG_ROLLUP_KEYS)


def m011_day_rollup(conn: sqlite3.Connection) -> None:
    """request_rollup per UTC day instead of per hour (the same keys as the tag rollup, without
    the tag set): a report reads it for the whole days of a window, the hourly rollup for the
    whole hours around them and `requests` for the partial hours, so a 90-day window sums ~90
    rows per combination instead of ~2,160."""
    keys = ", ".join(
        f"{name} {'INTEGER' if name == 'utc_day' else 'TEXT'} NOT NULL"
        for name, _ in TAG_ROLLUP_KEYS
    )
    sums = ", ".join(f"{name} INTEGER NOT NULL" for name, _ in ROLLUP_SUMS)
    key_names = ", ".join(name for name, _ in TAG_ROLLUP_KEYS)
    conn.execute(
        f"CREATE TABLE day_rollup ({keys}, {sums}, PRIMARY KEY ({key_names})) WITHOUT ROWID"
    )
    hour_keys = ", ".join(name for name, _ in ROLLUP_KEYS if name != "hour")
    sum_names = ", ".join(f"SUM({name})" for name, _ in ROLLUP_SUMS)
    conn.execute(
        f"INSERT INTO day_rollup SELECT hour / 24, {hour_keys}, {sum_names} FROM request_rollup "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(TAG_ROLLUP_KEYS)))}"
    )
    conn.execute(
        "CREATE TRIGGER day_rollup_insert AFTER INSERT ON requests BEGIN "
        f"{_day_step('NEW', '+')} END"
    )
    conn.execute(
        "CREATE TRIGGER day_rollup_delete AFTER DELETE ON requests BEGIN "
        f"{_day_step('OLD', '-')} {_day_prune('OLD')} END"
    )
    conn.execute(
        "CREATE TRIGGER day_rollup_update AFTER UPDATE ON requests BEGIN "
        f"{_day_step('OLD', '-')} {_day_step('NEW', '+')} {_day_prune('OLD')} END"
    )


def m012_key_spend(conn: sqlite3.Connection) -> None:
    """Each key's recorded cost per hour, kept in step with `requests` by triggers in the same
    transaction, whoever writes: budgets read a key's spend this period from here (whole hours)
    and from `requests` (a period starting inside an hour), not by summing every request.
    The same table as PostgreSQL's (pg_migrations 006_proxy_keys), read by the same SQL."""
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


def m013_key_reservations(conn: sqlite3.Connection) -> None:
    """Each budgeted request's worst case, held from its admission (keys/reservations.py) until
    its record is inserted: a trigger deletes the reservation in the transaction that inserts
    the record (whose `key_spend` trigger adds the real cost), so every daemon and worker reads
    each request once, reserved or spent, never both. A request that never records (its daemon
    killed) stops counting at `expires_at`. The same table as PostgreSQL's (pg_migrations
    007_key_reservations)."""
    _run(
        conn,
        """
        CREATE TABLE key_reservations (
            request_id TEXT PRIMARY KEY,
            key_name TEXT NOT NULL,
            nanousd INTEGER NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX key_reservations_key ON key_reservations (key_name, expires_at);
        """,
    )
    conn.execute(
        "CREATE TRIGGER key_reservations_settle AFTER INSERT ON requests BEGIN "
        "DELETE FROM key_reservations WHERE request_id = NEW.id; END"
    )


# day_rollup keyed by the recording host too, so `report --by host` (and host with any other
# dimension but tags) sums whole UTC days from it. Same UPSERTs per request as before: the key
# is one column wider, and a ledger recorded by one daemon has the same number of rows.
HOST_DAY_ROLLUP_KEYS: tuple[tuple[str, str], ...] = (*TAG_ROLLUP_KEYS, ("host", "{r}.host"))


def m014_day_rollup_host(conn: sqlite3.Connection) -> None:
    """Rebuild day_rollup with `host` in its key, from `requests` (the hourly rollup has no
    host), and its triggers with it."""
    for event in ("insert", "delete", "update"):
        conn.execute(f"DROP TRIGGER day_rollup_{event}")
    conn.execute("DROP TABLE day_rollup")
    keys = ", ".join(
        f"{name} {'INTEGER' if name == 'utc_day' else 'TEXT'} NOT NULL"
        for name, _ in HOST_DAY_ROLLUP_KEYS
    )
    sums = ", ".join(f"{name} INTEGER NOT NULL" for name, _ in ROLLUP_SUMS)
    key_names = ", ".join(name for name, _ in HOST_DAY_ROLLUP_KEYS)
    conn.execute(
        f"CREATE TABLE day_rollup ({keys}, {sums}, PRIMARY KEY ({key_names})) WITHOUT ROWID"
    )
    key_exprs = ", ".join(expr.format(r="requests") for _, expr in HOST_DAY_ROLLUP_KEYS)
    sum_exprs = ", ".join(f"SUM({expr.format(r='requests')})" for _, expr in ROLLUP_SUMS)
    conn.execute(
        f"INSERT INTO day_rollup SELECT {key_exprs}, {sum_exprs} FROM requests "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(HOST_DAY_ROLLUP_KEYS)))}"
    )

    def step(row: str, sign: str) -> str:
        return _rollup_upsert(row, sign, "day_rollup", HOST_DAY_ROLLUP_KEYS)

    prune = _rollup_prune("OLD", "day_rollup", HOST_DAY_ROLLUP_KEYS)
    conn.execute(
        f"CREATE TRIGGER day_rollup_insert AFTER INSERT ON requests BEGIN {step('NEW', '+')} END"
    )
    conn.execute(
        "CREATE TRIGGER day_rollup_delete AFTER DELETE ON requests BEGIN "
        f"{step('OLD', '-')} {prune} END"
    )
    conn.execute(
        "CREATE TRIGGER day_rollup_update AFTER UPDATE ON requests BEGIN "
        f"{step('OLD', '-')} {step('NEW', '+')} {prune} END"
    )


# The latency sample (store/latency.py): a copy of the columns a report's latency pass reads,
# for one request in SAMPLE_TABLE_EVERY (by rowid, so spread evenly over the recording order),
# in window order. A report over a window too large to read whole reads this instead of the
# requests: its cost grows with the window / SAMPLE_TABLE_EVERY, at one INSERT per
# SAMPLE_TABLE_EVERY requests in the writer. Deletes and updates of a sampled request follow.
SAMPLE_COLUMNS = "ts, id, day, provider, model, key_name, endpoint, host, latency_ms, ttfb_ms"


def _sample_values(row: str) -> str:
    return ", ".join(f"{row}.{column.strip()}" for column in SAMPLE_COLUMNS.split(","))


def m015_latency_sample(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE latency_sample (ts REAL NOT NULL, id TEXT NOT NULL, day TEXT NOT NULL, "
        "provider TEXT NOT NULL, model TEXT, key_name TEXT NOT NULL, endpoint TEXT NOT NULL, "
        "host TEXT NOT NULL, latency_ms REAL NOT NULL, ttfb_ms REAL, "
        "seq INTEGER NOT NULL, PRIMARY KEY (ts, id)) WITHOUT ROWID"
    )
    every = SAMPLE_TABLE_EVERY
    conn.execute(
        f"INSERT INTO latency_sample ({SAMPLE_COLUMNS}, seq) "
        f"SELECT {_sample_values('requests')}, rowid / {every} FROM requests "
        f"WHERE rowid % {every} = 0"
    )
    conn.execute(
        f"CREATE TRIGGER latency_sample_insert AFTER INSERT ON requests "
        f"WHEN NEW.rowid % {every} = 0 BEGIN "
        f"INSERT INTO latency_sample ({SAMPLE_COLUMNS}, seq) "
        f"VALUES ({_sample_values('NEW')}, NEW.rowid / {every}); END"
    )
    conn.execute(
        "CREATE TRIGGER latency_sample_delete AFTER DELETE ON requests BEGIN "
        "DELETE FROM latency_sample WHERE ts = OLD.ts AND id = OLD.id; END"
    )
    updates = ", ".join(
        f"{column.strip()} = NEW.{column.strip()}" for column in SAMPLE_COLUMNS.split(",")
    )
    conn.execute(
        f"CREATE TRIGGER latency_sample_update AFTER UPDATE OF {SAMPLE_COLUMNS} ON requests "
        f"BEGIN UPDATE latency_sample SET {updates} WHERE ts = OLD.ts AND id = OLD.id; END"
    )


# The INSERT triggers 016 drops: what they did for every inserted request (an UPSERT into each
# of four rollups and key_spend, a reservation's DELETE, a sample row for one in 16) and for
# every inserted tag (move a stored request to its new tag set) is now done once per batch by
# store/rollups.py, called by store/rows.insert_rows, the one way records are inserted. The
# UPDATE and DELETE triggers stay: re-pricing and deletes are rare, and may come from anywhere.
BATCH_ROLLED_TRIGGERS = (
    "request_rollup_insert",
    "tag_rollup_request_insert",
    "tag_rollup_tag_insert",
    "latency_rollup_insert",
    "day_rollup_insert",
    "key_spend_insert",
    "key_reservations_settle",
    "latency_sample_insert",
)


def m016_rollups_per_batch(conn: sqlite3.Connection) -> None:
    """The rollups follow inserts per batch, from the writer (store/rollups.py), not per row by
    triggers: the tables keep their contents; the INSERT triggers go. `rollup_state` holds the
    largest rowid the rollups hold: a meterfox from before, still running when a newer one
    migrated its file, inserts rows past it (no trigger rolls them up now), and the next batch
    of a current writer rolls them up."""
    for name in BATCH_ROLLED_TRIGGERS:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute(
        "CREATE TABLE rollup_state (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "through_rowid INTEGER NOT NULL)"
    )
    conn.execute(
        "INSERT INTO rollup_state VALUES (1, (SELECT IFNULL(max(rowid), 0) FROM requests))"
    )


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_requests", m001_requests),
    ("002_native_dedupe", m002_native_dedupe),
    ("003_keys", m003_keys),
    ("004_report_rollup", m004_report_rollup),
    ("005_key_allow_unpriced", m005_key_allow_unpriced),
    ("006_billed_buckets", m006_billed_buckets),
    ("007_request_host", m007_request_host),
    ("008_alerts_fired", m008_alerts_fired),
    ("009_tag_rollup", m009_tag_rollup),
    ("010_latency_rollup", m010_latency_rollup),
    ("011_day_rollup", m011_day_rollup),
    ("012_key_spend", m012_key_spend),
    ("013_key_reservations", m013_key_reservations),
    ("014_day_rollup_host", m014_day_rollup_host),
    ("015_latency_sample", m015_latency_sample),
    ("016_rollups_per_batch", m016_rollups_per_batch),
]
