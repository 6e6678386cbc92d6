"""The dashboard's cold load over a big database: a real `meterfox serve` on the database in
METERFOX_HOME (fill it with bench/seed_db.py), and Debian's headless chromium (Playwright)
opening the Overview in a fresh browser context each time (no cache). Reports, per load, the
time from navigation start until the spend cards, chart and top tables are drawn, until the
providers panel (latency percentiles) is, and until the
top tags arrive, the overview API's own time, and the bytes transferred. The first load is
the coldest (a fresh daemon: no connection open, top tags not yet read); loads are `--pause`
seconds apart, past the 5 s the daemon reuses an Overview read, so each one reads afresh (top
tags, reused for a minute, are read by the first load only).

    METERFOX_HOME=/tmp/mf-bench python bench/seed_db.py --rows 1000000
    METERFOX_HOME=/tmp/mf-bench python -m bench.dashboard_load --loads 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from playwright.async_api import async_playwright

from bench.run import free_port, start, stop, wait_healthy

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
  return {api_ms: api ? api.duration : null,
          bytes: all.reduce((s, e) => s + (e.transferSize || e.encodedBodySize), 0)};
}"""


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
                measured = await page.evaluate(MEASURE)
                results.append(
                    {"headline_ms": headline, "drawn_ms": drawn, "tags_ms": tags, **measured}
                )
                await context.close()
                await asyncio.sleep(pause)  # past the daemon's reuse window: every load reads
        finally:
            await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument(
        "--pause", type=float, default=6.0, help="between loads (the Overview is reused for 5 s)"
    )
    args = parser.parse_args()
    port = free_port()
    serve = start([sys.executable, "-m", "meterfox_cli", "serve", "--port", str(port)])
    try:
        wait_healthy(port, timeout=60)
        results = asyncio.run(loads(port, args.loads, args.pause))
    finally:
        stop(serve)
    for i, r in enumerate(results, 1):
        print(
            f"load {i}: spend, chart and top tables {r['headline_ms']:.0f} ms (API "
            f"{r['api_ms']:.0f} ms), with providers {r['drawn_ms']:.0f} ms, "
            f"top tags {r['tags_ms']:.0f} ms, {r['bytes']:,} bytes"
        )
    for name in ("headline_ms", "api_ms", "drawn_ms", "tags_ms"):
        print(f"median {name}: {statistics.median(r[name] for r in results):.0f}")


if __name__ == "__main__":
    main()
