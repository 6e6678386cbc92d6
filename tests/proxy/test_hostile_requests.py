"""Hostile requests, sent as raw bytes: the proxy only ever connects to a provider's configured
upstream origin (no SSRF, whatever the request target or Host), and CR/LF never crosses into a
header it sends (no header injection, no request smuggling).

A second listener on loopback plays the attacker's target: every trick names it, and it must
never see a connection.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from yarl import URL

from meterfox_cli.proxy.auth import Authorizer, Credential, Decision
from tests.conftest import start_proxy
from tests.fakes.raw import Conn, RawUpstream
from tests.fakes.upstream import Reply


async def never_answer(conn: Conn) -> None:
    pass


@pytest.fixture
async def evil():
    target = await RawUpstream(never_answer).start()
    yield target
    await target.close()


async def send_raw(base_url: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Write `data` on a fresh connection; return everything the proxy answers until it closes
    (or goes quiet for `timeout`)."""
    url = URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            async with asyncio.timeout(timeout):
                while chunk := await reader.read(65536):
                    out += chunk
        return out
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    """The status code; aiohttp answers requests it cannot parse in HTTP/1.0."""
    assert response.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), response[:200]
    return int(response[9:12])


def authority(url: str) -> str:
    return url.removeprefix("http://")


TARGETS = [
    "http://{evil}/openai/v1/models",
    "http://{evil}/",
    "https://{evil}/openai/v1/models",
    "//{evil}/v1/models",
    "//{evil}/openai/v1/models",
    "/openai//{evil}/v1/models",
    "/openai/%2F%2F{evil}/v1/models",
    "/openai%2F%2F{evil}/v1/models",
    "/openai%2f..%2f..%2f{evil}/",
    "/openai@{evil}/v1/models",
    "/openai:x@{evil}/v1/models",
    "/openai/@{evil}/v1/models",
    "/openai/..%2F..%2F{evil}/",
    "/openai/../{evil}/",
    "/openai\\\\{evil}/v1/models",
    "/openai/\\\\{evil}/v1/models",
    "/openai#@{evil}/",
    "/openai?@{evil}/",
    "/groq/..//{evil}/openai/v1/models",
    "/%6Fpenai/v1/models",
    "{evil}",
    "*",
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_no_request_target_reaches_any_host_but_the_configured_upstream(
    proxy, evil, target, method
):
    proxy.upstream.reply = Reply(json_body={"ok": True})
    target = target.format(evil=authority(evil.url))
    body = b'{"model": "m"}' if method == "POST" else b""
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: {authority(evil.url)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    response = await send_raw(proxy.url, request)
    assert status_of(response) in (200, 400, 404), response[:300]
    assert evil.connections == 0
    fake_host = authority(proxy.upstream_url)
    for received in proxy.upstream.received:  # forwarded, then only to the configured upstream
        assert received.headers["Host"] == fake_host
        assert received.path_qs.startswith("/")


async def test_connect_method_is_not_a_tunnel(proxy, evil):
    response = await send_raw(
        proxy.url,
        f"CONNECT {authority(evil.url)} HTTP/1.1\r\nHost: {authority(evil.url)}\r\n\r\n".encode(),
    )
    assert status_of(response) in (400, 404, 405)
    assert evil.connections == 0 and proxy.upstream.received == []


async def test_a_forged_host_header_is_replaced_by_the_upstream_host(proxy, evil):
    proxy.upstream.reply = Reply(json_body={"ok": True})
    response = await send_raw(
        proxy.url,
        b"GET /openai/v1/models HTTP/1.1\r\nHost: "
        + authority(evil.url).encode()
        + b"\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n",
    )
    assert status_of(response) == 200
    assert evil.connections == 0
    assert proxy.upstream.received[0].headers["Host"] == authority(proxy.upstream_url)


# --- header injection and smuggling ---------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"X-Test: a\r\n b: folded\r\n",  # obs-fold
        b"X-Test: a\rX-Injected: 1\r\n",  # bare CR
        b"X-Test: a\nX-Injected: 1\r\n",  # bare LF
        b"X-Test: a\x00X-Injected: 1\r\n",  # NUL
        b"X-MeterFox-Tag-Feature: a\rX-Injected: 1\r\n",
        b"Authorization: Bearer sk-a\rX-Injected: 1\r\n",
    ],
    ids=["obs-fold", "bare-CR", "bare-LF", "NUL", "tag-CR", "auth-CR"],
)
async def test_cr_lf_in_a_request_header_is_refused_or_never_forwarded(proxy, header):
    proxy.upstream.reply = Reply(json_body={"ok": True})
    response = await send_raw(
        proxy.url,
        b"GET /openai/v1/models HTTP/1.1\r\nHost: x\r\n" + header + b"Connection: close\r\n\r\n",
    )
    assert status_of(response) in (200, 400)
    for received in proxy.upstream.received:
        for name, value in received.headers.items():
            assert not set("\r\n\x00") & set(name + value), (name, value)
        # A bare LF may end a header line (RFC 9112 §2.2): then X-Injected is a header the
        # client really sent, and it arrives as one, never inside another header's value.
        assert "X-Injected" not in received.headers.get("X-Test", "")


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: 4\r\nContent-Length: 60\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        b"Transfer-Encoding: xchunked\r\n",
    ],
    ids=["CL+TE", "two-CL", "two-TE", "bad-TE"],
)
async def test_ambiguous_framing_never_smuggles_a_second_request(proxy, framing):
    proxy.upstream.reply = Reply(json_body={"ok": True})
    smuggled = b"GET /openai/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    await send_raw(
        proxy.url,
        b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\n" + framing + b"\r\n0\r\n\r\n" + smuggled,
        timeout=2,
    )
    assert all("smuggled" not in r.path_qs for r in proxy.upstream.received)
    assert len(proxy.upstream.received) <= 1


