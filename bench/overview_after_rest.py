"""What the first Overview costs after the dashboard rested (issue 17): the price of stopping
its read worker at rest. Each run starts `meterfox serve` with `[server] rest_after` = --rest-after
in a fresh home (a copy of --database in it, if given), waits for the read worker to start and
then to rest (its process gone), and past the time the daemon still serves the keeper's last
answers (web/keeper.OVERVIEW_FRESH_S: a rest of minutes outlasts it), and times from the
client:

- the Overview's default view (`api/overview`) after the rest: a new worker starts, imports its
  query layer and reads (what the first page after a rest waits for);
- another stacking (`?by=model`) a moment later: the same read on the warm worker, on demand;
- the default view again a second later: served from the daemon's memory (the read just made,
  reused while fresh, or the keeper's answer).

    python -m bench.overview_after_rest [--runs 3] [--database /tmp/dashcold-1m/meterfox.db]
                                        [--checkout DIR]

`--checkout DIR` runs another checkout's `serve` in every run too (first on even runs),
paired: a before and after in one session.

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

from bench.run import ROOT, free_port, start, stop
from bench.startup import answered_after, load_average, process_name, process_tree
from meterfox_cli.web.keeper import OVERVIEW_FRESH_S

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


def one_run(
    database: Path | None, rest_after: str, checkout: Path = ROOT
) -> tuple[float, float, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/_meterfox"
    with tempfile.TemporaryDirectory(prefix="meterfox-rest-") as home:
        Path(home, "config.toml").write_text(f'[server]\nrest_after = "{rest_after}"\n')
        if database is not None:
            shutil.copyfile(database, Path(home, "meterfox.db"))
        command = [sys.executable, "-m", "meterfox_cli", "serve", "--port", str(port)]
        process = start(command, env={"METERFOX_HOME": home}, checkout=checkout)
        try:
            answered_after(f"{base}/health", time.monotonic(), WAIT_S)
            wait_for(lambda: readers(process.pid), "the read worker's start")
            wait_for(lambda: not readers(process.pid), "the read worker's rest")
            time.sleep(OVERVIEW_FRESH_S + 0.5)  # the kept answers no longer served
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
    parser.add_argument("--checkout", type=Path, help="another checkout, timed in each run too")
    args = parser.parse_args()
    checkouts = [ROOT] + ([args.checkout.resolve()] if args.checkout else [])
    runs: dict[Path, list[tuple[float, float, float]]] = {checkout: [] for checkout in checkouts}
    for number in range(1, args.runs + 1):
        for checkout in checkouts if number % 2 else checkouts[::-1]:
            runs[checkout].append(one_run(args.database, args.rest_after, checkout))
            after_rest, warm, again = runs[checkout][-1]
            print(f"run {number} {checkout} (load {load_average()}): Overview after a rest "
                  f"{after_rest:.3f} s, another stacking on the warm worker {warm:.3f} s, the "
                  f"default view again {again:.3f} s", flush=True)  # fmt: skip
    for checkout, taken in runs.items():
        after_rest, warm, again = (statistics.median(column) for column in zip(*taken, strict=True))
        print(f"{checkout} medians: after a rest {after_rest:.3f} s, warm worker {warm:.3f} s, "
              f"again {again:.3f} s; the rest's price: {after_rest - warm:+.3f} s over a warm "
              "worker's read")  # fmt: skip


if __name__ == "__main__":
    main()
