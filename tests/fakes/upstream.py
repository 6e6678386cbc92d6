"""A fake provider upstream on 127.0.0.1 that speaks a real wire format.

Each test scripts the reply (`Reply`): a JSON body, or a list of raw chunks (SSE, JSON-array
streams) with an optional delay between them. Every request it receives is kept, so tests
can assert on exactly what left the proxy.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    json_body: object = None
    chunks: list[bytes] = field(default_factory=list)
    content_type: str = "application/json"
    delay_s: float = 0.0  # between chunks
    stall_s: float = 0.0  # before the status line
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False


@dataclass
class Received:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def sse(*events: object, event_names: list[str] | None = None, done: bool = True) -> list[bytes]:
    """SSE chunks, one per event: `data: <json>\\n\\n` (with `event:` lines when named)."""
    chunks = []
    for i, event in enumerate(events):
        data = event if isinstance(event, str) else json.dumps(event)
        name = event_names[i] if event_names else None
        prefix = f"event: {name}\n" if name else ""
        chunks.append(f"{prefix}data: {data}\n\n".encode())
    if done:
        chunks.append(b"data: [DONE]\n\n")
    return chunks


class FakeUpstream:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.reply: Reply | Callable[[Received], Reply] = Reply(json_body={})
        self.cancelled = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            request.method, request.raw_path, dict(request.headers), await request.read()
        )
        self.received.append(received)
        reply = self.reply(received) if callable(self.reply) else self.reply
        if reply.stall_s:
            try:
                await asyncio.sleep(reply.stall_s)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if not reply.chunks:
            body = json.dumps(reply.json_body).encode()
            headers = dict(reply.headers)
            if reply.gzip:
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            return web.Response(
                status=reply.status, body=body, content_type=reply.content_type, headers=headers
            )
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_type = reply.content_type
        await response.prepare(request)
        try:
            for i, chunk in enumerate(reply.chunks):
                if i and reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                await response.write(chunk)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled.set()
            raise
        await response.write_eof()
        return response
