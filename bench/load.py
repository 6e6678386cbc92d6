"""Load: N requests at concurrency C, half of them streamed, through a real `meterfox serve`
process to a fake upstream in its own process, all on loopback.

Reports proxy errors (must be 0), records in the database (must be exactly N), the serve
process's resident memory (VmRSS from /proc/PID/status) at start, middle and end, and the
window a SIGKILL could lose, as the record writer measured it (/_meterfox/health): the longest
a record waited from its response's end to its commit, and the largest batch committed.
Bounded in count (N) and in time (--timeout, a hard limit: both processes are killed when it
passes). Exit status 1 if errors or records are off.

    python bench/load.py                       # 20,000 requests at concurrency 64
    python bench/load.py --requests 2000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    requests: int
    concurrency: int
    streamed: int = 0
    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    records: int = 0
    records_ok_with_usage: int = 0
    rss_kb: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    requests_per_s: float = 0.0
    latency_ms_p50: float = 0.0
    latency_ms_p99: float = 0.0
    writer_max_batch: int = 0
    writer_max_commit_lag_ms: float = 0.0
    serve_exit_code: int | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def wait_healthy(session: aiohttp.ClientSession, base: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(base + "/_meterfox/health") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{base} did not become healthy")


async def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listens on {port}")


async def health(session: aiohttp.ClientSession, base: str) -> dict:
    async with session.get(base + "/_meterfox/health") as response:
        return await response.json()


async def one(session: aiohttp.ClientSession, url: str, i: int, run: Run) -> float:
    """One request; returns its latency. Checks the body the client got."""
    stream = i % 2 == 0
    payload = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"request {i}"}],
        "stream": stream,
    }
    started = time.perf_counter()
    try:
        async with session.post(url, json=payload) as response:
            body = await response.read()
        problem = None
        if response.status != 200:
            problem = f"status {response.status}: {body[:200]!r}"
        elif stream and (not body.endswith(b"data: [DONE]\n\n") or b'"choices": []' in body):
            problem = f"bad stream: {body[-200:]!r}"
        elif not stream and json.loads(body)["usage"]["prompt_tokens"] != 21:
            problem = f"bad body: {body[:200]!r}"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        run.errors += 1
        if len(run.error_samples) < 5:
            run.error_samples.append(problem)
    else:
        run.ok += 1
    run.streamed += stream
    return time.perf_counter() - started


async def drive(args: argparse.Namespace, home: Path, run: Run) -> None:
    upstream_port, serve_port = free_port(), free_port()
    env = {**os.environ, "METERFOX_HOME": str(home), "PYTHONPATH": str(ROOT)}
    upstream = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "load_upstream.py"), "--port", str(upstream_port),
        env=env,
    )  # fmt: skip
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meterfox_cli", "serve", "--port", str(serve_port),
        "--upstream", f"openai=http://127.0.0.1:{upstream_port}",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{serve_port}"
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_listening(upstream_port)
            await wait_healthy(session, base)
            run.rss_kb["start"] = rss_kb(serve.pid)
            await load(session, base, serve.pid, run, args)
            run.rss_kb["end"] = rss_kb(serve.pid)
            deadline = time.monotonic() + 30
            while (h := await health(session, base))["records_written"] < run.requests:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            run.writer_max_batch = h["max_batch"]
            run.writer_max_commit_lag_ms = h["max_commit_lag_ms"]
        serve.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(serve.communicate(), 60)
        run.serve_exit_code = serve.returncode
        if serve.returncode != 0:
            print(stderr.decode()[-3000:], file=sys.stderr)
    finally:
        for process in (serve, upstream):
            if process.returncode is None:
                process.kill()
                await process.wait()
    count_records(home / "meterfox.db", run)


async def load(
    session: aiohttp.ClientSession, base: str, pid: int, run: Run, args: argparse.Namespace
) -> None:
    url = base + "/openai/v1/chat/completions"
    latencies: list[float] = []
    completed = 0
    next_index = 0
    half = run.requests // 2

    async def worker() -> None:
        nonlocal next_index, completed
        while next_index < run.requests:
            i = next_index
            next_index += 1
            latencies.append(await one(session, url, i, run))
            completed += 1
            if completed == half:
                run.rss_kb["middle"] = rss_kb(pid)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    run.duration_s = round(time.monotonic() - started, 2)
    run.requests_per_s = round(run.requests / run.duration_s, 1)
    ordered = sorted(latencies)
    run.latency_ms_p50 = round(statistics.median(ordered) * 1000, 2)
    run.latency_ms_p99 = round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2)


def count_records(db_path: Path, run: Run) -> None:
    conn = sqlite3.connect(db_path)
    try:
        run.records = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        run.records_ok_with_usage = conn.execute(
            "SELECT count(*) FROM requests WHERE outcome = 'ok' AND usage_known = 1"
            " AND input_tokens = 21 AND output_tokens = 5"
        ).fetchone()[0]
    finally:
        conn.close()


def report(run: Run) -> str:
    rss = run.rss_kb
    lines = [
        f"requests            {run.requests} ({run.streamed} streamed), "
        f"concurrency {run.concurrency}",
        f"duration            {run.duration_s} s ({run.requests_per_s} req/s)",
        f"client latency      p50 {run.latency_ms_p50} ms, p99 {run.latency_ms_p99} ms",
        f"proxy errors        {run.errors}",
        f"records in DB       {run.records} ({run.records_ok_with_usage} ok with usage)",
        "serve RSS           "
        + ", ".join(f"{k} {rss.get(k, 0) / 1024:.1f} MiB" for k in ("start", "middle", "end")),
        f"SIGKILL window      records wait at most {run.writer_max_commit_lag_ms} ms from "
        f"response end to commit; largest batch {run.writer_max_batch} records",
        f"serve exit code     {run.serve_exit_code}",
    ]
    lines += [f"error sample        {sample}" for sample in run.error_samples]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=900, help="hard limit, seconds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    run = Run(requests=args.requests, concurrency=args.concurrency)
    with tempfile.TemporaryDirectory(prefix="meterfox-load-") as home:

        async def bounded() -> None:
            async with asyncio.timeout(args.timeout):
                await drive(args, Path(home), run)

        asyncio.run(bounded())
    print(json.dumps(asdict(run), indent=2) if args.json else report(run))
    good = run.errors == 0 and run.records == run.requests and run.serve_exit_code == 0
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
