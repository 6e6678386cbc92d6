"""Streamed time to first byte, paired: direct, the bare relay and `meterfox serve` from one or
more checkouts, each target's sequential streams taken in turn, round after round, so that every
target sees the same drift of a shared machine.

    python -m bench.ttfb [--rounds 8] [--requests 150] [CHECKOUT ...]

bench/run.py measures TTFB once per run and target; its goal (MeterFox's added p50 ≤ the relay's
+ 0.1 ms) sits within that figure's spread, so this takes more samples of it: each round, for each
target, the median of `--requests` streamed chat completions (bench/run.py's `stream_ttfb`); the
end prints each target's median over the rounds and what it adds to direct. With no CHECKOUT,
this one's `serve`. Every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    CALLER_KEY,
    CHAT_PATH,
    KEY_ENV,
    ROOT,
    free_port,
    start,
    stop,
    stream_ttfb,
    wait_healthy,
    wait_listening,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    args = parser.parse_args()
    processes = []
    try:
        upstream_port, relay_port = free_port(), free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        processes.append(start([sys.executable, "-m", "bench.fake_upstream", "--port", str(upstream_port)]))  # fmt: skip
        processes.append(start([sys.executable, "-m", "bench.bare_relay", "--port", str(relay_port), "--upstream", upstream]))  # fmt: skip
        wait_listening(upstream_port)
        wait_listening(relay_port)
        urls = {"direct": upstream + CHAT_PATH, "bare relay": f"http://127.0.0.1:{relay_port}/openai{CHAT_PATH}"}  # fmt: skip
        for checkout in args.checkouts:
            port, home = free_port(), tempfile.mkdtemp(prefix="meterfox-ttfb-")
            command = [sys.executable, "-m", "meterfox_cli", "serve", "--port", str(port), "--upstream", f"openai={upstream}"]  # fmt: skip
            processes.append(start(command, env={"METERFOX_HOME": home, **KEY_ENV}, checkout=checkout.resolve()))  # fmt: skip
            wait_healthy(port)
            urls[str(checkout)] = f"http://127.0.0.1:{port}/openai{CHAT_PATH}"
        medians: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                samples = asyncio.run(stream_ttfb(url, args.requests, CALLER_KEY, 30))
                medians[name].append(statistics.median(samples))
        direct = statistics.median(medians["direct"])
        for name, values in medians.items():
            p50 = statistics.median(values)
            print(f"{name:24} TTFB p50 {p50:.3f} ms, added over direct {p50 - direct:.3f} ms")
    finally:
        for process in reversed(processes):
            stop(process)


if __name__ == "__main__":
    main()
