"""The latency the WebSocket relay adds per frame: round trips straight to an echo upstream,
then through MeterFox's proxy app, in one process on 127.0.0.1.

`python -m bench.ws_relay [--frames 2000] [--size 256] [--seconds 20]`
Each round trip sends one text frame (a Realtime-like JSON event of `size` bytes) and waits for
its echo, so one round trip crosses the relay twice (client→upstream, upstream→client); the
added latency per frame is half the difference of the medians. Bounded by `frames` per leg and
by `seconds` overall. Every echoed frame is read by the Realtime tap (no `response.done`, so no
records): the cost measured is the relay's plus the tap's prefilter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from meterfox_cli.providers.registry import build_registry
from meterfox_cli.proxy.app import make_app
from meterfox_cli.store.writer import RecordWriter


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data)
    return ws


async def _round_trips(url: str, frame: str, frames: int, deadline: float) -> list[float]:
    times = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for _ in range(frames):
            if time.monotonic() > deadline:
                break
            start = time.perf_counter()
            await ws.send_str(frame)
            await ws.receive()
            times.append(time.perf_counter() - start)
    return times


async def main(frames: int, size: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    upstream_app = web.Application()
    upstream_app.router.add_get("/v1/realtime", _echo)
    upstream = TestServer(upstream_app, host="127.0.0.1")
    await upstream.start_server()
    origin = str(upstream.make_url("")).rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        writer = RecordWriter(Path(tmp) / "bench.db")
        app = make_app(registry=build_registry(overrides={"openai": origin}), writer=writer)
        proxy = TestServer(app, host="127.0.0.1")
        await proxy.start_server(access_log=None)
        event = {"type": "response.output_text.delta", "delta": ""}
        frame = json.dumps({**event, "delta": "x" * max(size - len(json.dumps(event)), 0)})
        direct = await _round_trips(f"{origin}/v1/realtime", frame, frames, deadline)
        relayed_url = str(proxy.make_url("/openai/v1/realtime?model=gpt-realtime"))
        relayed = await _round_trips(relayed_url, frame, frames, deadline)
        await proxy.close()
    await upstream.close()
    d, r = statistics.median(direct) * 1e6, statistics.median(relayed) * 1e6
    print(f"frames: {len(direct)} direct, {len(relayed)} relayed, {len(frame)} bytes each")
    print(f"median round trip: direct {d:.0f} µs, through the proxy {r:.0f} µs")
    print(f"added per frame (one direction): {(r - d) / 2:.0f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(main(args.frames, args.size, args.seconds))
