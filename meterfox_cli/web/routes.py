"""The dashboard's handlers under `/_meterfox/`: the page, its static files, and the JSON API
(docs/dashboard.md), and the state they share (`Dashboard`). web/mount.py adds the routes and
imports this module once the daemon listens (or at the first dashboard request); every query
runs in the `Reader`'s process and comes back as the text the handler sends. The Overview's
default view is answered from what the keeper (web/keeper.py) holds while it is fresh, without
asking the worker. After `[server] rest_after` with no dashboard request (web/rest.py), the
keeper stops and the worker with it; the next request starts them again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from importlib import resources
from pathlib import Path

from aiohttp import web

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.keys.proxy_keys import create_key, key_spec, revoke_key
from meterfox_cli.proxy.state import STATE
from meterfox_cli.report.formats import to_csv
from meterfox_cli.report.reconcile import parse_by
from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.dimensions import parse_dimensions
from meterfox_cli.store.select import parse_filters
from meterfox_cli.sync.reconcile import DEFAULT_TOLERANCE
from meterfox_cli.timewindow import resolve_window
from meterfox_cli.web.guard import LOGIN_PARAM, Access, login_cookie, prepare_secure
from meterfox_cli.web.keeper import OVERVIEW_FRESH_S, TAGS_FRESH_S, KeptAnswers, keep
from meterfox_cli.web.live import LiveFeed
from meterfox_cli.web.mount import BASE
from meterfox_cli.web.overview import STACK_BY, overview, providers_json, tags_json
from meterfox_cli.web.reader import Reader
from meterfox_cli.web.rest import Rest
from meterfox_cli.web.shapes import keys_json, reconcile_text, report_json, report_text
from meterfox_cli.web.worker import json_text

log = logging.getLogger("meterfox.dashboard")

TOKEN_PLACEHOLDER = "__METERFOX_CSRF_TOKEN__"
# index.html's preload of the first screen's read: the page carries the kept answer instead
# when the keeper has a fresh one (`_first_screen`)
PRELOAD = b'<link rel="preload" href="api/overview?by=provider" as="fetch" crossorigin>'
KEPT_IN_PAGE = ("overview", "providers", "tags")
KEEPALIVE_S = 15.0
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain",
}
NO_STORE = {"Cache-Control": "no-store"}
KEEP_RETRY_S = 2.0  # the keeper asked again after its worker died or its read failed
# After a rest, the keeper starts this long after the request that woke the dashboard: the
# page's own reads (the same three the keeper makes) have the new worker to themselves.
KEEP_AFTER_WAKE_S = 5.0


class Recent:
    """A slow read's last result, reused while fresh; callers arriving while it runs share it.
    For the Overview, what pages get when the keeper has no fresh answer (web/keeper.py)."""

    def __init__(self, reader: Reader, query, fresh_s: float) -> None:
        self._reader = reader
        self.query = query
        self._fresh_s = fresh_s
        self._task: asyncio.Task | None = None
        self._read_at = -math.inf

    async def get(self):
        loop = asyncio.get_running_loop()
        old = self._task is not None and loop.time() - self._read_at > self._fresh_s
        if self._task is None or (old and self._task.done()):
            self._read_at = loop.time()
            self._task = loop.create_task(self._reader.read(self.query))
        try:
            return await asyncio.shield(self._task)
        except Exception:
            self._task = None  # a failed read is not kept
            raise

    def forget(self) -> None:
        """The next caller reads afresh (callers already waiting keep the read under way)."""
        self._task = None


@dataclass
class Dashboard:
    reader: Reader
    live: LiveFeed
    access: Access
    files: dict[str, bytes]
    page: tuple[bytes, bytes]  # index.html with its token, before and after PRELOAD
    tags: Recent
    overviews: dict[str, Recent]  # by stacking dimension
    providers: Recent
    reconcile_tolerance: Decimal
    kept: KeptAnswers  # the default view's three answers, kept ready by the worker
    keeping: asyncio.Task[None] | None = None  # the keeper's task (`_keep`)
    rest: Rest | None = None  # when the worker and keeper stop (`_rest`) and start again
    resting: asyncio.Task[None] | None = None  # `rest.run`


def page_halves(index: bytes, token: str) -> tuple[bytes, bytes]:
    """The page with this daemon's token in it, cut where the first screen's data goes."""
    head, preload, tail = index.replace(TOKEN_PLACEHOLDER.encode(), token.encode()).partition(
        PRELOAD
    )
    assert preload, "index.html lost its preload of the Overview"
    return head, tail


def static_files() -> dict[str, bytes]:
    """The page's files, shipped in the wheel (`meterfox_cli/web/static/`), read once."""
    root = resources.files("meterfox_cli.web") / "static"
    return {item.name: item.read_bytes() for item in root.iterdir() if item.is_file()}


