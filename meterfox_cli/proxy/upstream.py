"""The proxied path's upstream HTTP/1.1 client: keep-alive connections pooled per origin, each
response parsed by httptools (llhttp) and its body handed on as the raw bytes that arrive.

Leaner than aiohttp's ClientSession for the one thing the proxy does (send a request it has
already shaped, relay what comes back): no cookie jar, redirects, auto headers, payload objects
or decompression; the request head leaves in one write (with a small body). The WebSocket path
keeps aiohttp's session (proxy/websocket.py).

Connections: one pool per (scheme, host, port), no limit (as `TCPConnector(limit=0)`); an idle
connection is closed after KEEPALIVE_S, and one the upstream closed while idle (its transport is
closing, or it saw EOF or stray bytes) is found before reuse and never used. Addresses are cached
for DNS_TTL_S (as `ttl_dns_cache=300`) and tried with aiohttp's happy eyeballs; TLS verifies as
aiohttp's default does (`ssl.create_default_context()`, the hostname checked, SNI).

Retries: a request is sent again once, on a fresh connection, only when it went out on a reused
connection, no byte of its response arrived, its body is bytes (a streamed upload is never
replayed), and either its method is idempotent and the connection ended (aiohttp's rule, RFC 9112
§9.3.1: a POST the server may have read and acted on is never sent twice) or, any method, the
write itself failed at once (the socket was already reset: the server cannot have read a byte).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from collections.abc import AsyncIterable
from typing import Any

import aiohappyeyeballs
import httptools
from multidict import CIMultiDict
from yarl import URL

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # no Content-Length: 0
MAX_FIELD = 8190  # a header name, value or the status line's reason: aiohttp's limit
MAX_HEAD = 64 * 1024  # every byte of a response's head (interim answers included)
HIGH_WATER = 256 * 1024  # response bytes held unread before reading from upstream pauses
KEEPALIVE_S = 15.0  # an idle pooled connection is closed after this (aiohttp's default)
DNS_TTL_S = 300.0  # as `TCPConnector(ttl_dns_cache=300)`
HAPPY_EYEBALLS_DELAY = 0.25  # aiohttp's default
_SMALL_BODY = 64 * 1024  # a body up to this leaves in the same write as the head


class UpstreamError(Exception):
    """The upstream failed this request (forward.py maps each kind to an answer)."""


class Disconnected(UpstreamError):
    """The connection ended before the response's head arrived (the upstream is unreachable)."""


class InvalidResponse(UpstreamError):
    """What arrived is not a valid HTTP/1.1 response (or breaks our limits)."""


class BodyCut(UpstreamError):
    """The connection ended in the middle of a response body framed by length or chunks."""


