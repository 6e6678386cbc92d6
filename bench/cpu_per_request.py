"""CPU time per proxied request: the bare relay against MeterFox, JSON at concurrency 32.

    python -m bench.cpu_per_request [--rounds 3] [--seconds 4] [--observability]

Throughput on a shared 2-vCPU machine depends on what else runs; the CPU a process spends per
request (user + system, from /proc/PID/stat, over a wrk run) is steadier. Uses the same fake
upstream, relay and helpers as bench/run.py. Needs wrk; Linux only.

With --observability, one more target, `meterfox+obs`: a second daemon with Prometheus metrics
scraped every second and OpenTelemetry exporting to a stand-in collector (bench/run.py's
`start_observed`), the plain one with `[metrics] enabled = false`. Its line counts the daemon's
CPU and, apart, its OpenTelemetry export process's (which runs at nice 10, off the proxy's GIL).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import (
    CALLER_KEY,
    CHAT_PATH,
    JSON_BODY,
    free_port,
    lua_script,
    start,
    start_observed,
    stop,
    wait_healthy,
    wait_listening,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def requests_served(url: str, script: Path, seconds: int) -> int:
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    return int(re.search(r"(\d+) requests in", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument(
        "--observability", action="store_true", help="also a daemon with metrics and OTel on"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="meterfox-cpu-"))
    if args.observability:
        (home / "config.toml").write_text("[metrics]\nenabled = false\n")
    upstream_port, relay_port, meterfox_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    python = sys.executable
    processes = [start([python, "-m", "bench.fake_upstream", "--port", str(upstream_port)])]
    try:
        relay = start(
            [python, "-m", "bench.bare_relay", "--port", str(relay_port), "--upstream", upstream]
        )
        meterfox = start(
            [python, "-m", "meterfox_cli", "serve", "--port", str(meterfox_port),
             "--upstream", f"openai={upstream}"],
            env={"METERFOX_HOME": str(home)},
        )  # fmt: skip
        processes += [relay, meterfox]
        wait_listening(upstream_port)
        wait_listening(relay_port)
        wait_healthy(meterfox_port)
        script = lua_script(JSON_BODY, home, CALLER_KEY)
        targets = [("bare relay", relay, relay_port), ("meterfox", meterfox, meterfox_port)]
        if args.observability:
            ports = {"meterfox_obs": free_port(), "sink": free_port()}
            obs_home = Path(tempfile.mkdtemp(prefix="meterfox-cpu-obs-"))
            observed = start_observed(obs_home, ports, upstream)
            processes += observed
            targets.append(("meterfox+obs", observed[1], ports["meterfox_obs"]))
        for round_ in range(1, args.rounds + 1):
            for name, process, port in targets:
                helpers = children(process.pid)
                before = cpu_seconds(process.pid)
                helpers_before = sum(cpu_seconds(pid) for pid in helpers)
                url = f"http://127.0.0.1:{port}/openai{CHAT_PATH}"
                served = requests_served(url, script, args.seconds)
                spent = cpu_seconds(process.pid) - before
                helper = sum(cpu_seconds(pid) for pid in helpers) - helpers_before
                extra = f"  + {helper / served * 1e6:6.1f} in its children" if helpers else ""
                print(f"round {round_} {name:12} {served:7} requests  "
                      f"{spent / served * 1e6:7.1f} us CPU per request{extra}", flush=True)  # fmt: skip
    finally:
        for process in reversed(processes):
            stop(process)


if __name__ == "__main__":
    main()
