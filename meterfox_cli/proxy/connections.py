"""Limits on the daemon's client connections: the open-file limit it runs under and how many
connections it keeps open. (How long a client may take over its headers is aiohttp's
`keepalive_timeout`, set in server.py; over its body, forward.py's, where the body is read.)"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

try:
    import resource
except ImportError:  # Windows: no open-file limit to raise
    resource = None  # type: ignore[assignment]

log = logging.getLogger("meterfox.server")

RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# Descriptors the daemon needs besides its connections: the database with its WAL and shm, the
# log, the event loop's own, the key store (about 15, measured), with room to spare.
RESERVED_FILES = 32
MAX_AUTO_CONNECTIONS = 1024
MAX_BACKLOG = 128
_UNKNOWN_LIMIT = 1024  # where the platform has no RLIMIT_NOFILE


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    """How many client connections fit in the open-file limit."""

    max_connections: int
    backlog: int  # the listen backlog, also how many connections asyncio accepts in one go
    open_files: int


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files as far as the hard limit allows; the limit now."""
    if resource is None:
        return _UNKNOWN_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit (macOS) still has a kernel ceiling: try large, then smaller.
    wanted = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 1 << 16, 10240]
    for limit in wanted:
        if limit <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        except (ValueError, OSError):
            continue
        return limit
    return soft


def connection_budget(open_files: int, configured: int | None = None) -> ConnectionBudget:
    """Each client connection may hold a second descriptor to its upstream, and asyncio accepts
    up to `backlog` connections before the cap sees them: the cap is half of what is left, so
    `accept()` never runs out of descriptors. A configured cap is kept within it too."""
    backlog = max(8, min(MAX_BACKLOG, open_files // 8))
    room = max(1, (open_files - RESERVED_FILES - backlog) // 2)
    limit = min(configured, room) if configured else min(room, MAX_AUTO_CONNECTIONS)
    return ConnectionBudget(limit, backlog, open_files)


class ConnectionCap:
    """Keeps at most `budget.max_connections` client connections open.

    At the cap, a new connection takes the place of the one idle longest (no request in
    progress: a keep-alive between requests, or a client still sending its headers); with none
    idle, it is closed at once. The log says so once each time the cap is reached, not once per
    connection. `tracking` wraps the server's request handler to tell the cap when a request
    is in progress (a wrapper, not an aiohttp middleware: an app with any middleware runs every
    request through aiohttp's middleware chain as well).
    """

    def __init__(self, budget: ConnectionBudget) -> None:
        self.budget = budget
        self.closed_at_cap = 0
        # Keyed by aiohttp's request handler (`request.protocol`): idle ones longest idle first.
        self._idle: OrderedDict[object, asyncio.BaseTransport] = OrderedDict()
        self._busy: dict[object, asyncio.BaseTransport] = {}
        self._warned = False

    @property
    def open(self) -> int:
        return len(self._idle) + len(self._busy)

    def protocol_factory(
        self, make: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        return lambda: _Counted(self, make())

    def admit(self, handler: object, transport: asyncio.BaseTransport) -> bool:
        if self.open >= self.budget.max_connections:
            self.closed_at_cap += 1
            self._say_reached()
            if not self._idle:
                return False
            _, longest_idle = self._idle.popitem(last=False)
            longest_idle.close()
        self._idle[handler] = transport
        return True

    def release(self, handler: object) -> None:
        self._idle.pop(handler, None)
        self._busy.pop(handler, None)
        if self._warned and self.open < self.budget.max_connections * 3 // 4:
            self._warned = False  # the next time the cap is reached is news again

    def tracking(self, handler: RequestHandler) -> RequestHandler:
        """`handler` (the server's: routing, then the route's), marking the request's
        connection busy while it runs."""

        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            key = request.protocol
            transport = self._idle.pop(key, None)
            if transport is None:  # not a connection of ours (or closed at the cap meanwhile)
                return await handler(request)
            self._busy[key] = transport
            try:
                return await handler(request)
            finally:
                if self._busy.pop(key, None) is not None:
                    self._idle[key] = transport  # idle again, and the newest idle

        return tracked

    def _say_reached(self) -> None:
        if self._warned:
            return
        self._warned = True
        log.warning(
            "connection cap reached: %d client connections open (open-file limit %d; raise it "
            "with `ulimit -n`, or set [server] max_connections). Idle connections now make room "
            "for new ones; new ones are refused while none is idle.",
            self.budget.max_connections,
            self.budget.open_files,
        )


class _Counted(asyncio.Protocol):
    """One client connection as the cap sees it; everything else is aiohttp's handler's."""

    def __init__(self, cap: ConnectionCap, handler: asyncio.Protocol) -> None:
        self._cap = cap
        self._handler = handler
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._cap.admit(self._handler, transport):
            transport.abort()
            return
        self._admitted = True
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._cap.release(self._handler)
            self._handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()


class CappedSite(web.BaseSite):
    """aiohttp's TCP site, with every connection passing through a ConnectionCap."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        cap: ConnectionCap,
        tls: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, backlog=cap.budget.backlog, ssl_context=tls)
        self._host = host
        self._port = port
        self._cap = cap
        self._reuse_port = reuse_port  # one of `serve --workers N` sharing the port

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._cap.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
        )
