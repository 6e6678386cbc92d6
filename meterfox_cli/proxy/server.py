"""Running the proxy in the foreground until SIGINT or SIGTERM, then shutting down cleanly."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import signal
import ssl
from collections.abc import Callable, Coroutine, Mapping

from aiohttp import web

from meterfox_cli.config import TlsFiles
from meterfox_cli.errors import MeterFoxError
from meterfox_cli.proxy.connections import (
    CappedSite,
    ConnectionCap,
    connection_budget,
    raise_open_file_limit,
)
from meterfox_cli.proxy.state import STATE

log = logging.getLogger("meterfox.server")

SHUTDOWN_TIMEOUT_S = 30.0
# After a response to a request whose body was not read (a refusal, a body too slow), how long
# the rest of the body is read and dropped so the client can read the response before the
# close (aiohttp's default is 10 s).
LINGER_S = 2.0


class PortInUse(MeterFoxError):
    pass


async def serve(
    app: web.Application,
    host: str,
    port: int,
    on_ready: Callable[[str], None] = lambda url: None,
    max_connections: int | None = None,
    tls: ssl.SSLContext | None = None,
    worker: bool = False,
) -> None:
    """Serve `app` (over HTTPS when `tls` is given) until a stop signal. In-flight requests
    finish (up to SHUTDOWN_TIMEOUT_S) and the app's cleanup commits every queued record before
    this returns.

    Client limits: the soft open-file limit is raised to the hard one and the connections are
    capped to fit in it (connections.py); a request's headers must arrive within the
    `client_header` timeout of the connection opening or of the previous response (aiohttp
    closes the connection otherwise, an idle keep-alive one too).

    A `worker` (one of `serve --workers N`, proxy/workers.py) shares the port with the others
    (SO_REUSEPORT) and stops on SIGTERM only, once: its supervisor sends it, whatever the
    supervisor was sent (a terminal's Ctrl-C reaches the whole process group)."""
    cap = ConnectionCap(connection_budget(raise_open_file_limit(), max_connections))
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        keepalive_timeout=app[STATE].timeouts.client_header,
        lingering_time=LINGER_S,
    )
    await runner.setup()
    assert runner.server is not None
    runner.server.request_handler = cap.tracking(runner.server.request_handler)
    try:
        site = CappedSite(runner, host, port, cap, tls, reuse_port=worker)
        try:
            await site.start()
        except OSError as exc:
            raise cannot_listen(exc, host, port) from exc
        scheme = "https" if tls else "http"
        on_ready(f"{scheme}://{_url_host(host)}:{port}")
        await _wait_for_stop_signal((signal.SIGTERM,) if worker else STOP_SIGNALS, worker)
        log.info("stopping: finishing in-flight requests and writing records")
    finally:
        await runner.cleanup()


def cannot_listen(exc: OSError, host: str, port: int) -> MeterFoxError:
    """The one-sentence error for a port that cannot be listened on (in use, or refused)."""
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(
            f"port {port} on {host} is in use (another `meterfox serve`?); stop it or pass --port"
        )
    return MeterFoxError(f"cannot listen on {host}:{port}: {exc.strerror}")


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context from a PEM certificate (chain) and its key; MeterFoxError, in one
    sentence, when they cannot be read or do not match."""
    for path in (files.cert, files.key):
        if not path.is_file():
            raise MeterFoxError(f"cannot serve HTTPS: no such file {path}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise MeterFoxError(
            f"cannot serve HTTPS with {files.cert} and {files.key}: {exc.strerror or exc} "
            "(both PEM; the key must be unencrypted and match the certificate)"
        ) from exc
    return context


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _wait_for_stop_signal(signals: tuple[signal.Signals, ...], once: bool) -> None:
    """Return on the first of `signals`; then, if `once`, ignore them while draining."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
            if once:
                signal.signal(sig, signal.SIG_IGN)


def is_loopback(host: str) -> bool:
    """Only `localhost` and loopback addresses count; any other name may resolve anywhere."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def requires_proxy_key(host: str, flag: bool | None, configured: bool | None) -> bool:
    """The flag, else the config's `[server] require_proxy_key`, else on beyond loopback."""
    if flag is not None:
        return flag
    if configured is not None:
        return configured
    return not is_loopback(host)


def exposure_warning(host: str, port: int, require_proxy_key: bool, tls: bool = False) -> list[str]:
    """What `serve` prints when it binds beyond loopback (nothing on loopback)."""
    if is_loopback(host):
        return []
    lines = [
        f"WARNING: MeterFox is listening on {host}:{port}, beyond this machine's loopback.",
        f"  Anyone who can reach port {port} can send requests through it.",
    ]
    if require_proxy_key:
        lines.append("  Only MeterFox proxy keys are accepted (callers' own keys are refused).")
    else:
        lines.append(
            "  Callers' own keys are passed through (--allow-passthrough): anyone who reaches "
            "the port can use MeterFox as a relay to your providers."
        )
    if not tls:
        lines.append(
            "  MeterFox speaks plain HTTP: keys cross the network readable. Bind to 127.0.0.1, "
            "serve HTTPS (--tls-cert/--tls-key), or put it behind a private network."
        )
    return lines


LOOP_ENV = "METERFOX_LOOP"  # `uvloop` or `asyncio`: the daemon's event loop (default uvloop)
LOOPS = ("uvloop", "asyncio")


def chosen_loop(environ: Mapping[str, str]) -> str:
    """The event loop the daemon runs on: `METERFOX_LOOP` when set, else uvloop (a default
    dependency on Linux and macOS) when it imports, else asyncio's own."""
    wanted = environ.get(LOOP_ENV, "").strip().lower()
    if wanted and wanted not in LOOPS:
        raise MeterFoxError(f"{LOOP_ENV}={wanted!r}: choose one of {', '.join(LOOPS)}")
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise MeterFoxError(f"{LOOP_ENV}=uvloop, but uvloop is not installed") from None
        return "asyncio"
    return "uvloop"


def run_event_loop(main: Coroutine[object, object, None], loop: str = "uvloop") -> None:
    """Run the daemon on `loop` (see `chosen_loop`). uvloop cut the proxy's CPU per request by
    about a tenth in bench/run.py (docs/performance.md); everything works the same without it."""
    if loop == "asyncio":
        asyncio.run(main)
        return
    import uvloop

    uvloop.run(main)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
