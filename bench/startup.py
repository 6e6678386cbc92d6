"""Start-up and idle memory of `meterfox serve` with a passthrough-only config (no keys).

    python -m bench.startup [--runs 3] [--idle 2] [--checkout DIR]

Each run starts, in a fresh METERFOX_HOME, the bare relay (bench/bare_relay.py: Python and
aiohttp and nothing else, the floor) and then `meterfox serve`, and measures for each the time
from the process start to its first answer (the relay's 404, serve's 200 from
/_meterfox/health); then serve's resident memory (VmRSS from /proc) after `--idle` seconds
with no traffic (start-up is timed on a restart, the database made by a first start, timed
too); then 50 sequential JSON requests through it to a fake upstream (the first
record loads the price data in the writer thread: the slowest of these shows what that costs
the requests in flight). Prints each run, the medians, and issue 17's goals (start-up ≤ 0.5 s,
idle RSS ≤ 50 MB) as PASS or MISS. `--checkout DIR` runs another checkout's `meterfox` (e.g.
main, for a before/after in one session). Linux only; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.run import CHAT_PATH, JSON_BODY, ROOT, free_port, rss_mb, start, stop, wait_listening

STARTUP_GOAL_S = 0.5
IDLE_RSS_GOAL_MB = 50.0
FIRST_REQUESTS = 50


@dataclass(frozen=True)
class Startup:
    relay_s: float
    first_start_s: float  # a fresh METERFOX_HOME: creates and migrates the database
    healthy_s: float  # a restart: the database exists
    idle_rss_mb: float
    first_p50_ms: float
    first_max_ms: float


def answered_after(url: str, began: float, timeout: float = 60) -> float:
    """Seconds from `began` to the first HTTP answer (any status) from `url`."""
    while time.monotonic() - began < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.monotonic() - began
        except urllib.error.HTTPError:
            return time.monotonic() - began
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"no answer from {url} in {timeout} s")


def first_requests(url: str) -> list[float]:
    body = json.dumps(JSON_BODY).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    times = []
    for _ in range(FIRST_REQUESTS):
        began = time.perf_counter()
        request = urllib.request.Request(url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        times.append((time.perf_counter() - began) * 1000)
    return times


def measure(checkout: Path, upstream: str, idle_s: float) -> Startup:
    relay_port, port = free_port(), free_port()
    python = sys.executable
    began = time.monotonic()
    relay = start(
        [python, "-m", "bench.bare_relay", "--port", str(relay_port), "--upstream", upstream]
    )
    try:
        relay_s = answered_after(f"http://127.0.0.1:{relay_port}/", began)
    finally:
        stop(relay)
    command = [python, "-m", "meterfox_cli", "serve", "--port", str(port),
               "--upstream", f"openai={upstream}"]  # fmt: skip
    health = f"http://127.0.0.1:{port}/_meterfox/health"
    with tempfile.TemporaryDirectory(prefix="meterfox-startup-") as home:
        began = time.monotonic()
        process = start(command, env={"METERFOX_HOME": home}, checkout=checkout)
        try:
            first_start = answered_after(health, began)
        finally:
            stop(process)
        began = time.monotonic()
        process = start(command, env={"METERFOX_HOME": home}, checkout=checkout)
        try:
            healthy = answered_after(health, began)
            time.sleep(idle_s)
            rss = rss_mb(process.pid)
            times = first_requests(f"http://127.0.0.1:{port}/openai{CHAT_PATH}")
            median = statistics.median(times)
            return Startup(relay_s, first_start, healthy, rss, median, max(times))
        finally:
            stop(process)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    upstream_port = free_port()
    upstream = start([sys.executable, "-m", "bench.fake_upstream", "--port", str(upstream_port)])
    runs = []
    try:
        wait_listening(upstream_port)
        for number in range(1, args.runs + 1):
            run = measure(args.checkout.resolve(), f"http://127.0.0.1:{upstream_port}", args.idle)
            runs.append(run)
            print(f"run {number}: relay answers after {run.relay_s:.3f} s, serve healthy after "
                  f"{run.first_start_s:.3f} s (first start), {run.healthy_s:.3f} s (restart), idle RSS {run.idle_rss_mb:.1f} MB, first "
                  f"{FIRST_REQUESTS} requests p50 {run.first_p50_ms:.1f} ms max "
                  f"{run.first_max_ms:.1f} ms", flush=True)  # fmt: skip
    finally:
        stop(upstream)
    relay = statistics.median(r.relay_s for r in runs)
    first_start = statistics.median(r.first_start_s for r in runs)
    healthy = statistics.median(r.healthy_s for r in runs)
    rss = statistics.median(r.idle_rss_mb for r in runs)
    print(f"first start          {first_start:.3f} s, {first_start / relay:.2f}x the bare relay's")
    print(f"start-up to healthy  {healthy:.3f} s, {healthy / relay:.2f}x the bare relay's "
          f"{relay:.3f} s  (goal ≤ {STARTUP_GOAL_S} s)  {verdict(healthy <= STARTUP_GOAL_S)}")  # fmt: skip
    print(f"idle RSS             {rss:.1f} MB  (goal ≤ {IDLE_RSS_GOAL_MB:g} MB)  "
          f"{verdict(rss <= IDLE_RSS_GOAL_MB)}")  # fmt: skip


if __name__ == "__main__":
    main()
