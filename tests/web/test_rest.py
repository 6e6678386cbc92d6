"""The dashboard at rest (web/rest.py, issue 17): after `[server] rest_after` with no dashboard
request, a real `serve` stops its read worker (the process ends); the next request is answered
by a new one; an open Live page keeps it awake; "never" keeps it for the daemon's life."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from meterfox_cli.paths import resolve_paths
from meterfox_cli.web import routes
from meterfox_cli.web.guard import access_for
from meterfox_cli.web.mount import DASHBOARD_LOAD, dashboard_mount
from meterfox_cli.web.rest import Rest
from tests.cli.conftest import launch_serve
from tests.conftest import start_proxy
from tests.web.test_reader import children, database, eventually, gone, running

__all__ = ["database"]  # the fixture, shared with test_reader

REST_AFTER_S = 1.0


def rest_after(value: str) -> None:
    paths = resolve_paths()
    paths.ensure()
    paths.config_file.write_text(f'[server]\nrest_after = "{value}"\n')


def workers(pid: int) -> list[int]:
    """`pid`'s dashboard read processes still running (one that ended is a zombie a moment)."""
    return [child for child in children(pid) if running(child)]


async def the_worker(pid: int) -> int:
    found = await eventually(lambda: workers(pid), 30.0)
    assert len(found) == 1, f"not one dashboard worker: {found}"
    return found[0]


async def overview(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(f"{url}/_meterfox/api/overview?by=model") as response:
        assert response.status == 200
        return await response.json()


async def test_the_worker_rests_and_the_next_request_starts_a_new_one():
    rest_after(f"{REST_AFTER_S:g}s")
    async with launch_serve() as served, aiohttp.ClientSession() as session:
        first = await the_worker(served.pid)  # warmed at start, as before
        assert await gone(first, 30.0), "the read worker did not rest"
        assert workers(served.pid) == []
        # the next request: answered, by a new worker (a stacking the keeper does not hold)
        assert (await overview(session, served.url))["month"]["requests"] == 0
        second = await the_worker(served.pid)
        assert second != first
        assert await gone(second, 30.0), "the new worker did not rest in its turn"


async def test_an_open_live_page_keeps_the_worker_awake():
    rest_after(f"{REST_AFTER_S:g}s")
    async with launch_serve() as served, aiohttp.ClientSession() as session:
        async with session.get(f"{served.url}/_meterfox/api/live") as live:
            assert live.status == 200
            await live.content.readuntil(b"\n\n")  # the backlog: the worker answered it
            worker = await the_worker(served.pid)
            await asyncio.sleep(4 * REST_AFTER_S)
            assert running(worker), "the worker rested under an open Live page"
        assert await gone(worker, 30.0), "the worker did not rest once Live was closed"


async def test_never_keeps_the_worker():
    rest_after("never")
    async with launch_serve() as served:
        worker = await the_worker(served.pid)
        await asyncio.sleep(3.0)
        assert workers(served.pid) == [worker]


async def test_a_request_during_the_rest_wakes_the_dashboard_after_it():
    """A request that begins while the rest is under way (the worker stopping) finds the
    keeper started again once the rest is done, not a dashboard left asleep."""
    now = [0.0]
    calls: list[str] = []
    rest: Rest

    async def stop() -> None:
        calls.append("rest")
        with rest.active():  # a request arrives meanwhile
            calls.append("request")
        await asyncio.sleep(0)

    rest = Rest(1.0, stop, lambda: calls.append("wake"), clock=lambda: now[0])
    now[0] = 5.0
    running_rest = asyncio.get_running_loop().create_task(rest.run())
    began = time.monotonic()
    while "wake" not in calls and time.monotonic() - began < 5:
        await asyncio.sleep(0.01)
    running_rest.cancel()
    assert calls[:3] == ["rest", "request", "wake"]
    assert not rest.rested


async def test_the_keeper_starts_again_after_the_request_that_woke_it(
    upstream_server, database, monkeypatch
):
    """In the daemon: at rest, no keeper and no worker; a page's request wakes the dashboard,
    the page's read starts a worker, and the keeper follows KEEP_AFTER_WAKE_S later (an open
    Live stream keeps it all awake meanwhile) and hands its answers to the daemon again."""
    monkeypatch.setattr(routes, "KEEP_AFTER_WAKE_S", 0.5)
    fake, server = upstream_server
    mount = dashboard_mount(database, access_for(True, None), rest_after_s=REST_AFTER_S)
    _, proxy_server = await start_proxy(fake, server, mounts=(mount,))
    try:
        load = proxy_server.app[DASHBOARD_LOAD]
        assert await eventually(lambda: load.dashboard and load.dashboard.reader.pid)
        dashboard = load.dashboard
        assert await eventually(lambda: dashboard.rest.rested, 30.0), "it did not rest"
        assert dashboard.keeping is None and dashboard.reader.pid is None
        dashboard.kept.forget_keys()  # only an answer read from now on is served again
        async with aiohttp.ClientSession() as session:
            async with session.get(proxy_server.make_url("/_meterfox/api/live")) as live:
                await live.content.readuntil(b"\n\n")  # the backlog: read by a new worker
                assert dashboard.reader.pid is not None
                kept = await eventually(lambda: dashboard.kept.body("overview"), 30.0)
                assert kept and json.loads(kept)["month"]["requests"] == 0
                assert dashboard.keeping is not None and not dashboard.keeping.done()
    finally:
        await proxy_server.close()
