"""CPU time per proxied request: the bare relay against MeterFox, at concurrency 32.

    python -m bench.cpu_per_request [--rounds 3] [--seconds 4] [--check] [--observability]
                                    [--threads] [--mode json|stream] [--checkout DIR]

Throughput on a shared 2-vCPU machine depends on what else runs; the CPU a process spends per
request (user + system, from /proc/PID/stat, over a wrk run; `serve`'s child processes — its
record writer, the dashboard's read worker — counted with it) is steadier, and its ratio to the
bare relay's in the same round steadier still. Prints each round and the median ratio beside
the committed baseline (bench/cpu_baseline.json). With --check (CI, .ci/run) it exits 1 when the
median ratio is more than 50% over the baseline: a guard against a large slip that noise
(about ±15%) cannot trip, not a timed test. Uses the same fake upstream, relay and helpers as
bench/run.py. Needs wrk; Linux only.

With --observability, one more target, `meterfox+obs`: a second daemon with Prometheus metrics
scraped every second and OpenTelemetry exporting to a stand-in collector (bench/run.py's
`start_observed`), the plain one with `[metrics] enabled = false`. Its line counts the daemon's
CPU and, apart, its OpenTelemetry export process's (which runs at nice 10, off the proxy's GIL).

With --mode stream, the requests are bench/run.py's streamed chat completions (20 content events,
then `[DONE]`; MeterFox asks upstream for the usage event and drops it from what the client gets,
as it does for any SDK that did not ask) instead of JSON ones; the baseline is per mode (a mode
without one is printed without a verdict, and --check does not fail on it).

With --checkout DIR, one more target, `checkout`: `serve` run from that checkout's code (e.g. a
`git worktree` of the commit before a change), measured in the same rounds; the end prints this
checkout's CPU per request over that one's, paired within each round (both under the same load:
steadier than comparing two runs on a shared machine), the median of the rounds' ratios.

With --threads, each round also splits every target's CPU per request between its main thread
(the event loop: what holds the GIL for every request) and its other threads (the record
writer, executor threads), user and system apart (from /proc/PID/task/TID/stat), and the end
prints the median of each figure per target and of the rounds' main-thread ratios to the relay's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.run import (
    CALLER_KEY,
    CHAT_PATH,
    JSON_BODY,
    STREAM_BODY,
    free_port,
    lua_script,
    start,
    start_observed,
    stop,
    wait_healthy,
    wait_listening,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BASELINE = Path(__file__).with_name("cpu_baseline.json")
REGRESSION_LIMIT = 1.5  # --check fails above baseline x this
BODIES = {"json": JSON_BODY, "stream": STREAM_BODY}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


@dataclass(frozen=True)
class ThreadSplit:
    """CPU seconds of a process's main thread and of all its other threads, user and system."""

    main_user: float
    main_sys: float
    other_user: float
    other_sys: float

    def __sub__(self, earlier: ThreadSplit) -> ThreadSplit:
        return ThreadSplit(
            self.main_user - earlier.main_user,
            self.main_sys - earlier.main_sys,
            self.other_user - earlier.other_user,
            self.other_sys - earlier.other_sys,
        )

    def per(self, count: int) -> ThreadSplit:
        return ThreadSplit(*(value / count for value in self.figures))

    @property
    def figures(self) -> tuple[float, float, float, float]:
        return (self.main_user, self.main_sys, self.other_user, self.other_sys)

    @property
    def main(self) -> float:
        return self.main_user + self.main_sys


def _user_sys(stat: Path) -> tuple[float, float]:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def thread_split(pid: int) -> ThreadSplit:
    """The process's CPU so far, main thread apart: the process's own totals include threads
    that have ended, so the others are the process's minus the main thread's."""
    user, sys_ = _user_sys(Path(f"/proc/{pid}/stat"))
    main_user, main_sys = _user_sys(Path(f"/proc/{pid}/task/{pid}/stat"))
    return ThreadSplit(main_user, main_sys, user - main_user, sys_ - main_sys)


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
    parser.add_argument("--check", action="store_true", help="exit 1 on a >50%% regression")
    parser.add_argument(
        "--observability", action="store_true", help="also a daemon with metrics and OTel on"
    )
    parser.add_argument(
        "--threads", action="store_true", help="also split CPU: main thread vs the others"
    )
    parser.add_argument(
        "--mode", choices=tuple(BODIES), default="json", help="JSON or streamed completions"
    )
    parser.add_argument(
        "--checkout", type=Path, help="also `serve` from this checkout, paired with this one"
    )
    args = parser.parse_args()
    splits: dict[str, list[ThreadSplit]] | None = {} if args.threads else None
    rounds = per_round_cpu(
        args.rounds, args.seconds, args.observability, splits, BODIES[args.mode], args.checkout
    )
    if splits is not None:
        print_thread_medians(splits)
    if args.checkout is not None:
        print_paired(rounds, splits, args.checkout)
    ratios = [cpu["meterfox"] / cpu["bare relay"] for cpu in rounds]
    ratio = statistics.median(ratios)
    summary = (
        f"CPU per proxied request ({args.mode}) vs the bare relay: {ratio:.2f}x "
        f"(median of {len(ratios)})"
    )
    baseline = json.loads(BASELINE.read_text()).get(_baseline_key(args.mode))
    if baseline is None:
        print(f"{summary}; no baseline for this mode")
        return
    limit = baseline * REGRESSION_LIMIT
    verdict = "ok" if ratio <= limit else "REGRESSION"
    print(f"{summary}; baseline {baseline:.2f}x, limit {limit:.2f}x: {verdict}")
    if args.check and ratio > limit:
        sys.exit(1)


