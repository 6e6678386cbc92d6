"""The dashboard's access rules in-process (the proxy app with the dashboard mounted, on
127.0.0.1): only the daemon's own loopback names are answered, every response carries the
strict headers, state changes need the token, a same-origin Origin and JSON, and beyond
loopback the dashboard is off unless a login token turns it on."""

from __future__ import annotations

import aiohttp
import pytest

from meterfox_cli.paths import resolve_paths
from meterfox_cli.web.guard import LOGIN_COOKIE, SECURITY_HEADERS, TOKEN_HEADER, Access, access_for
from meterfox_cli.web.mount import dashboard_mount
from tests.conftest import start_proxy

API_GETS = (
    "",
    "api/session",
    "api/overview",
    "api/overview/providers",
    "api/overview/tags",
    "api/report",
    "api/keys",
)


@pytest.fixture
async def served(upstream_server):
    async def start(access: Access):
        fake, server = upstream_server
        mount = dashboard_mount(resolve_paths().database, access)
        proxy, proxy_server = await start_proxy(fake, server, mounts=(mount,))
        started.append(proxy_server)
        return proxy, proxy_server.port

    started = []
    yield start
    for proxy_server in started:
        await proxy_server.close()


async def get(url: str, host: str | None = None, **kwargs) -> tuple[int, dict, str]:
    headers = {"Host": host} if host is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers, allow_redirects=False, **kwargs) as r:
            return r.status, dict(r.headers), await r.text()


async def post(url: str, headers: dict, data: bytes = b"{}") -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, headers=headers, data=data) as r:
            return r.status


def assert_strict(headers: dict) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
async def test_the_daemons_own_loopback_names_are_answered(served, name):
    proxy, port = await served(access_for(True, None))
    for path in API_GETS:
        status, headers, _ = await get(f"{proxy.url}/_meterfox/{path}", host=f"{name}:{port}")
        assert status == 200, path
        assert_strict(headers)


@pytest.mark.parametrize(
    "host", ["evil.example:{port}", "evil.example", "127.0.0.1:{other}", "localhost", "", "x"]
)
async def test_any_other_host_gets_nothing(served, host):
    """A DNS-rebinding page reaches the port under its own name: refused, no data."""
    proxy, port = await served(access_for(True, None))
    for path in (*API_GETS, "api/live", "static/app.js", "api/report.csv"):
        status, headers, body = await get(
            f"{proxy.url}/_meterfox/{path}", host=host.format(port=port, other=port + 1)
        )
        assert status == 403, (path, status)
        assert "loopback" in body and "csrf" not in body.lower()
        assert_strict(headers)


