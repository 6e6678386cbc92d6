"""A stand-in OpenTelemetry collector for the benchmark: answers OTLP/HTTP exports on loopback
(without decoding them, so it costs the shared CPU little) and, with --scrape, reads a
daemon's /_meterfox/metrics every --every seconds, as a Prometheus server would. GET /count
says how many exports, bytes and scrapes it saw.

    python -m bench.otlp_sink --port P [--scrape http://127.0.0.1:Q/_meterfox/metrics]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scrape", help="a metrics URL to read every --every seconds")
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=3600, help="stop after this long")
    args = parser.parse_args()
    seen = {"exports": 0, "bytes": 0, "scrapes": 0, "scrape_errors": 0}

    async def export(request: web.Request) -> web.Response:
        seen["exports"] += 1
        seen["bytes"] += len(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def count(_: web.Request) -> web.Response:
        return web.json_response(seen)

    async def scraping(app: web.Application):
        async def loop() -> None:
            async with aiohttp.ClientSession() as session:
                while True:
                    await asyncio.sleep(args.every)
                    try:
                        async with session.get(args.scrape) as response:
                            await response.read()
                            seen["scrapes" if response.status == 200 else "scrape_errors"] += 1
                    except aiohttp.ClientError:
                        seen["scrape_errors"] += 1

        task = asyncio.create_task(loop()) if args.scrape else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", export)
        app.router.add_post("/v1/metrics", export)
        app.router.add_get("/count", count)
        app.cleanup_ctx.append(scraping)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        try:
            await asyncio.sleep(args.seconds)  # bounded; the benchmark stops it by PID first
        finally:
            await runner.cleanup()

    asyncio.run(run())


if __name__ == "__main__":
    main()
