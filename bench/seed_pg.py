"""Fill a PostgreSQL ledger with N synthetic request records, fast: the mix of bench/seed_db.py
(same models, keys, tags, errors, synthetic prices; same seed, same records), loaded with COPY.

    python bench/seed_pg.py --url postgresql://meterfox@127.0.0.1:5432/bench --rows 10000000

The ledger is migrated first (`PostgresLedger.migrate`: the real schema). Each record becomes
its row through `store.rows.request_row`, as the writer makes it. For speed the rows stream in
with COPY, not through the writer's insert (`store.rows.insert_rows`, which rolls each batch
up; its transactions say they roll up, so the INSERT triggers kept for older writers stand by),
and every rollup and key spend is then rebuilt from them in one statement each, exactly as the
migrations (002, 006, 009-011) build them over existing rows. Bounded: it
stops after `--rows`, and exits with an error when `--max-seconds` pass first.

Making a record in Python costs some 65 µs of CPU, so on a busy 2-core machine ten million
take most of an hour; `--copies K` makes `--rows / K` records and then copies them K - 1 times
inside the database (same times and contents, new ids and row ids): the same mix, K times as
dense, in minutes. docs/performance.md says which way each measured ledger was filled.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.seed_db import FEATURES, KEYS, MODELS, make_record, make_tags, price, weighted
from meterfox_cli.store.pg_migrations import ROLLUPS_REBUILD
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.rollups import POSTGRES_ROLLS_UP
from meterfox_cli.store.rows import REQUEST_COLUMNS, TAG_COLUMNS, request_row

CHUNK = 100_000  # timestamps drawn, and rows copied, per chunk (memory stays bounded)


def chunk_times(rng: random.Random, count: int, start: float, end: float) -> list[float]:
    """`count` sorted times in [start, end), busier on weekdays and in working hours (the
    weighting of seed_db.timestamps, drawn a chunk of the span at a time)."""
    out: list[float] = []
    while len(out) < count:
        ts = rng.uniform(start, end)
        t = time.localtime(ts)
        keep = (1.0 if t.tm_wday < 5 else 0.35) * (1.0 if 8 <= t.tm_hour < 20 else 0.3)
        if rng.random() < keep:
            out.append(ts)
    out.sort()
    return out


def copy_records(conn, copies: int) -> None:
    """Add `copies` - 1 copies of every request and its tags, with new ids (`id-k`)."""
    columns = [c for c in REQUEST_COLUMNS if c != "id"]
    listed = ", ".join(columns)
    for k in range(1, copies):
        with conn.raw.transaction():
            conn.execute(POSTGRES_ROLLS_UP)  # rebuilt after (seed)
            conn.execute(
                f"INSERT INTO requests (id, {listed}) SELECT id || '-{k}', {listed} "
                "FROM requests WHERE strpos(id, '-') = 0"
            )
            conn.execute(
                f"INSERT INTO request_tags SELECT request_id || '-{k}', name, value "
                "FROM request_tags WHERE strpos(request_id, '-') = 0"
            )
        print(f"\rcopy {k} of {copies - 1} done", end="", file=sys.stderr)


def seed(
    url: str,
    rows: int,
    days: float,
    seed_value: int,
    *,
    limit_s: float,
    copies: int = 1,
):
    ledger = PostgresLedger(url)
    ledger.migrate()
    conn = ledger.connect()
    rng = random.Random(seed_value)
    keys, key_weights = weighted(KEYS)
    features, feature_weights = weighted(FEATURES)
    model_weights = [m.weight for m in MODELS]
    end = time.time()
    total, rows = rows, rows // copies
    span = days * 86400 / max(1, -(-rows // CHUNK))
    started = time.perf_counter()
    request_copy = f"COPY requests ({', '.join(REQUEST_COLUMNS)}) FROM STDIN"
    tag_copy = f"COPY request_tags ({', '.join(TAG_COLUMNS)}) FROM STDIN"
    try:
        for n, offset in enumerate(range(0, rows, CHUNK)):
            if time.perf_counter() - started > limit_s:
                raise SystemExit(f"stopped at {offset:,} rows: --max-seconds {limit_s:g} passed")
            size = min(CHUNK, rows - offset)
            chunk_start = end - days * 86400 + n * span
            records = []
            for ts in chunk_times(rng, size, chunk_start, chunk_start + span):
                model = rng.choices(MODELS, model_weights)[0]
                key = rng.choices(keys, key_weights)[0]
                record = make_record(rng, ts, model, key, make_tags(rng, features, feature_weights))
                records.append((record, price(model, record.reading.usage)))
            with conn.raw.transaction(), conn.raw.cursor() as cursor:
                cursor.execute(POSTGRES_ROLLS_UP)
                with cursor.copy(request_copy) as copy:
                    for record, cost in records:
                        row = request_row(record, cost)
                        copy.write_row([row[column] for column in REQUEST_COLUMNS])
                with cursor.copy(tag_copy) as copy:
                    for record, _ in records:
                        for name, value in record.tags:
                            copy.write_row((record.id, name, value))
            done = offset + size
            rate = done / (time.perf_counter() - started)
            print(f"\r{done:,} / {rows:,} rows ({rate:,.0f}/s)", end="", file=sys.stderr)
        copy_records(conn, copies)
        with conn.raw.transaction():
            for rebuild in ROLLUPS_REBUILD:
                conn.execute(rebuild)
        for table in ("requests", "request_tags", "request_rollup", "day_rollup", "tag_rollup"):
            conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        conn.close()
    print(
        f"\nseeded {total:,} rows ({rows:,} made, {copies} copies) in {time.perf_counter() - started:.1f}s → {ledger.describe()}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the PostgreSQL ledger (a database)")
    parser.add_argument("--rows", type=int, required=True, help="how many records to add")
    parser.add_argument("--days", type=float, default=45, help="span of timestamps, ending now")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same rows)")
    parser.add_argument("--copies", type=int, default=1, help="make rows/K, copy them K times")
    parser.add_argument("--max-seconds", type=float, default=3600, help="give up after this")
    args = parser.parse_args(argv)
    seed(
        args.url,
        args.rows,
        args.days,
        args.seed,
        limit_s=args.max_seconds,
        copies=args.copies,
    )


if __name__ == "__main__":
    main()
