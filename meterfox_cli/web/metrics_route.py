"""`GET /_meterfox/metrics` for a Prometheus scraper, and who may read it.

A scraper sends no Origin and no cookie, so the dashboard's login and CSRF rules do not fit.
Without `[metrics] token`: answered only at a loopback bind and only when `Host` is a loopback
name (so a DNS-rebinding page gets nothing); beyond loopback it is off. With a token: every
scrape must send `Authorization: Bearer <token>` (compared in constant time), under any Host,
on any bind. The page holds counts, names and money, never a key or a prompt.
"""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web

from meterfox_cli.metrics.prometheus import CONTENT_TYPE, PrometheusMetrics
from meterfox_cli.web.guard import local_port, loopback_hosts, with_security_headers

PATH = "/_meterfox/metrics"


def metrics_mount(metrics: PrometheusMetrics, *, loopback: bool, token: str | None):
    """The hook `make_app(mounts=...)` calls to add the route."""

    async def handle(request: web.Request) -> web.Response:
        refused = refusal(request, loopback=loopback, token=token)
        if refused is not None:
            return with_security_headers(refused)
        body = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
        response.headers["Cache-Control"] = "no-store"
        return with_security_headers(response)

    def mount(app: web.Application) -> None:
        app.router.add_get(PATH, handle)

    return mount


def refusal(request: web.Request, *, loopback: bool, token: str | None) -> web.Response | None:
    """Why this scrape gets nothing, or None when it may read the page."""
    if token is not None:
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode(), token.encode()
        ):
            return None
        return _refuse(401, "send Authorization: Bearer <[metrics] token>")
    if not loopback:
        return _refuse(
            404, "metrics are off beyond loopback: set [metrics] token and scrape with it"
        )
    port = local_port(request)
    host = request.headers.get("Host", "").strip().lower()
    if port is None or host not in loopback_hosts(port):
        return _refuse(403, "metrics answer only at this machine's loopback address")
    return None


def _refuse(status: int, message: str) -> web.Response:
    response = web.json_response({"error": {"message": f"MeterFox: {message}"}}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="meterfox metrics"'
    return response
