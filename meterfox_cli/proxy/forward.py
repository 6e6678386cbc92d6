"""Forwarding one request: resolve the provider, check the key, stream, tap, record.

Guarantee: every request admitted to a known provider produces exactly one UsageRecord, whether
it completes, fails upstream, or the client hangs up; and the bytes the client receives are the
upstream's bytes (less only a usage-only chunk the proxy itself asked for). A refused request
(bad key, spent budget) is counted in the health endpoint's `refused`, never recorded: a flood
of them cannot grow the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from meterfox_cli.config import Timeouts
from meterfox_cli.providers.base import LARGE_JSON_BYTES, BodyTap, RequestPlan, WireFormat
from meterfox_cli.providers.multipart import FormScan, form_boundary
from meterfox_cli.providers.registry import Provider
from meterfox_cli.proxy import websocket
from meterfox_cli.proxy.auth import LOOK_UP, Decision, apply_credential, find_credential
from meterfox_cli.proxy.headers import (
    REQUEST_ID_HEADER,
    client_response_headers,
    merge_tags,
    tags_from_headers,
    upstream_request_headers,
)
from meterfox_cli.proxy.state import STATE, ProxyState
from meterfox_cli.proxy.upstream import InvalidResponse, UpstreamError, UpstreamResponse
from meterfox_cli.records import Outcome, UsageRecord, new_request_id
from meterfox_cli.usage import Reading

log = logging.getLogger("meterfox.proxy")

_JSON_TYPES = ("application/json", "text/json", "")
_DECODABLE = {"gzip": 47, "x-gzip": 47, "deflate": 47}  # zlib wbits: 32 + 15 = auto-detect
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# A refusal (bad key, spent budget) gives the same answer on retry: tell SDKs that honour it.
_NO_RETRY = {"x-should-retry": "false"}


class ClientGone(Exception):
    """The caller hung up while we were writing to it."""


@dataclass(slots=True)
class Exchange:
    """The facts of one request as they accumulate, turned into a UsageRecord at the end."""

    request_id: str
    started_wall: float
    started: float
    provider: Provider
    wire: WireFormat  # the provider's format for this endpoint (see WireFormat.for_path)
    endpoint: str
    method: str
    plan: RequestPlan
    decision: Decision
    tags: tuple[tuple[str, str], ...]  # sorted, one per name (as tags_from_headers gives)
    status: int = 0
    ttfb: float | None = None
    outcome: Outcome = Outcome.OK
    tap: BodyTap | None = None
    response: web.StreamResponse | None = None  # set once the client's response is started
    settle: Callable[[UsageRecord], None] | None = None  # the admission's, with the record

    def record(self) -> UsageRecord:
        reading = self.tap.reading() if self.tap else Reading(model=self.plan.model)
        return UsageRecord(
            id=self.request_id,
            started_at=self.started_wall,
            provider=self.provider.slug,
            model=reading.model or self.plan.model,
            endpoint=self.endpoint,
            method=self.method,
            status=self.status,
            streamed=self.plan.stream,
            outcome=self.outcome,
            key_name=self.decision.key_name,
            ttfb_ms=None if self.ttfb is None else (self.ttfb - self.started) * 1000,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            reading=reading,
            tags=merge_tags(self.tags, self.decision.tags) if self.decision.tags else self.tags,
        )


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    slug = request.match_info["slug"]
    provider = state.registry.get(slug)
    request_id = new_request_id()
    if provider is None:
        return error_response(
            None,
            404,
            f"MeterFox: no provider named {slug!r}; see `meterfox providers`",
            "unknown_provider",
            request_id,
        )
    rest_raw = _rest_of_path(request.raw_path, slug)
    route = _route(provider, rest_raw) if rest_raw is not None else None
    if route is None:
        return error_response(
            provider.wire, 400, "MeterFox: invalid request path", "bad_path", request_id
        )
    url, endpoint = route
    wire = provider.wire.for_path(endpoint)
    if websocket.is_upgrade(request):  # its own key check, relay and records
        return await websocket.relay(
            request, state, websocket.Target(provider, endpoint, url, request_id)
        )
    credential = find_credential(request.headers, request.query)
    decision = state.authorizer.decide(provider.slug, credential)
    if decision is LOOK_UP:  # an unknown proxy key: maybe created since the last poll
        decision = await state.authorizer.look_up(provider.slug, credential)
    exchange = Exchange(
        request_id=request_id,
        started_wall=time.time(),
        started=time.perf_counter(),
        provider=provider,
        wire=wire,
        endpoint=endpoint,
        method=request.method,
        plan=_NO_PLAN,  # read from the body once the request is admitted
        decision=decision,
        tags=tags_from_headers(request.headers),
    )
    if decision.refused:  # on the headers alone: the body is never read
        return _refuse(state, wire, decision, request_id)
    if decision.replacement is not None and _CONTROL_CHARS.search(decision.replacement):
        # A stored key with a line break (pasted with its newline) must not become a header
        # injection upstream; aiohttp would refuse it with a bare 500 and a traceback.
        exchange.status, exchange.outcome = 500, Outcome.PROXY_ERROR
        state.writer.submit(exchange.record())
        log.error("the provider key for %s has a control character in it", provider.slug)
        message = (
            f"MeterFox: the provider key for {provider.slug} is invalid "
            "(it contains a line break or control character); store it again"
        )
        return error_response(wire, 500, message, "invalid_provider_key", request_id)
    if hdrs.EXPECT in request.headers:
        await _invite_body(request)
    try:
        if request.content.is_eof():  # the whole body is here already: no wait to time
            body, head, fields = await _request_body(request)
        else:
            async with asyncio.timeout(state.timeouts.client_body):
                body, head, fields = await _request_body(request)
    except BodyTooLarge:
        return error_response(
            wire,
            413,
            f"MeterFox: request body over the {state.max_body_bytes}-byte limit",
            "request_too_large",
            request_id,
        )
    except TimeoutError:
        too_slow = error_response(
            wire,
            408,
            f"MeterFox: the request body took over {state.timeouts.client_body:g} s to arrive",
            "request_timeout",
            request_id,
        )
        too_slow.force_close()
        return too_slow
    if body is not None and len(body) <= LARGE_JSON_BYTES:
        exchange.plan = plan = wire.plan(endpoint, request.query, body)
    elif body is not None:  # parsed on a worker thread
        exchange.plan = plan = await asyncio.to_thread(wire.plan, endpoint, request.query, body)
    else:  # a streamed upload: its model from the form fields at its head, if any
        exchange.plan = plan = wire.plan_form(endpoint, fields)
    headers = upstream_request_headers(request.headers)
    url = apply_credential(headers, url, credential, decision.replacement)
    if plan.strip_usage_chunk or "accept-encoding" not in headers:
        headers["Accept-Encoding"] = "identity"
    data = plan.body if body is not None else _stream_body(request, head)
    admission = state.authorizer.admit(decision, provider.slug, plan, body, request_id)
    if admission.pending is not None:  # a budgeted key: reserved in the ledger, off the loop
        admission = await admission.pending
    if admission.refusal is not None:
        return _refuse(state, wire, admission.refusal, request_id)
    exchange.settle = admission.settle
    return await _exchange(request, state, exchange, url, headers, data)


def _refuse(
    state: ProxyState, wire: WireFormat, decision: Decision, request_id: str
) -> web.Response:
    """A refusal in the provider's shape, counted by reason (no record: see the docstring)."""
    kind = decision.error_kind or "invalid_api_key"
    state.refused[kind] += 1
    return error_response(
        wire,
        decision.status or 401,
        decision.message or "refused",
        kind,
        request_id,
        headers=_NO_RETRY,
    )


