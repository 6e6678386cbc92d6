"""What the first Overview costs after the dashboard rested (issue 17): the price of stopping
its read worker at rest. Each run starts `meterfox serve` with `[server] rest_after` = --rest-after
in a fresh home (a copy of --database in it, if given), waits for the read worker to start and
then to rest (its process gone), and times from the client:

- the Overview's default view (`api/overview`) after the rest: a new worker starts, imports its
  query layer and reads (what the first page after a rest waits for);
- another stacking (`?by=model`) a moment later: the same read on the warm worker, on demand;
- the default view again once the keeper has an answer: served from the daemon's memory.

    python -m bench.overview_after_rest [--runs 3] [--database /tmp/dashcold-1m/meterfox.db]

Every process is stopped by PID; the copy is removed with the home.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.run import free_port, start, stop
from bench.startup import answered_after, load_average, process_name, process_tree

WAIT_S = 120.0  # for the worker to start, or to rest, at most


def readers(pid: int) -> list[int]:
    return [child for child in process_tree(pid)[1:] if process_name(child) == "dashboard reader"]


def wait_for(check, what: str) -> None:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > WAIT_S:
            raise RuntimeError(f"{what}: not within {WAIT_S:g} s")
        time.sleep(0.05)


def timed_get(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - began


def one_run(database: Path | None, rest_after: str) -> tuple[float, float, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/_meterfox"
    with tempfile.TemporaryDirectory(prefix="meterfox-rest-") as home:
        Path(home, "config.toml").write_text(f'[server]\nrest_after = "{rest_after}"\n')
        if database is not None:
            shutil.copyfile(database, Path(home, "meterfox.db"))
        command = [sys.executable, "-m", "meterfox_cli", "serve", "--port", str(port)]
        process = start(command, env={"METERFOX_HOME": home})
        try:
            answered_after(f"{base}/health", time.monotonic(), WAIT_S)
            wait_for(lambda: readers(process.pid), "the read worker's start")
            wait_for(lambda: not readers(process.pid), "the read worker's rest")
            after_rest = timed_get(f"{base}/api/overview")
            time.sleep(1.0)
            warm = timed_get(f"{base}/api/overview?by=model")
            time.sleep(1.0)
            kept = timed_get(f"{base}/api/overview")
        finally:
            stop(process)
    return after_rest, warm, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", type=Path, help="a ledger to copy into each run's home")
    parser.add_argument("--rest-after", default="2s")
    args = parser.parse_args()
    runs = []
    for number in range(1, args.runs + 1):
        runs.append(one_run(args.database, args.rest_after))
        after_rest, warm, kept = runs[-1]
        print(f"run {number} (load {load_average()}): Overview after a rest {after_rest:.3f} s, "
              f"another stacking on the warm worker {warm:.3f} s, the kept answer "
              f"{kept:.3f} s", flush=True)  # fmt: skip
    after_rest, warm, kept = (statistics.median(column) for column in zip(*runs, strict=True))
    print(f"medians: after a rest {after_rest:.3f} s, warm worker {warm:.3f} s, kept {kept:.3f} s;"
          f" the rest's price: {after_rest - warm:+.3f} s over a warm worker's read")  # fmt: skip


if __name__ == "__main__":
    main()
