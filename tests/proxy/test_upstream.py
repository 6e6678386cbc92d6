"""What the proxied path's upstream client (meterfox_cli/proxy/upstream.py) guarantees on its own:
connections reused and counted on the server's side, a stale pooled connection never failing a
request, the retry rule, every response framing, a response cut at any byte, TLS verified as
aiohttp verifies it, the connect timeout. The proxy's behaviour through it (error answers,
records, hostile upstreams) is tested in test_faults.py, test_hostile_requests.py and
test_forward.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from meterfox_cli.proxy.upstream import (
    BodyCut,
    Disconnected,
    InvalidResponse,
    UpstreamClient,
    UpstreamResponse,
    _Connection,
    _Pool,
)
from tests.fakes.raw import CHUNKED_END, Conn, RawRequest, chunked, raw_upstream, read_request
from tests.fakes.raw import response_head as head
from tests.fakes.tls import loopback_contexts

BODY = b'{"id": "chatcmpl-1", "usage": {"prompt_tokens": 7}}'
OK = head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(BODY))}) + BODY


@contextlib.asynccontextmanager
async def client(connect_timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None):
    upstream = UpstreamClient(connect_timeout=connect_timeout, ssl_context=ssl_context)
    try:
        yield upstream
    finally:
        await upstream.close()


async def read_all(response: UpstreamResponse) -> bytes:
    parts = []
    async with asyncio.timeout(5):
        while chunk := await response.readany():
            parts.append(chunk)
    return b"".join(parts)


async def fetch(
    upstream: UpstreamClient, url: str, method: str = "POST", body: object = b"{}"
) -> tuple[UpstreamResponse, bytes]:
    async with asyncio.timeout(5):
        response = await upstream.request(method, URL(url + "/v1/x"), CIMultiDict(), body)
    try:
        return response, await read_all(response)
    finally:
        response.close()


def serving(*replies: bytes, then_close: bool = False):
    """A script answering each request on one connection with the next of `replies` (the last
    one again when they run out); every request it read is kept in `seen`; with `then_close`
    the connection is closed (a FIN) once the replies are given."""
    seen: list[RawRequest] = []

    async def script(conn: Conn) -> None:
        request: RawRequest | None = conn.request
        index = 0
        while request is not None:
            seen.append(request)
            await conn.send(replies[min(index, len(replies) - 1)])
            index += 1
            if then_close and index == len(replies):
                conn.writer.close()
                return
            request = await read_request(conn.reader)

    return script, seen


# --- the pool ----------------------------------------------------------------------------------


async def test_keep_alive_connections_are_reused_as_the_server_counts_them():
    script, seen = serving(OK)
    async with raw_upstream(script) as upstream, client() as up:
        for _ in range(5):
            response, body = await fetch(up, upstream.url)
            assert (response.status, body) == (200, BODY)
        assert upstream.connections == 1 and len(seen) == 5 and up.connections_made == 1


async def test_the_request_head_carries_host_length_and_the_given_headers_only():
    script, seen = serving(OK)
    async with raw_upstream(script) as upstream, client() as up:
        headers = CIMultiDict([("Authorization", "Bearer sk-1"), ("X-A", "1"), ("X-A", "2")])
        url = URL(upstream.url + "/v1/chat/completions?api-version=2&x=%2F", encoded=True)
        response = await up.request("POST", url, headers, b'{"model":"m"}')
        await read_all(response)
        host = upstream.url.removeprefix("http://")
        assert seen[0].head.decode().split("\r\n") == [
            "POST /v1/chat/completions?api-version=2&x=%2F HTTP/1.1",
            f"Host: {host}",
            "Authorization: Bearer sk-1",
            "X-A: 1",
            "X-A: 2",
            "Content-Length: 13",
        ]
        assert seen[0].body == b'{"model":"m"}'
        response = await up.request("GET", URL(upstream.url + "/v1/models"), CIMultiDict(), b"")
        await read_all(response)
        assert seen[1].header("content-length") is None  # a GET without a body says nothing


async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent():
    script, seen = serving(OK)
    async with raw_upstream(script) as upstream, client() as up:
        headers = CIMultiDict([("X-A", "1\r\nX-Injected: 1")])
        with pytest.raises(ValueError):
            await up.request("POST", URL(upstream.url + "/v1/x"), headers, b"{}")
        assert seen == [] and upstream.connections == 0


async def test_connection_close_is_not_reused():
    closing = head("200 OK", {"Content-Length": str(len(BODY)), "Connection": "close"}) + BODY
    script, seen = serving(closing)
    async with raw_upstream(script) as upstream, client() as up:
        for _ in range(3):
            assert (await fetch(up, upstream.url))[1] == BODY
        assert upstream.connections == 3 and len(seen) == 3


async def test_a_pooled_connection_the_upstream_closed_while_idle_is_not_used():
    script, seen = serving(OK, then_close=True)  # answers once, then closes (a FIN) while idle
    async with raw_upstream(script) as upstream, client() as up:
        await fetch(up, upstream.url)
        (pool,) = up._pools.values()
        async with asyncio.timeout(5):  # the FIN arrives while the connection sits in the pool
            while pool.idle and pool.idle[-1].reusable():
                await asyncio.sleep(0.01)
        response, body = await fetch(up, upstream.url)  # a POST: never retried, so not sent twice
        assert (response.status, body) == (200, BODY)
        assert upstream.connections == 2 and len(seen) == 2


async def test_an_unfinished_response_closes_its_connection():
    async def slow_body(conn: Conn) -> None:
        await conn.send(head("200 OK", {"Content-Length": "10"}) + b"12345")
        await asyncio.sleep(0.2)
        await conn.send(b"67890")
        if await read_request(conn.reader):  # this connection must never be asked again
            await conn.send(OK)

    async with raw_upstream(slow_body) as upstream, client() as up:
        response = await up.request("POST", URL(upstream.url + "/v1/x"), CIMultiDict(), b"{}")
        response.close()  # the caller hung up before the body was read
        await fetch(up, upstream.url)
        assert upstream.connections == 2


# --- the retry rule ------------------------------------------------------------------------------


def closes_second_request_unanswered():
    """The first connection answers one request, then reads the next and closes unanswered (the
    upstream's keep-alive timer fired as it arrived); later connections answer everything."""
    seen: list[RawRequest] = []
    connections = 0

    async def script(conn: Conn) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        request: RawRequest | None = conn.request
        while request is not None:
            seen.append(request)
            await conn.send(OK)
            request = await read_request(conn.reader)
            if first and request is not None:
                seen.append(request)
                conn.writer.close()
                return

    return script, seen


async def test_an_idempotent_request_cut_on_a_reused_connection_is_sent_once_more():
    script, seen = closes_second_request_unanswered()
    async with raw_upstream(script) as upstream, client() as up:
        await fetch(up, upstream.url, "GET", b"")
        response, body = await fetch(up, upstream.url, "GET", b"")
        assert (response.status, body) == (200, BODY)
        assert upstream.connections == 2 and len(seen) == 3


async def test_a_post_the_server_may_have_taken_is_never_sent_twice():
    script, seen = closes_second_request_unanswered()
    async with raw_upstream(script) as upstream, client() as up:
        await fetch(up, upstream.url)
        with pytest.raises(Disconnected):
            await fetch(up, upstream.url)
        assert upstream.connections == 1 and len(seen) == 2


async def test_a_post_whose_write_failed_on_a_reused_connection_goes_out_on_a_fresh_one():
    script, seen = serving(OK)
    async with raw_upstream(script) as upstream, client() as up:
        await fetch(up, upstream.url)
        (pool,) = up._pools.values()
        # Our side of the pooled connection can no longer send: the write fails at once
        # (EPIPE), as when the upstream reset it a moment before the loop could notice.
        fileno = pool.idle[-1].transport.get_extra_info("socket").fileno()
        with socket.fromfd(fileno, socket.AF_INET, socket.SOCK_STREAM) as same:  # any loop's
            same.shutdown(socket.SHUT_WR)
        response, body = await fetch(up, upstream.url)
        assert (response.status, body) == (200, BODY)
        assert upstream.connections == 2 and len(seen) == 2  # nothing reached the first


async def test_a_streamed_upload_is_never_replayed():
    script, _ = closes_second_request_unanswered()

    async def upload():
        yield b"{}"

    async with raw_upstream(script) as upstream, client() as up:
        await fetch(up, upstream.url, "PUT", b"")
        with pytest.raises(Disconnected):
            await fetch(up, upstream.url, "PUT", upload())
        assert upstream.connections == 1


# --- framing -------------------------------------------------------------------------------------


async def test_a_chunked_body_arrives_whole_and_the_connection_is_reused():
    pieces = [b'{"id": ', b'"x", "usage": ', b"{}}"]
    reply = head("200 OK", {"Transfer-Encoding": "chunked"})
    reply += b"".join(chunked(p) for p in pieces) + CHUNKED_END
    script, _ = serving(reply)
    async with raw_upstream(script) as upstream, client() as up:
        for _ in range(2):
            assert (await fetch(up, upstream.url))[1] == b"".join(pieces)
        assert upstream.connections == 1


async def test_a_body_without_length_is_read_to_the_close():
    script, _ = serving(head("200 OK", {"Content-Type": "text/plain"}) + BODY, then_close=True)
    async with raw_upstream(script) as upstream, client() as up:
        assert (await fetch(up, upstream.url))[1] == BODY
        assert (await fetch(up, upstream.url))[1] == BODY
        assert upstream.connections == 2


async def test_a_body_without_length_cut_by_a_reset_is_an_error_not_an_end():
    async def reset_mid_body(conn: Conn) -> None:
        await conn.send(head("200 OK", {"Content-Type": "text/plain"}) + b"partial")
        await asyncio.sleep(0.05)
        conn.reset()

    async with raw_upstream(reset_mid_body) as upstream, client() as up:
        with pytest.raises(BodyCut):
            await fetch(up, upstream.url)


async def test_a_length_framed_body_cut_short_is_an_error():
    async def short(conn: Conn) -> None:
        await conn.send(head("200 OK", {"Content-Length": "100"}) + b"only this")
        conn.writer.close()

    async with raw_upstream(short) as upstream, client() as up:
        response = await up.request("POST", URL(upstream.url + "/v1/x"), CIMultiDict(), b"{}")
        got = b""
        with pytest.raises(BodyCut):
            while chunk := await response.readany():
                got += chunk
        assert got == b"only this"  # what arrived is handed on before the error


@pytest.mark.parametrize(
    ("method", "reply"),
    [
        ("HEAD", head("200 OK", {"Content-Length": "1234", "Content-Type": "application/json"})),
        ("POST", head("204 No Content", {})),
        ("GET", head("304 Not Modified", {"Content-Length": "1234"})),
    ],
    ids=["HEAD", "204", "304"],
)
async def test_responses_without_a_body_end_at_their_head_and_keep_the_connection(method, reply):
    script, seen = serving(reply)
    async with raw_upstream(script) as upstream, client() as up:
        for _ in range(3):
            response, body = await fetch(up, upstream.url, method, b"")
            assert body == b"" and response.is_eof()
        assert upstream.connections == 1 and len(seen) == 3


async def test_interim_answers_are_skipped():
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    script, _ = serving(interim + OK)
    async with raw_upstream(script) as upstream, client() as up:
        response, body = await fetch(up, upstream.url)
        assert (response.status, body) == (200, BODY) and "Link" not in response.headers


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    ],
    ids=["101", "two-lengths", "length-and-chunked", "long-header"],
)
async def test_invalid_or_ambiguous_responses_are_refused(reply):
    script, _ = serving(reply)
    async with raw_upstream(script) as upstream, client() as up:
        with pytest.raises(InvalidResponse):
            await fetch(up, upstream.url)


