"""The PostgreSQL ledger's schema, as ordered, named migrations beside SQLite's (migrations.py):
the same tables and columns for the records, their rollups (hourly, daily with host, per tag
set), the proxy keys and their spend, in PostgreSQL's types.
`PostgresLedger.migrate` applies and records them; once shipped, one is never edited.
tests/store/test_pg_schema.py migrates a blank database and checks the schema."""

from __future__ import annotations

from meterfox_cli.pricing.quote import UNPRICED_SOURCE
from meterfox_cli.store.dialect import DAY_S, POSTGRES
from meterfox_cli.store.latency import SAMPLE_TABLE_EVERY
from meterfox_cli.store.migrations import (
    ALERTS_FIRED,
    HOST_DAY_ROLLUP_KEYS,
    ROLLUP_KEYS,
    ROLLUP_SUMS,
    SAMPLE_COLUMNS,
    TAG_ROLLUP_KEYS,
)
from meterfox_cli.store.tagsets import request_tags_sql, tagset_sql

M001_REQUESTS = """
CREATE TABLE requests (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,  -- the recording order, as SQLite's rowid
    id TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    day TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT,
    endpoint TEXT NOT NULL,
    method TEXT NOT NULL,
    status INTEGER NOT NULL,
    streamed INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    key_name TEXT NOT NULL,
    ttfb_ms DOUBLE PRECISION,
    latency_ms DOUBLE PRECISION NOT NULL,
    usage_known INTEGER NOT NULL,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    units TEXT,
    price_context TEXT,
    dedupe_key TEXT,
    reported_cost_usd TEXT,
    cost_nanousd BIGINT,
    cost_source TEXT NOT NULL DEFAULT 'unpriced',
    price_detail TEXT
);
CREATE INDEX requests_ts ON requests (ts);
CREATE INDEX requests_day ON requests (day);
CREATE INDEX requests_key_ts ON requests (key_name, ts);
CREATE INDEX requests_latency ON requests (ts, provider, model, key_name, day, latency_ms, ttfb_ms);
CREATE UNIQUE INDEX requests_dedupe ON requests (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND usage_known = 1;
CREATE TABLE request_tags (
    request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (request_id, name)
);
CREATE INDEX request_tags_name ON request_tags (name, value);
"""

# The rollup's keys and sums, as migrations.py defines them for SQLite, in PostgreSQL's SQL
# (a condition counts through CASE; the hour truncates as SQLite's CAST does).
_UNPRICED = f"{{r}}.cost_source = '{UNPRICED_SOURCE}'"
_PG_SUMS = {
    "requests": "1",
    "errors": "CASE WHEN {r}.status >= 400 OR {r}.outcome != 'ok' THEN 1 ELSE 0 END",
    "cost_nanousd": "COALESCE({r}.cost_nanousd, 0)",
    "priced_requests": "CASE WHEN {r}.cost_nanousd IS NOT NULL THEN 1 ELSE 0 END",
    "unpriced_requests": f"CASE WHEN {_UNPRICED} THEN 1 ELSE 0 END",
    "unpriced_input_tokens": f"CASE WHEN {_UNPRICED} THEN {{r}}.input_tokens ELSE 0 END",
    "unpriced_output_tokens": f"CASE WHEN {_UNPRICED} THEN {{r}}.output_tokens ELSE 0 END",
}
_PG_KEYS = {"hour": POSTGRES.hour("{r}.ts"), "model": "COALESCE({r}.model, '')"}
PG_ROLLUP_SUMS = tuple((name, _PG_SUMS.get(name, expr)) for name, expr in ROLLUP_SUMS)
PG_ROLLUP_KEYS = tuple((name, _PG_KEYS.get(name, expr)) for name, expr in ROLLUP_KEYS)


def _rollup_upsert(row: str, sign: str) -> str:
    keys = ", ".join(name for name, _ in PG_ROLLUP_KEYS)
    sums = ", ".join(name for name, _ in PG_ROLLUP_SUMS)
    values = ", ".join(
        [expr.format(r=row) for _, expr in PG_ROLLUP_KEYS]
        + [f"{sign}({expr.format(r=row)})" for _, expr in PG_ROLLUP_SUMS]
    )
    updates = ", ".join(
        f"{name} = request_rollup.{name} + excluded.{name}" for name, _ in PG_ROLLUP_SUMS
    )
    return (
        f"INSERT INTO request_rollup ({keys}, {sums}) VALUES ({values}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates};"
    )


