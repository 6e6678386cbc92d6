"""Fault injection: a real proxy in front of upstreams that misbehave at the byte level.

For every fault the client gets the upstream's bytes or a clear error (never a response that
looks complete but is not), the proxy keeps serving, and exactly one record says what happened.
Faults already covered in test_forward.py (refused connection, no first byte at all, a stall
mid-stream, a client hang-up, gzip JSON) are not repeated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
import zlib
from dataclasses import replace

import aiohttp
import pytest

from meterfox_cli.config import Timeouts
from meterfox_cli.providers.openai import OpenAIFormat
from tests.conftest import start_proxy
from tests.fakes.raw import CHUNKED_END, Conn, RawUpstream, chunked, response_head
from tests.fakes.upstream import sse
from tests.fixtures import anthropic as anthropic_fx
from tests.fixtures.openai_style import CASES, chat_stream_chunks

CHAT = CASES[0].body
CHAT_BYTES = json.dumps(CHAT).encode()
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
FAST = Timeouts(connect=1, first_byte=0.5, idle=0.5)
SSE_HEAD = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}


@contextlib.asynccontextmanager
async def proxy_before(script, timeouts: Timeouts = FAST):
    """A proxy whose every provider is the raw upstream running `script`."""
    upstream = await RawUpstream(script).start()
    proxy, server = await start_proxy(upstream, upstream.url, timeouts=timeouts)
    try:
        yield proxy, upstream
    finally:
        await server.close()
        await upstream.close()


async def ok_json(conn: Conn) -> None:
    await conn.send(
        response_head(
            "200 OK", {"Content-Type": "application/json", "Content-Length": str(len(CHAT_BYTES))}
        )
        + CHAT_BYTES
    )


async def still_serving(proxy, upstream: RawUpstream) -> None:
    """After the fault, a well-behaved reply goes through and is recorded as ok."""
    upstream.script = ok_json
    status, body, _ = await call(proxy)
    assert (status, body) == (200, CHAT_BYTES)


async def call(proxy, slug: str = "openai", path: str = "/v1/chat/completions", **body):
    """POST; returns (status, body, headers). A body cut short raises ClientPayloadError."""
    payload = body or {"model": "gpt-4o", "messages": []}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(proxy.base(slug) + path, json=payload) as response,
    ):
        return response.status, await response.read(), response.headers


async def record_of(proxy, index: int = 0):
    records = await proxy.records(index + 1)
    assert len(records) > index, f"expected {index + 1} records, found {len(records)}"
    return records[index]


# --- the connection breaks ----------------------------------------------------------------------


async def test_reset_before_any_response_is_a_502_and_recorded():
    async def reset(conn: Conn) -> None:
        conn.reset()

    async with proxy_before(reset) as (proxy, upstream):
        status, body, _ = await call(proxy)
        assert status == 502 and "unreachable" in json.loads(body)["error"]["message"]
        record = await record_of(proxy)
        assert (record["outcome"], record["status"]) == ("upstream_error", 502)
        await still_serving(proxy, upstream)


async def test_reset_mid_stream_cuts_the_client_and_keeps_the_usage_seen_so_far():
    """Anthropic bills the input once message_start is out: a stream cut after it is recorded
    with that usage, as an upstream error."""
    events = anthropic_fx.stream_events()

    async def reset_after_three_events(conn: Conn) -> None:
        await conn.send(response_head("200 OK", SSE_HEAD))
        for event in events[:3]:
            await conn.send(chunked(event))
        await asyncio.sleep(0.05)
        conn.reset()

    async with proxy_before(reset_after_three_events) as (proxy, upstream):
        with pytest.raises(aiohttp.ClientPayloadError):
            await call(proxy, "anthropic", "/v1/messages", model="m", stream=True)
        record = await record_of(proxy)
        assert (record["outcome"], record["status"]) == ("upstream_error", 200)
        assert record["usage_known"] == 1
        assert record["input_tokens"] == anthropic_fx.STREAM_EXPECTED["input_tokens"]
        await still_serving(proxy, upstream)


@pytest.mark.parametrize("close", ["reset", "fin"])
async def test_body_shorter_than_its_content_length_is_never_passed_off_as_complete(close):
    async def short_body(conn: Conn) -> None:
        await conn.send(
            response_head(
                "200 OK",
                {"Content-Type": "application/json", "Content-Length": str(len(CHAT_BYTES))},
            )
            + CHAT_BYTES[:40]
        )
        await asyncio.sleep(0.05)
        if close == "reset":
            conn.reset()
        else:
            conn.writer.close()

    async with proxy_before(short_body) as (proxy, upstream):
        with pytest.raises(aiohttp.ClientPayloadError):
            await call(proxy)
        record = await record_of(proxy)
        assert (record["outcome"], record["status"], record["usage_known"]) == (
            "upstream_error",
            200,
            0,
        )
        await still_serving(proxy, upstream)


async def test_broken_chunked_encoding_cuts_the_client():
    async def bad_chunk(conn: Conn) -> None:
        await conn.send(response_head("200 OK", SSE_HEAD) + chunked(b"data: {}\n\n"))
        await asyncio.sleep(0.1)
        await conn.send(b"zz\r\n")
        await asyncio.sleep(1)

    async with proxy_before(bad_chunk) as (proxy, upstream):
        with pytest.raises(aiohttp.ClientPayloadError):
            await call(proxy, stream=True, model="m")
        assert (await record_of(proxy))["outcome"] == "upstream_error"
        await still_serving(proxy, upstream)


# --- garbage instead of HTTP ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"\x00\xff\xfe\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Injected: a\rSet-Cookie: evil=1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
    ids=[
        "not-http",
        "bad-status",
        "binary",
        "header-without-colon",
        "bare-CR-in-header",
        "huge-header",
        "another-protocol",
    ],
)
async def test_garbage_response_head_is_a_502_and_the_proxy_keeps_serving(reply):
    async def garbage(conn: Conn) -> None:
        await conn.send(reply)
        await asyncio.sleep(0.05)

    async with proxy_before(garbage) as (proxy, upstream):
        status, body, headers = await call(proxy)
        assert status == 502, body
        assert "invalid response" in json.loads(body)["error"]["message"]
        assert "Set-Cookie" not in headers and "X-Injected" not in headers
        record = await record_of(proxy)
        assert (record["outcome"], record["status"]) == ("upstream_error", 502)
        await still_serving(proxy, upstream)


async def test_http_1_0_body_delimited_by_close_is_relayed_whole():
    async def legacy(conn: Conn) -> None:
        await conn.send(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + CHAT_BYTES)
        conn.writer.close()

    async with proxy_before(legacy) as (proxy, _):
        status, body, _ = await call(proxy)
        assert (status, body) == (200, CHAT_BYTES)
        record = await record_of(proxy)
        assert record["outcome"] == "ok" and record["input_tokens"] == 1200


# --- stalls -----------------------------------------------------------------------------------


async def test_stall_half_way_through_the_headers_is_a_504():
    async def stall(conn: Conn) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        await asyncio.sleep(5)

    async with proxy_before(stall) as (proxy, upstream):
        started = time.monotonic()
        status, body, _ = await call(proxy)
        assert status == 504 and time.monotonic() - started < 3
        assert "timed out" in json.loads(body)["error"]["message"]
        record = await record_of(proxy)
        assert (record["outcome"], record["status"]) == ("upstream_error", 504)
        await still_serving(proxy, upstream)


async def test_stall_after_the_headers_before_any_body_cuts_the_client():
    async def stall(conn: Conn) -> None:
        await conn.send(response_head("200 OK", SSE_HEAD))
        await asyncio.sleep(5)

    async with proxy_before(stall) as (proxy, upstream):
        started = time.monotonic()
        with pytest.raises(aiohttp.ClientPayloadError):
            await call(proxy, stream=True, model="m")
        assert time.monotonic() - started < 3
        record = await record_of(proxy)
        assert (record["outcome"], record["status"]) == ("upstream_error", 200)
        assert record["ttfb_ms"] is None
        await still_serving(proxy, upstream)


async def test_never_ending_stream_without_usage_is_closed_when_the_client_hangs_up():
    chunk = sse({"choices": [{"delta": {"content": "x"}}], "model": "m"}, done=False)[0]

    async def endless(conn: Conn) -> None:
        await conn.send(response_head("200 OK", SSE_HEAD))
        while True:  # bounded by the fake's SCRIPT_LIMIT_S
            await conn.send(chunked(chunk))
            await asyncio.sleep(0.02)

    async with proxy_before(endless, Timeouts(connect=1, first_byte=1, idle=1)) as (
        proxy,
        upstream,
    ):
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                proxy.base("openai") + "/v1/chat/completions",
                json={"model": "m", "stream": True, "stream_options": {"include_usage": True}},
            ) as response,
        ):
            for _ in range(10):
                assert await response.content.readany()
            response.close()
        hung_up = time.monotonic()
        record = await record_of(proxy)
        assert record["outcome"] == "client_closed" and record["usage_known"] == 0
        for _ in range(100):
            if upstream.closed_by_peer_at:
                break
            await asyncio.sleep(0.02)
        assert upstream.closed_by_peer_at and upstream.closed_by_peer_at[0] - hung_up < 1.0
        await still_serving(proxy, upstream)


# --- upstream errors and bodies that are not what they claim -------------------------------------


@pytest.mark.parametrize(
    ("status", "content_type", "body", "extra"),
    [
        ("500 Internal Server Error", "application/json", b'{"error":{"message":"boom"}}', {}),
        ("503 Service Unavailable", "application/json", b'{"error":{}}', {"Retry-After": "7"}),
        ("502 Bad Gateway", "text/html", b"<html><body>502 Bad Gateway</body></html>", {}),
        ("529 Overloaded", "application/json", b"not json at all", {}),
    ],
)
async def test_5xx_passes_through_verbatim_and_is_recorded(status, content_type, body, extra):
    async def error(conn: Conn) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}
        await conn.send(response_head(status, headers) + body)

    async with proxy_before(error) as (proxy, upstream):
        got_status, got_body, headers = await call(proxy)
        assert (got_status, got_body) == (int(status[:3]), body)
        for name, value in extra.items():
            assert headers[name] == value
        record = await record_of(proxy)
        assert (record["outcome"], record["status"]) == ("upstream_error", int(status[:3]))
        assert record["usage_known"] == 0
        await still_serving(proxy, upstream)


@pytest.mark.parametrize(
    "body",
    [
        b'{"usage": {"prompt_tokens": 5',
        b"\xff\xfe\x00garbage",
        b'{"usage": {"prompt_tokens": NaN, "completion_tokens": -3}, "model": 5}',
        b"[" * 100_000,
        b'{"usage": {"prompt_tokens": 99999999999999999999999999999999}}',
    ],
    ids=["truncated", "binary", "wrong-types", "deep-nesting", "huge-count"],
)
async def test_invalid_json_with_200_reaches_the_client_untouched(body):
    async def bad_json(conn: Conn) -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        await conn.send(response_head("200 OK", headers) + body)

    async with proxy_before(bad_json) as (proxy, upstream):
        status, got, _ = await call(proxy)
        assert (status, got) == (200, body)
        record = await record_of(proxy)
        assert record["outcome"] == "ok"
        assert record["input_tokens"] < 2**63  # stored, whatever the count claimed
        await still_serving(proxy, upstream)


# --- encodings and SSE dialects -----------------------------------------------------------------


def openai_stream(newline: bytes = b"\n") -> tuple[bytes, bytes]:
    """An OpenRouter-style stream with comments and a usage-only chunk; returns (all bytes,
    the usage-only block)."""
    blocks = [b": OPENROUTER PROCESSING\n\n"]
    blocks += sse(*chat_stream_chunks("m", ["Hel", "lo"], USAGE), done=False)
    blocks.append(b": keep-alive\n\n")
    blocks.append(b"data: [DONE]\n\n")
    blocks = [b.replace(b"\n", newline) for b in blocks]
    usage_block = next(b for b in blocks if b'"choices": []' in b)
    return b"".join(blocks), usage_block


def stream_script(data: bytes, *, gzipped: bool = False, piece: int = 7):
    """Send `data` (gzip-encoded if asked, ignoring the request's Accept-Encoding) in small
    chunks, so blocks, line ends and gzip members are split everywhere."""
    payload = gzip.compress(data) if gzipped else data
    headers = dict(SSE_HEAD)
    if gzipped:
        headers["Content-Encoding"] = "gzip"

    async def script(conn: Conn) -> None:
        await conn.send(response_head("200 OK", headers))
        for i in range(0, len(payload), piece):
            await conn.send(chunked(payload[i : i + piece]))
        await conn.send(CHUNKED_END)

    return script


async def stream_call(proxy, ask_usage: bool, accept_gzip: bool):
    body = {"model": "m", "stream": True}
    if ask_usage:
        body["stream_options"] = {"include_usage": True}
    headers = {"Accept-Encoding": "gzip" if accept_gzip else "identity"}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(
            proxy.base("openrouter") + "/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        return response.status, await response.read(), response.headers


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("ask_usage", [True, False], ids=["asked", "not-asked"])
async def test_sse_comments_and_line_ends_pass_through_and_usage_is_read(newline, ask_usage):
    data, usage_block = openai_stream(newline)
    async with proxy_before(stream_script(data)) as (proxy, _):
        status, body, _ = await stream_call(proxy, ask_usage, accept_gzip=False)
        assert status == 200
        # Every byte, comments and line ends included; only the usage chunk the proxy itself
        # asked for is taken out.
        assert body == (data if ask_usage else data.replace(usage_block, b""))
        record = await record_of(proxy)
        assert record["outcome"] == "ok" and record["input_tokens"] == 7
        assert record["output_tokens"] == 3


async def test_gzip_sse_the_client_accepts_is_forwarded_as_sent_and_read():
    data, _ = openai_stream(b"\r\n")
    async with proxy_before(stream_script(data, gzipped=True)) as (proxy, _):
        status, body, headers = await stream_call(proxy, ask_usage=True, accept_gzip=True)
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(body) == data
        record = await record_of(proxy)
        assert record["input_tokens"] == 7 and record["output_tokens"] == 3


async def test_gzip_sse_sent_against_identity_is_decoded_and_the_usage_chunk_stripped():
    """The proxy asked upstream for identity (it must edit the stream); an upstream that gzips
    anyway still gives the client a readable stream, without the chunk it did not ask for."""
    data, usage_block = openai_stream()
    async with proxy_before(stream_script(data, gzipped=True)) as (proxy, upstream):
        status, body, headers = await stream_call(proxy, ask_usage=False, accept_gzip=False)
        assert upstream.requests[0].header("accept-encoding") == "identity"
        assert status == 200 and "Content-Encoding" not in headers
        assert body == data.replace(usage_block, b"")
        assert (await record_of(proxy))["input_tokens"] == 7


async def test_corrupt_gzip_stream_the_proxy_must_decode_cuts_the_client():
    """When the proxy forwards decoded bytes, an undecodable body must not end as a clean,
    silently emptied stream."""
    data, _ = openai_stream()
    good = gzip.compress(data)
    corrupt = good[:30] + bytes(b ^ 0x5A for b in good[30:60]) + good[60:]
    with pytest.raises(zlib.error):
        gzip.decompress(corrupt)

    async def script(conn: Conn) -> None:
        await conn.send(response_head("200 OK", {**SSE_HEAD, "Content-Encoding": "gzip"}))
        await conn.send(chunked(corrupt))
        await conn.send(CHUNKED_END)

    async with proxy_before(script) as (proxy, upstream):
        with pytest.raises(aiohttp.ClientPayloadError):
            await stream_call(proxy, ask_usage=False, accept_gzip=False)
        assert (await record_of(proxy))["outcome"] == "upstream_error"
        await still_serving(proxy, upstream)


# --- a bug of our own -----------------------------------------------------------------------------


class BrokenTap(OpenAIFormat):
    """A wire format whose usage tap fails: stands for any bug in the proxy's own code."""

    def body_tap(self, plan, path, content_type, *, method):
        raise RuntimeError("a bug in the proxy")


async def test_a_bug_in_the_proxy_is_recorded_as_proxy_error_and_serving_goes_on(caplog):
    async with proxy_before(ok_json) as (proxy, upstream):
        openai = proxy.registry.providers["openai"]
        proxy.registry.providers["openai"] = replace(openai, wire=BrokenTap())
        status, _, _ = await call(proxy)
        assert status == 500
        record = await record_of(proxy)
        assert (record["outcome"], record["status"]) == ("proxy_error", 500)
        proxy.registry.providers["openai"] = openai
        await still_serving(proxy, upstream)
