"""The CPU one record costs the ledger's write path, in-process: `insert_records` (rows, INSERTs,
rollups) in transactions of `--batch` records, nothing else (no pricing, no writer thread).

    python -m bench.insert_batches [--records 10000] [--batch 100] [--rounds 3] [--url PG_URL]

Records are seed_db's mix (models, keys, two tags on most) with times inside the last minute,
as a live writer's batches hold them; with `--one-group`, all of one model and key, untagged
(what bench/cpu_per_request's JSON load records: each batch then adds to one row per rollup). Each round writes into a fresh SQLite file in a temp dir
(or, with `--url`, into the PostgreSQL ledger at that URL, emptied first), and prints the
CPU time per record (`time.process_time`: the SQLite library runs in this thread; with
PostgreSQL, plus the CPU of the server process serving the connection, from /proc) and the
wall time; then the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.seed_db import FEATURES, KEYS, MODELS, make_record, make_tags, price, weighted
from meterfox_cli.pricing.quote import Price
from meterfox_cli.records import UsageRecord
from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.rows import insert_records
from meterfox_cli.store.sqlite import SqliteLedger

# The tables emptied before a round on PostgreSQL (the ledger's records and what they feed).
PG_TABLES = "requests, request_tags, request_rollup, key_spend, key_reservations"


def records(count: int, seed: int, one_group: bool = False) -> list[tuple[UsageRecord, Price]]:
    rng = random.Random(seed)
    keys, key_weights = weighted(KEYS)
    features, feature_weights = weighted(FEATURES)
    model_weights = [m.weight for m in MODELS]
    now = time.time()
    out = []
    for i in range(count):
        model = MODELS[0] if one_group else rng.choices(MODELS, model_weights)[0]
        key = keys[0] if one_group else rng.choices(keys, key_weights)[0]
        tags = () if one_group else make_tags(rng, features, feature_weights)
        ts = now - 60 + 60 * i / count
        record = make_record(rng, ts, model, key, tags)
        out.append((record, price(model, record.reading.usage)))
    return out


def one_round(
    ledger: Ledger, rows: list[tuple[UsageRecord, Price]], batch: int
) -> tuple[float, float, float | None]:
    """(CPU seconds here, wall seconds, CPU seconds of the PostgreSQL backend serving the
    connection or None on SQLite) to insert `rows` in transactions of `batch`."""
    conn = ledger.open_writer(5000)
    try:
        backend = None
        if ledger.dialect.name == "postgresql":
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        server = _cpu_of(backend)
        cpu, wall = time.process_time(), time.perf_counter()
        for offset in range(0, len(rows), batch):
            with ledger.transaction(conn):
                insert_records(conn, rows[offset : offset + batch], host="bench")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu, wall, None if backend is None else _cpu_of(backend) - server
    finally:
        conn.close()


def _cpu_of(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` so far (/proc: Linux, the same machine)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_ledger(url: str | None, home: Path, n: int) -> Ledger:
    if url is None:
        ledger: Ledger = SqliteLedger(home / f"round{n}.db")
        ledger.migrate()
        return ledger
    from meterfox_cli.store.postgres import PostgresLedger

    ledger = PostgresLedger(url)
    ledger.migrate()
    conn = ledger.connect()
    try:
        conn.execute(f"TRUNCATE {PG_TABLES}")
    finally:
        conn.close()
    return ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--one-group", action="store_true", help="one model and key, no tags")
    parser.add_argument("--url", help="a PostgreSQL ledger (emptied!) instead of a SQLite file")
    args = parser.parse_args()
    import meterfox_cli

    print(f"meterfox_cli from {Path(meterfox_cli.__file__).parent}")
    rows = records(args.records, args.seed, args.one_group)
    per_record = []
    with tempfile.TemporaryDirectory(prefix="meterfox-insert-bench-") as home:
        for n in range(args.rounds):
            ledger = fresh_ledger(args.url, Path(home), n)
            cpu, wall, server = one_round(ledger, rows, args.batch)
            per_record.append((cpu + (server or 0)) / len(rows) * 1e6)
            in_server = (
                "" if server is None else f" ({server / len(rows) * 1e6:.1f} of it the server's)"
            )
            print(
                f"round {n + 1}: {per_record[-1]:.1f} µs CPU a record{in_server}, "
                f"{wall / len(rows) * 1e6:.1f} µs wall ({len(rows)} records, batches of {args.batch})"
            )
    print(f"median: {statistics.median(per_record):.1f} µs CPU a record")


if __name__ == "__main__":
    main()
