"""`meterfox sync` (what the providers billed, from their admin APIs) and `meterfox reconcile`
(that, beside what the proxy recorded).

Only click is imported at module level: the sync package, rich and the store load inside the
commands, so `meterfox --help` stays fast. Admin keys are read from this machine (its keyring,
or its SQLite file); what was billed is written to and read from the ledger (either store).
"""

from __future__ import annotations

import sys
import time

import click

from meterfox_cli.cli.filters import TIME_HELP

RECONCILE_FORMATS = ("table", "json", "csv")


@click.command()
@click.argument("providers", nargs=-1)
@click.option(
    "--since",
    default=None,
    help=f"Start: {TIME_HELP} (dates are UTC days). Default: where the last sync of that "
    "provider ended, less 48 h (the providers revise recent days); 30d the first time.",
)
@click.option("--until", default=None, help="End (exclusive), same forms. Default: now.")
@click.option(
    "--base-url",
    default=None,
    help="Call this base URL instead of the provider's (`[providers.NAME] base_url`), "
    "for one provider.",
)
def sync(providers: tuple[str, ...], since: str | None, until: str | None, base_url: str | None):
    """Pull what the providers billed from their usage and cost APIs (openai, anthropic,
    openrouter): every provider with an admin key, or those named.

    Admin keys are not the API keys the proxy forwards: `meterfox keys set openai-admin`
    (or anthropic-admin, openrouter-admin), or OPENAI_ADMIN_KEY, ANTHROPIC_ADMIN_KEY,
    OPENROUTER_MANAGEMENT_KEY. Syncing a window again replaces it; proxy records are never
    touched. Then `meterfox reconcile` compares.
    """
    from meterfox_cli.cli.common import current_ledger, load_settings, price_book, prompt_passphrase
    from meterfox_cli.errors import MeterFoxError
    from meterfox_cli.keys.provider_keys import choose_store
    from meterfox_cli.store.db import connect
    from meterfox_cli.sync.prices import computed_price
    from meterfox_cli.sync.sources import SOURCES, admin_key, configured, source
    from meterfox_cli.timewindow import utc_when

    settings = load_settings()
    settings.paths.ensure()
    now = time.time()
    since_ts, until_ts = utc_when(since, now), utc_when(until, now)
    conn = connect(settings.paths.database)  # this machine's admin keys
    books = None
    try:
        if providers:
            chosen = []
            for name in providers:
                src = source(name)
                if src is None:
                    raise MeterFoxError(
                        f"cannot sync {name!r}: sync reads {', '.join(SOURCES)} "
                        "(other providers publish no usage API; the proxy is their only record)"
                    )
                chosen.append(src)
        else:
            chosen = configured(conn)
            if not chosen:
                raise MeterFoxError(
                    "no admin key: `meterfox keys set openai-admin` (or anthropic-admin, "
                    "openrouter-admin), or set OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY / "
                    "OPENROUTER_MANAGEMENT_KEY"
                )
        if base_url and len(chosen) > 1:
            raise MeterFoxError("--base-url is for one provider: name it (meterfox sync openai …)")

        def store_choice():
            return choose_store(settings.paths.data_dir, prompt_passphrase)

        jobs = []
        for src in chosen:
            key = admin_key(src, conn, store_choice)
            if not key:
                raise MeterFoxError(
                    f"no {src.key_name} key: `meterfox keys set {src.key_name}` or set "
                    f"{src.key_env} ({src.refused_hint.split('; ', 1)[-1]})"
                )
            provider = settings.registry.get(src.name)
            url = base_url or (provider.base_url if provider else "")
            jobs.append((src, src.client(url, key)))
        books = current_ledger(settings).open_writer()
        failed = _run(books, jobs, since_ts, until_ts, now, computed_price(price_book(settings)))
    finally:
        conn.close()
        if books is not None:
            books.close()
    if failed:
        sys.exit(2)


