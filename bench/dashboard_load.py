"""The dashboard's cold load over a big database: a real `meterfox serve` on the database in
METERFOX_HOME (fill it with bench/seed_db.py), and Debian's headless chromium (Playwright)
opening the Overview in a fresh browser context each time (no cache). Reports, per load, the
time from navigation start until the spend cards, chart and top tables are painted and drawn,
until the providers panel (latency percentiles) is, and until the top tags are; the Overview
API's own time; and the bytes the page moved (the document, its files and API reads).

"painted" is the page's own mark, set once the frame that paints the spend, chart and top
tables is done (its style, layout and paint); "frame" is when that frame started (the mark this
script called "painted" before 2026-11-29 09:30, and the only one a checkout from before then
sets); "drawn" is when Playwright saw them (its polling adds to it). "API" is the Overview
read's own time, or "in the page" when the daemon had its answer ready (web/keeper.py) and sent
it with the page (no request; then the time the page itself was received). Each load's line gives the load average, and the end the CPU
time the daemon, its read worker and its record writer used.

The first load is the coldest (a fresh daemon). `--settle S` waits S seconds after the daemon
is healthy before it (a daemon that has been running a moment: its read worker starts in the
background once it listens, and keeps the Overview's answers ready). Loads are `--pause` seconds
apart, past the 5 s an on-demand read is reused (what a daemon without a ready answer serves);
`--checkout DIR` serves another checkout, for a before/after.

    METERFOX_HOME=/tmp/mf-bench python bench/seed_db.py --rows 1000000
    METERFOX_HOME=/tmp/mf-bench python -m bench.dashboard_load --loads 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

from bench.cpu_per_request import children, cpu_seconds
from bench.run import ROOT, free_port, start, stop, wait_healthy

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MEASURE = """() => {
  const api = performance.getEntriesByType("resource").find((e) => e.name.includes("api/overview?"));
  const all = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  const mark = (name) => { const m = performance.getEntriesByName(name)[0]; return m ? m.startTime : null; };
  const doc = performance.getEntriesByType("navigation")[0];
  return {doc_ms: doc.responseEnd, api_ms: api ? api.duration : null, api_end_ms: api ? api.responseEnd : null,
          frame_ms: mark("meterfox:overview-drawn"), painted_ms: mark("meterfox:overview-painted"),
          bytes: all.reduce((s, e) => s + (e.transferSize || e.encodedBodySize), 0)};
}"""


PAINTED = "() => performance.getEntriesByName('meterfox:overview-painted').length > 0"
PAINTED_WAIT_MS = 5_000  # a checkout from before the mark (--checkout) never sets it


async def loads(port: int, count: int, pause: float) -> list[dict]:
    url = f"http://127.0.0.1:{port}/_meterfox/"
    results = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            for _ in range(count):
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                await page.goto(url, wait_until="commit")
                await page.wait_for_selector("#top-keys table", timeout=30_000)
                headline = await page.evaluate("() => performance.now()")
                await page.wait_for_selector("#providers table", timeout=30_000)
                drawn = await page.evaluate("() => performance.now()")
                await page.wait_for_selector("#top-tags table", timeout=60_000)
                tags = await page.evaluate("() => performance.now()")
                with contextlib.suppress(PlaywrightTimeout):
                    await page.wait_for_function(PAINTED, timeout=PAINTED_WAIT_MS)
                measured = await page.evaluate(MEASURE)
                load = os.getloadavg()[0]
                results.append(
                    {
                        "headline_ms": headline,
                        "drawn_ms": drawn,
                        "tags_ms": tags,
                        "load": load,
                        **measured,
                    }
                )
                await context.close()
                await asyncio.sleep(pause)  # past the 5 s an on-demand read is reused
        finally:
            await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument(
        "--pause", type=float, default=6.0, help="between loads (the Overview is reused for 5 s)"
    )
    parser.add_argument(
        "--checkout", type=Path, default=ROOT, help="serve another checkout (a before/after)"
    )
    parser.add_argument(
        "--settle", type=float, default=0.0, help="seconds from healthy to the first load"
    )
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "meterfox_cli", "serve", "--port", str(port)]
    serve = start(command, checkout=args.checkout)
    try:
        wait_healthy(port, timeout=60)
        time.sleep(args.settle)
        results = asyncio.run(loads(port, args.loads, args.pause))
        used = {"daemon": cpu_seconds(serve.pid)} | {
            f"{process_name(pid)} {pid}": cpu_seconds(pid) for pid in children(serve.pid)
        }
    finally:
        stop(serve)
    for i, r in enumerate(results, 1):
        api = (
            f"in the page, received at {r['doc_ms']:.0f} ms"
            if r["api_ms"] is None
            else f"{r['api_ms']:.0f} ms, answered at {r['api_end_ms']:.0f} ms"
        )
        print(
            f"load {i}: painted {_ms(r['painted_ms'])} (frame {_ms(r['frame_ms'])}), spend, "
            f"chart and top tables drawn {r['headline_ms']:.0f} ms (API {api}), with providers "
            f"{r['drawn_ms']:.0f} ms, top tags {r['tags_ms']:.0f} ms, {r['bytes']:,} bytes, "
            f"load average {r['load']:.1f}"
        )
    for name in ("painted_ms", "frame_ms", "headline_ms", "api_ms", "drawn_ms", "tags_ms"):
        found = [r[name] for r in results if r[name] is not None]
        print(f"median {name}: {_ms(statistics.median(found) if found else None)}")
    print("CPU time: " + ", ".join(f"{name} {s:.2f} s" for name, s in used.items()))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def process_name(pid: int) -> str:
    """A daemon's child by what it runs: `…store.writer_process` → `writer_process`."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    module = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == b"-m"), b"?")
    return module.decode().rpartition(".")[2]


if __name__ == "__main__":
    main()
