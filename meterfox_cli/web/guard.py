"""Who may use the dashboard, and the headers every dashboard response carries.

Loopback (the default): only a request whose `Host` is the daemon's own loopback name
(`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`) is answered, so a DNS-rebinding page gets
nothing. Beyond loopback the dashboard is off unless a login token was chosen. With a login
token (beyond loopback, or on a shared machine's loopback) a browser that opens the URL carrying
it gets an HttpOnly, SameSite=Strict cookie, and every request then needs that cookie. Anything that changes state also needs the per-daemon CSRF token the page received,
a same-origin `Origin` and a JSON body (a non-simple request no cross-site form can send).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

TOKEN_HEADER = "X-MeterFox-Token"
LOGIN_COOKIE = "meterfox_login"
LOGIN_PARAM = "login"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Access:
    """How this daemon's dashboard may be reached. `enabled` False: beyond loopback without a
    login token (off). `check_host`: only the loopback names (on a loopback bind). `login_token`
    set: the login cookie is required too."""

    enabled: bool = True
    check_host: bool = True
    login_token: str | None = None
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))


def access_for(loopback: bool, login_token: str | None) -> Access:
    """On loopback: the Host check (and the login cookie when a token was chosen); beyond it:
    off, or on behind the login cookie under any Host (the machine is reached by its name)."""
    return Access(
        enabled=loopback or bool(login_token), check_host=loopback, login_token=login_token or None
    )


def loopback_hosts(port: int) -> frozenset[str]:
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})


def local_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if sockname else None


def refusal(request: web.Request, access: Access) -> web.Response | None:
    """Why this request gets nothing (a response to send), or None when it may be answered."""
    if not access.enabled:
        return _refuse(
            404,
            "the dashboard is off: MeterFox listens beyond loopback; start it with "
            "--dashboard-login to turn it on with a login token",
        )
    if access.check_host:
        port = local_port(request)
        host = request.headers.get("Host", "").strip().lower()
        if port is None or host not in loopback_hosts(port):
            return _refuse(403, "the dashboard answers only at this machine's loopback address")
    if access.login_token is None or _same(request.cookies.get(LOGIN_COOKIE), access.login_token):
        return None
    if request.method == "GET" and _same(request.query.get(LOGIN_PARAM), access.login_token):
        return None  # the login link itself: the page handler sets the cookie
    return _refuse(401, "log in with the URL `meterfox dashboard --url` prints")


def change_refusal(request: web.Request, access: Access) -> web.Response | None:
    """Why a state-changing request is refused, or None: it needs the CSRF token, a
    same-origin Origin and a JSON body."""
    if not _same(request.headers.get(TOKEN_HEADER), access.csrf_token):
        return _refuse(403, f"missing or wrong {TOKEN_HEADER}")
    origin = request.headers.get("Origin")
    own_origin = f"{request.scheme}://{request.headers.get('Host', '')}"
    if origin is None or origin.lower() != own_origin.lower():
        return _refuse(403, "cross-origin request refused")
    if request.content_type != "application/json":
        return _refuse(415, "send a JSON body (Content-Type: application/json)")
    return None


def guarded(access: Access, handler: Handler, *, changes: bool = False) -> Handler:
    """`handler` behind the access rules, its response (or refusal) with the security headers."""

    async def guarded_handler(request: web.Request) -> web.StreamResponse:
        refused = refusal(request, access)
        if refused is None and changes:
            refused = change_refusal(request, access)
        if refused is not None:
            return with_security_headers(refused)
        return with_security_headers(await handler(request))

    return guarded_handler


def with_security_headers(response: web.StreamResponse) -> web.StreamResponse:
    """Add the strict headers (a prepared stream has them already: see `prepare_secure`)."""
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


async def prepare_secure(request: web.Request, response: web.StreamResponse) -> None:
    """Prepare a streamed response (SSE) with the strict headers."""
    response.headers.update(SECURITY_HEADERS)
    await response.prepare(request)


def login_cookie(response: web.StreamResponse, access: Access) -> None:
    if access.login_token:
        response.set_cookie(
            LOGIN_COOKIE,
            access.login_token,
            httponly=True,
            samesite="Strict",
            path="/_meterfox/",
        )


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": f"MeterFox: {message}"}}, status=status)
