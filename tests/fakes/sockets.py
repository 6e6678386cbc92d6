"""Fake WebSocket upstreams on 127.0.0.1: OpenAI Realtime and Gemini Live, speaking the frames
their references and SDK types publish (openai/types/realtime/, google/genai/live.py).

Realtime (`GET /v1/realtime?model=…`): `session.created` first; for each client
`response.create`, `response.created`, an audio delta (binary-free base64 text, as OpenAI
sends), a text delta, then `response.done` with the next scripted usage — or nothing more when
`hold` is set (a response the client leaves mid-way). Live
(`/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent`): the
client's `setup` gets `setupComplete`; each `clientContent` turn gets a model turn in two
`serverContent` messages, then `turnComplete` with `usageMetadata`. Every handshake and
message received is kept, so tests assert on exactly what left the proxy.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

REALTIME_PATH = "/v1/realtime"
LIVE_METHOD = "GenerativeService.BidiGenerateContent"
LIVE_ROUTE = r"/ws/google.ai.generativelanguage.{version:v\w+}." + LIVE_METHOD


@dataclass
class Handshake:
    path_qs: str
    headers: dict[str, str]
    protocols: list[str]


@dataclass
class FakeSockets:
    realtime_usages: list[dict] = field(default_factory=list)
    live_usages: list[dict] = field(default_factory=list)
    session_model: str = "gpt-realtime-2025-08-28"
    hold: bool = False  # never finish a response: the client leaves mid-way
    handshakes: list[Handshake] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(REALTIME_PATH, self._realtime)
        app.router.add_get(LIVE_ROUTE, self._live)
        return app

    async def _open(self, request: web.Request) -> web.WebSocketResponse:
        offered = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        self.handshakes.append(Handshake(request.path_qs, dict(request.headers), offered))
        ws = web.WebSocketResponse(protocols=("realtime",))
        await ws.prepare(request)
        return ws

    async def _realtime(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open(request)
        usages = iter(self.realtime_usages)
        session = {"id": "sess_1", "object": "realtime.session", "model": self.session_model}
        await ws.send_json({"type": "session.created", "event_id": "ev_0", "session": session})
        try:
            async for message in ws:
                self.received.append(message.data)
                if message.type is not WSMsgType.TEXT:
                    continue
                if json.loads(message.data).get("type") == "response.create":
                    await self._respond(ws, next(usages, None))
        finally:
            self.closed.set()
        return ws

    async def _respond(self, ws: web.WebSocketResponse, usage: dict | None) -> None:
        n = len(self.received)
        response = {"id": f"resp_{n}", "object": "realtime.response", "status": "in_progress"}
        await ws.send_json(
            {"type": "response.created", "event_id": f"ev_{n}a", "response": response}
        )
        await ws.send_json(
            {
                "type": "response.output_audio.delta",
                "event_id": f"ev_{n}b",
                "response_id": response["id"],
                "item_id": "item_1",
                "output_index": 0,
                "content_index": 0,
                "delta": "UklGRiQAAABXQVZF" * 64,
            }
        )
        await ws.send_json(
            {
                "type": "response.output_text.delta",
                "event_id": f"ev_{n}c",
                "response_id": response["id"],
                "item_id": "item_1",
                "output_index": 0,
                "content_index": 0,
                "delta": 'He said "type":"response.done"',
            }
        )
        if self.hold:
            return
        done = {**response, "status": "completed", "output": [], "usage": usage}
        await ws.send_json({"type": "response.done", "event_id": f"ev_{n}d", "response": done})

    async def _live(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open(request)
        usages = iter(self.live_usages)
        try:
            async for message in ws:
                self.received.append(message.data)
                data = json.loads(message.data)
                if "setup" in data:
                    await ws.send_bytes(json.dumps({"setupComplete": {}}).encode())
                elif "clientContent" in data or "client_content" in data:
                    await self._turn(ws, next(usages, None))
        finally:
            self.closed.set()
        return ws

    async def _turn(self, ws: web.WebSocketResponse, usage: dict | None) -> None:
        part = {"modelTurn": {"role": "model", "parts": [{"text": "Hello"}]}}
        await ws.send_bytes(json.dumps({"serverContent": part}).encode())
        if self.hold:
            return
        await ws.send_bytes(json.dumps({"serverContent": {"generationComplete": True}}).encode())
        last = {"serverContent": {"turnComplete": True}, "usageMetadata": usage}
        await ws.send_bytes(json.dumps(last).encode())