class UpstreamResponse:
    """One response: status, reason and headers, then its body as it arrives (`read_nowait`,
    `readany`, `is_eof`: the subset of aiohttp's StreamReader forward.py reads with)."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_size", "headers", "reason", "status")

    def __init__(self, conn: _Connection, status: int, reason: str, headers: CIMultiDict[str]):
        self.status = status
        self.reason = reason
        self.headers = headers
        self._conn: _Connection | None = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None

    def read_nowait(self) -> bytes:
        """Every body byte here now (b"" if none, or at the end)."""
        if not self._chunks:
            if self._error is not None:
                raise self._error
            return b""
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        if self._size > HIGH_WATER and self._conn is not None:
            self._conn.resume_reading()
        self._size = 0
        return data

    def is_eof(self) -> bool:
        return self._done and not self._chunks

    async def readany(self) -> bytes:
        """The next body bytes, waiting for them; b"" at the end; raises on a cut body."""
        while not self._chunks and not self._done and self._error is None:
            conn = self._conn
            assert conn is not None
            conn.waiter = asyncio.get_running_loop().create_future()
            try:
                await conn.waiter
            finally:
                conn.waiter = None
        return self.read_nowait()

    def close(self) -> None:
        """Done with it: an unfinished response's connection is closed, never reused."""
        conn, self._conn = self._conn, None
        if conn is not None and not self._done:
            conn.abort()

    # fed by the connection
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and self._conn is not None:
            self._conn.pause_reading()

    def _finish(self, error: BaseException | None = None) -> None:
        self._done = error is None
        self._error = error
        self._conn = None if error is None else self._conn


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the exchange on it (at most one at a time)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.dead = False  # closed, or saw bytes or EOF while idle: never reused
        self.uses = 0
        self.waiter: asyncio.Future[None] | None = None  # a readany waiting for body bytes
        self.head: asyncio.Future[UpstreamResponse] | None = None
        self.response: UpstreamResponse | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.method = ""
        self.got_bytes = False
        self.active = False  # a request is out and its response not yet complete
        self.write_failed = False  # the transport was closed or reset right after the write
        self.sender: asyncio.Task[None] | None = None  # a streamed upload still going out
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._to_eof = False  # the body ends when the connection does

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes nobody asked for: this connection is out of step
            self.abort()
            return
        self.got_bytes = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidResponse("an upgrade nobody asked for"))
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, UpstreamError) else exc
            self._fail(InvalidResponse(str(cause) or type(cause).__name__))
            return
        if self.head is not None:  # the head is not all here: bound what it may take
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(InvalidResponse("the response head is too large"))

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self._ended(exc)
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the upstream connection closed"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- httptools callbacks ------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        if not self.active:
            self.dead = True  # a second response nobody asked for
            return
        self._reason += status
        if len(self._reason) > MAX_FIELD:
            raise InvalidResponse("the status line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.active:
            self.dead = True
            return
        if len(name) > MAX_FIELD or len(value) > MAX_FIELD:
            raise InvalidResponse("a response header is too long")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        if not self.active or parser is None:
            self.dead = True
            return
        status = parser.get_status_code()
        if status == 101:  # we never ask to switch protocols (Upgrade is hop-by-hop)
            raise InvalidResponse("101 Switching Protocols, never asked for")
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): the real one follows
            self._reason, self._headers = b"", []
            return
        headers = CIMultiDict(
            (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            for n, v in self._headers
        )
        reason = self._reason.decode("utf-8", "surrogateescape")
        self._reason, self._headers = b"", []
        response = self.response = UpstreamResponse(self, status, reason, headers)
        head, self.head = self.head, None
        if head is not None and not head.done():
            head.set_result(response)
        if self.method == "HEAD":  # no body, whatever the headers say
            self._complete(parser.should_keep_alive())
        else:
            self._to_eof = (
                status not in (204, 304)
                and "Content-Length" not in headers
                and "chunked" not in headers.get("Transfer-Encoding", "").lower()
            )

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None or not self.active:  # e.g. after a HEAD response's head
            self.dead = True
            return
        response._feed(body)
        self._wake()

    def on_message_complete(self) -> None:
        if self.head is not None or not self.active:  # an interim answer's end, or stray
            return
        parser = self.parser
        if self.response is not None:
            self._complete(parser is not None and parser.should_keep_alive())

    # --- our side -----------------------------------------------------------------------------

    def start(self, method: str, data: bytes) -> asyncio.Future[UpstreamResponse]:
        """Write a request (head, with its body if small) and return the future of its head."""
        loop = asyncio.get_running_loop()
        self.method = method
        self.got_bytes = False
        self.uses += 1
        self.active = True
        self.write_failed = False
        self._head_bytes = 0
        self._to_eof = False
        self.parser = httptools.HttpResponseParser(self)
        self.head = loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.head

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self.dead:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain
        elif self.dead:
            raise ConnectionResetError("the upstream connection closed")

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self.dead:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self.dead:
            self._paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.dead = True
        self.active = False
        if self.transport is not None:
            self.transport.abort()
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.cancel()

    def reusable(self) -> bool:
        return not self.dead and self.transport is not None and not self.transport.is_closing()

    def _complete(self, keep_alive: bool) -> None:
        response, self.response = self.response, None
        self.parser = None
        self.active = False
        if response is not None:
            response._finish()
        self._wake()
        if keep_alive and self.sender is None and not self.dead:
            self.resume_reading()  # a full buffer may have paused it just before the end
            self.pool.release(self)
        else:
            self.abort()

    def _fail(self, error: UpstreamError) -> None:
        self.parser = None
        self.active = False
        head, self.head = self.head, None
        if head is not None and not head.done():
            head.set_exception(error)
        response, self.response = self.response, None
        if response is not None:
            response._finish(error)
        self._wake()
        self.abort()

    def _ended(self, exc: Exception | None) -> None:
        """The upstream closed (EOF) or the connection was lost."""
        self.dead = True
        if self.head is not None:
            error = Disconnected("the connection closed before the response")
            if exc is not None:
                error.__cause__ = exc
            self._fail(error)
        elif self.response is not None:
            if self._to_eof and exc is None:  # a clean close ends it; a reset cuts it
                self._complete(False)
            else:
                self._fail(BodyCut("the connection closed mid-body"))

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Pool:
    """Idle connections to one origin, the most recently used first."""

    __slots__ = ("idle",)

    def __init__(self) -> None:
        self.idle: list[_Connection] = []

    def release(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def take(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if conn.reusable() and now - conn.idle_since < KEEPALIVE_S:
                return conn
            conn.abort()
        return None

    def sweep(self, now: float) -> None:
        keep = [c for c in self.idle if c.reusable() and now - c.idle_since < KEEPALIVE_S]
        for conn in self.idle:
            if conn not in keep:
                conn.abort()
        self.idle = keep

    def close(self) -> None:
        for conn in self.idle:
            conn.abort()
        self.idle = []


class UpstreamClient:
    """The pool of keep-alive connections per origin (scheme, host, port), and the requests."""

    def __init__(self, *, connect_timeout: float, ssl_context: ssl.SSLContext | None = None):
        self.connect_timeout = connect_timeout
        self._ssl = ssl_context  # None: the default verified context, made on first use
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.connections_made = 0

    async def request(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        """Send one request and return its response once the head is in (the body follows).
        Raises TimeoutError (connecting took over `connect_timeout`), OSError (it could not
        connect: refused, no address, TLS refused), Disconnected or InvalidResponse; a body cut
        later raises BodyCut from `readany`/`read_nowait`."""
        origin = (url.scheme, url.raw_host or "", url.port or 0)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool()
        head = _request_head(method, url, headers, body)
        conn = pool.take()
        if conn is not None:
            try:
                return await self._send(conn, method, head, body)
            except Disconnected:
                if not _may_retry(conn, method, body):
                    raise
        conn = await self._connect(pool, url)
        return await self._send(conn, method, head, body)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    async def _send(
        self, conn: _Connection, method: str, head: bytes, body: bytes | AsyncIterable[bytes] | None
    ) -> UpstreamResponse:
        self._schedule_sweep()
        if isinstance(body, bytes) or body is None:
            body = body or b""
            if len(body) <= _SMALL_BODY:
                waiting = conn.start(method, head + body)
            else:
                waiting = conn.start(method, head)
                conn.write(body)
            conn.write_failed = conn.dead or (
                conn.transport is not None and conn.transport.is_closing()
            )
            return await _await_head(conn, waiting)
        waiting = conn.start(method, head)
        conn.sender = asyncio.ensure_future(_send_chunked(conn, body))
        return await _await_head(conn, waiting)

    async def _connect(self, pool: _Pool, url: URL) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = url.raw_host or "", url.port or 0
        tls = url.scheme == "https"
        context = (self._ssl or await _default_context()) if tls else None
        async with asyncio.timeout(self.connect_timeout):
            infos = await self._resolve(host, port)
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY
            )
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(pool),
                    sock=sock,
                    ssl=context,
                    server_hostname=host if tls else None,
                )
            except BaseException:
                sock.close()
                raise
        self.connections_made += 1
        return conn

    async def _resolve(self, host: str, port: int) -> list[Any]:
        key = (host, port)
        cached = self._dns.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
        )
        if not infos:
            raise OSError(f"no address for {host}")
        self._dns[key] = (now + DNS_TTL_S, infos)
        return infos

    def _schedule_sweep(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for pool in self._pools.values():
            pool.sweep(now)
        if any(pool.idle for pool in self._pools.values()):
            self._schedule_sweep()


def _may_retry(conn: _Connection, method: str, body: object) -> bool:
    """See the module docstring: only a reused connection, before any response byte, with a
    body that can be sent again, and when the server cannot have acted on the request."""
    if conn.uses < 2 or conn.got_bytes or not (body is None or isinstance(body, bytes)):
        return False
    return method in IDEMPOTENT or conn.write_failed


async def _await_head(
    conn: _Connection, waiting: asyncio.Future[UpstreamResponse]
) -> UpstreamResponse:
    if conn.dead and not waiting.done():  # lost before the write: nothing was sent
        conn._ended(None)
    try:
        return await waiting
    except BaseException:
        conn.abort()
        raise


async def _send_chunked(conn: _Connection, body: AsyncIterable[bytes]) -> None:
    """A streamed upload, chunked as aiohttp sends one (each piece a chunk, then the end). If
    it fails (the caller hung up, the upstream went away) the connection is closed, which ends
    the response too; the connection is reused only once both are complete."""
    try:
        async for piece in body:
            if piece:
                conn.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await conn.drain()
        conn.write(b"0\r\n\r\n")
    except asyncio.CancelledError:
        raise
    except Exception:
        conn.sender = None
        conn.abort()
        return
    conn.sender = None


def _request_head(
    method: str, url: URL, headers: CIMultiDict[str], body: bytes | AsyncIterable[bytes] | None
) -> bytes:
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1\r\n", f"Host: {url.host_port_subcomponent}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    if isinstance(body, bytes) or body is None:
        if body or method not in _NO_BODY_METHODS:
            lines.append(f"Content-Length: {len(body or b'')}\r\n")
    else:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        # a line break inside a name, value or the path would split the head (an injection):
        # refused as aiohttp's client refuses it (forward.py answers 500, a bug of ours)
        raise ValueError("a line break inside the request head")
    return text.encode("utf-8", "surrogateescape")


_DEFAULT_CONTEXT: ssl.SSLContext | None = None


async def _default_context() -> ssl.SSLContext:
    """The verified default context, made off the loop if nothing made it yet."""
    return _DEFAULT_CONTEXT or await asyncio.to_thread(default_context)


def default_context() -> ssl.SSLContext:
    """aiohttp's default: `ssl.create_default_context()` (system CAs, hostname checked), ALPN
    http/1.1; made once. aiohttp's own verified context when it is that (the WebSocket path's:
    one copy of the CA store in memory, not two), else one made the same way, which reads the
    CA store (files, tenths of a second): call it off the loop (`serve` does, in the thread it
    starts once it listens)."""
    global _DEFAULT_CONTEXT
    if _DEFAULT_CONTEXT is None:
        _DEFAULT_CONTEXT = _aiohttp_verified() or _verified_context()
    return _DEFAULT_CONTEXT


def _aiohttp_verified() -> ssl.SSLContext | None:
    """The context aiohttp's client verifies with (made at its import, with the CA store read
    then or, inside proxy/trust.trust_later, before its first handshake), if it verifies
    certificates and host names."""
    from aiohttp import connector

    context = getattr(connector, "_SSL_CONTEXT_VERIFIED", None)
    if not isinstance(context, ssl.SSLContext) or context.verify_mode != ssl.CERT_REQUIRED:
        return None
    return context if context.check_hostname else None


def _verified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(("http/1.1",))
    return context