def open_dashboard(
    database: Path,
    access: Access,
    reconcile_tolerance: Decimal | None = None,
    ledger: Ledger | None = None,
    rest_after_s: float | None = None,
) -> Dashboard:
    """The dashboard's state (on the loop), its live feed and, when it is on, its keeper
    started: `reconcile_tolerance` is the config's `[reconcile] tolerance` (None: its default),
    reads go to `ledger` (default: the SQLite file `database`); the worker and keeper rest
    after `rest_after_s` with no dashboard request (None: never)."""
    reader = Reader(database, ledger=ledger)
    files = static_files()
    tags = Recent(reader, partial(json_text, tags_json), TAGS_FRESH_S)
    overviews = {
        by: Recent(reader, partial(json_text, overview, by=by), OVERVIEW_FRESH_S) for by in STACK_BY
    }
    dashboard = Dashboard(
        reader,
        LiveFeed(reader),
        access,
        files,
        page_halves(files["index.html"], access.csrf_token),
        tags,
        overviews,
        Recent(reader, partial(json_text, providers_json), OVERVIEW_FRESH_S),
        DEFAULT_TOLERANCE if reconcile_tolerance is None else reconcile_tolerance,
        KeptAnswers(),
    )
    dashboard.live.start()
    _start_keeper(dashboard)
    dashboard.rest = Rest(
        rest_after_s,
        partial(_rest, dashboard),
        partial(_start_keeper, dashboard, KEEP_AFTER_WAKE_S),
    )
    dashboard.resting = asyncio.get_running_loop().create_task(dashboard.rest.run())
    return dashboard


async def close_dashboard(dashboard: Dashboard) -> None:
    await _cancel(dashboard.resting)
    await _cancel(dashboard.keeping)
    await dashboard.live.close()
    await dashboard.reader.close()