def _baseline_key(mode: str) -> str:
    """The baseline file's key for a mode (`ratio`, the JSON one, predates the modes)."""
    return "ratio" if mode == "json" else f"{mode}_ratio"


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (the writer's process, its OpenTelemetry exporter, the
    dashboard's read worker), children first."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (int(c) for c in (task / "children").read_text().split()):
            found += [child, *children(child)]
    return found


def print_thread_medians(splits: dict[str, list[ThreadSplit]]) -> None:
    medians = {
        name: ThreadSplit(*map(statistics.median, zip(*(s.figures for s in rounds), strict=True)))
        for name, rounds in splits.items()
    }
    relay = splits["bare relay"]
    for name, split in medians.items():
        # Paired within each round (the same load on both), then the median: steadier than a
        # ratio of medians on a shared machine.
        paired = statistics.median(
            s.main / r.main for s, r in zip(splits[name], relay, strict=True)
        )
        print(f"median {name:12} main thread {split.main_user * 1e6:6.1f} user "
              f"{split.main_sys * 1e6:5.1f} sys, other threads {split.other_user * 1e6:6.1f} user "
              f"{split.other_sys * 1e6:5.1f} sys us per request; "
              f"main {paired:.2f}x the relay's (median of the rounds' ratios)")  # fmt: skip


def print_paired(
    rounds: list[dict[str, float]], splits: dict[str, list[ThreadSplit]] | None, other: Path
) -> None:
    """This checkout's CPU per request over `other`'s, paired within each round."""
    paired = statistics.median(cpu["meterfox"] / cpu["checkout"] for cpu in rounds)
    line = f"meterfox (this checkout) vs checkout ({other}): {paired:.3f}x CPU per request"
    if splits is not None:
        main = statistics.median(
            mine.main / theirs.main
            for mine, theirs in zip(splits["meterfox"], splits["checkout"], strict=True)
        )
        line += f", {main:.3f}x in the main thread"
    print(f"{line} (medians of {len(rounds)} rounds' ratios)")


def per_round_cpu(
    rounds: int,
    seconds: int,
    observability: bool = False,
    splits: dict[str, list[ThreadSplit]] | None = None,
    body: dict = JSON_BODY,
    checkout: Path | None = None,
) -> list[dict[str, float]]:
    """Each target's CPU seconds per request, one dict per round. With `splits`, each
    target's main/other thread split per request is printed and appended to it, per round."""
    home = Path(tempfile.mkdtemp(prefix="meterfox-cpu-"))
    other_home = home / "checkout"  # with --checkout: the other daemon's home, inside this one
    if observability:
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
        script = lua_script(body, home, CALLER_KEY)
        targets = [("bare relay", relay, relay_port), ("meterfox", meterfox, meterfox_port)]
        if observability:
            ports = {"meterfox_obs": free_port(), "sink": free_port()}
            obs_home = Path(tempfile.mkdtemp(prefix="meterfox-cpu-obs-"))
            observed = start_observed(obs_home, ports, upstream)
            processes += observed
            targets.append(("meterfox+obs", observed[1], ports["meterfox_obs"]))
        if checkout is not None:
            other_home.mkdir()
            other_port = free_port()
            other = start(
                [python, "-m", "meterfox_cli", "serve", "--port", str(other_port),
                 "--upstream", f"openai={upstream}"],
                env={"METERFOX_HOME": str(other_home)}, checkout=checkout.resolve(),
            )  # fmt: skip
            processes.append(other)
            wait_healthy(other_port)
            targets.append(("checkout", other, other_port))
        for (
            _,
            _,
            port,
        ) in targets:  # warm-up, not measured: serve loads its prices on the first record
            requests_served(f"http://127.0.0.1:{port}/openai{CHAT_PATH}", script, 1)
        cpu_per_round = []
        for round_ in range(1, rounds + 1):
            per_request = {}
            for name, process, port in targets:
                helpers = children(process.pid)
                before = cpu_seconds(process.pid)
                split_before = thread_split(process.pid)
                helpers_before = sum(cpu_seconds(pid) for pid in helpers)
                url = f"http://127.0.0.1:{port}/openai{CHAT_PATH}"
                served = requests_served(url, script, seconds)
                own = (cpu_seconds(process.pid) - before) / served
                split = (thread_split(process.pid) - split_before).per(served)
                helper = (sum(cpu_seconds(pid) for pid in helpers) - helpers_before) / served
                per_request[name] = own + helper  # the record writer's process counts too
                extra = (
                    f" ({own * 1e6:6.1f} itself + {helper * 1e6:6.1f} in its children)"
                    if helpers
                    else ""
                )
                print(f"round {round_} {name:12} {served:7} requests  "
                      f"{per_request[name] * 1e6:7.1f} us CPU per request{extra}", flush=True)  # fmt: skip
                if splits is not None:
                    splits.setdefault(name, []).append(split)
                    print(f"        main thread {split.main_user * 1e6:6.1f} user "
                          f"{split.main_sys * 1e6:5.1f} sys, other threads "
                          f"{split.other_user * 1e6:6.1f} user {split.other_sys * 1e6:5.1f} sys",
                          flush=True)  # fmt: skip
            cpu_per_round.append(per_request)
        return cpu_per_round
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