async def _exchange(
    request: web.Request,
    state: ProxyState,
    exchange: Exchange,
    url: URL,
    headers: CIMultiDict[str],
    data: bytes | AsyncIterator[bytes] | None,
) -> web.StreamResponse:
    upstream: UpstreamResponse | None = None
    timeouts = state.timeouts
    try:
        async with asyncio.timeout(timeouts.connect + timeouts.first_byte):
            upstream = await state.upstream.request(request.method, url, headers, data)
        exchange.status = upstream.status
        if upstream.status >= 400:
            exchange.outcome = Outcome.UPSTREAM_ERROR
        return await _relay(request, exchange, upstream, timeouts)
    except asyncio.CancelledError:
        exchange.outcome = Outcome.CLIENT_CLOSED
        raise
    except ClientGone:
        exchange.outcome = Outcome.CLIENT_CLOSED
        return exchange.response or web.Response(status=499)
    except (UpstreamError, TimeoutError, OSError, zlib.error) as exc:
        return _upstream_failed(request, exchange, exc)
    except Exception:
        # A bug of ours: aiohttp logs it and answers 500 (or cuts a started response).
        exchange.outcome = Outcome.PROXY_ERROR
        if exchange.response is None or not exchange.response.prepared:
            exchange.status = 500
        raise
    finally:
        if upstream is not None:
            upstream.close()
        if exchange.outcome is Outcome.CLIENT_CLOSED and exchange.status == 0:
            exchange.status = 499
        record = exchange.record()
        if exchange.settle is not None:
            exchange.settle(record)  # before the writer: the next decision sees the cost
        state.writer.submit(record)