def _rollup_prune(row: str) -> str:
    match = " AND ".join(f"{name} = {expr.format(r=row)}" for name, expr in PG_ROLLUP_KEYS)
    return f"DELETE FROM request_rollup WHERE {match} AND requests = 0;"


def _rollup_fill() -> str:
    """The rollup's rows computed from every request (the rollup must be empty)."""
    key_exprs = ", ".join(expr.format(r="requests") for _, expr in PG_ROLLUP_KEYS)
    sum_exprs = ", ".join(f"SUM({expr.format(r='requests')})" for _, expr in PG_ROLLUP_SUMS)
    groups = ", ".join(str(i + 1) for i in range(len(PG_ROLLUP_KEYS)))
    return f"INSERT INTO request_rollup SELECT {key_exprs}, {sum_exprs} FROM requests GROUP BY {groups};"


# The rollup rebuilt from `requests` (bench/seed_pg.py, after a bulk load with COPY, which
# does not go through the writer's per-batch rollups).
ROLLUP_REBUILD = f"DELETE FROM request_rollup; {_rollup_fill()}"
# key_spend rebuilt the same way, as 006_proxy_keys fills it.
KEY_SPEND_REBUILD = (
    f"DELETE FROM key_spend; INSERT INTO key_spend SELECT key_name, {POSTGRES.hour('ts')}, "
    "SUM(cost_nanousd) FROM requests WHERE cost_nanousd IS NOT NULL GROUP BY 1, 2;"
)


def _m002_report_rollup() -> str:
    """The report rollup, kept in step with `requests` by one row trigger in the writing
    transaction, whoever writes (as SQLite's three triggers do)."""
    keys = ", ".join(
        f"{name} {'BIGINT' if name == 'hour' else 'TEXT'} NOT NULL" for name, _ in PG_ROLLUP_KEYS
    )
    sums = ", ".join(f"{name} BIGINT NOT NULL" for name, _ in PG_ROLLUP_SUMS)
    key_names = ", ".join(name for name, _ in PG_ROLLUP_KEYS)
    return f"""
CREATE TABLE request_rollup ({keys}, {sums}, PRIMARY KEY ({key_names}));
{_rollup_fill()}
CREATE FUNCTION request_rollup_step() RETURNS trigger LANGUAGE plpgsql AS $step$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {_rollup_upsert("OLD", "-")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_rollup_upsert("NEW", "+")}
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {_rollup_prune("OLD")}
    END IF;
    RETURN NULL;
END
$step$;
CREATE TRIGGER request_rollup_step AFTER INSERT OR UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION request_rollup_step();
"""


# Which daemon recorded each request (as SQLite's 007_request_host).
M003_REQUEST_HOST = "ALTER TABLE requests ADD COLUMN host TEXT NOT NULL DEFAULT ''"

# What the providers billed (`meterfox sync`) and the span synced per provider, as SQLite's
# 006_billed_buckets. Text keys compare byte by byte ("C"), as SQLite's do, so a read in key
# order comes back in the same order from either store.
M004_BILLED_BUCKETS = """
CREATE TABLE billed_buckets (
    provider TEXT COLLATE "C" NOT NULL,
    bucket_start BIGINT NOT NULL,
    bucket_end BIGINT NOT NULL,
    model TEXT COLLATE "C" NOT NULL DEFAULT '',
    project_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    workspace_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    api_key_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    service_tier TEXT COLLATE "C" NOT NULL DEFAULT '',
    batch TEXT COLLATE "C" NOT NULL DEFAULT '',
    requests BIGINT,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    cost_nanousd BIGINT,
    cost_source TEXT NOT NULL,
    synced_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (provider, bucket_start, model, project_id, workspace_id, api_key_id,
                 service_tier, batch)
);
CREATE TABLE sync_state (
    provider TEXT COLLATE "C" PRIMARY KEY,
    synced_from BIGINT NOT NULL,
    synced_until BIGINT NOT NULL,
    synced_at DOUBLE PRECISION NOT NULL
);
"""

# The channel a NOTIFY goes out on whenever a proxy key changes (its payload: the new version).
KEYS_CHANNEL = "meterfox_keys"


