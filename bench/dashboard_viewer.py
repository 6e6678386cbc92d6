"""A dashboard left open and refreshing, for bench/run.py: holds Live's event stream open and
reloads the Overview (its three reads) and Keys every `--interval` seconds — with `--explore`
also an Explore report (this month by provider and model), as if someone re-ran it each time —
until `--seconds` pass (or it is stopped). Prints how many refreshes it made, their median time.

    python -m bench.dashboard_viewer --port 8787 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

VIEWS = ("api/overview?by=provider", "api/overview/providers", "api/overview/tags", "api/keys")
EXPLORE = "api/report?by=provider,model"


async def view(base: str, seconds: float, interval: float, explore: bool) -> None:
    views = (*VIEWS, EXPLORE) if explore else VIEWS
    deadline = time.monotonic() + seconds
    timings: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        live = asyncio.create_task(_listen(session, base + "api/live"))
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                for path in views:
                    async with session.get(base + path) as response:
                        await response.read()
                timings.append(time.perf_counter() - started)
                await asyncio.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        finally:
            live.cancel()
    if timings:
        print(f"{len(timings)} refreshes, median {statistics.median(timings) * 1000:.0f} ms")


async def _listen(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as response:
        async for _ in response.content.iter_any():
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    parser.add_argument("--interval", type=float, default=1.0, help="between refreshes")
    parser.add_argument("--explore", action="store_true", help="re-run an Explore report too")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}/_meterfox/"
    asyncio.run(view(base, args.seconds, args.interval, args.explore))


if __name__ == "__main__":
    main()
