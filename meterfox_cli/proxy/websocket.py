"""WebSocket sessions through the proxy: OpenAI Realtime, Gemini Live, any provider's socket.

Guarantees:
- Frames pass both ways unaltered and one at a time as they arrive (text stays text, binary
  stays binary, same payload); nothing is held or reordered. Ping/pong and close are per hop
  (each side's own socket answers its pings); a close code crosses to the other side.
- The caller's credential follows the HTTP rules (proxy/auth.py): a proxy key in a header, the
  query or `Sec-WebSocket-Protocol: openai-insecure-api-key.<key>` is swapped for the provider
  key and never forwarded; a refused key is answered over HTTP before any upgrade, counted
  like an HTTP refusal, never recorded.
- Usage: the format's SocketTap (providers/) reads the messages on the side. Each billed unit
  (a Realtime response, a Live turn) becomes one UsageRecord when it finishes; a unit still
  open when the session ends is recorded without usage (client_closed when the caller left or
  its key ended the session, upstream_error when the upstream did). A socket no tap reads is
  one record for the whole session. An upstream that refuses the upgrade is one record too.
- A key revoked (or over budget) while its socket is open closes both sides with 1008 within
  REVALIDATE_S plus the authorizer's poll: the key is checked on every frame and on a timer.
  A budgeted key reserves for its first unit at the handshake (refused there over HTTP if it
  cannot), then for each unit as it starts; each settles with its record.
- At shutdown every open socket is closed with 1001, its open units recorded before the
  writer drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from meterfox_cli.providers.base import RequestPlan, SocketTap
from meterfox_cli.providers.registry import Provider
from meterfox_cli.proxy.auth import (
    LOOK_UP,
    Credential,
    Decision,
    apply_credential,
    carries_proxy_key,
    find_credentials,
    is_proxy_key,
)
from meterfox_cli.proxy.headers import (
    REQUEST_ID_HEADER,
    merge_tags,
    tags_from_headers,
    upstream_request_headers,
)
from meterfox_cli.proxy.state import ProxyState
from meterfox_cli.records import Outcome, UsageRecord, new_request_id
from meterfox_cli.usage import Reading

REVALIDATE_S = 0.5
PROTOCOL_KEY_PREFIX = "openai-insecure-api-key."
PROTOCOL_LOCATION = "sec-websocket-protocol"
POLICY_VIOLATION = 1008
# The handshake's own headers: each hop negotiates its own.
HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


# The sockets open on one app, closed with 1001 when it shuts down (make_app's on_shutdown): an
# open Realtime session would otherwise hold the shutdown until aiohttp's timeout.
OPEN_SOCKETS = web.AppKey("meterfox_open_sockets", set)


async def close_all(app: web.Application) -> None:
    for ws in list(app[OPEN_SOCKETS]):
        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"MeterFox is shutting down")


def is_upgrade(request: web.Request) -> bool:
    """A WebSocket opening handshake (RFC 6455 §4.1)."""
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


@dataclass(frozen=True, slots=True)
class Target:
    """Where forward.handle resolved the session to go, and what to answer errors with."""

    provider: Provider
    endpoint: str
    url: URL
    request_id: str


@dataclass(slots=True)
class _Unit:
    started_wall: float
    started: float
    settle: Callable[[UsageRecord], None] | None = None  # its reservation's, if any


@dataclass(slots=True)
class Session:
    """One socket's accumulating facts: the units open, who ended it, the key's decision."""

    state: ProxyState
    target: Target
    credential: Credential | None
    decision: Decision
    tags: tuple[tuple[str, str], ...]
    tap: SocketTap | None
    opened_wall: float = field(default_factory=time.time)
    opened: float = field(default_factory=time.perf_counter)
    units: deque[_Unit] = field(default_factory=deque)
    reserved: Callable[[UsageRecord], None] | None = None  # the handshake's, for unit one
    ended_by: Outcome | None = None  # the first side to end it; the other only follows
    refusal: Decision | None = None

    def end(self, outcome: Outcome) -> None:
        self.ended_by = self.ended_by or outcome

    def key_refusal(self) -> Decision | None:
        """The key's answer now, if it refuses (revoked, expired, deleted)."""
        if self.credential is None or not is_proxy_key(self.credential.secret):
            return None
        now = self.state.authorizer.decide(self.target.provider.slug, self.credential)
        return now if now.refused else None

    def start_units(self, count: int) -> Decision | None:
        """Reserve for each unit that starts (the first took its reservation at the handshake);
        a refusal ends the session."""
        refusal = None
        for _ in range(count):
            settle, self.reserved = self.reserved, None
            if settle is None:
                model = self.tap.model if self.tap else None
                plan = RequestPlan(model=model, stream=True, body=None)
                admission = self.state.authorizer.admit(
                    self.decision, self.target.provider.slug, plan, None
                )
                refusal = refusal or admission.refusal
                settle = admission.settle if admission.refusal is None else None
            self.units.append(_Unit(time.time(), time.perf_counter(), settle))
        return refusal

    def finish(
        self, reading: Reading, outcome: Outcome = Outcome.OK, status: int | None = None
    ) -> None:
        if self.units:
            unit = self.units.popleft()
        else:  # the session's one record (no tap, a refused upgrade): the handshake's reserve
            unit, self.reserved = _Unit(self.opened_wall, self.opened, self.reserved), None
        record = self._record(unit, reading, outcome, status)
        if unit.settle is not None:
            unit.settle(record)
        self.state.writer.submit(record)

    def _record(
        self, unit: _Unit, reading: Reading, outcome: Outcome, status: int | None
    ) -> UsageRecord:
        return UsageRecord(
            id=new_request_id(),
            started_at=unit.started_wall,
            provider=self.target.provider.slug,
            model=reading.model or (self.tap.model if self.tap else None),
            endpoint=self.target.endpoint,
            method="GET",
            status=status or (101 if outcome is Outcome.OK else _STATUS[outcome]),
            streamed=True,
            outcome=outcome,
            key_name=self.decision.key_name,
            ttfb_ms=None,
            latency_ms=(time.perf_counter() - unit.started) * 1000,
            reading=reading,
            tags=merge_tags(self.tags, self.decision.tags),
        )

    def close_out(self) -> None:
        """The session ended: every open unit is recorded without usage; a socket no tap read
        is recorded once."""
        if self.tap is None:
            self.finish(Reading(), Outcome.OK)
            return
        for reading in self.tap.drain():
            self.finish(reading)
        while self.units:
            self.finish(Reading(model=self.tap.model), self.ended_by or Outcome.CLIENT_CLOSED)
        if self.reserved is not None:  # no unit ever started: the reservation goes back
            unit = _Unit(self.opened_wall, self.opened)
            self.reserved(self._record(unit, Reading(), Outcome.OK, None))
            self.reserved = None


