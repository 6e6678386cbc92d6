"""What a batch of newly inserted `requests` rows adds to the tables kept beside them, in the
inserting transaction: each row's rollup keys and sums computed in Python (the expressions of
migrations.py's ROLLUP_KEYS / ROLLUP_SUMS, mirrored), summed per key, and one UPSERT per
(table, key); the latency sample's rows; the key reservations the records settle.
`store/rows.insert_rows` is the one caller. Updates and deletes of stored rows (rare: `reprice`)
are still followed by the migrations' triggers. Both stores keep the same four rollups and a
latency sample (PostgreSQL's with each request's tags); PostgreSQL has no latency rollup (a row
per day, provider and bucket would be one every daemon's batch waits on)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from operator import add, itemgetter

from meterfox_cli.pricing.quote import UNPRICED_SOURCE
from meterfox_cli.store.dialect import POSTGRES, SQLITE, LedgerConnection, dialect_of
from meterfox_cli.store.latency import SAMPLE_TABLE_EVERY, latency_bucket
from meterfox_cli.store.migrations import (
    HOST_DAY_ROLLUP_KEYS,
    ROLLUP_KEYS,
    ROLLUP_SUMS,
    SAMPLE_COLUMNS,
    TAG_ROLLUP_KEYS,
    tag_move,
)
from meterfox_cli.store.pg_migrations import (
    PG_SAMPLE_COLUMNS,
    PG_TAG_ADDED,
    ROLLUPS_GENERATION,
    SAMPLE_TAGS_REFRESH,
)
from meterfox_cli.store.tagsets import encode, request_tags_sql, tagset_sql

Row = Mapping[str, object]  # a `requests` row by column name, as inserted
NewRow = tuple[int, Row]  # (its rowid, the row)
Sums = list[int]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SUM_NAMES = tuple(name for name, _ in ROLLUP_SUMS)
_COST, _PRICED = SUM_NAMES.index("cost_nanousd"), SUM_NAMES.index("priced_requests")

# The key a row is first summed under: every column any rollup is keyed by. Each rollup's key is
# a part of it, so a batch is summed once per row and then once per group and table.
FINE_KEY = ("hour", "utc_day", "day", "provider", "model", "key_name", "endpoint", "host", "tagset")


def sql_integer(value: float) -> int:
    """CAST(value AS INTEGER) as SQLite does it: toward zero, saturating at the 64-bit ends."""
    if value >= 2.0**63:
        return INT64_MAX
    if value < -(2.0**63):
        return INT64_MIN
    return int(value)


_CAST_BOUND = 2.0**63


def fine_key(row: Row, tagset: str) -> tuple:
    """FINE_KEY of `row`: hour and UTC day as the SQL's CAST(ts / 3600 AS INTEGER) and
    CAST(ts / 86400 AS INTEGER) (PostgreSQL's TRUNC gives the same), a missing model as ''."""
    ts = float(row["ts"])  # type: ignore[arg-type]
    if -_CAST_BOUND < ts < _CAST_BOUND:  # then so are ts / 3600 and ts / 86400: int() is CAST
        hour, utc_day = int(ts / 3600), int(ts / 86400)
    else:  # nearly never: CAST saturates past 64 bits
        hour, utc_day = sql_integer(ts / 3600), sql_integer(ts / 86400)
    return (
        hour,
        utc_day,
        row["day"],
        row["provider"],
        row["model"] or "",
        row["key_name"],
        row["endpoint"],
        row["host"],
        tagset,
    )


def row_sums(row: Row) -> Sums:
    """ROLLUP_SUMS of one row, in their order."""
    cost = row["cost_nanousd"]
    unpriced = row["cost_source"] == UNPRICED_SOURCE
    tokens_in, tokens_out = row["input_tokens"], row["output_tokens"]
    return [
        1,
        int(row["status"] >= 400 or row["outcome"] != "ok"),  # type: ignore[operator]
        tokens_in,
        row["cached_tokens"],
        row["cache_write_tokens"],
        tokens_out,
        row["reasoning_tokens"],
        0 if cost is None else cost,
        int(cost is not None),
        int(unpriced),
        tokens_in if unpriced else 0,
        tokens_out if unpriced else 0,
    ]  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Rollup:
    """A table of sums keyed by a part of FINE_KEY. `values` turns a group's ROLLUP_SUMS into
    the table's value columns, or None when the group adds no row (key_spend: none priced)."""

    table: str
    keys: tuple[str, ...]
    columns: tuple[str, ...] = SUM_NAMES
    values: Callable[[Sums], Sequence[int] | None] = tuple

    @property
    def upsert_sql(self) -> str:
        return _upsert_sql(self)

    def _upsert_sql(self) -> str:
        names = ", ".join((*self.keys, *self.columns))
        marks = ", ".join("?" * (len(self.keys) + len(self.columns)))
        adds = ", ".join(f"{c} = {self.table}.{c} + excluded.{c}" for c in self.columns)
        return (
            f"INSERT INTO {self.table} ({names}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(self.keys)}) DO UPDATE SET {adds}"
        )

    def parameters(self, groups: Iterable[tuple[tuple, Sums]]) -> list[tuple]:
        """One UPSERT's parameters per key of this table, summed over `groups` (FINE_KEY,
        sums), each key once, in key order: every batch locks a table's rows in the same order,
        so two daemons' batches on one PostgreSQL ledger cannot deadlock on them."""
        part = itemgetter(*(FINE_KEY.index(name) for name in self.keys))
        out = []
        for key, sums in summed((part(key), sums) for key, sums in groups).items():
            values = self.values(sums)
            if values is not None:
                out.append((*key, *values))
        out.sort(key=self._lock_order)
        return out

    def _lock_order(self, parameters: tuple) -> tuple:
        """The key part of `parameters`, sortable with NULLs in it (a key column may be NULL)."""
        return tuple((False, 0) if v is None else (True, v) for v in parameters[: len(self.keys)])


@cache  # four rollups: the text is written once, not four times a batch
def _upsert_sql(rollup: Rollup) -> str:
    return rollup._upsert_sql()


def summed(entries: Iterable[tuple[tuple, Sums]]) -> dict[tuple, Sums]:
    """The sums of the entries of each key, keys in order of first appearance."""
    totals: dict[tuple, Sums] = {}
    for key, sums in entries:
        into = totals.get(key)
        totals[key] = sums if into is None else list(map(add, into, sums))
    return totals


def _spend(sums: Sums) -> tuple[int] | None:
    """key_spend adds the priced requests' cost (the trigger skipped an unpriced one)."""
    return (sums[_COST],) if sums[_PRICED] else None


REQUEST_ROLLUP = Rollup("request_rollup", tuple(name for name, _ in ROLLUP_KEYS))
DAY_ROLLUP = Rollup("day_rollup", tuple(name for name, _ in HOST_DAY_ROLLUP_KEYS))
TAG_ROLLUP = Rollup("tag_rollup", (*(name for name, _ in TAG_ROLLUP_KEYS), "tagset"))
KEY_SPEND = Rollup("key_spend", ("key_name", "hour"), ("cost_nanousd",), _spend)
# Per store: the rollups its schema has (the same since PostgreSQL's 009 and 010).
SQLITE_ROLLUPS = (REQUEST_ROLLUP, TAG_ROLLUP, DAY_ROLLUP, KEY_SPEND)
POSTGRES_ROLLUPS = (REQUEST_ROLLUP, TAG_ROLLUP, DAY_ROLLUP, KEY_SPEND)

LATENCY_UPSERT = (
    "INSERT INTO latency_rollup (utc_day, provider, bucket, requests) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (utc_day, provider, bucket) "
    "DO UPDATE SET requests = latency_rollup.requests + excluded.requests"
)
_SAMPLE_NAMES = tuple(name.strip() for name in SAMPLE_COLUMNS.split(","))
SAMPLE_INSERT = (
    f"INSERT INTO latency_sample ({SAMPLE_COLUMNS}, seq) "
    f"VALUES ({', '.join('?' * (len(_SAMPLE_NAMES) + 1))})"
)
PG_SAMPLE_INSERT = (
    f"INSERT INTO latency_sample ({', '.join(PG_SAMPLE_COLUMNS)}, seq, tags) "
    f"VALUES ({', '.join('?' * (len(PG_SAMPLE_COLUMNS) + 1))}, ?::jsonb)"
)
SETTLE = "DELETE FROM key_reservations WHERE request_id IN ({marks})"  # SQLite, a chunk of ids
SETTLE_ALL = "DELETE FROM key_reservations WHERE request_id = ANY(?)"  # PostgreSQL: an array
# SQLite: the largest rowid now, and the largest the rollups hold (migration 016's
# rollup_state); rows between were inserted by an older meterfox, whose INSERT no longer fires
# the triggers: the next batch rolls them up with its own (tests/store/test_contract.py).
SQLITE_ROLLUP_STATE = (
    "SELECT IFNULL(max(rowid), 0), (SELECT through_rowid FROM rollup_state) FROM requests"
)
SQLITE_ROLLED_THROUGH = "UPDATE rollup_state SET through_rowid = ?"
# PostgreSQL: this transaction rolls its rows up itself, into every rollup of
# ROLLUPS_GENERATION; the INSERT triggers kept for an older meterfox still writing
# (pg_migrations 008, and 009-010 for one that keeps only the hourly rollup) skip its rows.
POSTGRES_ROLLS_UP = (
    "SELECT set_config('meterfox.rolls_up', 'on', true), "
    f"set_config('meterfox.rollups', '{ROLLUPS_GENERATION}', true)"
)
TAG_READ_CHUNK = 5000  # request ids per read of their tags (SQLite takes up to 32,766 values)
# A tag stored for a request stored before (a record sent again with one tag more) moves the
# request from its tag set without the tag to the one with it, as SQLite's trigger 016 dropped
# did (parameters `id` and `name`) and PostgreSQL's for an older writer does (`name`, `id`).
TAG_MOVES = (
    tag_move(":id", tagset_sql(request_tags_sql(":id", without=":name")), "-"),
    tag_move(":id", tagset_sql(request_tags_sql(":id")), "+"),
)


def add_new_rows(conn: LedgerConnection, new: Sequence[NewRow]) -> None:
    """Add the rows just inserted, with their tags (each row once: the caller passes only rows
    the INSERT stored) to every rollup of the connection's store, sample them, and settle
    their reservations; in the caller's transaction."""
    if not new:
        return
    on_sqlite = dialect_of(conn) is SQLITE
    tags = stored_tags(conn, new)
    sets = {request_id: encode(pairs) for request_id, pairs in tags.items()}
    entries = [(fine_key(row, sets.get(row["id"], "")), row_sums(row)) for _, row in new]
    fine = summed(entries)
    # Every sum of every table is at most this in size (nearly always far below 64 bits).
    bound = sum(max(max(sums), -min(sums)) for sums in fine.values())
    for rollup in SQLITE_ROLLUPS if on_sqlite else POSTGRES_ROLLUPS:
        parameters = rollup.parameters(fine.items())
        if bound > INT64_MAX and not all(_fits(p[len(rollup.keys) :]) for p in parameters):
            # A sum past 64 bits: each row added on its own, as the trigger did (SQLite turns
            # the total into a REAL; PostgreSQL refuses the batch).
            parameters = [p for entry in entries for p in rollup.parameters([entry])]
        conn.executemany(rollup.upsert_sql, parameters)
    if on_sqlite:
        conn.executemany(LATENCY_UPSERT, latency_counts(row for _, row in new))
        conn.executemany(SAMPLE_INSERT, sample_rows(new))
        settle_sqlite(conn, [row["id"] for _, row in new])
    else:  # one statement: psycopg's executemany costs a statement (and its CPU) per row
        conn.execute(SETTLE_ALL, ([row["id"] for _, row in new],))
        conn.executemany(PG_SAMPLE_INSERT, pg_sample_rows(new, tags))


def move_to_tag_set(conn: LedgerConnection, request_id: object, name: str) -> None:
    """The tag `name` was just stored for the request `request_id` stored before: move the
    request's sums to its new tag set (nothing if there is no request)."""
    if dialect_of(conn) is POSTGRES:
        without, with_it = PG_TAG_ADDED
        conn.execute(without, (name, request_id))
        conn.execute(with_it, (request_id,))
        conn.execute(SAMPLE_TAGS_REFRESH, (request_id, request_id))
        return
    parameters = {"id": request_id, "name": name}
    for sql in TAG_MOVES:
        conn.execute(sql, parameters)


def stored_tags(conn: LedgerConnection, new: Sequence[NewRow]) -> dict[object, dict[str, str]]:
    """The tags of each new row that has tags, as stored: read
    back, not taken from the batch, so a tag row the batch did not bring (left by a request
    row the INSERT skipped, or deleted: SQLite does not enforce the foreign key) counts, as
    it did for the trigger."""
    ids = [row["id"] for _, row in new]
    found: dict[object, dict[str, str]] = {}
    for at in range(0, len(ids), TAG_READ_CHUNK):
        chunk = ids[at : at + TAG_READ_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT request_id, name, value FROM request_tags WHERE request_id IN ({marks})"
        for request_id, name, value in conn.execute(sql, chunk):
            found.setdefault(request_id, {})[name] = value
    return found


def settle_sqlite(conn: LedgerConnection, ids: Sequence[object]) -> None:
    """Delete the reservations of the requests `ids`: one statement per TAG_READ_CHUNK ids,
    not one per request (each statement run costs SQLite and sqlite3 more than its lookup)."""
    for at in range(0, len(ids), TAG_READ_CHUNK):
        chunk = ids[at : at + TAG_READ_CHUNK]
        conn.execute(SETTLE.format(marks=", ".join("?" * len(chunk))), chunk)


def latency_counts(rows: Iterable[Row]) -> list[tuple]:
    """latency_rollup's additions: requests per (UTC day, provider, latency bucket)."""
    counted = Counter(
        (
            sql_integer(float(row["ts"]) / 86400),  # type: ignore[arg-type]
            row["provider"],
            latency_bucket(sql_integer(row["latency_ms"]))[0],  # type: ignore[arg-type]
        )
        for row in rows
    )
    return [(*key, count) for key, count in counted.items()]


def sample_rows(new: Iterable[NewRow]) -> list[tuple]:
    """latency_sample's rows: those of the rows whose rowid is a multiple of
    SAMPLE_TABLE_EVERY, with their `seq` (the rowid / SAMPLE_TABLE_EVERY)."""
    every = SAMPLE_TABLE_EVERY
    return [
        (*(row[name] for name in _SAMPLE_NAMES), rowid // every)
        for rowid, row in new
        if rowid % every == 0
    ]


def pg_sample_rows(new: Iterable[NewRow], tags: Mapping[object, Mapping[str, str]]) -> list:
    """PostgreSQL's latency_sample rows (pg_migrations 011): as `sample_rows`, with the
    request's tags as a JSON object."""
    every = SAMPLE_TABLE_EVERY
    return [
        (
            *(row[name] for name in PG_SAMPLE_COLUMNS),
            rowid // every,
            json.dumps(tags.get(row["id"], {}), ensure_ascii=False),
        )
        for rowid, row in new
        if rowid % every == 0
    ]


def _fits(values: Sequence[int]) -> bool:
    return min(values) >= INT64_MIN and max(values) <= INT64_MAX
