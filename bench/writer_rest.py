"""The record writer's process at rest (`[server] rest_after`, issue 17): idle memory of
`meterfox serve` and its children once the writer's process has rested, beside the same daemon
with `rest_after = "never"` (and `--checkout DIR`'s, e.g. main, with the same config), paired
in each run; and what a rest costs the next record: the time from a response's end to its
record counted in health's `records_written`, for the first record after a rest (a new
process starts) and for one while the process runs.

    python -m bench.writer_rest [--runs 3] [--rest 1] [--idle 2] [--checkout DIR]

Each daemon starts in a fresh METERFOX_HOME with a passthrough-only config, answers one request
(to a fake upstream), then sits `--rest` + `--idle` seconds with no traffic before its memory
is read (VmRSS and PSS, summed over it and its children, as bench/startup.py does). Run
`python -m compileall -q meterfox_cli bench` first: the processes read byte-code. Health is
polled every 2 ms, which the commit times include. Linux only; every process stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.run import CHAT_PATH, JSON_BODY, ROOT, free_port, rss_mb, start, stop, wait_listening
from bench.startup import answered_after, process_name, process_tree, pss_mb, serve_command


@dataclass(frozen=True)
class Idle:
    rss_mb: float
    pss_mb: float
    each: str  # name rss/pss of each process


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_meterfox/health", timeout=5) as r:
        return json.loads(r.read())


def chat(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/openai{CHAT_PATH}",
        data=json.dumps(JSON_BODY).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def commit_ms(port: int) -> float:
    """One request; milliseconds from its response's end until health counts its record."""
    before = health(port)["records_written"]
    chat(port)
    answered = time.monotonic()
    deadline = answered + 30
    while health(port)["records_written"] <= before:
        if time.monotonic() > deadline:
            raise RuntimeError("the record was not committed in 30 s")
        time.sleep(0.002)
    return (time.monotonic() - answered) * 1000


def idle(pid: int) -> Idle:
    pids = process_tree(pid)
    rss = [rss_mb(p) for p in pids]
    pss = [pss_mb(p) for p in pids]
    names = [process_name(p) for p in pids]
    each = " + ".join(f"{n} {r:.1f}/{s:.1f}" for n, r, s in zip(names, rss, pss, strict=True))
    return Idle(sum(rss), sum(pss), each)


def run_one(
    checkout: Path, upstream: str, rest_after: str, wait_s: float, timed: bool
) -> tuple[Idle, float | None, float | None]:
    """Idle memory after one request and `wait_s` quiet; with `timed`, the commit time of the
    next record (after the rest) and of one more (the process running)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="meterfox-writer-rest-") as home:
        Path(home, "config.toml").write_text(f'[server]\nrest_after = "{rest_after}"\n')
        began = time.monotonic()
        process = start(
            serve_command(port, upstream), env={"METERFOX_HOME": home}, checkout=checkout
        )
        try:
            answered_after(f"http://127.0.0.1:{port}/_meterfox/health", began)
            chat(port)
            time.sleep(wait_s)
            memory = idle(process.pid)
            woken = running = None
            if timed:
                if health(port).get("writer_process") != "resting":
                    raise RuntimeError(f"not resting after {wait_s} s: {health(port)}")
                woken = commit_ms(port)
                running = commit_ms(port)
        finally:
            stop(process)
    return memory, woken, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rest", type=float, default=1.0, help="rest_after, seconds")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds more before reading")
    parser.add_argument("--checkout", type=Path, help="another checkout (e.g. main), same config")
    args = parser.parse_args()
    upstream_port = free_port()
    upstream = start([sys.executable, "-m", "bench.fake_upstream", "--port", str(upstream_port)])
    rest_after, wait_s = f"{args.rest:g}s", args.rest + args.idle
    rested, kept, other, woken, running = [], [], [], [], []
    try:
        wait_listening(upstream_port)
        url = f"http://127.0.0.1:{upstream_port}"
        for number in range(1, args.runs + 1):
            memory, wake, run = run_one(ROOT, url, rest_after, wait_s, timed=True)
            rested.append(memory)
            woken.append(wake)
            running.append(run)
            kept.append(run_one(ROOT, url, "never", wait_s, timed=False)[0])
            line = (
                f"run {number}: rested {memory.rss_mb:.1f}/{memory.pss_mb:.1f} MB ({memory.each}); "
                f"never {kept[-1].rss_mb:.1f}/{kept[-1].pss_mb:.1f} MB ({kept[-1].each})"
            )
            if args.checkout is not None:
                other.append(run_one(args.checkout.resolve(), url, rest_after, wait_s, False)[0])
                line += f"; checkout {other[-1].rss_mb:.1f}/{other[-1].pss_mb:.1f} MB"
            print(f"{line}; commit after a rest {wake:.1f} ms, running {run:.1f} ms", flush=True)
    finally:
        stop(upstream)

    def median(values: list[Idle]) -> str:
        rss = statistics.median(v.rss_mb for v in values)
        return f"{rss:.1f} MB RSS / {statistics.median(v.pss_mb for v in values):.1f} MB PSS"

    print(f"idle, writer rested ({rest_after})  {median(rested)}")
    print(f"idle, rest_after never      {median(kept)}")
    if other:
        print(f"idle, --checkout            {median(other)}")
    print(f"first record's commit after a rest  {statistics.median(woken):.1f} ms (median)")
    print(f"a record's commit, process running  {statistics.median(running):.1f} ms (median)")


if __name__ == "__main__":
    main()
