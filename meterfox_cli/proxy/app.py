"""The proxy application factory. Tests build it with their own registry, paths and writer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from meterfox_cli import __version__
from meterfox_cli.config import Timeouts
from meterfox_cli.providers.registry import Registry
from meterfox_cli.proxy import forward, websocket
from meterfox_cli.proxy.auth import Authorizer
from meterfox_cli.proxy.state import STATE, ProxyState
from meterfox_cli.proxy.upstream import UpstreamClient
from meterfox_cli.store.observers import InWriter, RecordObserver
from meterfox_cli.store.writer_process import ProcessWriter

if TYPE_CHECKING:  # the writer's own module loads in its process, not the proxy's
    from meterfox_cli.store.writer import RecordWriter

HEALTH_SECTIONS = web.AppKey("health_sections", dict[str, Callable[[], object]])


def make_app(
    *,
    registry: Registry,
    writer: RecordWriter | ProcessWriter,
    authorizer: Authorizer | None = None,
    timeouts: Timeouts | None = None,
    max_body_bytes: int = 32 * 1024 * 1024,
    mounts: Sequence[Callable[[web.Application], None]] = (),
    health_sections: Mapping[str, Callable[[], object]] | None = None,
    observers: Sequence[RecordObserver | InWriter] = (),
) -> web.Application:
    """The proxy app. Each of `mounts` may add routes under `/_meterfox/` and cleanup contexts
    before the catch-all routes are added (`cli/serve_cmd.py` mounts the dashboard this way:
    the proxy knows nothing of it). Each of `health_sections` adds a field to
    `/_meterfox/health`: its name, and what the callable returns (called on the loop, so it
    must be quick; `serve` adds the background sync's state this way). Each of `observers`
    sees every record the writer commits, where the writer runs (its thread, or with a
    ProcessWriter its process; never on the loop), and is closed after the writer's last batch
    (`serve` passes metrics and OpenTelemetry this way)."""
    for observer in observers:
        writer.add_observer(observer)
    app = web.Application(client_max_size=max_body_bytes)
    app[STATE] = ProxyState(
        registry=registry,
        writer=writer,
        authorizer=authorizer or Authorizer(),
        timeouts=timeouts or Timeouts(),
        max_body_bytes=max_body_bytes,
    )
    app[websocket.OPEN_SOCKETS] = set()
    app.on_shutdown.append(websocket.close_all)
    app.cleanup_ctx.append(_writer_ctx)
    app.cleanup_ctx.append(_authorizer_ctx)
    app.cleanup_ctx.append(_session_ctx)
    app[HEALTH_SECTIONS] = dict(health_sections or {})
    app.router.add_get("/_meterfox/health", health)
    for mount in mounts:
        mount(app)
    app.router.add_route("*", "/_meterfox/{rest:.*}", not_found)
    app.router.add_route(
        "*", "/{slug}{rest:.*}", forward.handle, expect_handler=forward.defer_continue
    )
    app.router.add_route("*", "/", not_found)
    return app


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    """The upstream clients: upstream.py's for proxied requests, and one aiohttp ClientSession
    for WebSockets. Bytes are relayed as sent: no decompression."""
    state = app[STATE]
    state.upstream = UpstreamClient(connect_timeout=state.timeouts.connect)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    state.session = session
    yield
    await state.upstream.close()
    await session.close()


async def _writer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the record writer (a thread, or a process of its own under `serve`); at shutdown,
    wait for it to commit every queued record, then let its observers flush."""
    writer = app[STATE].writer
    await asyncio.get_running_loop().run_in_executor(None, writer.start)
    yield
    await asyncio.get_running_loop().run_in_executor(None, writer.close)
    await asyncio.get_running_loop().run_in_executor(None, writer.close_observers)


async def _authorizer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Let the authorizer load its keys (blocking reads) and stop its refresher, off the loop."""
    authorizer = app[STATE].authorizer
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, authorizer.start)
    yield
    await loop.run_in_executor(None, authorizer.close)


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    writer = state.writer
    sections = {name: section() for name, section in request.app[HEALTH_SECTIONS].items()}
    if writer.waiting is not None:  # a PostgreSQL ledger: records wait in its outbox
        sections["records_waiting"] = writer.waiting
    if isinstance(writer, ProcessWriter):  # running, starting, or resting (not degraded)
        sections["writer_process"] = writer.state
    keys_unavailable = state.authorizer.keys_unavailable
    return web.json_response(
        {
            **sections,  # first: a section never hides the proxy's own fields
            "status": "ok" if writer.healthy and keys_unavailable is None else "degraded",
            "version": __version__,
            "uptime_s": round(time.monotonic() - state.started_at, 3),
            "started_at": round(state.started_wall, 3),
            "event_loop": _loop_name(),
            "records_written": writer.written,
            "records_queued": writer.queued,
            "records_dropped": writer.dropped,
            "store_error": writer.last_error or keys_unavailable,
            "max_batch": writer.max_batch,
            "max_commit_lag_ms": round(writer.max_commit_lag_s * 1000, 1),
            "refused": dict(state.refused),
            "keys": state.authorizer.stats(),
        }
    )


def _loop_name() -> str:
    return (
        "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    )


async def not_found(request: web.Request) -> web.Response:
    message = f"MeterFox: nothing at {request.path}; call /<provider>/…, see `meterfox providers`"
    return web.json_response(
        {"error": {"message": message, "type": "not_found", "param": None, "code": "not_found"}},
        status=404,
    )