def _m006_proxy_keys() -> str:
    """Proxy keys and budgets in the ledger a team shares (as SQLite's 003_keys and
    005_key_allow_unpriced; provider keys stay on each machine, in its keyring and its local
    file). A row trigger bumps `key_state.version` and NOTIFYs every listening daemon when the
    change commits. `key_spend` is each key's recorded cost per hour, kept in step with
    `requests` by a row trigger in the writing transaction, whoever writes: the spend every
    daemon reads for budgets (as SQLite's 012_key_spend)."""
    hour = POSTGRES.hour("{r}.ts")
    return f"""
CREATE TABLE proxy_keys (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    providers TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    budget_nanousd BIGINT,
    budget_period TEXT,
    allow_unpriced INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX proxy_keys_live_name ON proxy_keys (name) WHERE revoked_at IS NULL;
CREATE TABLE key_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO key_state (id, version) VALUES (1, 0);
CREATE FUNCTION proxy_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $changed$
DECLARE
    now_version BIGINT;
BEGIN
    UPDATE key_state SET version = version + 1 WHERE id = 1 RETURNING version INTO now_version;
    PERFORM pg_notify('{KEYS_CHANNEL}', now_version::text);
    RETURN NULL;
END
$changed$;
CREATE TRIGGER proxy_keys_changed AFTER INSERT OR UPDATE OR DELETE ON proxy_keys
    FOR EACH ROW EXECUTE FUNCTION proxy_keys_changed();
CREATE TABLE key_spend (
    key_name TEXT NOT NULL,
    hour BIGINT NOT NULL,
    cost_nanousd BIGINT NOT NULL,
    PRIMARY KEY (key_name, hour)
);
INSERT INTO key_spend
    SELECT key_name, {hour.format(r="requests")}, SUM(cost_nanousd) FROM requests
    WHERE cost_nanousd IS NOT NULL GROUP BY 1, 2;
CREATE FUNCTION key_spend_step() RETURNS trigger LANGUAGE plpgsql AS $step$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF OLD.cost_nanousd IS NOT NULL THEN
            UPDATE key_spend SET cost_nanousd = cost_nanousd - OLD.cost_nanousd
                WHERE key_name = OLD.key_name AND hour = {hour.format(r="OLD")};
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.cost_nanousd IS NOT NULL THEN
            INSERT INTO key_spend VALUES (NEW.key_name, {hour.format(r="NEW")}, NEW.cost_nanousd)
                ON CONFLICT (key_name, hour)
                DO UPDATE SET cost_nanousd = key_spend.cost_nanousd + excluded.cost_nanousd;
        END IF;
    END IF;
    RETURN NULL;
END
$step$;
CREATE TRIGGER key_spend_step AFTER INSERT OR UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION key_spend_step();
"""


# Each budgeted request's worst case from admission until its record is inserted, deleted by a
# row trigger in the inserting transaction (as SQLite's 013_key_reservations).
M007_KEY_RESERVATIONS = """
CREATE TABLE key_reservations (
    request_id TEXT PRIMARY KEY,
    key_name TEXT NOT NULL,
    nanousd BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX key_reservations_key ON key_reservations (key_name, expires_at);
CREATE FUNCTION key_reservations_settle() RETURNS trigger LANGUAGE plpgsql AS $settle$
BEGIN
    DELETE FROM key_reservations WHERE request_id = NEW.id;
    RETURN NULL;
END
$settle$;
CREATE TRIGGER key_reservations_settle AFTER INSERT ON requests
    FOR EACH ROW EXECUTE FUNCTION key_reservations_settle();
"""


# The rollup, key spend and reservations follow inserts per batch, from the writer
# (store/rollups.py, as on SQLite since its 016), which says so in each of its transactions
# (`meterfox.rolls_up`): the row triggers now fire on UPDATE and DELETE, and on INSERT only
# for a transaction that does not say so (a meterfox from before, still running on another
# machine when this one migrated the ledger: its rows are rolled up as before). The WHEN test
# runs without calling the function, so a current writer's rows cost no trigger. The trigger
# functions are unchanged; the tables keep their contents.
_NOT_ROLLED = "WHEN (current_setting('meterfox.rolls_up', true) IS DISTINCT FROM 'on')"
M008_ROLLUPS_PER_BATCH = f"""
DROP TRIGGER request_rollup_step ON requests;
CREATE TRIGGER request_rollup_step AFTER UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION request_rollup_step();
CREATE TRIGGER request_rollup_older_writer AFTER INSERT ON requests
    FOR EACH ROW {_NOT_ROLLED} EXECUTE FUNCTION request_rollup_step();
DROP TRIGGER key_spend_step ON requests;
CREATE TRIGGER key_spend_step AFTER UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION key_spend_step();
CREATE TRIGGER key_spend_older_writer AFTER INSERT ON requests
    FOR EACH ROW {_NOT_ROLLED} EXECUTE FUNCTION key_spend_step();
DROP TRIGGER key_reservations_settle ON requests;
CREATE TRIGGER key_reservations_settle AFTER INSERT ON requests
    FOR EACH ROW {_NOT_ROLLED} EXECUTE FUNCTION key_reservations_settle();
"""


