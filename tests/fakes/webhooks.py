"""A webhook receiver on 127.0.0.1 for alert tests: it keeps every body it is sent and answers
as the test says: 200, an error status, or never (it holds the request until the test ends)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Hook:
    """What the receiver got (`bodies`, with `times`), and how it answers: `status`, or
    `hang` (never, until closed)."""

    status: int = 200
    hang: bool = False
    bodies: list[object] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    server: TestServer | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        self.times.append(time.monotonic())
        if self.hang:
            await self._release.wait()
        return web.json_response({"ok": True}, status=self.status)

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[object]:
        """The bodies once there are at least `count` (fails after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count:
            assert time.monotonic() < deadline, f"{len(self.bodies)} of {count}: {self.bodies}"
            await asyncio.sleep(0.05)
        return self.bodies


@contextlib.asynccontextmanager
async def webhook_receiver(status: int = 200, hang: bool = False) -> AsyncIterator[Hook]:
    hook = Hook(status=status, hang=hang)
    app = web.Application()
    app.router.add_post("/hook", hook._handle)
    hook.server = TestServer(app, host="127.0.0.1")
    await hook.server.start_server()
    try:
        yield hook
    finally:
        hook._release.set()
        await hook.server.close()
