"""The dashboard Overview's three reads in a fresh process, as its worker runs them first:
import `web/overview`, open the database read-only, run `overview`, `providers` and `top_tags`
once each; print the wall and CPU time of each and of the whole process so far. Then, where the
checkout has it (web/keeper.py), what the keeper's work costs once the process is warm: one
computation of its three answers as JSON bytes (what it does at most every 2 s while records
are committed), and one look at the ledger's mark (what it does every 0.25 s), the mean of 100.

    python bench/overview_cold.py /tmp/mf-1m/meterfox.db
    PYTHONPATH=/path/to/other/checkout python bench/overview_cold.py /tmp/mf-1m/meterfox.db
"""

import os
import sys
import time

STARTED, STARTED_CPU = time.perf_counter(), os.times()

from pathlib import Path  # noqa: E402  (imports are part of what is timed)

from meterfox_cli.store.db import connect  # noqa: E402
from meterfox_cli.web.overview import overview, providers, top_tags  # noqa: E402


def cpu_since(before: os.times_result) -> float:
    now = os.times()
    return now.user - before.user + now.system - before.system


def main() -> None:
    conn = connect(Path(sys.argv[1]), readonly=True)
    parts = []
    for read in (overview, providers, top_tags):
        wall, cpu = time.perf_counter(), os.times()
        read(conn)
        parts.append(
            f"{read.__name__} {time.perf_counter() - wall:.3f} s wall {cpu_since(cpu):.2f} s cpu"
        )
    total = time.perf_counter() - STARTED
    print(
        f"cold total {total:.3f} s wall {cpu_since(STARTED_CPU):.2f} s cpu | "
        + " | ".join(parts)
        + f" | load {os.getloadavg()[0]:.1f}"
    )
    try:
        from meterfox_cli.web.keeper import keep, ledger_mark
    except ImportError:  # a checkout from before the keeper
        return
    wall, cpu = time.perf_counter(), time.process_time()
    first = next(keep(conn))
    answers = f"{time.perf_counter() - wall:.3f} s wall {time.process_time() - cpu:.3f} s cpu"
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(100):
        ledger_mark(conn)
    look_wall, look_cpu = (time.perf_counter() - wall) * 10, (time.process_time() - cpu) * 10
    look = f"{look_wall:.3f} ms wall {look_cpu:.3f} ms cpu"
    size = sum(map(len, first.bodies.values()))
    print(f"keeper: its three answers {answers} ({size:,} bytes) | a look at the mark {look}")


if __name__ == "__main__":
    main()