# --- the rollups every grouping reads (SQLite's 009, 011 and 014) ------------------------------

Keys = tuple[tuple[str, str], ...]  # (column, its SQL over a request row {r})

PG_TAG_ROLLUP_KEYS: Keys = (
    ("utc_day", POSTGRES.bucket("{r}.ts", DAY_S)),
    *((name, expr) for name, expr in PG_ROLLUP_KEYS if name != "hour"),
)
PG_DAY_ROLLUP_KEYS: Keys = (*PG_TAG_ROLLUP_KEYS, ("host", "{r}.host"))
assert [n for n, _ in PG_TAG_ROLLUP_KEYS] == [n for n, _ in TAG_ROLLUP_KEYS]
assert [n for n, _ in PG_DAY_ROLLUP_KEYS] == [n for n, _ in HOST_DAY_ROLLUP_KEYS]
# A request's tag set (store/tagsets.py) as stored, over request_tags ({r}.id: the request).
PG_TAGSET = tagset_sql(request_tags_sql("{r}.id"), POSTGRES)
PG_TAG_KEYS: Keys = (*PG_TAG_ROLLUP_KEYS, ("tagset", PG_TAGSET))
# The rollups a writing transaction of this meterfox keeps itself (store/rollups.py sets
# `meterfox.rollups` to it): the INSERT triggers of the tables added since 008 fire for a
# transaction that keeps fewer — a meterfox from before them, still running on another machine
# when this one migrated the ledger (one that sets `meterfox.rolls_up` keeps request_rollup and
# key_spend itself, not these). The WHEN test runs without calling the trigger's function.
ROLLUPS_GENERATION = 3  # 2: day_rollup and tag_rollup (009, 010); 3: latency_sample (011)
# Taken first by each migration that fills a rollup and then adds its triggers: no row may be
# written between the fill and the triggers (it would be in neither). Writers wait until the
# migrating transaction commits (docs/team.md says how long); reads go on.
_HOLD_WRITES = "LOCK TABLE requests, request_tags IN SHARE ROW EXCLUSIVE MODE;"
_GENERATION = "COALESCE(NULLIF(current_setting('meterfox.rollups', true), ''), '0')::int"
_OLDER_ROLLUPS = f"WHEN ({_GENERATION} < 2)"  # as 009 and 010 shipped (generation 2)


def _table(table: str, keys: Keys) -> str:
    columns = [f"{n} {'BIGINT' if n == 'utc_day' else 'TEXT'} NOT NULL" for n, _ in keys]
    columns += [f"{name} BIGINT NOT NULL" for name, _ in PG_ROLLUP_SUMS]
    key_names = ", ".join(name for name, _ in keys)
    return f"CREATE TABLE {table} ({', '.join(columns)}, PRIMARY KEY ({key_names}));"


def _upsert(table: str, keys: Keys, row: str, sign: str) -> str:
    """Add (sign '+') or take away ('-') the sums of the request row `row` in `table`."""
    names = ", ".join(name for name, _ in (*keys, *PG_ROLLUP_SUMS))
    values = ", ".join(
        [expr.format(r=row) for _, expr in keys]
        + [f"{sign}({expr.format(r=row)})" for _, expr in PG_ROLLUP_SUMS]
    )
    return f"INSERT INTO {table} ({names}) VALUES ({values}) {_adding(table, keys)};"


def _adding(table: str, keys: Keys) -> str:
    updates = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name, _ in PG_ROLLUP_SUMS)
    return f"ON CONFLICT ({', '.join(name for name, _ in keys)}) DO UPDATE SET {updates}"