async def test_a_head_that_never_ends_is_refused_at_the_limit():
    async def endless(conn: Conn) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):  # 200 x 1 KiB header lines, never a blank line
            await conn.send(b"X-Pad: " + b"a" * 1017 + b"\r\n")

    async with raw_upstream(endless) as upstream, client() as up:
        with pytest.raises(InvalidResponse):
            await fetch(up, upstream.url)


# --- a response cut anywhere -------------------------------------------------------------------

STREAMED = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    + head("200 OK", [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")])
    + chunked(b'data: {"id": 1}\n\n')
    + chunked(b'data: {"usage": {"prompt_tokens": 7}}\n\n')
    + chunked(b"data: [DONE]\n\n")
    + CHUNKED_END
)
EXPECTED_BODY = b'data: {"id": 1}\n\ndata: {"usage": {"prompt_tokens": 7}}\n\ndata: [DONE]\n\n'


class _Wire(asyncio.Transport):
    """The socket's stand-in (the edge of the machine): what the client writes is kept, and the
    test hands the response to the protocol in the pieces it chooses."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _through(pieces: list[bytes]) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    pool = _Pool()
    conn = _Connection(pool)
    conn.connection_made(_Wire())
    waiting = conn.start("POST", b"POST / HTTP/1.1\r\n\r\n")
    for piece in pieces:
        conn.data_received(piece)
    response = await waiting
    body = response.read_nowait()
    return response.status, list(response.headers.items()), body, pool.idle == [conn]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(1, len(STREAMED) - 1), max_size=40))
def test_a_response_cut_anywhere_is_read_the_same(cuts):
    status, headers, body, pooled = asyncio.run(_through(_split(STREAMED, cuts)))
    assert (status, body, pooled) == (200, EXPECTED_BODY, True)
    assert headers == [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]


def test_a_response_cut_at_every_byte_is_read_the_same():
    pieces = [STREAMED[i : i + 1] for i in range(len(STREAMED))]
    assert asyncio.run(_through(pieces))[2:] == (EXPECTED_BODY, True)


# --- TLS and connecting --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_upstream(server_tls: ssl.SSLContext):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while await read_request(reader) is not None:
                writer.write(OK)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def test_tls_to_a_server_the_context_trusts_and_its_connection_reused(tmp_path):
    server_tls, client_tls = loopback_contexts(tmp_path)
    async with tls_upstream(server_tls) as url, client(ssl_context=client_tls) as up:
        for _ in range(3):
            response, body = await fetch(up, url)
            assert (response.status, body) == (200, BODY)
        assert up.connections_made == 1


async def test_tls_is_verified_by_default_as_aiohttp_does(tmp_path):
    server_tls, _ = loopback_contexts(tmp_path)  # a certificate no system CA signed
    async with tls_upstream(server_tls) as url, client() as up:
        with pytest.raises(ssl.SSLCertVerificationError):
            await fetch(up, url)


async def test_the_connect_timeout_bounds_a_connection_that_never_completes():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once its queue is full, a SYN gets no answer
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)
        async with client(connect_timeout=0.3) as up:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                await fetch(up, f"http://127.0.0.1:{port}")
            assert 0.25 < loop.time() - started < 2
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
