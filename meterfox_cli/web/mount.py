"""The dashboard's mount on the proxy app: its routes, added at once, answered by web/routes.py,
which (with the read worker's client and the query layer beneath it) is imported off the event
loop once the daemon listens, or by the first dashboard request if one comes sooner. So `serve`
starts, and says healthy, without the dashboard's code (issue 17); a dashboard request made
meanwhile waits for the import, which a thread already has under way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from meterfox_cli.web.guard import Access, Handler, guarded

if TYPE_CHECKING:
    from meterfox_cli.store.backend import Ledger
    from meterfox_cli.web.routes import Dashboard

BASE = "/_meterfox/"
API = BASE + "api/"
# Each route: its method, its path, its handler's name in web/routes.HANDLERS, and whether it
# changes state (then it needs the CSRF token: web/guard.py).
ROUTES = (
    ("GET", BASE.rstrip("/"), "to_page", False),
    ("GET", BASE, "page", False),
    ("GET", BASE + "static/{name}", "static", False),
    ("GET", API + "session", "session", False),
    ("GET", API + "overview", "overview", False),
    ("GET", API + "overview/providers", "providers", False),
    ("GET", API + "overview/tags", "tags", False),
    ("GET", API + "report", "report", False),
    ("GET", API + "report.csv", "report_csv", False),
    ("GET", API + "reconcile", "reconcile", False),
    ("GET", API + "keys", "keys", False),
    ("POST", API + "keys", "create_key", True),
    ("POST", API + "keys/{name}/revoke", "revoke_key", True),
    ("GET", API + "live", "live", False),
)
# How long after the app starts the dashboard loads unasked: `serve` starts the app and then
# listens, so by then the port answers, and the import (in a thread) and the read worker's
# start (web/routes.py: it warms the Overview) delay neither health nor the first request.
LOAD_AFTER_S = 0.2
ROUTES_MODULE = "meterfox_cli.web.routes"


@dataclass(frozen=True)
class DashboardOptions:
    """What the dashboard is opened with (web/routes.open_dashboard's arguments)."""

    database: Path
    access: Access
    reconcile_tolerance: Decimal | None
    ledger: Ledger | None
    rest_after_s: float | None


class DashboardLoad:
    """The dashboard's state (web/routes.Dashboard: its read worker, live feed and keeper),
    made once, on first need; `dashboard` is None until then."""

    def __init__(self, options: DashboardOptions) -> None:
        self.access = options.access
        self._options = options
        self.dashboard: Dashboard | None = None
        self._loading: asyncio.Task[Dashboard] | None = None

    async def ready(self) -> Dashboard:
        if self.dashboard is not None:
            return self.dashboard
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())
        return await asyncio.shield(self._loading)

    async def _load(self) -> Dashboard:
        loop = asyncio.get_running_loop()
        routes = await loop.run_in_executor(None, import_module, ROUTES_MODULE)
        o = self._options
        self.dashboard = routes.open_dashboard(
            o.database,
            o.access,
            reconcile_tolerance=o.reconcile_tolerance,
            ledger=o.ledger,
            rest_after_s=o.rest_after_s,
        )
        return self.dashboard

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        if self.dashboard is not None:
            await import_module(ROUTES_MODULE).close_dashboard(self.dashboard)


DASHBOARD_LOAD = web.AppKey("meterfox_dashboard_load", DashboardLoad)


def dashboard_mount(
    database: Path,
    access: Access,
    reconcile_tolerance: Decimal | None = None,
    ledger: Ledger | None = None,
    rest_after_s: float | None = None,
) -> Callable[[web.Application], None]:
    """The hook that adds the dashboard to the proxy app (`reconcile_tolerance`: the config's
    `[reconcile] tolerance`, as `meterfox reconcile` uses it; None: its default), reading from
    `ledger` (default: the SQLite file `database`); its read worker rests after `rest_after_s`
    with no dashboard request (the config's `[server] rest_after`; None: never). Every route is
    behind `guard.guarded`: a request it refuses (the dashboard off, a foreign Host…) loads
    nothing."""

    def mount(app: web.Application) -> None:
        options = DashboardOptions(database, access, reconcile_tolerance, ledger, rest_after_s)
        app[DASHBOARD_LOAD] = DashboardLoad(options)
        app.cleanup_ctx.append(_loaded_unasked)
        for method, path, name, changes in ROUTES:
            app.router.add_route(method, path, guarded(access, _answered_by(name), changes=changes))

    return mount


def _answered_by(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        dashboard = await request.app[DASHBOARD_LOAD].ready()
        return await import_module(ROUTES_MODULE).answer(name, request, dashboard)

    return handler


async def _loaded_unasked(app: web.Application) -> AsyncIterator[None]:
    """Load the dashboard LOAD_AFTER_S after the app starts (nothing while it is off: beyond
    loopback without a login); at shutdown, stop what it started."""
    load = app[DASHBOARD_LOAD]
    loading = None
    if load.access.enabled:
        loading = asyncio.get_running_loop().create_task(_after(LOAD_AFTER_S, load))
    yield
    if loading is not None:
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
    await load.close()


async def _after(delay_s: float, load: DashboardLoad) -> None:
    await asyncio.sleep(delay_s)
    with contextlib.suppress(Exception):  # a page's own request says what is wrong
        await load.ready()
