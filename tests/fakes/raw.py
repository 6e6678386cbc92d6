"""A misbehaving upstream on 127.0.0.1, written on raw asyncio sockets.

aiohttp's own server is too well-behaved to reset a connection mid-body, send a garbage status
line, stall half-way through its headers or ignore `Accept-Encoding`. Here a test scripts the
bytes: `RawUpstream(script)` reads each request (head and `Content-Length` body) and hands it to
`script(conn)`, which writes whatever it likes. Every request, and when each connection was
closed by the proxy, is kept for the test to assert on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
# A bound on how long any script may run: every loop in a fake ends by itself.
SCRIPT_LIMIT_S = 20.0


@dataclass
class RawRequest:
    head: bytes
    body: bytes

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


@dataclass
class Conn:
    """One accepted connection, as a script sees it."""

    request: RawRequest
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), not a FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def peer_closed(self, timeout: float) -> bool:
        """Whether the proxy closes its side within `timeout` seconds (reads until EOF)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True


Script = Callable[[Conn], Awaitable[None]]


@dataclass
class RawUpstream:
    script: Script
    requests: list[RawRequest] = field(default_factory=list)
    connections: int = 0
    closed_by_peer_at: list[float] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        """Stop listening and end every script still running."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            async with asyncio.timeout(SCRIPT_LIMIT_S):
                request = await read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                await self.script(Conn(request, reader, writer))
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            self.closed_by_peer_at.append(time.monotonic())
        except asyncio.CancelledError:
            # Ended by close(). Not re-raised: Python 3.11's start_server logs a cancelled
            # handler task as an error.
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()


async def read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    request = RawRequest(head[:-4], b"")
    length = int(request.header("content-length") or 0)
    if length:
        request.body = await reader.readexactly(length)
    return request


def response_head(
    status: str = "200 OK", headers: dict[str, str] | list[tuple[str, str]] | None = None
) -> bytes:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (transfer-encoding: chunked)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


CHUNKED_END = b"0\r\n\r\n"


@contextlib.asynccontextmanager
async def raw_upstream(script: Script):
    upstream = await RawUpstream(script).start()
    try:
        yield upstream
    finally:
        await upstream.close()