async def answer(name: str, request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    """The response of the handler named `name` (web/mount.ROUTES); a MeterFoxError is a 400.
    Each request (the whole of a Live stream) keeps the dashboard from resting, and wakes it."""
    with dashboard.rest.active() if dashboard.rest else contextlib.nullcontext():
        try:
            return await HANDLERS[name](request, dashboard)
        except MeterFoxError as exc:
            return web.json_response({"error": {"message": str(exc)}}, status=400)


def _start_keeper(dashboard: Dashboard, after_s: float = 0.0) -> None:
    """The keeper (when the dashboard is on) in `after_s`, unless it runs."""
    if dashboard.access.enabled and (dashboard.keeping is None or dashboard.keeping.done()):
        dashboard.keeping = asyncio.get_running_loop().create_task(_keep(dashboard, after_s))


async def _rest(dashboard: Dashboard) -> None:
    """No dashboard request for `rest_after`: the keeper stops, and the read worker (its
    process ends; the next read starts another). The kept answers age out as they would."""
    await _cancel(dashboard.keeping)
    dashboard.keeping = None
    await dashboard.reader.close()
    log.debug("the dashboard's read worker rests")


async def _cancel(task: asyncio.Task | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _keep(dashboard: Dashboard, after_s: float = 0.0) -> None:
    """Start the read worker and its keeper in it (web/keeper.py), taking each answer it sends
    for as long as the daemon runs; again KEEP_RETRY_S after the worker died or a read failed
    (no ledger yet, the server away). Until the first answer, and whenever the kept one is not
    fresh, pages read on demand. (web/mount.py opens the dashboard once the daemon listens.)"""
    await asyncio.sleep(after_s)
    while True:
        try:
            async for kept in dashboard.reader.stream(keep):
                dashboard.kept.take(kept)
        except Exception:  # the page's own reads say what is wrong
            log.debug("the dashboard's Overview keeper stopped", exc_info=True)
        await asyncio.sleep(KEEP_RETRY_S)


# --- the page -------------------------------------------------------------------------------


async def _to_page(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    return _redirect()


def _redirect() -> web.Response:
    return web.Response(status=302, headers={"Location": BASE, **NO_STORE})


async def _page(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    if LOGIN_PARAM in request.query:  # the login link: keep the token in a cookie, not the URL
        response = _redirect()
        login_cookie(response, dashboard.access)
        return response
    head, tail = dashboard.page
    page = b"".join((head, _first_screen(dashboard.kept), tail))
    return web.Response(body=page, content_type="text/html", charset="utf-8", headers=NO_STORE)


def _first_screen(kept: KeptAnswers) -> bytes:
    """The keeper's fresh answers, in the page as one JSON data block (not a script: nothing
    runs it, so the CSP has nothing to allow; `<` in them is escaped, web/keeper.json_bytes),
    so the first screen needs no request; and the preload of the headline when it has none."""
    bodies = {part: kept.body(part) for part in KEPT_IN_PAGE}
    found = b",".join(b'"%s":%s' % (part.encode(), body) for part, body in bodies.items() if body)
    block = b'<script type="application/json" id="kept">{%s}</script>' % found if found else b""
    return block if bodies["overview"] else PRELOAD + block


async def _static(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    name = request.match_info["name"]
    body = dashboard.files.get(name)
    kind = _TYPES.get(Path(name).suffix)
    if body is None or kind is None or name == "index.html":
        return web.json_response({"error": {"message": "no such file"}}, status=404)
    return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-cache"})


# --- the API --------------------------------------------------------------------------------


async def _session(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    return web.json_response({"csrf_token": dashboard.access.csrf_token}, headers=NO_STORE)


async def _overview(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    default = dashboard.overviews["provider"]
    recent = dashboard.overviews.get(request.query.get("by", ""), default)
    return await _answer(dashboard, "overview" if recent is default else None, recent)


async def _providers(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    return await _answer(dashboard, "providers", dashboard.providers)


async def _tags(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    return await _answer(dashboard, "tags", dashboard.tags)


async def _answer(dashboard: Dashboard, part: str | None, recent: Recent) -> web.Response:
    """The keeper's fresh answer for `part` as it came (bytes: nothing parsed or encoded on the
    loop), or else `recent`'s read in the worker (another stacking has no `part`)."""
    body = dashboard.kept.body(part) if part else None
    if body is None:
        return _json(await recent.get())
    return web.Response(body=body, content_type="application/json", headers=NO_STORE)


def _json(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json", headers=NO_STORE)


def _report_query(request: web.Request, shape) -> partial:
    """The report the request asks for, as a read the worker runs: parsed here (a bad view is
    a 400 at once), read and shaped (`shape`: JSON or CSV text) in the worker."""
    query = request.query
    dims = parse_dimensions(query.get("by", "provider,model"))
    window = resolve_window(query.get("since") or None, query.get("until") or None)
    filters = parse_filters(
        query.getall("provider", []),
        query.getall("model", []),
        query.getall("key", []),
        query.getall("tag", []),
    )
    return partial(report_text, dims=dims, window=window, filters=filters, shape=shape)


async def _report(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    _, text = await dashboard.reader.read(_report_query(request, report_json))
    return _json(text)


async def _report_csv(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    dims, csv = await dashboard.reader.read(_report_query(request, to_csv))
    headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="meterfox-{dims}.csv"'}
    return web.Response(text=csv, content_type="text/csv", headers=headers)


async def _reconcile(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    """`meterfox reconcile --format json`'s rows (the same read, in the worker), with the
    totals line and the providers synced so far."""
    query = partial(
        reconcile_text,
        since=request.query.get("since") or "30d",
        until=request.query.get("until") or None,
        by=parse_by(request.query.get("by") or "day,provider,model"),
        tolerance=dashboard.reconcile_tolerance,
        pricing_ids=tuple(request.app[STATE].registry.pricing_ids().items()),
    )
    return _json(await dashboard.reader.read(query))


async def _keys(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    return _json(await dashboard.reader.read(partial(json_text, keys_json)))


async def _create_key(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    body = await _json_body(request)
    spec = key_spec(
        request.app[STATE].registry,
        str(body.get("name", "")).strip(),
        providers=[str(p) for p in body.get("providers") or []],
        expires=body.get("expires") or None,
        budget=body.get("budget") or None,
        tags=[str(t) for t in body.get("tags") or []],
        allow_unpriced=bool(body.get("allow_unpriced")),
    )
    new = await dashboard.reader.write(lambda conn: create_key(conn, spec))
    _keys_changed(dashboard)
    key = new.key
    shown = {"name": key.name, "prefix": key.prefix, "secret": new.secret}
    return web.json_response(shown, status=201, headers=NO_STORE)


async def _revoke_key(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    name = request.match_info["name"]
    key = await dashboard.reader.write(lambda conn: revoke_key(conn, name))
    _keys_changed(dashboard)
    return web.json_response(
        {"name": key.name, "prefix": key.prefix, "revoked_at": key.revoked_at}, headers=NO_STORE
    )


def _keys_changed(dashboard: Dashboard) -> None:
    """The budget bars show keys: the next Overview is read after the change (the keeper's
    answers from before it are not served, nor are reads that started before it)."""
    dashboard.kept.forget_keys()
    for recent in dashboard.overviews.values():
        recent.forget()


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError as exc:
        raise MeterFoxError("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise MeterFoxError("the body must be a JSON object")
    return body


async def _live(request: web.Request, dashboard: Dashboard) -> web.StreamResponse:
    live = dashboard.live
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await prepare_secure(request, response)
    queue = await live.listen()
    try:
        await response.write((await live.backlog()).encode())
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                event = ": keep-alive\n\n"
            if event is None:
                break
            await response.write(event.encode())
        await response.write_eof()
    except ConnectionResetError:  # the page went away
        pass
    finally:
        live.leave(queue)
    return response


HANDLERS: dict[str, Callable[[web.Request, Dashboard], Awaitable[web.StreamResponse]]] = {
    "to_page": _to_page,
    "page": _page,
    "static": _static,
    "session": _session,
    "overview": _overview,
    "providers": _providers,
    "tags": _tags,
    "report": _report,
    "report_csv": _report_csv,
    "reconcile": _reconcile,
    "keys": _keys,
    "create_key": _create_key,
    "revoke_key": _revoke_key,
    "live": _live,
}
