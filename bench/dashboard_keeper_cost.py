"""What keeping the dashboard's Overview ready costs (web/keeper.py): a real `meterfox serve` on
the database in METERFOX_HOME, first left alone for `--seconds` (idle: the keeper only looks at
the ledger's mark), then for `--seconds` while records are committed to its ledger at `--rate`
a second (a transaction every 0.5 s, as the record writer commits; bench/seed_db.py's mix,
timestamped now; straight into the database, so the proxy's own work is not in the figures).
Prints the CPU time of the daemon, its read worker and its record writer in each phase, and per
minute. No page is open: this is what the keeper costs a daemon nobody looks at.

It writes to the database: run it on a copy. `--checkout DIR` serves another checkout (a daemon
without the keeper only warms its worker once).

    cp -r /tmp/mf-1m /tmp/mf-1m-copy
    METERFOX_HOME=/tmp/mf-1m-copy python -m bench.dashboard_keeper_cost --seconds 60 --rate 100
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

from bench.cpu_per_request import children, cpu_seconds
from bench.dashboard_load import process_name
from bench.run import ROOT, free_port, start, stop, wait_healthy
from bench.seed_db import FEATURES, KEYS, MODELS, make_record, make_tags, price, weighted
from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.db import connect, transaction
from meterfox_cli.store.rows import insert_records

COMMIT_EVERY_S = 0.5


def processes(serve_pid: int) -> dict[str, int]:
    return {"daemon": serve_pid} | {process_name(pid): pid for pid in children(serve_pid)}


def used(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def commit_for(database: Path, seconds: float, rate: float, rng: random.Random) -> int:
    """Commit `rate` records a second for `seconds`; how many were committed."""
    keys, key_weights = weighted(KEYS)
    features, feature_weights = weighted(FEATURES)
    model_weights = [m.weight for m in MODELS]
    per_commit = max(1, round(rate * COMMIT_EVERY_S))
    conn = connect(database)
    committed, deadline = 0, time.monotonic() + seconds
    try:
        while (now := time.monotonic()) < deadline:
            batch = []
            for _ in range(per_commit):
                model = rng.choices(MODELS, model_weights)[0]
                key = rng.choices(keys, key_weights)[0]
                tags = make_tags(rng, features, feature_weights)
                record = make_record(rng, time.time(), model, key, tags)
                batch.append((record, price(model, record.reading.usage)))
            with transaction(conn):
                insert_records(conn, batch)
            committed += len(batch)
            time.sleep(max(0.0, now + COMMIT_EVERY_S - time.monotonic()))
    finally:
        conn.close()
    return committed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="each phase")
    parser.add_argument("--rate", type=float, default=100.0, help="records a second")
    parser.add_argument("--settle", type=float, default=10.0, help="from healthy to measuring")
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    database = resolve_paths().database
    port = free_port()
    serve = start(
        [sys.executable, "-m", "meterfox_cli", "serve", "--port", str(port)],
        checkout=args.checkout,
    )
    phases = {}
    try:
        wait_healthy(port, timeout=60)
        time.sleep(args.settle)
        pids = processes(serve.pid)
        before, load = used(pids), os.getloadavg()[0]
        time.sleep(args.seconds)
        phases["idle"] = (before, used(pids), load, os.getloadavg()[0], 0)
        before, load = used(pids), os.getloadavg()[0]
        committed = commit_for(database, args.seconds, args.rate, random.Random(15))
        phases["committing"] = (before, used(pids), load, os.getloadavg()[0], committed)
    finally:
        stop(serve)
    for phase, (before, after, load_from, load_to, committed) in phases.items():
        spent = {name: after[name] - before[name] for name in after}
        per_minute = ", ".join(
            f"{name} {s:.2f} s ({s * 60 / args.seconds:.2f} s/min)" for name, s in spent.items()
        )
        extra = f", {committed:,} records committed" if committed else ""
        print(
            f"{phase} {args.seconds:.0f} s{extra}: CPU {per_minute}; "
            f"load average {load_from:.1f}-{load_to:.1f}"
        )


if __name__ == "__main__":
    main()