async def test_static_files_and_the_page_carry_the_strict_headers(served):
    proxy, _ = await served(access_for(True, None))
    status, headers, page = await get(f"{proxy.url}/_meterfox/")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert_strict(headers)
    assert "<script>" not in page and " on" not in page.split("<body>")[1].split("=")[0]
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, _ = await get(f"{proxy.url}/_meterfox/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind)
        assert_strict(headers)
    status, _, _ = await get(f"{proxy.url}/_meterfox/static/..%2Fguard.py")
    assert status == 404


async def test_a_change_needs_the_token_a_same_origin_origin_and_json(served, conn):
    from meterfox_cli.keys.proxy_keys import KeySpec, create_key, list_keys

    create_key(conn, KeySpec("app"))
    access = access_for(True, None)
    proxy, port = await served(access)
    url = f"{proxy.url}/_meterfox/api/keys/app/revoke"
    origin = f"http://127.0.0.1:{port}"
    good = {TOKEN_HEADER: access.csrf_token, "Origin": origin, "Content-Type": "application/json"}
    refused = [
        {**good, TOKEN_HEADER: "wrong"},
        {k: v for k, v in good.items() if k != TOKEN_HEADER},
        {**good, "Origin": "http://evil.example"},
        {**good, "Origin": f"http://localhost:{port}"},  # not the Host the page was served at
        {k: v for k, v in good.items() if k != "Origin"},
        {**good, "Content-Type": "text/plain"},  # a simple request a cross-site form can send
        {**good, "Content-Type": "application/x-www-form-urlencoded"},
    ]
    for headers in refused:
        assert await post(url, headers) in (403, 415), headers
        assert list_keys(conn)[0].status == "active"
    assert await post(url, good) == 200
    assert list_keys(conn)[0].status == "revoked"


async def test_over_https_the_same_origin_is_the_https_one(upstream_server, conn, tmp_path):
    from meterfox_cli.keys.proxy_keys import KeySpec, create_key, list_keys
    from tests.fakes.tls import loopback_contexts

    create_key(conn, KeySpec("app"))
    access = access_for(True, None)
    server_tls, client_tls = loopback_contexts(tmp_path)
    fake, upstream = upstream_server
    mount = dashboard_mount(resolve_paths().database, access)
    proxy, proxy_server = await start_proxy(fake, upstream, mounts=(mount,), ssl=server_tls)
    url = f"{proxy.url}/_meterfox/api/keys/app/revoke"
    headers = {TOKEN_HEADER: access.csrf_token, "Content-Type": "application/json"}
    try:
        async with aiohttp.ClientSession() as session:
            for origin, status in (
                (f"http://127.0.0.1:{proxy_server.port}", 403),  # not the page's scheme
                (f"https://127.0.0.1:{proxy_server.port}", 200),
            ):
                with_origin = {**headers, "Origin": origin}
                async with session.post(url, headers=with_origin, data=b"{}", ssl=client_tls) as r:
                    assert r.status == status, origin
    finally:
        await proxy_server.close()
    assert list_keys(conn)[0].status == "revoked"


async def test_beyond_loopback_the_dashboard_is_off_by_default(served):
    proxy, port = await served(access_for(False, None))
    for host in (f"127.0.0.1:{port}", f"192.0.2.7:{port}"):
        for path in API_GETS:
            status, headers, body = await get(f"{proxy.url}/_meterfox/{path}", host=host)
            assert status == 404 and "--dashboard-login" in body
            assert_strict(headers)
    status, _, _ = await get(f"{proxy.url}/_meterfox/health")
    assert status == 200  # the proxy itself is unchanged


async def test_beyond_loopback_a_login_token_turns_it_on_behind_a_cookie(served):
    access = access_for(False, "the-login-token")
    proxy, port = await served(access)
    host = f"192.0.2.7:{port}"  # reached under the machine's address, not loopback
    status, _, _ = await get(f"{proxy.url}/_meterfox/api/overview", host=host)
    assert status == 401
    status, _, _ = await get(f"{proxy.url}/_meterfox/?login=wrong", host=host)
    assert status == 401
    status, headers, _ = await get(f"{proxy.url}/_meterfox/?login=the-login-token", host=host)
    assert status == 302 and headers["Location"] == "/_meterfox/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {LOGIN_COOKIE: "the-login-token"}
    status, _, _ = await get(f"{proxy.url}/_meterfox/api/overview", host=host, cookies=jar)
    assert status == 200
    wrong = {LOGIN_COOKIE: "nope"}
    status, _, _ = await get(f"{proxy.url}/_meterfox/api/overview", host=host, cookies=wrong)
    assert status == 401


async def test_on_loopback_a_login_token_keeps_out_whoever_lacks_it(served):
    """On a machine shared with other users, `serve --dashboard-login` on loopback: the Host
    check and the login cookie both apply."""
    access = access_for(True, "the-login-token")
    proxy, port = await served(access)
    jar = {LOGIN_COOKIE: "the-login-token"}
    status, _, _ = await get(f"{proxy.url}/_meterfox/api/keys")
    assert status == 401
    status, _, _ = await get(f"{proxy.url}/_meterfox/api/keys", cookies=jar)
    assert status == 200
    status, _, _ = await get(
        f"{proxy.url}/_meterfox/api/keys", host=f"evil.example:{port}", cookies=jar
    )
    assert status == 403