async def _relay(
    request: web.Request,
    exchange: Exchange,
    upstream: UpstreamResponse,
    timeouts: Timeouts,
) -> web.StreamResponse:
    plan = exchange.plan
    content_type = upstream.headers.get("Content-Type", "").lower()
    tap = exchange.wire.body_tap(plan, exchange.endpoint, content_type, method=exchange.method)
    exchange.tap = tap
    encoding = upstream.headers.get("Content-Encoding", "").lower().strip()
    decoder = zlib.decompressobj(_DECODABLE[encoding]) if encoding in _DECODABLE else None
    # An edited stream must be decoded to be edited: then the client gets the decoded bytes.
    forward_decoded = plan.strip_usage_chunk and decoder is not None
    drop = ["Content-Length"] if plan.strip_usage_chunk else []
    if forward_decoded:
        drop.append("Content-Encoding")
    streaming = plan.stream or content_type.startswith("text/event-stream")
    response = RelayedResponse(
        status=upstream.status,
        reason=upstream.reason,
        headers=client_response_headers(upstream.headers, drop),
    )
    response.headers[REQUEST_ID_HEADER] = exchange.request_id
    exchange.response = response
    await _write(response.prepare(request))
    passthrough_raw = decoder is not None and not forward_decoded
    undecodable = encoding not in ("", "identity") and decoder is None
    content = upstream
    last = b""
    headers_held = streaming  # until the first wait on upstream sends them (streams only)
    while True:
        chunk = content.read_nowait()  # what is here already needs no timer
        if not chunk and not content.is_eof():
            if headers_held:  # a stream's status and headers never wait on upstream
                await _write(response.write(b""))  # sends them if no body bytes did
                headers_held = False
            async with asyncio.timeout(timeouts.idle if exchange.ttfb else timeouts.first_byte):
                chunk = await content.readany()
        if not chunk:
            break
        if exchange.ttfb is None:
            exchange.ttfb = time.perf_counter()
        if undecodable:  # nothing to read usage from (e.g. brotli): forward as is
            out = chunk
        elif decoder is None:
            out = tap.feed(chunk)
        elif passthrough_raw:  # read the decoded copy, forward the exact bytes
            tap.feed(_decode(decoder, chunk))
            out = chunk
        else:  # the client gets decoded bytes: an undecodable body is a broken one (zlib.error)
            out = tap.feed(decoder.decompress(chunk))
        if content.is_eof():  # the last chunk leaves with the end of the body, in one write
            last = out
            break
        if out:
            await _write(response.write(out))
    if forward_decoded and not decoder.eof:
        raise zlib.error("the compressed body ended early")
    await _write(response.write_eof(last + tap.flush()))
    return response


class RelayedResponse(web.StreamResponse):
    """Headers leave with the first bytes of the body, so a response whose body is here
    already (a small JSON answer, a short stream) costs one socket write instead of two; a
    stream's headers leave before the proxy waits on upstream (`_relay`), so its status is never
    held back. The body is still relayed chunk by chunk."""

    _send_headers_immediately = False


def _upstream_failed(
    request: web.Request, exchange: Exchange, exc: BaseException
) -> web.StreamResponse:
    exchange.outcome = Outcome.UPSTREAM_ERROR
    timed_out = isinstance(exc, TimeoutError)
    response = exchange.response
    if response is not None and response.prepared:
        # The status is given (or held to leave with the first bytes: it leaves now): cut the
        # connection so the client sees a truncated body, never a falsely complete one.
        log.warning("upstream %s failed mid-body: %s", exchange.provider.slug, type(exc).__name__)
        if request.transport is not None:
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
                request.writer.send_headers()
            request.transport.abort()
        return response
    status = 504 if timed_out else 502
    exchange.status = status
    if timed_out:
        what, kind = "timed out", "upstream_timeout"
    elif isinstance(exc, InvalidResponse):
        what, kind = f"sent an invalid response ({type(exc).__name__})", "upstream_invalid"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or type(exc).__name__
        what = f"is unreachable: its TLS certificate could not be verified ({reason})"
        kind = "upstream_unreachable"
    else:
        what, kind = f"is unreachable ({type(exc).__name__})", "upstream_unreachable"
    log.warning("upstream %s %s", exchange.provider.slug, what)
    return error_response(
        exchange.wire,
        status,
        f"MeterFox: upstream {exchange.provider.slug} {what}",
        kind,
        exchange.request_id,
    )