def _prune(table: str, keys: Keys, row: str) -> str:
    match = " AND ".join(f"{name} = {expr.format(r=row)}" for name, expr in keys)
    return f"DELETE FROM {table} WHERE {match} AND requests = 0;"


def _fill(table: str, keys: Keys) -> str:
    """`table`'s rows computed from every request (the table must be empty)."""
    key_exprs = ", ".join(expr.format(r="r") for _, expr in keys)
    sum_exprs = ", ".join(f"SUM({expr.format(r='r')})" for _, expr in PG_ROLLUP_SUMS)
    groups = ", ".join(str(i + 1) for i in range(len(keys)))
    return f"INSERT INTO {table} SELECT {key_exprs}, {sum_exprs} FROM requests r GROUP BY {groups};"


def _step(name: str, table: str, keys: Keys) -> str:
    """The row trigger function keeping `table` in step with `requests` (as request_rollup_step):
    an update moves a request's sums, a delete takes them away (and the rows left at zero
    requests), an insert by an older writer adds them. It returns the old row, so it may run
    BEFORE a DELETE too."""
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $step$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {_upsert(table, keys, "OLD", "-")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_upsert(table, keys, "NEW", "+")}
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {_prune(table, keys, "OLD")}
    END IF;
    RETURN OLD;
