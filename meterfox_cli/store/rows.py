"""A request record ⇄ its `requests` row, both ways and by column name: a UsageRecord and its
price become a row to insert (`insert_records`); a row read back becomes a StoredRequest (what
pricing needs) or a RequestLine (what `tail` and `export` show). The only place that does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from operator import attrgetter, is_, itemgetter
from typing import Any

from meterfox_cli.money import from_nanousd
from meterfox_cli.pricing.quote import Price, Quote
from meterfox_cli.records import UsageRecord
from meterfox_cli.store.dialect import POSTGRES, SQLITE, Dialect, LedgerConnection, dialect_of
from meterfox_cli.store.rollups import (
    POSTGRES_ROLLS_UP,
    SQLITE_ROLLED_THROUGH,
    SQLITE_ROLLUP_STATE,
    add_new_rows,
    move_to_tag_set,
)
from meterfox_cli.usage import Reading, Usage

INT64_MAX = 2**63 - 1

# Every column of `requests`, as the migrations create it; the INSERT is built from this list.
REQUEST_COLUMNS: tuple[str, ...] = (
    "id",
    "ts",
    "day",
    "provider",
    "model",
    "endpoint",
    "method",
    "status",
    "streamed",
    "outcome",
    "key_name",
    "ttfb_ms",
    "latency_ms",
    "usage_known",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "units",
    "price_context",
    "dedupe_key",
    "reported_cost_usd",
    "cost_nanousd",
    "cost_source",
    "price_detail",
    "host",
)
TAG_COLUMNS = ("request_id", "name", "value")
# Per dialect: the INSERTs, each skipping a row already stored (the record id is the key).
_INSERTS = {
    dialect.name: (
        dialect.insert_ignoring("requests", REQUEST_COLUMNS),
        dialect.insert_ignoring("request_tags", TAG_COLUMNS),
    )
    for dialect in (SQLITE, POSTGRES)
}
INSERT_REQUEST, INSERT_TAG = _INSERTS[SQLITE.name]
_in_column_order = itemgetter(*REQUEST_COLUMNS)  # a row's values as INSERT_REQUEST takes them


# --- record → row ---------------------------------------------------------------------------


# A dedupe key whose usage is already stored: a record repeating it is stored without usage.
ALREADY_COUNTED = Price(None, "no_usage", "usage already recorded under the same dedupe key")
SEEN_DEDUPE_KEY = "SELECT 1 FROM requests WHERE dedupe_key = ? AND usage_known = 1 LIMIT 1"

Row = dict[str, object]  # a `requests` row, column by column (as `request_row` builds it)
Tag = tuple[str, str, str]  # a `request_tags` row: (request_id, name, value)


def insert_records(
    conn: LedgerConnection, rows: Sequence[tuple[UsageRecord, Price]], host: str = ""
) -> None:
    """Insert each record with its price and its tags (in the caller's transaction), on
    either backend, as recorded by the daemon `host`; a record whose id is already stored is
    skipped."""
    insert_rows(conn, [request_row(r, p, host) for r, p in rows], record_tags(r for r, _ in rows))


def insert_rows(conn: LedgerConnection, rows: Sequence[Row], tags: Sequence[Tag]) -> None:
    """Insert `requests` rows and their tags (in the caller's transaction); a row whose id is
    already stored is skipped, its tags too. The rows it stores, and only those, are added to
    the rollups (store/rollups.py) in the same transaction: every writer of records (the record
    writer, the outbox's drain, `db copy`, the seeding scripts) comes through here. Rows an
    older meterfox inserted without rolling them up are rolled up here too: on SQLite by the
    next batch (`rollup_state`), on PostgreSQL at once by the triggers it still fires."""
    dialect = dialect_of(conn)
    insert_request, insert_tag = _INSERTS[dialect.name]
    unrolled: list[tuple[int, Row]] = []
    if dialect is SQLITE:
        last, through = conn.execute(SQLITE_ROLLUP_STATE).fetchone()
        if through is not None and last > through:
            unrolled = _read_back(conn, "rowid > ? AND rowid <= ?", (through, last))
        inserted = _inserted_sqlite(conn, rows, last)
    else:
        conn.execute(POSTGRES_ROLLS_UP)  # the INSERT triggers left for older writers stand by
        requests = [_in_column_order(row) for row in rows]
        inserted = conn.executemany_returning(f"{insert_request} RETURNING rowid, id", requests)  # type: ignore[attr-defined]
    new_ids = {row_id for _, row_id in inserted}
    conn.executemany(insert_tag, [tag for tag in tags if tag[0] in new_ids])
    for tag in tags:  # for a request stored before (sent again): rare, one at a time
        if tag[0] not in new_ids and conn.execute(insert_tag, tag).rowcount:
            move_to_tag_set(conn, tag[0], tag[1])
    new = [*unrolled, *_as_inserted(conn, rows, inserted)]
    if new:
        add_new_rows(conn, new)
        if dialect is SQLITE:
            conn.execute(SQLITE_ROLLED_THROUGH, (max(last, new[-1][0]),))


def _as_inserted(
    conn: LedgerConnection, rows: Sequence[Row], inserted: list[tuple[int, str]]
) -> list[tuple[int, Row]]:
    """Each inserted (rowid, id) with its row: the batch's row of that id, or, for an id the
    batch repeats (rare: a record sent twice), the row the database kept, read back (the
    first of them, unless a unique dedupe key made the INSERT skip it)."""
    by_id: dict[object, Row] = {}
    repeated = set()
    for row in rows:
        if by_id.setdefault(row["id"], row) is not row:
            repeated.add(row["id"])
    for _, row_id in inserted:
        if row_id in repeated:
            by_id[row_id] = _read_back(conn, "id = ?", (row_id,))[0][1]
    return [(rowid, by_id[row_id]) for rowid, row_id in inserted]


def _read_back(conn: LedgerConnection, where: str, parameters: tuple) -> list[tuple[int, Row]]:
    """(rowid, row) of the stored requests `where` says, in rowid order."""
    columns = ", ".join(REQUEST_COLUMNS)
    cursor = conn.execute(
        f"SELECT rowid AS rowid_, {columns} FROM requests WHERE {where} ORDER BY rowid", parameters
    )
    return [(row.pop("rowid_"), row) for row in named_rows(cursor)]


def _inserted_sqlite(
    conn: LedgerConnection, rows: Sequence[Row], last: int
) -> list[tuple[int, str]]:
    """Insert `rows`; (rowid, id) of each row it stored, in rowid order. The write transaction
    holds the database's one write lock, so those are exactly the rows past `last`, the largest
    rowid before it (sqlite3's executemany returns no RETURNING rows). When it stored every
    row, those are last + 1, last + 2, … in order, as SQLite numbers a rowid table without
    AUTOINCREMENT (one more than the largest, below the 64-bit end), and are not read back."""
    stored = 0
    for insert, requests in _insert_runs(rows):
        stored += conn.executemany(insert, requests).rowcount
    if stored == 0:
        return []
    if stored == len(rows) and last + stored < INT64_MAX:
        return list(zip(range(last + 1, last + stored + 1), map(_ID, rows), strict=True))
    return conn.execute(
        "SELECT rowid, id FROM requests WHERE rowid > ? ORDER BY rowid", (last,)
    ).fetchall()


def _insert_runs(rows: Sequence[Row]) -> list[tuple[str, list[tuple]]]:
    """The INSERTs of `rows` on SQLite: each run of consecutive rows whose NULL_DEFAULT
    columns are None in the same places, with the INSERT leaving those columns out (they are
    NULL all the same). sqlite3 binds a None only after looking for its adapter; a record's
    row has about five: about 1.5k instructions each, saved. The rows keep their order, so
    their rowids do too."""
    runs: list[tuple[str, list[tuple]]] = []
    previous = None
    for row in rows:
        nulls = tuple(map(is_, _null_default(row), _NONES))
        if nulls != previous:
            insert, values = _INSERT_WITHOUT.get(nulls) or _insert_without(nulls)
            run: list[tuple] = []
            runs.append((insert, run))
            previous = nulls
        run.append(values(row))
    return runs


def _insert_without(nulls: tuple[bool, ...]) -> tuple[str, Callable[[Row], tuple]]:
    """The INSERT (and the values it takes) leaving out the NULL_DEFAULT columns `nulls` marks."""
    left_out = {name for name, null in zip(NULL_DEFAULT, nulls, strict=True) if null}
    columns = [name for name in REQUEST_COLUMNS if name not in left_out]
    found = _INSERT_WITHOUT[nulls] = (
        SQLITE.insert_ignoring("requests", columns),
        itemgetter(*columns),
    )
    return found


# The columns of `requests` with no default but NULL (tests/store/test_rows.py checks the
# schema): a row may leave them out when None.
NULL_DEFAULT = (
    "model",
    "ttfb_ms",
    "units",
    "price_context",
    "dedupe_key",
    "reported_cost_usd",
    "cost_nanousd",
    "price_detail",
)
_null_default = itemgetter(*NULL_DEFAULT)
_NONES = (None,) * len(NULL_DEFAULT)
_INSERT_WITHOUT: dict[tuple[bool, ...], tuple[str, Callable[[Row], tuple]]] = {}
_ID = itemgetter("id")


def record_tags(records: Iterable[UsageRecord]) -> list[Tag]:
    """The `request_tags` rows of `records`."""
    return [(r.id, name, value) for r in records for name, value in r.tags]


def counted_once(conn: LedgerConnection, rows: Sequence[Row]) -> list[Row]:
    """Rows whose dedupe key already has usage (stored, or earlier in these rows) lose theirs.

    The request is still recorded, with `usage_known = 0`, zero tokens and no cost, so a
    Replicate prediction polled twice is billed once. Runs inside the write transaction.
    """
    seen: set[object] = set()
    out = []
    for row in rows:
        key = row["dedupe_key"]
        if key is not None and row["usage_known"]:
            if key in seen or conn.execute(SEEN_DEDUPE_KEY, (key,)).fetchone():
                row = already_counted(row)
            seen.add(key)
        out.append(row)
    return out


def already_counted(row: Row) -> Row:
    """`row` as `request_row` builds it for the same record without usage, priced
    ALREADY_COUNTED."""
    return {
        **row,
        **dict.fromkeys(_TOKEN_COLUMNS, 0),
        "usage_known": 0,
        "units": None,
        "reported_cost_usd": None,
        "cost_nanousd": None,
        "cost_source": ALREADY_COUNTED.source,
        "price_detail": ALREADY_COUNTED.detail,
    }


_TOKEN_COLUMNS = (
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def request_row(record: UsageRecord, price: Price, host: str = "") -> dict[str, object]:
    """The `requests` row that stores `record` priced at `price`, recorded by the daemon
    `host` ('' when unnamed), column by column."""
    reading = record.reading
    usage = reading.usage
    cost = price.cost_nanousd
    if usage is None:
        tokens: tuple[int, ...] = _NO_TOKENS
    else:
        tokens = _token_counts(usage)
        if not (min(tokens) >= -INT64_MAX and max(tokens) <= INT64_MAX):  # nearly never
            tokens = tuple(map(_int64, tokens))
    return {
        "id": record.id,
        "ts": record.started_at,
        "day": local_day(record.started_at),
        "provider": record.provider,
        "model": reading.model or record.model,
        "endpoint": record.endpoint,
        "method": record.method,
        "status": record.status,
        "streamed": int(record.streamed),
        "outcome": str(record.outcome),
        "key_name": record.key_name,
        "ttfb_ms": record.ttfb_ms,
        "latency_ms": record.latency_ms,
        # The Reading, as `reading_from` reads it back:
        "usage_known": 0 if usage is None else 1,
        "input_tokens": tokens[0],
        "cached_tokens": tokens[1],
        "cache_write_tokens": tokens[2],
        "cache_write_1h_tokens": tokens[3],
        "output_tokens": tokens[4],
        "reasoning_tokens": tokens[5],
        "units": json.dumps(dict(usage.units)) if usage is not None and usage.units else None,
        "price_context": json.dumps(dict(reading.price_context)) if reading.price_context else None,
        "dedupe_key": reading.dedupe_key,
        "reported_cost_usd": (
            None if reading.reported_cost_usd is None else str(reading.reported_cost_usd)
        ),
        "cost_nanousd": None if cost is None else _int64(cost),
        "cost_source": price.source,
        "price_detail": price.detail,
        "host": host,
    }


# A Usage's counts in the order of _TOKEN_COLUMNS (its fields of the same names).
_token_counts = attrgetter(*_TOKEN_COLUMNS)
_NO_TOKENS = (0,) * len(_TOKEN_COLUMNS)


def local_day(ts: float) -> str:
    """The local day of unix time `ts`, as `date.fromtimestamp(ts).isoformat()` writes it.
    That is about 4k instructions a record in the writer; the day is kept for the UTC minute
    it was last asked for (records come in time order). Since 1973 every time zone's offset
    and every change of it falls on a whole minute, so a local day starts on one: within a
    minute the day cannot change. `time.tzset()` makes a new `time.tzname`, which clears it."""
    minute = ts // 60
    memo = _day
    if memo[0] == minute and memo[1] is time.tzname:
        return memo[2]
    day = date.fromtimestamp(ts).isoformat()
    if ts >= _WHOLE_MINUTES_SINCE:
        _remember_day((minute, time.tzname, day))
    return day


_WHOLE_MINUTES_SINCE = 94_694_400.0  # 1973-01-01 UTC (Liberia's -0:44:30 ended in 1972)
_day: tuple[float, object, str] = (-1.0, None, "")  # (UTC minute, time.tzname, its day)


def _remember_day(day: tuple[float, object, str]) -> None:
    global _day
    _day = day  # one assignment: a thread reading it sees the old triple or the new one


def _int64(value: int) -> int:
    """SQLite integers are 64-bit: an absurd count or cost from a hostile upstream is clamped,
    never allowed to fail the batch it is in."""
    if -INT64_MAX <= value <= INT64_MAX:  # nearly always: one comparison, not two calls
        return value
    return max(min(value, INT64_MAX), -INT64_MAX)


# --- row → what reads get back --------------------------------------------------------------


def named_rows(cursor: Any) -> list[dict[str, Any]]:
    """The rows of an executed query, each as {column name: value}."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def reading_from(row: Mapping[str, Any]) -> Reading:
    """The Reading a row stores (as `request_row` writes it; the dedupe key is not read back)."""
    usage = None
    if row["usage_known"]:
        usage = Usage(
            input_tokens=row["input_tokens"],
            cached_tokens=row["cached_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
            cache_write_1h_tokens=row["cache_write_1h_tokens"],
            output_tokens=row["output_tokens"],
            reasoning_tokens=row["reasoning_tokens"],
            units=tuple(json.loads(row["units"]).items()) if row["units"] else (),
        )
    reported, context = row["reported_cost_usd"], row["price_context"]
    return Reading(
        model=row["model"],
        usage=usage,
        reported_cost_usd=Decimal(reported) if reported is not None else None,
        price_context=tuple(json.loads(context).items()) if context else (),
    )


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """One stored request with everything needed to price it again (`explain`, `reprice`)."""

    id: str
    ts: float
    provider: str
    model: str | None
    endpoint: str
    status: int
    outcome: str
    reading: Reading
    cost_nanousd: int | None
    cost_source: str
    price_detail: str | None

    @property
    def quote(self) -> Quote | None:
        return Quote.from_json(self.price_detail) if self.price_detail else None


# The columns a StoredRequest is read from (over `requests`, unaliased): all but the
# request's timing and routing facts, which explain and reprice never need.
_NOT_STORED = frozenset(
    {"day", "method", "streamed", "key_name", "ttfb_ms", "latency_ms", "dedupe_key"}
)
STORED_COLUMNS = ", ".join(c for c in REQUEST_COLUMNS if c not in _NOT_STORED)


def stored_request(row: Mapping[str, Any]) -> StoredRequest:
    """A row selected with STORED_COLUMNS as a StoredRequest."""
    return StoredRequest(
        id=row["id"],
        ts=row["ts"],
        provider=row["provider"],
        model=row["model"],
        endpoint=row["endpoint"],
        status=row["status"],
        outcome=row["outcome"],
        reading=reading_from(row),
        cost_nanousd=row["cost_nanousd"],
        cost_source=row["cost_source"],
        price_detail=row["price_detail"],
    )


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One recorded request, as `tail` shows it and `export` writes it. Each field but `tags`
    is the column of the same name (`rowid`: the row id)."""

    rowid: int
    id: str
    ts: float
    day: str
    provider: str
    model: str | None
    endpoint: str
    method: str
    status: int
    outcome: str
    streamed: bool
    key_name: str
    ttfb_ms: float | None
    latency_ms: float
    usage_known: bool
    input_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanousd: int | None
    cost_source: str
    tags: str = "{}"  # a JSON object

    @property
    def cost_usd(self) -> Decimal | None:
        return from_nanousd(self.cost_nanousd)


_LINE_FIELDS = tuple(f.name for f in fields(RequestLine))
_STREAMED, _USAGE_KNOWN, _TAGS = (
    _LINE_FIELDS.index(n) for n in ("streamed", "usage_known", "tags")
)
# The columns a RequestLine is read from, over a `requests` row named `r`: its fields, and
# with `tags_column` its tags as a JSON object.
LINE_COLUMNS = ", ".join(f"r.{name}" for name in _LINE_FIELDS if name != "tags")


def tags_column(dialect: Dialect) -> str:
    """The tags of request `r` as a JSON object's text (the same text on both backends)."""
    tags = dialect.tags_object("t")
    return f"(SELECT {tags} FROM request_tags t WHERE t.request_id = r.id) AS tags"


def request_lines(cursor: Any) -> Iterator[RequestLine]:
    """The rows of a query selecting LINE_COLUMNS (maybe with TAGS_COLUMN) as RequestLines,
    fetched as they are used. Columns are matched to fields by name once per query (a
    missing one fails here), not per row: an export reads millions."""
    names = [column[0] for column in cursor.description]
    wanted = [name for name in _LINE_FIELDS if name != "tags" or name in names]
    take = itemgetter(*(names.index(name) for name in wanted))
    tagged = "tags" in names
    while batch := cursor.fetchmany(2000):
        for row in batch:
            values = list(take(row))
            values[_STREAMED] = bool(values[_STREAMED])
            values[_USAGE_KNOWN] = bool(values[_USAGE_KNOWN])
            if tagged and values[_TAGS] is None:
                values[_TAGS] = "{}"
            yield RequestLine(*values)
