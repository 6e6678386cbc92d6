"""`meterfox serve`: builds the proxy app from config, keys and the writer, and runs it."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING

import click

from meterfox_cli.cli.common import (
    Settings,
    current_ledger,
    load_settings,
    parse_upstreams,
    price_book,
    prompt_passphrase,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from concurrent.futures import Future
    from pathlib import Path

    from aiohttp import web

    from meterfox_cli.keys.authorizer import KeyAuthorizer
    from meterfox_cli.keys.provider_keys import EncryptedFileStore, StoreChoice, StoredKey
    from meterfox_cli.metrics.prometheus import KeyBudget
    from meterfox_cli.pricing.book import PriceBook
    from meterfox_cli.store.backend import Ledger
    from meterfox_cli.store.observers import InWriter, RecordObserver
    from meterfox_cli.store.writer_process import ProcessWriter

    Mount = Callable[[web.Application], None]
    HealthSections = dict[str, Callable[[], object]]


@click.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8787).")
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="NAME=URL",
    help="Send provider NAME to URL instead of its public API (repeatable).",
)
@click.option(
    "--require-proxy-key/--allow-passthrough",
    "require_proxy_key",
    default=None,
    help="Refuse requests without a MeterFox proxy key (default: on unless --host is loopback).",
)
@click.option(
    "--dashboard-login",
    is_flag=True,
    help="Put the dashboard behind a login token (`meterfox dashboard` opens, `--url` prints, "
    "the URL carrying it): needed to turn it on beyond loopback; on a machine shared with "
    "other users, it keeps them out of it on loopback too.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    default=None,
    help="Serve HTTPS (and wss://) with this PEM certificate; needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), default=None, help="The certificate's key (PEM)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes serving the port (SO_REUSEPORT), e.g. one per core; see docs/performance.md.",
)
def serve(
    host: str | None,
    port: int | None,
    upstreams: tuple[str, ...],
    require_proxy_key: bool | None,
    dashboard_login: bool,
    tls_cert: str | None,
    tls_key: str | None,
    workers: int,
) -> None:
    """Run the proxy in the foreground until Ctrl-C (or SIGTERM).

    Every call passes through unchanged; MeterFox records only metadata: provider, model,
    tokens, latency, status, cost and your tags. Prompts and responses are never stored.
    """
    # First, before the imports below: a home with an encrypted key file has its passphrase
    # asked for and its scrypt run in a thread beside the rest of the start-up (issue 17)
    settings = load_settings(parse_upstreams(upstreams))
    key_file, opening = _open_key_file(settings)

    from meterfox_cli.proxy.trust import load_trust, trust_later
    from meterfox_cli.proxy.upstream import default_context

    # aiohttp's client builds two TLS contexts as it is imported; with one worker they read the
    # system's CA store once the port listens, in a thread (proxy/trust.py): workers are forked
    # after this, each of them would have to read it again
    with trust_later() if workers == 1 else contextlib.nullcontext():
        import aiohttp  # noqa: F401

    from meterfox_cli.config import ledger_url, recording_host, tls_files
    from meterfox_cli.keys.authorizer import KeyAuthorizer
    from meterfox_cli.keys.reservations import hold_seconds
    from meterfox_cli.logs import configure_logging
    from meterfox_cli.proxy.app import make_app
    from meterfox_cli.proxy.server import (
        chosen_loop,
        exposure_warning,
        is_loopback,
        requires_proxy_key,
        run_event_loop,
        tls_context,
    )
    from meterfox_cli.proxy.server import serve as run_server
    from meterfox_cli.store.backend import LedgerUnreachable
    from meterfox_cli.store.writer_process import ProcessWriter

    loop = chosen_loop(os.environ)  # a wrong METERFOX_LOOP fails before anything starts
    config = settings.config
    for unknown in config.unknown:
        click.secho(
            f"meterfox: {settings.paths.config_file}: {unknown} (ignored)", err=True, fg="yellow"
        )
    host = host or config.host
    port = port if port is not None else config.port
    tls_wanted = tls_files(tls_cert, tls_key, "serve") if tls_cert or tls_key else config.tls
    tls = tls_context(tls_wanted) if tls_wanted else None
    configure_logging()
    settings.paths.ensure()
    ledger = current_ledger(settings)
    outbox = None  # a PostgreSQL ledger: records wait in the local outbox (store/outbox.py)
    if ledger_url(config, os.environ) is not None:
        outbox = settings.paths.outbox
    try:
        # Before the writer's process starts, which serve does not wait for: a SQLite file is
        # created and migrated here; a PostgreSQL ledger behind or ahead of this version refused.
        ledger.check()
    except LedgerUnreachable as away:  # checked at the drain's first connection instead
        click.secho(
            f"meterfox: {away}\nmeterfox: serving meanwhile: records wait in {outbox}; "
            "proxy keys (mf-…) are refused until the ledger answers",
            err=True,
            fg="yellow",
        )
    # The price data (the compact table's header: milliseconds) loads in the writer's process,
    # which takes records meanwhile and commits them even if this one is killed
    # (store/writer_process.py); here only for budgets (keys/authorizer.py) and the background
    # sync, when they need it.
    book = price_book(settings)
    require = requires_proxy_key(host, require_proxy_key, config.require_proxy_key)
    for line in exposure_warning(host, port, require, tls=tls is not None):
        click.secho(line, err=True, fg="red", bold=True)
    mount = _dashboard(settings, host, dashboard_login)
    store = _key_store(settings, key_file, opening)
    sync_mounts, sync_health = _background_sync(settings, store, book)
    alert_mounts, alert_health, alert_notes = _alerts(settings, ledger)

    def build(worker: int) -> web.Application:
        """Worker `worker`'s app (with --workers, built in that worker's process); the
        background sync and the alert thread run in worker 0 only."""
        if worker == 0:
            mounts = [mount, *sync_mounts, *alert_mounts]
            health_sections = {**sync_health, "alerts": alert_health}
        else:
            mounts, health_sections = [mount], {"sync": lambda: {"in_worker": 0}}
        if workers > 1:
            health_sections["worker"] = lambda: {"number": worker, "of": workers}
        writer = ProcessWriter(
            ledger,
            pricer=book,
            host=recording_host(config),
            outbox=outbox,
            rest_after_s=config.rest_after_s,
        )
        authorizer = KeyAuthorizer(
            settings.paths.database,
            store,
            key_ledger=ledger,
            require_proxy_key=require,
            book=book,
            hold_s=hold_seconds(config.timeouts),  # shared reservations: keys/reservations.py
        )
        observers, metric_mounts = _observability(settings, host, writer, authorizer, workers)
        return make_app(
            registry=settings.registry,
            writer=writer,
            authorizer=authorizer,
            timeouts=config.timeouts,
            max_body_bytes=config.max_body_bytes,
            mounts=[*metric_mounts, *mounts],
            health_sections=health_sections,
            observers=observers,
        )

    def read_trust() -> None:
        load_trust()
        default_context()  # the upstream client's, before the first HTTPS request needs it

    def ready(base: str) -> None:
        threading.Thread(target=read_trust, name="meterfox-trust", daemon=True).start()
        click.echo(f"MeterFox {base}  (database: {ledger.describe()})")
        if is_loopback(host):
            login = "  (behind a login: meterfox dashboard)" if dashboard_login else ""
            click.echo(f"  dashboard    {base}/_meterfox/  (or: meterfox dashboard){login}")
        for provider in settings.registry:
            click.echo(f"  {provider.slug:<12} {base}/{provider.slug}{provider.sdk_path}")
        if config.metrics.enabled and (is_loopback(host) or config.metrics.token):
            if workers == 1:
                click.echo(f"  metrics      {base}/_meterfox/metrics  (Prometheus)")
            else:
                click.echo("Prometheus metrics are off with --workers (one worker each).", err=True)
        if config.otel.enabled:
            click.echo(f"Exporting OpenTelemetry to {config.otel.endpoint}.", err=True)
        if config.sync.enabled:
            click.echo(f"Syncing billed usage every {_duration(config.sync.every_s)}.", err=True)
        for note in alert_notes:
            click.echo(f"Alerts: {note}.", err=True)
        if require:
            click.echo("Requests must carry a MeterFox proxy key (mf-…).", err=True)
        if workers > 1:
            click.echo(f"{workers} worker processes share the port.", err=True)
        click.echo("Press Ctrl-C to stop.", err=True)

    if workers == 1:
        server = run_server(
            build(0), host, port, ready, max_connections=config.max_connections, tls=tls
        )
        run_event_loop(server, loop)
        return
    from meterfox_cli.proxy.workers import run_workers

    code = run_workers(
        build,
        host,
        port,
        workers,
        loop=loop,
        on_ready=ready,
        max_connections=config.max_connections,
        tls=tls,
    )
    if code:
        raise SystemExit(code)


def _dashboard(settings: Settings, host: str, login: bool):
    """The dashboard's mount: on at loopback; beyond it, off unless `--dashboard-login`, which
    puts it behind a login token on any bind. Says which in the exposure warning."""
    from meterfox_cli.proxy.server import is_loopback
    from meterfox_cli.web.guard import access_for
    from meterfox_cli.web.login import forget_login, issue_login
    from meterfox_cli.web.mount import dashboard_mount

    state_dir = settings.paths.state_dir
    loopback = is_loopback(host)
    token = issue_login(state_dir) if login else None
    if token is None:
        forget_login(state_dir)
    if not loopback:
        line = (
            "  The dashboard is on behind a login token: `meterfox dashboard --url` prints its URL."
            if token
            else "  The dashboard is off beyond loopback; `serve --dashboard-login` turns it on "
            "behind a login token."
        )
        click.secho(line, err=True, fg="red", bold=True)
    tolerance = settings.config.reconcile_tolerance
    return dashboard_mount(
        settings.paths.database,
        access_for(loopback, token),
        tolerance,
        ledger=current_ledger(settings),
        rest_after_s=settings.config.rest_after_s,
    )


def _observability(
    settings: Settings,
    host: str,
    writer: ProcessWriter,
    authorizer: KeyAuthorizer,
    workers: int = 1,
) -> tuple[list[RecordObserver | InWriter], list[Mount]]:
    """`[metrics]` (on unless disabled): the Prometheus observer and its route; `[otel]`
    (off unless an endpoint is set): the OpenTelemetry exporter (docs/observability.md).
    With --workers, no Prometheus page: each worker counts only its own requests, and a scrape
    answered by one worker, then another, would show counters going back (docs/observability.md);
    OpenTelemetry exports from every worker. Both observe in the writer's process: Prometheus
    counts there and its page is served here; the OpenTelemetry exporter is started there."""
    from functools import partial

    from meterfox_cli.proxy.server import is_loopback

    config = settings.config
    observers: list[RecordObserver | InWriter] = []
    mounts: list[Mount] = []
    if config.metrics.enabled and workers == 1:
        from meterfox_cli.metrics.prometheus import PrometheusMetrics
        from meterfox_cli.web.metrics_route import metrics_mount

        metrics = PrometheusMetrics(
            config.metrics,
            queued=lambda: writer.queued,
            dropped=lambda: writer.dropped,
            budgets=partial(_key_budgets, authorizer),
        )
        observers.append(metrics)
        mounts.append(
            metrics_mount(metrics, loopback=is_loopback(host), token=config.metrics.token)
        )
    if config.otel.enabled:
        from meterfox_cli.metrics.otel import OtelObserver
        from meterfox_cli.metrics.otel_sdk import check_installed
        from meterfox_cli.store.observers import InWriter

        check_installed()  # here: a missing SDK stops `serve` with its sentence
        observers.append(InWriter(OtelObserver, (config.otel, config.metrics.tag_labels)))
    return observers, mounts


def _key_budgets(authorizer: KeyAuthorizer) -> list[KeyBudget]:
    """Each live budgeted key's budget and spend now (what admission compares)."""
    from meterfox_cli.metrics.prometheus import KeyBudget

    return [
        KeyBudget(name, str(key.budget.period), key.budget.nanousd, authorizer.ledger.spent(name))
        for name, key in authorizer.snapshot.budgeted.items()
        if key.budget is not None
    ]