async def _write(awaitable) -> None:
    try:
        await awaitable
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
        raise ClientGone() from exc


def _decode(decoder: zlib._Decompress, chunk: bytes) -> bytes:
    try:
        return decoder.decompress(chunk)
    except zlib.error:
        return b""


def error_response(
    wire: WireFormat | None,
    status: int,
    message: str,
    kind: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error the caller's SDK parses: in its wire format's shape (OpenAI's when unknown)."""
    if wire is not None:
        body = wire.error_body(status, message, kind)
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={**(headers or {}), REQUEST_ID_HEADER: request_id},
    )


def _rest_of_path(raw_path: str, slug: str) -> str | None:
    """The raw (still percent-encoded) path and query after `/<slug>`, or None when the raw
    path does not start with the slug the router matched (an encoded slug), or has a `.` or
    `..` segment, plain or encoded: no SDK sends one, and it could climb out of a base path
    such as Groq's `/openai`."""
    rest = raw_path[len(slug) + 1 :]
    if not raw_path.startswith("/" + slug) or rest[:1] not in ("", "/", "?"):
        return None
    path = rest.partition("?")[0]
    dotted = "." in path or "%" in path  # a `.` segment has one, plain or encoded
    if dotted and any(unquote(segment) in (".", "..") for segment in path.split("/")):
        return None
    return rest if rest.startswith("/") else "/" + rest


@functools.lru_cache(maxsize=256)
def _route(provider: Provider, rest_raw: str) -> tuple[URL, str] | None:
    """The upstream URL and the endpoint (the path after the slug, decoded) for `rest_raw`, or
    None (see `_upstream_url`). Cached: a gateway sees the same few paths again and again."""
    url = _upstream_url(provider, rest_raw)
    return None if url is None else (url, URL(rest_raw).path or "/")


def _upstream_url(provider: Provider, rest_raw: str) -> URL | None:
    """The upstream URL, or None if the path would leave the provider's origin."""
    try:
        url = URL(provider.upstream_url(rest_raw), encoded=True)
    except ValueError:
        return None
    if f"{url.scheme}://{url.raw_authority}" != provider.origin:
        return None
    return url


async def defer_continue(request: web.Request) -> None:
    """The proxy route's Expect handler: `100 Continue` waits for `handle` to admit the request
    (`_invite_body`), so a refused caller is never invited to send its body."""
    expect = request.headers.get("Expect", "").lower()
    if request.version == aiohttp.HttpVersion11 and expect != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")


async def _invite_body(request: web.Request) -> None:
    if request.version == aiohttp.HttpVersion11 and (
        request.headers.get("Expect", "").lower() == "100-continue"
    ):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started


class BodyTooLarge(Exception):
    pass


async def _request_body(request: web.Request) -> tuple[bytes | None, bytes, dict[str, str]]:
    """The body read whole (`_read_body`), or None with the head of a streamed upload and the
    form fields found in it (`_peek_form`)."""
    body = await _read_body(request)
    head, fields = (b"", {}) if body is not None else await _peek_form(request)
    return body, head, fields


async def _read_body(request: web.Request) -> bytes | None:
    """The body if it is JSON-like (read whole, up to the app's client_max_size); None for a
    body to stream through untouched (audio, files)."""
    if not request.body_exists:
        return b""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyTooLarge() from exc


async def _peek_form(request: web.Request) -> tuple[bytes, dict[str, str]]:
    """The first chunks of a multipart upload and the form fields before its file (read as
    they stream, at most MAX_SCAN_BYTES held); nothing for any other body."""
    boundary = form_boundary(request.headers.get("Content-Type", ""))
    if boundary is None:
        return b"", {}
    scan, head = FormScan(boundary), []
    while not scan.done:
        chunk = await request.content.readany()
        if not chunk:
            break
        head.append(chunk)
        scan.feed(chunk)
    return b"".join(head), scan.fields


async def _stream_body(request: web.Request, head: bytes = b""):
    if head:
        yield head
    async for chunk in request.content.iter_chunked(256 * 1024):
        yield chunk


_NO_PLAN = RequestPlan(model=None, stream=False, body=None)