def _run(conn, jobs, since_ts, until_ts, now, price) -> bool:
    """Each provider in turn under its own progress bar; a summary line each. True if any
    failed (the others still ran)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from meterfox_cli.sync.http import SyncError
    from meterfox_cli.sync.run import sync_provider, sync_window

    failed = False
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f} pages"),
        console=Console(stderr=True),
        transient=False,
    )
    with progress:
        for src, api in jobs:
            task = progress.add_task(src.name, total=None)
            try:
                window = sync_window(conn, src, since_ts, until_ts, now)
                progress.update(task, description=f"{src.name} {window.describe()}")
                summary = sync_provider(
                    conn, src, api, window, on_page=lambda t=task: progress.advance(t), price=price
                )
            except SyncError as exc:
                failed = True
                progress.update(task, total=1, completed=0, description=f"{src.name} failed")
                progress.console.print(
                    f"meterfox: {exc}", highlight=False, markup=False, soft_wrap=True
                )
                continue
            progress.update(task, total=max(summary.pages, 1), completed=summary.pages)
            click.echo(summary_line(summary))
    return failed


def summary_line(summary) -> str:
    from meterfox_cli.money import format_usd

    requests = (
        "requests not given" if summary.requests is None else f"{summary.requests:,} requests"
    )
    return (
        f"{summary.provider}: {summary.window.describe()}: {summary.buckets:,} buckets, "
        f"{requests}, {summary.input_tokens:,} input + {summary.output_tokens:,} output tokens, "
        f"{format_usd(summary.cost_nanousd)} ({summary.pages} pages)"
    )


@click.command()
@click.option("--since", default="30d", show_default=True, help=f"Start: {TIME_HELP} (UTC days).")
@click.option("--until", default=None, help="End (exclusive), same forms. Default: now.")
@click.option(
    "--by",
    default="day,provider,model",
    show_default=True,
    help="One or more of day, provider, model (comma-separated).",
)
@click.option(
    "--format", "fmt", type=click.Choice(RECONCILE_FORMATS), default="table", show_default=True
)
@click.option("--strict", is_flag=True, help="Exit 1 when any row is not `match`.")
def reconcile(since: str, until: str | None, by: str, fmt: str, strict: bool) -> None:
    """Does the proxy see every dollar the bill shows? What the proxy recorded beside what the
    providers billed (`meterfox sync` first), per UTC day, provider and model.

    Each row is `match` (within [reconcile] tolerance, 2% by default), `bypassed` (billed
    more than went through the proxy), `proxy_only` (proxied, not billed: another
    organisation's key, or a day not published yet) or `price_mismatch` (tokens agree, cost
    does not: our price is wrong).
    """
    from rich.console import Console

    from meterfox_cli.cli.common import current_ledger, load_settings, price_book
    from meterfox_cli.errors import MeterFoxError
    from meterfox_cli.report.reconcile import parse_by, reconciled, render, to_csv, to_json
    from meterfox_cli.sync.pages import utc_day
    from meterfox_cli.sync.prices import canonical_model

    dims = parse_by(by)
    settings = load_settings()
    settings.paths.ensure()
    conn = current_ledger(settings).open_writer()
    try:
        found = reconciled(
            conn,
            since,
            until,
            dims,
            tolerance=settings.config.reconcile_tolerance,
            now=time.time(),
            canonical=canonical_model(price_book(settings)),
        )
    finally:
        conn.close()
    if not found.synced:
        raise MeterFoxError("nothing synced yet: run `meterfox sync` first")
    rows, synced, start, end = found.rows, found.synced, found.since, found.until
    if fmt == "json":
        click.echo(to_json(rows))
    elif fmt == "csv":
        click.echo(to_csv(rows), nl=False)
    elif not rows:
        click.echo("Nothing proxied or billed in that window for " + ", ".join(synced) + ".")
    else:
        first = utc_day(start) if start is not None else "the beginning"
        title = f"Proxied vs billed ({', '.join(synced)}) · {first} → " + (
            utc_day(end) if end is not None else "now"
        )
        # a pipe or a file gets every column at full width, not a terminal's 80
        width = None if sys.stdout.isatty() else 240
        render(rows, Console(highlight=False, width=width), title)
    off = [r for r in rows if r.status != "match"]
    if strict and off:
        click.echo(f"meterfox: {len(off)} of {len(rows)} rows do not match (--strict)", err=True)
        sys.exit(1)


COMMANDS = [sync, reconcile]