class InjectingAuthorizer(Authorizer):
    """A provider key with a line break in it (a pasted key with a trailing newline, or worse)."""

    def __init__(self, replacement: str) -> None:
        self.replacement = replacement

    def decide(self, provider_slug: str, credential: Credential | None) -> Decision:
        return Decision("k", replacement=self.replacement)


@pytest.mark.parametrize("replacement", ["sk-real\r\nX-Injected: 1", "sk-real\n"])
async def test_a_provider_key_with_a_line_break_is_refused_not_injected(
    upstream_server, replacement
):
    fake, server = upstream_server
    fake.reply = Reply(json_body={"ok": True})
    proxy, proxy_server = await start_proxy(
        fake, server, authorizer=InjectingAuthorizer(replacement)
    )
    try:
        response = await send_raw(
            proxy.url,
            b"GET /openai/v1/models HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer mf-proxykey\r\nConnection: close\r\n\r\n",
        )
        assert status_of(response) == 500
        assert b"invalid" in response and b"sk-real" not in response
        assert fake.received == []
        record = await proxy.record()
        assert (record["outcome"], record["status"]) == ("proxy_error", 500)
    finally:
        await proxy_server.close()


@pytest.mark.parametrize(
    "body",
    [b'{"model": "m", "stream": tru', b"\xff\xfe{}", b'{"stream": true, "model": 5]', b""],
)
async def test_malformed_json_bodies_reach_the_upstream_untouched(proxy, body):
    """The provider decides what a malformed body means; the proxy forwards it byte for byte."""
    proxy.upstream.reply = Reply(status=400, json_body={"error": {"message": "bad json"}})
    response = await send_raw(
        proxy.url,
        b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body,
    )
    assert status_of(response) == 400 and b"bad json" in response
    assert proxy.upstream.received[0].body == body
    record = await proxy.record()
    assert (record["outcome"], record["status"]) == ("upstream_error", 400)