def _open_key_file(settings: Settings) -> tuple[EncryptedFileStore, Future[None] | None]:
    """This home's encrypted key file and, if it exists, its opening under way: the passphrase
    asked for now (a prompt comes before the server starts; the daemon never prompts later),
    scrypt in a thread (`EncryptedFileStore.unlock_soon`) that `_key_store` waits for. Without
    it a home with a proxy key took scrypt's half-second longer than a passthrough-only one."""
    from meterfox_cli.keys.provider_keys import KEY_FILE_NAME, EncryptedFileStore, env_passphrase

    file_store = EncryptedFileStore(settings.paths.data_dir / KEY_FILE_NAME, env_passphrase())
    if not file_store.path.exists():
        return file_store, None
    return file_store, file_store.unlock_soon(prompt_passphrase)


def _key_store(
    settings: Settings, file_store: EncryptedFileStore, opening: Future[None] | None
) -> StoreChoice | Callable[[], StoreChoice]:
    """The key store for proxy keys' providers and the background sync's admin keys, unlocked
    now: the encrypted file's opening (`_open_key_file`) waited for, or, if the file appeared
    since, opened here. With no key stored yet, a callable that chooses it on first use."""
    from functools import partial

    from meterfox_cli.errors import MeterFoxError
    from meterfox_cli.keys.provider_keys import (
        FILE_STORE,
        KEY_FILE_NAME,
        choose_store,
        env_passphrase,
        stored_keys,
    )

    stored = _stored_keys(settings.paths.database, stored_keys)
    data_dir = settings.paths.data_dir
    if not stored and not (data_dir / KEY_FILE_NAME).exists():  # passthrough only, so far
        return partial(choose_store, data_dir, env_passphrase())
    choice = choose_store(data_dir, env_passphrase(), file_store=file_store)
    in_file = any(entry.store == FILE_STORE for entry in stored)
    if in_file or file_store.path.exists():
        try:
            if opening is None:
                file_store.unlock(prompt_passphrase)
            else:
                opening.result()
        except MeterFoxError as exc:
            click.secho(f"meterfox: provider keys unavailable: {exc}", err=True, fg="yellow")
    return choice


