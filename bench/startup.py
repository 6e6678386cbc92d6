"""Start-up and idle memory of `meterfox serve` with a passthrough-only config (no keys), and
with `--with-key`, start-up with a proxy key too, paired in each run.

    python -m bench.startup [--runs 3] [--idle 2] [--rest] [--checkout DIR]
                            [--with-key [--against DIR]]

Each run starts, in a fresh METERFOX_HOME, the bare relay (bench/bare_relay.py: Python and
aiohttp and nothing else, the floor) and then `meterfox serve`, and measures for each the time
from the process start to its first answer (the relay's 404, serve's 200 from
/_meterfox/health), and the CPU time (user + system) each had used by then, which a loaded
machine disturbs far less than the wall time; then serve's resident memory after `--idle`
seconds with no traffic (VmRSS from /proc, summed over the daemon and its child processes, and
PSS, which counts the pages they share once; each process also shown, RSS/PSS; start-up is timed on a restart, the database made by a first start, timed too);
with `--rest`, the home's config says `[server] rest_after = "3s"` and the same is read again
REST_WAIT_S after healthy, past the rest, or once the children have ended if one is still
ending then (what `serve` holds at rest: the processes that rest are gone; issue 17's idle-RSS
goal is read there); then 50 sequential JSON requests through it to a fake upstream (the first record of a provider
reads its models from the compact price table: the slowest of these shows what that costs the
requests in flight). With `--with-key`, each run then starts `serve` once more, in a home with
a provider key in the encrypted file and a proxy key for it (made by the checkout's own `keys
set` and `keys create`, as bench/run.py's mint_proxy_key does: the database exists, so it
compares with the restart), and times it to healthy; one request with the proxy key must then
be forwarded; `--against DIR` times another checkout's start with a proxy key in each run too
(first on even runs, after on odd ones), paired. Prints each run, the medians, and issue 17's goals (start-up ≤ 0.5 s,
idle RSS ≤ 50 MB) as PASS or MISS. The processes read byte-code, as an installed package
does, from a cache directory an untimed warm-up run writes (no checkout is written to); with
`--source` they compile every module on every start instead (what an environment with
PYTHONDONTWRITEBYTECODE=1 and a source checkout does: several tenths of a second of `serve`'s
start). `--checkout DIR` runs another checkout's `meterfox` (e.g.
main, for a before/after in one session). Linux only; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.cpu_per_request import cpu_seconds
from bench.run import (
    CHAT_PATH,
    JSON_BODY,
    KEY_ENV,
    ROOT,
    free_port,
    mint_proxy_key,
    rss_mb,
    start,
    stop,
    wait_listening,
)

STARTUP_GOAL_S = 0.5
IDLE_RSS_GOAL_MB = 50.0
FIRST_REQUESTS = 50
REST_AFTER = "3s"  # --rest: the home's [server] rest_after
REST_WAIT_S = 6.0  # --rest: memory read this long after healthy (the rest's 3 s, and margin)
REST_DEADLINE_S = 20.0  # … or, if a child is still ending then, once it has (at most this long)


@dataclass(frozen=True)
class Startup:
    relay_s: float
    relay_cpu_s: float
    first_start_s: float  # a fresh METERFOX_HOME: creates and migrates the database
    healthy_s: float  # a restart: the database exists
    healthy_cpu_s: float  # the daemon and its children
    healthy_cpu_own_s: float  # the daemon's own process: its path to listening
    idle_rss_mb: float  # the daemon and its children
    idle_rss_each: tuple[float, ...]  # the daemon's own first
    idle_pss_mb: float  # the same, pages shared between processes counted once (PSS)
    idle_pss_each: tuple[float, ...]
    names: tuple[str, ...]  # what each of those processes runs
    first_p50_ms: float
    first_max_ms: float
    key_healthy_s: float | None = None  # --with-key: a start with a proxy key (a restart)
    key_healthy_cpu_s: float | None = None
    rest: Memory | None = None  # --rest: the same, read REST_WAIT_S after healthy


@dataclass(frozen=True)
class Memory:
    """RSS and PSS of the daemon and each of its child processes (the daemon's own first)."""

    rss_mb: float
    rss_each: tuple[float, ...]
    pss_mb: float
    pss_each: tuple[float, ...]
    names: tuple[str, ...]

    def processes(self) -> str:
        each = zip(self.names, self.rss_each, self.pss_each, strict=True)
        return " + ".join(f"{name} {rss:.1f}/{pss:.1f}" for name, rss, pss in each) or "none"


def memory(pid: int) -> Memory:
    pids = process_tree(pid)
    each = tuple(rss_mb(pid) for pid in pids)
    shares = tuple(pss_mb(pid) for pid in pids)
    return Memory(sum(each), each, sum(shares), shares, tuple(process_name(p) for p in pids))


def children_gone(pid: int, within_s: float) -> bool:
    """Wait up to `within_s` for `pid`'s children to end (a child that rests finishes its work
    and exits: on a loaded machine, and the dashboard's worker at SCHED_IDLE, that can outlast
    the rest itself); whether they did. One still running is counted at rest, named."""
    deadline = time.monotonic() + within_s
    while len(process_tree(pid)) > 1:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def process_tree(pid: int) -> list[int]:
    """`pid` and its running descendants (from /proc's children lists; a child that has just
    ended, a zombie until reaped, is left out)."""
    found, index = [pid], 0
    while index < len(found):
        for task in Path(f"/proc/{found[index]}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
        index += 1
    return [pid for pid in found if _running(pid)]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def pss_mb(pid: int) -> float:
    """Proportional set size: each page a process shares with others counted as its share
    (the fair sum over a daemon and its children, which share the interpreter's libraries)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_name(pid: int) -> str:
    """`serve`, or the module a child runs (`-m meterfox_cli.store.writer_process`: the
    writer; `meterfox_cli.web.worker`: the dashboard's read worker)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    module = argv[argv.index(b"-m") + 1].decode() if b"-m" in argv else argv[0].decode()
    return {
        "meterfox_cli": "serve",
        "meterfox_cli.store.writer_process": "writer",
        "meterfox_cli.web.worker": "dashboard reader",
    }.get(module, module)


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


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


def first_requests(url: str, count: int = FIRST_REQUESTS, key: str = "sk-bench") -> list[float]:
    body = json.dumps(JSON_BODY).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    times = []
    for _ in range(count):
        began = time.perf_counter()
        request = urllib.request.Request(url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        times.append((time.perf_counter() - began) * 1000)
    return times


def serve_command(port: int, upstream: str) -> list[str]:
    return [sys.executable, "-m", "meterfox_cli", "serve", "--port", str(port),
            "--upstream", f"openai={upstream}"]  # fmt: skip


def measure_with_key(
    checkout: Path, command: list[str], port: int, code_env: dict[str, str]
) -> tuple[float, float]:
    """Seconds and CPU seconds (the daemon and its children) from the start of `command` to
    healthy, in a fresh home with a proxy key; then one request with that key (an error unless
    it is forwarded)."""
    with tempfile.TemporaryDirectory(prefix="meterfox-startup-key-") as home:
        key = mint_proxy_key(Path(home), checkout, code_env)
        env = {"METERFOX_HOME": home, **KEY_ENV, **code_env}
        began = time.monotonic()
        process = start(command, env=env, checkout=checkout)
        try:
            healthy = answered_after(f"http://127.0.0.1:{port}/_meterfox/health", began)
            cpu = sum(cpu_seconds(pid) for pid in process_tree(process.pid))
            first_requests(f"http://127.0.0.1:{port}/openai{CHAT_PATH}", count=1, key=key)
        finally:
            stop(process)
    return healthy, cpu


def measure_installed(
    checkout: Path, upstream: str, idle_s: float, with_key: bool = False, rest: bool = False
) -> Startup:
    """One measured start, with byte-code read from a cache an untimed start wrote first (what
    an installed package does: bench/run.py's figure)."""
    with tempfile.TemporaryDirectory(prefix="meterfox-startup-pycache-") as code_dir:
        code_env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": code_dir}
        # The warm-up as the measured start (with --rest, a config.toml: tomllib and the rest's
        # modules), so the measured start compiles nothing: compiling grows the heap ~5 MB.
        measure(checkout, upstream, 0, code_env, with_key, rest)
        return measure(checkout, upstream, idle_s, code_env, with_key, rest)


def measure(
    checkout: Path,
    upstream: str,
    idle_s: float,
    code_env: dict[str, str],
    with_key: bool = False,
    rest: bool = False,
) -> Startup:
    relay_port, port = free_port(), free_port()
    python = sys.executable
    began = time.monotonic()
    relay = start(
        [python, "-m", "bench.bare_relay", "--port", str(relay_port), "--upstream", upstream],
        env=code_env,
    )
    try:
        relay_s = answered_after(f"http://127.0.0.1:{relay_port}/", began)
        relay_cpu = cpu_seconds(relay.pid)
    finally:
        stop(relay)
    command = serve_command(port, upstream)
    health = f"http://127.0.0.1:{port}/_meterfox/health"
    with tempfile.TemporaryDirectory(prefix="meterfox-startup-") as home:
        if rest:
            Path(home, "config.toml").write_text(f'[server]\nrest_after = "{REST_AFTER}"\n')
        began = time.monotonic()
        process = start(command, env={"METERFOX_HOME": home, **code_env}, checkout=checkout)
        try:
            first_start = answered_after(health, began)
        finally:
            stop(process)
        began = time.monotonic()
        process = start(command, env={"METERFOX_HOME": home, **code_env}, checkout=checkout)
        try:
            healthy = answered_after(health, began)
            healthy_cpu = sum(cpu_seconds(pid) for pid in process_tree(process.pid))
            healthy_cpu_own = cpu_seconds(process.pid)
            time.sleep(idle_s)
            idle = memory(process.pid)
            if rest:
                time.sleep(max(0.0, REST_WAIT_S - idle_s))
                children_gone(process.pid, REST_DEADLINE_S - REST_WAIT_S)
            at_rest = memory(process.pid) if rest else None
            times = first_requests(f"http://127.0.0.1:{port}/openai{CHAT_PATH}")
        finally:
            stop(process)
    keyed = measure_with_key(checkout, command, port, code_env) if with_key else (None, None)
    return Startup(
        relay_s, relay_cpu, first_start, healthy, healthy_cpu, healthy_cpu_own, idle.rss_mb,
        idle.rss_each, idle.pss_mb, idle.pss_each, idle.names, statistics.median(times),
        max(times), *keyed, at_rest,
    )  # fmt: skip


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument(
        "--rest",
        action="store_true",
        help=f'also read the memory at rest: [server] rest_after = "{REST_AFTER}", read '
        f"{REST_WAIT_S:g} s after healthy (--idle must be shorter than the rest)",
    )
    parser.add_argument(
        "--source",
        action="store_true",
        help="compile the Python sources on every start (PYTHONDONTWRITEBYTECODE=1) instead of "
        "reading byte-code, as an installed package does",
    )
    parser.add_argument(
        "--with-key",
        action="store_true",
        help="also time a start with a proxy key (its provider key in the encrypted file) in "
        "each run, beside the passthrough restart",
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="with --with-key: also time this checkout's start with a proxy key in each run",
    )
    args = parser.parse_args()
    if args.rest and args.idle >= REST_WAIT_S / 2:
        parser.error(f"--rest: --idle must be under {REST_WAIT_S / 2:g} s (before the rest)")
    upstream_port = free_port()
    upstream = start([sys.executable, "-m", "bench.fake_upstream", "--port", str(upstream_port)])
    runs: list[Startup] = []
    others: list[tuple[float, float]] = []  # --against: its start with a proxy key, each run
    code_dir = tempfile.TemporaryDirectory(prefix="meterfox-startup-pycache-")
    # Byte-code in a directory of its own (no checkout is written to), written by one untimed
    # warm-up run: what `pip install` leaves. With --source, every start compiles every module.
    code_env = {"PYTHONDONTWRITEBYTECODE": "1" if args.source else "", "PYTHONPYCACHEPREFIX": ""}
    if not args.source:
        code_env["PYTHONPYCACHEPREFIX"] = code_dir.name
    try:
        wait_listening(upstream_port)
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        against = args.against.resolve() if args.against and args.with_key else None

        def other_start() -> tuple[float, float]:
            assert against is not None
            port = free_port()
            return measure_with_key(against, serve_command(port, upstream_url), port, code_env)

        if not args.source:
            measure(args.checkout.resolve(), upstream_url, 0, code_env, args.with_key, args.rest)
            if against is not None:
                other_start()
        for number in range(1, args.runs + 1):
            if against is not None and number % 2 == 0:
                others.append(other_start())
            run = measure(
                args.checkout.resolve(), upstream_url, args.idle, code_env, args.with_key, args.rest
            )
            if against is not None and number % 2 == 1:
                others.append(other_start())
            runs.append(run)
            idle = Memory(
                run.idle_rss_mb, run.idle_rss_each, run.idle_pss_mb, run.idle_pss_each, run.names
            )
            processes = idle.processes()
            print(f"run {number} (load {load_average()}): relay answers after {run.relay_s:.3f} s "
                  f"({run.relay_cpu_s:.2f} s CPU), serve healthy after {run.first_start_s:.3f} s "
                  f"(first start), {run.healthy_s:.3f} s (restart; {run.healthy_cpu_s:.2f} s CPU, "
                  f"{run.healthy_cpu_own_s:.2f} s of it serve's own), "
                  f"idle RSS/PSS {run.idle_rss_mb:.1f}/{run.idle_pss_mb:.1f} MB ({processes}), "
                  f"first {FIRST_REQUESTS} requests p50 {run.first_p50_ms:.1f} ms max "
                  f"{run.first_max_ms:.1f} ms", flush=True)  # fmt: skip
            if run.rest is not None:
                print(f"      at rest ({REST_WAIT_S:g} s after healthy, rest_after {REST_AFTER}): "
                      f"RSS/PSS {run.rest.rss_mb:.1f}/{run.rest.pss_mb:.1f} MB "
                      f"({run.rest.processes()})", flush=True)  # fmt: skip
            if run.key_healthy_s is not None:
                print(f"      with a proxy key: serve healthy after {run.key_healthy_s:.3f} s "
                      f"({run.key_healthy_cpu_s:.2f} s CPU), {run.key_healthy_s - run.healthy_s:+.3f} s "
                      "over the restart above", flush=True)  # fmt: skip
            if against is not None:
                print(f"      {against}'s with a proxy key: healthy after {others[-1][0]:.3f} s "
                      f"({others[-1][1]:.2f} s CPU)", flush=True)  # fmt: skip
    finally:
        stop(upstream)
        code_dir.cleanup()
    print("byte-code: compiled on every start (--source)" if args.source else
          "byte-code: read from a cache written by an untimed warm-up run (as installed)")  # fmt: skip
    relay = statistics.median(r.relay_s for r in runs)
    first_start = statistics.median(r.first_start_s for r in runs)
    healthy = statistics.median(r.healthy_s for r in runs)
    rss = statistics.median(r.idle_rss_mb for r in runs)
    pss = statistics.median(r.idle_pss_mb for r in runs)
    cpu = statistics.median(r.healthy_cpu_s for r in runs)
    relay_cpu = statistics.median(r.relay_cpu_s for r in runs)
    own_cpu = statistics.median(r.healthy_cpu_own_s for r in runs)
    print(f"first start          {first_start:.3f} s, {first_start / relay:.2f}x the bare relay's")
    print(f"start-up to healthy  {healthy:.3f} s, {healthy / relay:.2f}x the bare relay's "
          f"{relay:.3f} s  (goal ≤ {STARTUP_GOAL_S} s)  {verdict(healthy <= STARTUP_GOAL_S)}")  # fmt: skip
    print(f"CPU to healthy       {cpu:.3f} s, {cpu / relay_cpu:.2f}x the bare relay's "
          f"{relay_cpu:.3f} s  (less disturbed by load than the wall time)")  # fmt: skip
    print(f"  serve's own        {own_cpu:.3f} s, {own_cpu / relay_cpu:.2f}x the relay's  (its "
          "children start beside it, not waited for)")  # fmt: skip
    if args.with_key:
        keyed = statistics.median(r.key_healthy_s for r in runs)
        keyed_cpu = statistics.median(r.key_healthy_cpu_s for r in runs)
        over = statistics.median(r.key_healthy_s - r.healthy_s for r in runs)
        print(f"with a proxy key     {keyed:.3f} s to healthy ({keyed_cpu:.3f} s CPU), "
              f"{over:+.3f} s over the passthrough restart (median of each run's difference)")  # fmt: skip
    if others:
        theirs = statistics.median(other[0] for other in others)
        paired = statistics.median(
            r.key_healthy_s - o[0] for r, o in zip(runs, others, strict=True)
        )
        print(f"  {args.against}  {theirs:.3f} s to healthy with a proxy key "
              f"({statistics.median(o[1] for o in others):.3f} s CPU); this checkout "
              f"{paired:+.3f} s (median of each run's difference)")  # fmt: skip
    if args.rest:
        rest_rss = statistics.median(r.rest.rss_mb for r in runs if r.rest)
        rest_pss = statistics.median(r.rest.pss_mb for r in runs if r.rest)
        own = statistics.median(r.rest.rss_each[0] for r in runs if r.rest)
        print(f"RSS at rest          {rest_rss:.1f} MB, serve's own {own:.1f} MB  (goal ≤ "
              f"{IDLE_RSS_GOAL_MB:g} MB)  {verdict(rest_rss <= IDLE_RSS_GOAL_MB)}")  # fmt: skip
        print(f"PSS at rest          {rest_pss:.1f} MB")
        print(f"idle RSS             {rss:.1f} MB  (right after start, {args.idle:g} s after "
              "healthy, before any rest)")  # fmt: skip
    else:
        print(f"idle RSS             {rss:.1f} MB  (goal ≤ {IDLE_RSS_GOAL_MB:g} MB, read at rest "
              f"with --rest)  {verdict(rss <= IDLE_RSS_GOAL_MB)}")  # fmt: skip
    print(f"idle PSS             {pss:.1f} MB  (shared pages counted once)")
    print(f"load average         {load_average()} (1/5/15 min) at the end")


if __name__ == "__main__":
    main()
