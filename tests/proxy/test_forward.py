"""Forwarding behaviour common to every provider: routing, headers, errors, streaming, records."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import time

import aiohttp
import pytest
from yarl import URL

from meterfox_cli.config import Timeouts
from tests.conftest import read_tags, start_proxy
from tests.fakes.upstream import Reply, sse
from tests.fixtures.openai_style import CASES, chat_stream_chunks, many_messages

CHAT = CASES[0].body


async def post(
    url: str,
    body: object = None,
    headers: dict | None = None,
    raw: bytes | None = None,
    skip: tuple[str, ...] = (),
):
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=skip) as session:
        async with session.post(
            URL(url, encoded=True),
            data=raw if raw is not None else json.dumps(body or {"model": "m"}),
            headers={"Content-Type": "application/json", **(headers or {})},
        ) as response:
            return response.status, dict(response.headers), await response.read()


async def test_unknown_provider_is_a_404_that_names_it(proxy):
    status, _headers, body = await post(proxy.url + "/nope/v1/chat/completions")
    assert status == 404
    assert "'nope'" in json.loads(body)["error"]["message"]
    assert proxy.upstream.received == []


async def test_health(proxy):
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/_meterfox/health") as response:
            health = await response.json()
    assert response.status == 200
    assert health["status"] == "ok" and "version" in health and "records_written" in health


async def test_request_goes_upstream_unchanged_but_for_private_and_hop_headers(proxy):
    proxy.upstream.reply = Reply(json_body=CHAT, headers={"X-Upstream": "1"})
    raw = b'{"model":"gpt-4o" ,"messages":[]}'
    status, headers, body = await post(
        proxy.base("openai") + "/v1/chat/completions?api-version=2&x=%2F",
        raw=raw,
        headers={
            "Authorization": "Bearer sk-caller",
            "OpenAI-Project": "proj_1",
            "X-MeterFox-Tag-Feature": "search",
            "Helicone-Property-Customer": "acme",
            "Keep-Alive": "timeout=5",
        },
    )
    assert status == 200 and json.loads(body) == CHAT and headers["X-Upstream"] == "1"
    received = proxy.upstream.received[0]
    assert received.path_qs == "/v1/chat/completions?api-version=2&x=%2F"
    assert received.body == raw
    assert received.headers["Authorization"] == "Bearer sk-caller"
    assert received.headers["OpenAI-Project"] == "proj_1"
    assert not any(
        k.lower().startswith(("x-meterfox", "helicone", "keep-alive")) for k in received.headers
    )
    record = await proxy.record()
    assert headers["X-MeterFox-Request-Id"] == record["id"]
    assert record["key_name"] == "passthrough"
    assert read_tags(proxy.db_path, record["id"]) == {"feature": "search", "customer": "acme"}


async def test_upstream_error_passes_through_and_is_recorded(proxy):
    error = {"error": {"message": "Rate limit", "type": "requests", "code": "rate_limit_exceeded"}}
    proxy.upstream.reply = Reply(status=429, json_body=error, headers={"Retry-After": "2"})
    status, headers, body = await post(proxy.base("openai") + "/v1/chat/completions")
    assert status == 429 and json.loads(body) == error and headers["Retry-After"] == "2"
    record = await proxy.record()
    assert record["outcome"] == "upstream_error" and record["status"] == 429
    assert record["usage_known"] == 0


async def test_unreachable_upstream_is_502_in_the_provider_shape_and_daemon_keeps_serving(
    upstream_server,
):
    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server)
    try:
        dead = "http://127.0.0.1:9"  # discard port: nothing listens
        proxy.registry.providers["openai"] = type(proxy.registry.providers["openai"])(
            "openai", dead, proxy.registry.providers["openai"].wire
        )
        status, _, body = await post(proxy.base("openai") + "/v1/chat/completions")
        assert status == 502
        assert "unreachable" in json.loads(body)["error"]["message"]
        fake.reply = Reply(json_body=CHAT)
        status, _, _ = await post(proxy.base("deepseek") + "/chat/completions")
        assert status == 200
        records = await proxy.records(2)
        assert [r["outcome"] for r in records] == ["upstream_error", "ok"]
        assert records[0]["status"] == 502
    finally:
        await proxy_server.close()


async def test_upstream_that_never_answers_is_a_504(upstream_server):
    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(
        fake, server, timeouts=Timeouts(connect=1, first_byte=0.3, idle=0.3)
    )
    try:
        fake.reply = Reply(json_body=CHAT, stall_s=3)
        started = time.monotonic()
        status, _, body = await post(proxy.base("openai") + "/v1/x")
        assert status == 504 and time.monotonic() - started < 2
        assert "timed out" in json.loads(body)["error"]["message"]
        record = await proxy.record()
        assert record["outcome"] == "upstream_error" and record["status"] == 504
    finally:
        await proxy_server.close()


async def test_upstream_that_stalls_mid_stream_is_cut_and_recorded(upstream_server):
    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(
        fake, server, timeouts=Timeouts(connect=1, first_byte=1, idle=0.3)
    )
    try:
        chunks = sse(*chat_stream_chunks("m", ["a", "b"], None), done=False)
        fake.reply = Reply(chunks=chunks, content_type="text/event-stream", delay_s=2)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                proxy.base("openai") + "/v1/chat/completions", json={"model": "m", "stream": True}
            ) as response,
        ):
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        record = await proxy.record()
        assert record["outcome"] == "upstream_error" and record["status"] == 200
    finally:
        await proxy_server.close()


async def test_gzip_json_reaches_the_client_as_sent_and_usage_is_read(proxy):
    proxy.upstream.reply = Reply(json_body=CHAT, gzip=True)
    _status, headers, body = await post(
        proxy.base("openai") + "/v1/chat/completions", headers={"Accept-Encoding": "gzip"}
    )
    assert headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(body)) == CHAT
    record = await proxy.record()
    assert record["input_tokens"] == CHAT["usage"]["prompt_tokens"]


async def test_client_without_accept_encoding_gets_identity(proxy):
    proxy.upstream.reply = Reply(json_body=CHAT)
    await post(proxy.base("openai") + "/v1/chat/completions", skip=("Accept-Encoding",))
    assert proxy.upstream.received[0].headers["Accept-Encoding"] == "identity"


async def test_chunks_are_relayed_as_they_arrive(proxy):
    chunks = sse(*chat_stream_chunks("m", ["a", "b", "c", "d"], None), done=False)
    proxy.upstream.reply = Reply(chunks=chunks, content_type="text/event-stream", delay_s=0.2)
    arrivals = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.base("openai") + "/v1/chat/completions",
            json={"model": "m", "stream": True, "stream_options": {"include_usage": True}},
        ) as response,
    ):
        async for _chunk in response.content.iter_any():
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == len(chunks)
    assert all(0.15 < gap < 0.3 for gap in gaps), gaps


async def test_a_streams_status_never_waits_for_its_first_whole_event(proxy):
    """The proxy edits this stream (it asked for the usage event the caller did not), so it
    holds a partial event back until the event is whole; the status and headers must not wait
    with it (they leave with the first bytes only when those are here already)."""
    first, *rest = sse(*chat_stream_chunks("m", ["a", "b"], {"prompt_tokens": 1}))
    chunks = [first[:12], first[12:] + b"".join(rest)]
    proxy.upstream.reply = Reply(chunks=chunks, content_type="text/event-stream", delay_s=1.0)
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.base("openai") + "/v1/chat/completions", json={"model": "m", "stream": True}
        ) as response,
    ):
        status_after = time.monotonic() - started
        body = await response.read()
    assert response.status == 200 and status_after < 0.5, status_after
    assert body == first + b"".join(rest[:-2]) + rest[-1]  # less the usage-only event


async def test_client_hanging_up_mid_stream_closes_upstream_and_keeps_usage_so_far(proxy):
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    chunks = sse(*chat_stream_chunks("m", ["a"] * 20, None), done=False)
    chunks[1] = sse({**chat_stream_chunks("m", ["a"], None)[1], "usage": usage}, done=False)[0]
    proxy.upstream.reply = Reply(chunks=chunks, content_type="text/event-stream", delay_s=0.1)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.base("openai") + "/v1/chat/completions",
            json={"model": "m", "stream": True, "stream_options": {"include_usage": True}},
        ) as response,
    ):
        await response.content.readany()
        await response.content.readany()
        response.close()
    started = time.monotonic()
    await asyncio.wait_for(proxy.upstream.cancelled.wait(), 2)
    assert time.monotonic() - started < 1.0
    record = await proxy.record()
    assert record["outcome"] == "client_closed"
    assert record["input_tokens"] == 5 and record["usage_known"] == 1


@pytest.mark.parametrize(
    ("path", "status", "forwarded"),
    [
        # dot segments, plain or encoded, are refused: nothing is forwarded
        ("/openai/../../etc/passwd", 400, None),
        ("/openai/%2e%2e/%2e%2e/x", 400, None),
        ("/groq/v1/../../x", 400, None),
        # a second slash stays a path on the provider's own origin, never a host
        ("/openai//evil.example/x", 200, "//evil.example/x"),
    ],
)
async def test_path_tricks_never_leave_the_provider_origin(proxy, path, status, forwarded):
    proxy.upstream.reply = Reply(json_body=CHAT)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            URL(proxy.url + path, encoded=True), data=b"{}", allow_redirects=False
        ) as response:
            await response.read()
    assert response.status == status
    assert [r.path_qs for r in proxy.upstream.received] == ([forwarded] if forwarded else [])


async def test_oversized_json_body_is_a_413_in_the_provider_shape(upstream_server):
    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server, max_body_bytes=1000)
    try:
        status, _, body = await post(
            proxy.base("openai") + "/v1/chat/completions", raw=b'{"x":"' + b"a" * 2000 + b'"}'
        )
        assert status == 413 and "limit" in json.loads(body)["error"]["message"]
        assert fake.received == []
    finally:
        await proxy_server.close()


async def test_non_json_upload_streams_through(proxy):
    proxy.upstream.reply = Reply(json_body={"text": "hello"})
    payload = b"\x00\x01" * 200_000
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.base("openai") + "/v1/audio/transcriptions",
            data=payload,
            headers={"Content-Type": "application/octet-stream"},
        ) as response,
    ):
        assert response.status == 200
    assert proxy.upstream.received[0].body == payload
    record = await proxy.record()
    assert record["endpoint"] == "/v1/audio/transcriptions"


async def test_a_large_json_body_is_parsed_off_the_event_loop(proxy):
    """A 30 MiB request of small messages takes ~0.2 s to parse. Parsed on a worker thread, with
    a chance to switch threads between two objects, it leaves the event loop free: no stall of
    the loop (measured by a 1 ms ticker on it) comes near the parse's length (measured here
    too, so a busy machine slows both sides of the comparison)."""
    proxy.upstream.reply = Reply(json_body={"object": "chat.completion"})  # no model of its own
    loop = asyncio.get_running_loop()
    stalls: list[float] = []

    async def ticker() -> None:
        while True:
            started = loop.time()
            await asyncio.sleep(0.001)
            stalls.append(loop.time() - started)

    body = many_messages(30 * 1024 * 1024)
    started = time.perf_counter()
    json.loads(body)
    parse_s = time.perf_counter() - started
    ticking = asyncio.create_task(ticker())
    try:
        status, _, _ = await post(proxy.base("openai") + "/v1/chat/completions", raw=body)
    finally:
        ticking.cancel()
    stall = max(stalls)
    print(
        f"\n30 MiB request: parse {parse_s * 1000:.0f} ms, longest loop stall {stall * 1000:.0f} ms"
    )
    assert status == 200
    assert (await proxy.record())["model"] == "gpt-4o"  # the body was parsed for its model
    assert stall < max(0.1, parse_s / 2)


async def test_an_admitted_expect_100_continue_request_is_invited_then_forwarded(proxy):
    """`100 Continue` waits for the credential check (a refused caller never gets one, see
    tests/cli/test_serve_limits.py); an admitted caller gets it, then its answer."""
    proxy.upstream.reply = Reply(json_body=CHAT)
    body = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    url = URL(proxy.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        head = (
            "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nAuthorization: Bearer sk-callers-own\r\n"
            f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode())
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    [received] = proxy.upstream.received
    assert received.body == body