def _stored_keys(
    database: Path, read: Callable[[sqlite3.Connection], list[StoredKey]]
) -> list[StoredKey]:
    """The index of provider keys in this machine's file, `read` over a connection that writes
    nothing (one read of the schema, not two: serve has just created and migrated the file when
    it is the ledger); a file not there or not migrated yet (a PostgreSQL ledger's first start)
    is opened, created and migrated instead."""
    import sqlite3

    from meterfox_cli.store.db import connect, open_untouched

    if database.exists():
        try:
            untouched = open_untouched(database)
            try:
                return read(untouched)
            finally:
                untouched.close()
        except sqlite3.Error:
            pass  # not migrated yet, or being written: opened as any connection is, below
    conn = connect(database)
    try:
        return read(conn)
    finally:
        conn.close()


# The alert thread starts this long after the app (which `serve` starts and then listens): its
# first check, and the imports it needs, do not delay health or the first requests (issue 17).
ALERTS_AFTER_S = 0.2
SYNC_OFF: dict[str, object] = {"enabled": False}  # health's sync section with `[sync]` off


def _background_sync(
    settings: Settings, store: StoreChoice | Callable[[], StoreChoice], book: PriceBook
) -> tuple[list[Mount], HealthSections]:
    """`[sync] every`: a mount whose cleanup context starts the background sync's thread with
    the app and stops it first at shutdown, and its health section; off, a section saying so."""
    wanted = settings.config.sync
    if wanted.every_s is None:  # off (the default): none of the sync code is imported
        return [], {"sync": lambda: SYNC_OFF}
    import asyncio

    from meterfox_cli.config import SYNC_MIN_REAL_S
    from meterfox_cli.errors import ConfigError
    from meterfox_cli.sync.background import BackgroundSync
    from meterfox_cli.sync.prices import computed_price
    from meterfox_cli.sync.sources import SOURCES, source

    chosen = None
    if wanted.providers is not None:
        chosen = [source(name) for name in wanted.providers]
        if None in chosen:
            bad = wanted.providers[chosen.index(None)]
            raise ConfigError(
                f"{settings.paths.config_file}: [sync] providers: cannot sync {bad!r}: sync "
                f"reads {', '.join(SOURCES)}"
            )
    if wanted.every_s < SYNC_MIN_REAL_S:
        click.secho(
            f"meterfox: [sync] every = {_duration(wanted.every_s)} is under a minute: meant for "
            "tests (the providers publish daily buckets and rate-limit their admin APIs)",
            err=True,
            fg="yellow",
        )
    providers = (settings.registry.get(name) for name in SOURCES)
    background = BackgroundSync(
        settings.paths.database,
        every_s=wanted.every_s,
        base_urls={p.slug: p.base_url for p in providers if p is not None},
        store_choice=store if callable(store) else lambda: store,
        providers=chosen,
        price=computed_price(book),
        ledger=current_ledger(settings),
    )

    async def running(app: web.Application):
        background.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, background.stop)

    return [lambda app: app.cleanup_ctx.append(running)], {"sync": background.health}


def _alerts(
    settings: Settings, ledger: Ledger
) -> tuple[list[Mount], Callable[[], object], list[str]]:
    """The alert thread (alerts/watcher.py), started with the app and stopped at shutdown, its
    health section, and a line for each channel skipped (said once serve listens). Key budgets
    are read from the ledger, where the proxy reads its keys."""
    import asyncio

    from meterfox_cli.alerts.channels import channels_for
    from meterfox_cli.alerts.watcher import AlertWatcher

    config = settings.config
    channels, skipped = channels_for(config.alerts)
    watcher = AlertWatcher(ledger, config.alerts, config.budget, channels)

    async def running(app: web.Application):
        loop = asyncio.get_running_loop()
        starting = loop.call_later(ALERTS_AFTER_S, watcher.start)  # serve listens by then
        yield
        starting.cancel()
        await loop.run_in_executor(None, watcher.stop)

    return [lambda app: app.cleanup_ctx.append(running)], watcher.health, skipped


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


COMMANDS = [serve]
