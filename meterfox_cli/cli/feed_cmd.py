"""`meterfox tail` and `meterfox export`: requests one by one, live or to a file."""

from __future__ import annotations

import os
import sys

import click

from meterfox_cli.cli.filters import TIME_HELP, filter_options, make_filters


@click.command()
@click.option(
    "--limit",
    default=10,
    show_default=True,
    type=click.IntRange(0),
    help="Recent requests to show first.",
)
@click.option("--once", is_flag=True, help="Show the recent requests and exit.")
@click.option(
    "--count",
    type=click.IntRange(1),
    default=None,
    help="Exit after this many new requests.",
)
@click.option(
    "--timeout", type=click.FloatRange(0), default=None, help="Exit after this many seconds."
)
@click.option(
    "--interval",
    type=click.FloatRange(0.05),
    default=0.5,
    show_default=True,
    help="Seconds between looks at the database.",
)
@filter_options
def tail(
    limit: int,
    once: bool,
    count: int | None,
    timeout: float | None,
    interval: float,
    providers: tuple[str, ...],
    models: tuple[str, ...],
    keys: tuple[str, ...],
    tags: tuple[str, ...],
) -> None:
    """Follow requests live as they pass through a running `meterfox serve`.

    One line per request (time, key, provider, model, tokens, cost, latency, status) and a
    running total. It only reads the ledger, so it never slows the proxy down.
    """
    import time

    from meterfox_cli.cli.common import current_ledger, default_base, load_settings
    from meterfox_cli.report.empty import getting_started
    from meterfox_cli.report.tail import TAIL_HEADER, RunningTotal, tail_line
    from meterfox_cli.store import feed

    filters = make_filters(providers, models, keys, tags)
    settings = load_settings()
    ledger = current_ledger(settings)
    deadline = None if timeout is None else time.monotonic() + timeout
    conn = ledger.read_connection()
    if conn is None:
        click.echo(getting_started(default_base(settings)), err=True)
        if once:
            return
        conn = _wait_for(ledger, deadline, interval)
        if conn is None:
            return
    try:
        totals = RunningTotal()
        click.echo(TAIL_HEADER)
        for line in feed.latest(conn, limit, filters):
            click.echo(_styled(line, tail_line(line, totals.add(line))))
        if once:
            return
        start = feed.cursor_at_end(conn, time.monotonic())
        seen = 0
        for batch in feed.follow(conn, start, filters, interval=interval, deadline=deadline):
            for line in batch:
                click.echo(_styled(line, tail_line(line, totals.add(line))))
                seen += 1
                if count is not None and seen >= count:
                    return
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


def _styled(line, text: str) -> str:
    """Failures in red, unpriced requests in yellow (click drops the colour in pipes)."""
    from meterfox_cli.pricing.quote import UNPRICED_SOURCE

    if line.status >= 400 or line.outcome != "ok":
        return click.style(text, fg="red")
    if line.cost_source == UNPRICED_SOURCE:
        return click.style(text, fg="yellow")
    return text


def _wait_for(ledger, deadline: float | None, interval: float):
    """Wait for the ledger to appear (the first `meterfox serve` creates it); a connection to
    it, or None when the deadline passed first."""
    import time

    while deadline is None or time.monotonic() < deadline:
        conn = ledger.read_connection()
        if conn is not None:
            return conn
        time.sleep(interval)
    return ledger.read_connection()


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option("--since", default=None, help=f"Start: {TIME_HELP}. Default: all.")
@click.option("--until", default=None, help="End (exclusive), same forms as --since.")
@filter_options
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of stdout.",
)
def export(
    fmt: str,
    since: str | None,
    until: str | None,
    providers: tuple[str, ...],
    models: tuple[str, ...],
    keys: tuple[str, ...],
    tags: tuple[str, ...],
    output: str | None,
) -> None:
    """Every request as one CSV row or JSON line, for spreadsheets and notebooks.

    Streams: rows are read and written one batch at a time, whatever the database's size.
    """
    from meterfox_cli.cli.common import current_ledger
    from meterfox_cli.report.export import write_export
    from meterfox_cli.store import feed
    from meterfox_cli.timewindow import parse_window

    window = parse_window(since, until)
    filters = make_filters(providers, models, keys, tags)
    conn = current_ledger().open_reader()
    if conn is None:
        write_export((), sys.stdout if output is None else _open(output), fmt)
        return
    rows = feed.export_rows(conn, window, filters)
    try:
        if output is None:
            write_export(rows, sys.stdout, fmt)
            sys.stdout.flush()
            return
        with _open(output) as out:
            written = write_export(rows, out, fmt)
        click.echo(f"{written:,} requests → {output}", err=True)
    except BrokenPipeError:  # `meterfox export | head`: the reader has all it wants.
        # As the Python docs advise: point stdout at devnull so the exit-time flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        rows.close()
        conn.close()


def _open(path: str):
    return open(path, "w", encoding="utf-8", newline="")


COMMANDS = [tail, export]