END
$step$;"""


def _m009_day_rollup_host() -> str:
    """request_rollup per UTC day and keyed by the recording host too (SQLite's 011 with 014):
    a report reads it for the whole UTC days of a window (and `--by host` reads nothing else
    but the partial days' requests). Filled from `requests` (the hourly rollup has no host)."""
    table, keys = "day_rollup", PG_DAY_ROLLUP_KEYS
    return f"""
{_HOLD_WRITES}
{_table(table, keys)}
{_fill(table, keys)}
{_step("day_rollup_step", table, keys)}
CREATE TRIGGER day_rollup_step AFTER UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION day_rollup_step();
CREATE TRIGGER day_rollup_older_writer AFTER INSERT ON requests
    FOR EACH ROW {_OLDER_ROLLUPS} EXECUTE FUNCTION day_rollup_step();
"""


def pg_tag_move(request_id: str, tagset: str, sign: str) -> str:
    """Add or take away the sums of the stored request `request_id` (SQL) under the tag set
    `tagset` (SQL over the request row `r`); nothing when no such request is stored."""
    keys = PG_TAG_ROLLUP_KEYS
    names = ", ".join(name for name, _ in (*PG_TAG_KEYS, *PG_ROLLUP_SUMS))
    values = ", ".join(
        [expr.format(r="r") for _, expr in keys]
        + [tagset]
        + [f"{sign}({expr.format(r='r')})" for _, expr in PG_ROLLUP_SUMS]
    )
    return (
        f"INSERT INTO tag_rollup ({names}) SELECT {values} FROM requests r "
        f"WHERE r.id = {request_id} {_adding('tag_rollup', PG_TAG_KEYS)}"
    )


# A tag stored for a stored request moves the request from its set without the tag to its
# set with it (parameters: the tag's name, the request's id; for the trigger, NEW's).
PG_TAG_ADDED = (
    pg_tag_move("?", tagset_sql(request_tags_sql("r.id", without="?"), POSTGRES), "-"),
    pg_tag_move("?", PG_TAGSET.format(r="r"), "+"),
)


def _tag_fill() -> str:
    """The tag rollup's rows computed from every request and its tags (in one join: each
    request's set built once, not by PG_TAGSET per request); the table must be empty."""
    sets = (
        "SELECT request_id, string_agg(length(name) || ':' || name || length(value) || ':' || "
        "value, '' ORDER BY name COLLATE \"C\") AS tagset FROM request_tags GROUP BY request_id"
    )
    keys = ", ".join(expr.format(r="r") for _, expr in PG_TAG_ROLLUP_KEYS)
    sums = ", ".join(f"SUM({expr.format(r='r')})" for _, expr in PG_ROLLUP_SUMS)
    groups = ", ".join(str(i + 1) for i in range(len(PG_TAG_KEYS)))
    return (
        f"INSERT INTO tag_rollup SELECT {keys}, COALESCE(s.tagset, ''), {sums} FROM requests r "
        f"LEFT JOIN ({sets}) s ON s.request_id = r.id GROUP BY {groups};"
    )


def _m010_tag_rollup() -> str:
    """Sums per UTC day and the request's whole tag set (SQLite's 009): a report grouped or
    filtered by tags reads it for whole UTC days. Rows a tag's move leaves at zero requests
    stay (reads skip them); deletes prune. A request's delete takes its sums away BEFORE the
    delete, while its tags (deleted with it, ON DELETE CASCADE) are still there; the tag
    deletes that follow find no request to move."""
    table, keys = "tag_rollup", PG_TAG_KEYS
    added = [
        pg_tag_move(
            "NEW.request_id",
            tagset_sql(request_tags_sql("r.id", without="NEW.name"), POSTGRES),
            "-",
        ),
        pg_tag_move("NEW.request_id", PG_TAGSET.format(r="r"), "+"),
    ]
    with_old = tagset_sql(
        f"{request_tags_sql('r.id')} UNION ALL SELECT OLD.name, OLD.value", POSTGRES
    )
    without_old = PG_TAGSET.format(r="r")
    prune_old = (
        "DELETE FROM tag_rollup t USING requests r WHERE r.id = OLD.request_id AND "
        + " AND ".join(f"t.{n} = {e.format(r='r')}" for n, e in PG_TAG_ROLLUP_KEYS)
        + f" AND t.tagset = {with_old} AND t.requests = 0;"
    )
    return f"""
{_HOLD_WRITES}
{_table(table, keys)}
{_tag_fill()}
{_step("tag_rollup_request_step", table, keys)}
CREATE TRIGGER tag_rollup_request_delete BEFORE DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION tag_rollup_request_step();
CREATE TRIGGER tag_rollup_request_update AFTER UPDATE ON requests
    FOR EACH ROW EXECUTE FUNCTION tag_rollup_request_step();
CREATE TRIGGER tag_rollup_older_writer AFTER INSERT ON requests
    FOR EACH ROW {_OLDER_ROLLUPS} EXECUTE FUNCTION tag_rollup_request_step();
CREATE FUNCTION tag_rollup_tag_step() RETURNS trigger LANGUAGE plpgsql AS $step$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {added[0]};
        {added[1]};
    ELSIF TG_OP = 'DELETE' THEN
        {pg_tag_move("OLD.request_id", with_old, "-")};
        {pg_tag_move("OLD.request_id", without_old, "+")};
        {prune_old}
    ELSE
        RAISE EXCEPTION 'request_tags rows are not updated: delete and insert';
    END IF;
    RETURN NULL;
END
$step$;
CREATE TRIGGER tag_rollup_tag_delete AFTER DELETE ON request_tags
    FOR EACH ROW EXECUTE FUNCTION tag_rollup_tag_step();
CREATE TRIGGER tag_rollup_tag_update BEFORE UPDATE ON request_tags
    FOR EACH ROW EXECUTE FUNCTION tag_rollup_tag_step();
CREATE TRIGGER tag_rollup_tag_older_writer AFTER INSERT ON request_tags
    FOR EACH ROW {_OLDER_ROLLUPS} EXECUTE FUNCTION tag_rollup_tag_step();
"""


# The columns a sample row copies from its request (SQLite's 015), and the request's tags as
# one JSON object (name: value), so that the latency pass reads a tag with `tags ->> name`
# instead of a lookup in request_tags per request.
PG_SAMPLE_COLUMNS = tuple(name.strip() for name in SAMPLE_COLUMNS.split(","))
TAGS_OBJECT = (
    "(SELECT COALESCE(jsonb_object_agg(name, value), '{{}}') FROM request_tags "
    "WHERE request_id = {id})"
)
SAMPLE_TAGS_REFRESH = f"UPDATE latency_sample SET tags = {TAGS_OBJECT.format(id='?')} WHERE id = ?"


def _sample_fill() -> str:
    """latency_sample's rows computed from every request and its tags (the table must be
    empty): one join, each sampled request's tags gathered once."""
    every = SAMPLE_TABLE_EVERY
    copied = [n for n in PG_SAMPLE_COLUMNS if n != "id"]
    return (
        f"INSERT INTO latency_sample (id, seq, {', '.join(copied)}, tags) "
        f"SELECT r.id, r.rowid / {every}, {', '.join(f'r.{n}' for n in copied)}, "
        "COALESCE(t.tags, '{}') FROM requests r LEFT JOIN ("
        "SELECT request_id, jsonb_object_agg(name, value) AS tags FROM request_tags "
        f"GROUP BY request_id) t ON t.request_id = r.id WHERE r.rowid % {every} = 0;"
    )


def _m011_latency_sample() -> str:
    """One request in SAMPLE_TABLE_EVERY (by rowid, as SQLite's 015) with its tags, for the
    latency pass of a grouping or filter by tag (store/latency.py). Insert-only rows, one per
    sampled request, added per batch by store/rollups.py (no row two daemons' batches share);
    a request's delete takes its row away (the foreign key), an update of a copied column
    copies it again, a tag stored or deleted rewrites the request's `tags`. The INSERT
    triggers stand by for an older meterfox (generation < 3) still writing."""
    every = SAMPLE_TABLE_EVERY
    columns = ", ".join(PG_SAMPLE_COLUMNS)
    copied = ", ".join(f"NEW.{name}" for name in PG_SAMPLE_COLUMNS)
    updates = ", ".join(f"{name} = NEW.{name}" for name in PG_SAMPLE_COLUMNS)
    older = f"{_GENERATION} < 3"
    return f"""
{_HOLD_WRITES}
CREATE TABLE latency_sample (
    id TEXT PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    day TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT,
    key_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    host TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    ttfb_ms DOUBLE PRECISION,
    tags JSONB NOT NULL
);
{_sample_fill()}
CREATE INDEX latency_sample_ts ON latency_sample (ts);
CREATE FUNCTION latency_sample_step() RETURNS trigger LANGUAGE plpgsql AS $step$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO latency_sample ({columns}, seq, tags)
            VALUES ({copied}, NEW.rowid / {every}, {TAGS_OBJECT.format(id="NEW.id")});
    ELSE
        UPDATE latency_sample SET {updates} WHERE id = OLD.id;
    END IF;
    RETURN NULL;
END
$step$;
CREATE TRIGGER latency_sample_older_writer AFTER INSERT ON requests
    FOR EACH ROW WHEN ({older} AND NEW.rowid % {every} = 0)
    EXECUTE FUNCTION latency_sample_step();
CREATE TRIGGER latency_sample_update AFTER UPDATE OF {columns} ON requests
    FOR EACH ROW EXECUTE FUNCTION latency_sample_step();
CREATE FUNCTION latency_sample_tags_step() RETURNS trigger LANGUAGE plpgsql AS $step$
DECLARE
    request TEXT := CASE WHEN TG_OP = 'DELETE' THEN OLD.request_id ELSE NEW.request_id END;
BEGIN
    UPDATE latency_sample SET tags = {TAGS_OBJECT.format(id="request")} WHERE id = request;
    RETURN NULL;
END
$step$;
CREATE TRIGGER latency_sample_tag_delete AFTER DELETE ON request_tags
    FOR EACH ROW EXECUTE FUNCTION latency_sample_tags_step();
CREATE TRIGGER latency_sample_tag_older_writer AFTER INSERT ON request_tags
    FOR EACH ROW WHEN ({older}) EXECUTE FUNCTION latency_sample_tags_step();
"""


# Every rollup and key spend rebuilt from `requests`, one statement each (bench/seed_pg.py,
# after a bulk load with COPY in transactions that said they roll up: no trigger fired).
ROLLUPS_REBUILD = (
    ROLLUP_REBUILD,
    KEY_SPEND_REBUILD,
    f"DELETE FROM day_rollup; {_fill('day_rollup', PG_DAY_ROLLUP_KEYS)}",
    f"DELETE FROM tag_rollup; {_tag_fill()}",
    f"DELETE FROM latency_sample; {_sample_fill()}",
)


PG_MIGRATIONS: list[tuple[str, str]] = [
    ("001_requests", M001_REQUESTS),
    ("002_report_rollup", _m002_report_rollup()),
    ("003_request_host", M003_REQUEST_HOST),
    ("004_billed_buckets", M004_BILLED_BUCKETS),
    ("005_alerts_fired", ALERTS_FIRED),  # the same table as SQLite's 008_alerts_fired
    ("006_proxy_keys", _m006_proxy_keys()),
    ("007_key_reservations", M007_KEY_RESERVATIONS),
    ("008_rollups_per_batch", M008_ROLLUPS_PER_BATCH),
    ("009_day_rollup_host", _m009_day_rollup_host()),
    ("010_tag_rollup", _m010_tag_rollup()),
    ("011_latency_sample", _m011_latency_sample()),
]