_STATUS = {Outcome.CLIENT_CLOSED: 499, Outcome.UPSTREAM_ERROR: 502, Outcome.PROXY_ERROR: 500}


async def relay(request: web.Request, state: ProxyState, target: Target) -> web.StreamResponse:
    """Check the key, open the upstream socket, then pump frames both ways until one side
    ends; every unit is recorded whatever ends the session (see the module docstring)."""
    provider = target.provider
    wire = provider.wire.for_path(target.endpoint)
    offered = _protocols(request)
    credential = _credential(request, offered)
    decision = state.authorizer.decide(provider.slug, credential)
    if decision is LOOK_UP:
        decision = await state.authorizer.look_up(provider.slug, credential)
    if decision.refused:
        return _refuse(state, wire, decision, target)
    if decision.replacement is not None and not decision.replacement.isprintable():
        # As for HTTP (forward.handle): a stored key with a line break must not reach a header.
        message = f"MeterFox: the provider key for {provider.slug} is invalid; store it again"
        return _error(wire, 500, message, "invalid_provider_key", target)
    headers = upstream_request_headers(request.headers, drop=HANDSHAKE_HEADERS)
    url = apply_credential(headers, target.url, credential, decision.replacement)
    sent = outgoing_protocols(offered, credential, decision.replacement)
    # A budgeted key reserves for the first unit before anything starts upstream: a key that
    # cannot afford one, or cannot price the session's model, is refused over HTTP.
    first = RequestPlan(model=request.query.get("model"), stream=True, body=None)
    admission = state.authorizer.admit(decision, provider.slug, first, None)
    if admission.refusal is not None:
        return _refuse(state, wire, admission.refusal, target)
    session = Session(
        state=state,
        target=target,
        credential=credential,
        decision=decision,
        tags=tags_from_headers(request.headers),
        tap=wire.socket_tap(target.endpoint, request.query),
        reserved=admission.settle,
    )
    timeouts = state.timeouts
    try:
        async with asyncio.timeout(timeouts.connect + timeouts.first_byte):
            upstream = await state.session.ws_connect(
                url,
                headers=headers,
                protocols=[out for out, _ in sent],
                max_msg_size=0,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeouts.connect),
            )
    except aiohttp.WSServerHandshakeError as exc:
        session.finish(Reading(), Outcome.UPSTREAM_ERROR, exc.status or None)
        message = f"MeterFox: upstream {provider.slug} refused the WebSocket (HTTP {exc.status})"
        return _error(wire, exc.status or 502, message, "upstream_refused", target)
    except asyncio.CancelledError:  # the caller left during the handshake
        session.finish(Reading(), Outcome.CLIENT_CLOSED)
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        session.finish(Reading(), Outcome.UPSTREAM_ERROR)
        message = f"MeterFox: upstream {provider.slug} is unreachable ({type(exc).__name__})"
        return _error(wire, 502, message, "upstream_unreachable", target)
    chosen = dict(sent).get(upstream.protocol or "")
    client = web.WebSocketResponse(
        protocols=(chosen,) if chosen else (),
        max_msg_size=0,
        compress=False,
    )
    client.headers[REQUEST_ID_HEADER] = target.request_id
    open_sockets = request.app[OPEN_SOCKETS]
    open_sockets.add(client)
    try:
        await client.prepare(request)
        await _pump(session, client, upstream)
    finally:
        open_sockets.discard(client)
        session.close_out()
        await _close(upstream, client, session.refusal)
    return client


_Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pump(
    session: Session, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    tasks = {
        asyncio.create_task(_client_to_upstream(session, client, upstream)),
        asyncio.create_task(_upstream_to_client(session, upstream, client)),
        asyncio.create_task(_watch_key(session)),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _client_to_upstream(
    session: Session, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    tap = session.tap
    while True:
        message = await client.receive()
        if await _ended(session, message, upstream, Outcome.CLIENT_CLOSED) or _refused(session):
            return
        if tap is not None:
            tap.from_client(message.data)
        await _send(upstream, message)


async def _upstream_to_client(
    session: Session, upstream: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse
) -> None:
    tap = session.tap
    while True:
        message = await upstream.receive()
        if await _ended(session, message, client, Outcome.UPSTREAM_ERROR):
            return
        await _send(client, message)
        if tap is not None:
            news = tap.from_server(message.data)
            refusal = session.start_units(news.started) if news.started else None
            for reading in news.finished:
                session.finish(reading)
            if refusal is not None:
                session.refusal = refusal
                session.end(Outcome.CLIENT_CLOSED)
                return
        if _refused(session):
            return


async def _ended(
    session: Session, message: aiohttp.WSMessage, other: _Socket, outcome: Outcome
) -> bool:
    """A frame that is not data ends the session (as `outcome`); a close crosses to `other`."""
    if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
        return False
    session.end(outcome)
    if message.type is WSMsgType.CLOSE:
        await other.close(code=_code(message.data), message=_reason(message.extra))
    return True


async def _send(to: _Socket, message: aiohttp.WSMessage) -> None:
    if message.type is WSMsgType.TEXT:
        await to.send_str(message.data)
    else:
        await to.send_bytes(message.data)


async def _watch_key(session: Session) -> None:
    while not _refused(session):
        await asyncio.sleep(REVALIDATE_S)


def _refused(session: Session) -> bool:
    refusal = session.key_refusal()
    if refusal is not None:
        session.refusal = refusal
        session.end(Outcome.CLIENT_CLOSED)
    return session.refusal is not None


async def _close(
    upstream: aiohttp.ClientWebSocketResponse,
    client: web.WebSocketResponse,
    refusal: Decision | None,
) -> None:
    """Close both sides (a refusal with 1008 and its reason); never raises."""
    code = POLICY_VIOLATION if refusal is not None else aiohttp.WSCloseCode.OK
    reason = _reason((refusal.message or "refused") if refusal is not None else "")
    with contextlib.suppress(Exception):
        await upstream.close(code=code, message=reason)
    with contextlib.suppress(Exception):
        await client.close(code=code, message=reason)


def _code(code: object) -> int:
    """A close code that may be sent on (RFC 6455 §7.4): 1005 / 1006 (none, abnormal) and
    anything unassigned become 1000."""
    valid = isinstance(code, int) and (1000 <= code <= 1003 or 1007 <= code <= 1014)
    return code if valid or (isinstance(code, int) and 3000 <= code <= 4999) else 1000


def _reason(text: str | None) -> bytes:
    """A close reason fits in 123 bytes (RFC 6455 §5.5)."""
    return (text or "").encode()[:123]


def _protocols(request: web.Request) -> list[str]:
    values = request.headers.getall("Sec-WebSocket-Protocol", ())
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def _credential(request: web.Request, protocols: list[str]) -> Credential | None:
    """The caller's credential as for HTTP (a proxy key wherever it is, else the first found),
    with `openai-insecure-api-key.<key>` subprotocols (browsers cannot set headers) as one more
    place."""
    found = find_credentials(request.headers, request.query)
    found += [
        Credential(PROTOCOL_LOCATION, PROTOCOL_KEY_PREFIX, p.removeprefix(PROTOCOL_KEY_PREFIX))
        for p in protocols
        if p.startswith(PROTOCOL_KEY_PREFIX)
    ]
    return next((c for c in found if is_proxy_key(c.secret)), found[0] if found else None)


def outgoing_protocols(
    offered: list[str], credential: Credential | None, replacement: str | None
) -> list[tuple[str, str]]:
    """The subprotocols to offer upstream, each with the caller's original: a proxy key's
    protocol swapped for the provider key's, every other key protocol dropped when swapping,
    and any protocol carrying a proxy key dropped always."""
    swap = credential is not None and replacement is not None and is_proxy_key(credential.secret)
    out = []
    for protocol in offered:
        if swap and protocol.startswith(PROTOCOL_KEY_PREFIX):
            if protocol.removeprefix(PROTOCOL_KEY_PREFIX) == credential.secret:
                out.append((PROTOCOL_KEY_PREFIX + replacement, protocol))
            continue
        if not carries_proxy_key(protocol):
            out.append((protocol, protocol))
    return out


def _refuse(state: ProxyState, wire, decision: Decision, target: Target) -> web.Response:
    """A refusal before the upgrade, counted by reason like an HTTP one, never recorded."""
    kind = decision.error_kind or "invalid_api_key"
    state.refused[kind] += 1
    status, message = decision.status or 401, decision.message or "refused"
    return _error(wire, status, message, kind, target)


def _error(wire, status: int, message: str, kind: str, target: Target) -> web.Response:
    return web.json_response(
        wire.error_body(status, message, kind),
        status=status,
        headers={REQUEST_ID_HEADER: target.request_id},
    )
