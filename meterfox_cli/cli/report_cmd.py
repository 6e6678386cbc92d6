"""`meterfox report` and `meterfox chart`.

Only click is imported at module level: rich, the store and the query code load inside the
commands, so `meterfox --help` and `meterfox report --help` stay fast.
"""

from __future__ import annotations

import sys

import click

from meterfox_cli.cli.completion import complete_dimensions
from meterfox_cli.cli.filters import TIME_HELP, filter_options, make_filters

FORMATS = ("table", "json", "csv", "markdown")


@click.command()
@click.option(
    "--by",
    shell_complete=complete_dimensions,
    default="provider,model",
    show_default=True,
    help="One or more of provider, model, key, endpoint, host, day, week, month, tag:NAME "
    "(comma-separated, e.g. provider,model or day,tag:feature).",
)
@click.option("--since", default=None, help=f"Start: {TIME_HELP}. Default: this month.")
@click.option("--until", default=None, help="End (exclusive), same forms as --since.")
@filter_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 if any request in range is unpriced.")
@click.option(
    "--fail-over",
    "fail_over",
    default=None,
    metavar="USD",
    help="For CI: exit 1 with one line, and no report, when the spend in range is over USD.",
)
@click.option(
    "--source",
    type=click.Choice(["proxy", "billed"]),
    default="proxy",
    show_default=True,
    help="What the proxy recorded, or what the providers billed (`meterfox sync` first).",
)
def report(
    by: str,
    since: str | None,
    until: str | None,
    providers: tuple[str, ...],
    models: tuple[str, ...],
    keys: tuple[str, ...],
    tags: tuple[str, ...],
    fmt: str,
    strict: bool,
    source: str,
    fail_over: str | None,
) -> None:
    """Where the money goes: cost, tokens, errors and latency per group, most expensive first.

    Alone it shows this month by provider and model. JSON and CSV keep exact numbers and
    stable field names; `--by day` adds a spend bar per day (see also `meterfox chart`).
    """
    from meterfox_cli.cli.common import current_ledger, default_base, load_settings
    from meterfox_cli.errors import MeterFoxError
    from meterfox_cli.report.empty import getting_started
    from meterfox_cli.report.formats import to_csv, to_json
    from meterfox_cli.report.table import to_markdown
    from meterfox_cli.store.dimensions import parse_dimensions
    from meterfox_cli.store.queries import empty_report, read_report
    from meterfox_cli.timewindow import describe, resolve_window

    dims = parse_dimensions(by)
    window = resolve_window(since, until)
    filters = make_filters(providers, models, keys, tags)
    limit = _usd_limit(fail_over)
    if source == "billed":
        result = _billed(dims, window, filters)
        if result is None:
            raise MeterFoxError("nothing synced yet: `meterfox sync` pulls what was billed")
    else:
        result = read_report(current_ledger(), dims, window, filters)
    if result is None:
        directions = getting_started(default_base(load_settings()))
        if fmt in ("table", "markdown"):
            click.echo(directions)
            return
        click.echo(directions, err=True)  # pipes still get a well-formed, empty result
        result = empty_report(dims, window, filters)
    if limit is not None:
        _fail_if_over(result, limit, describe(window))
    if not result.rows and fmt in ("table", "markdown"):
        click.echo(f"No requests match, {describe(window)}; try --since all or fewer filters.")
    elif fmt == "json":
        click.echo(to_json(result))
    elif fmt == "csv":
        click.echo(to_csv(result), nl=False)
    elif fmt == "markdown":
        click.echo(to_markdown(result), nl=False)
    else:
        billed = "Billed (from the providers) by" if source == "billed" else "Spend by"
        title = f"{billed} {', '.join(dims)} · {describe(window)}"
        _show_table(result, title)
    if strict and result.total.unpriced_requests:
        click.echo(
            f"meterfox: {result.total.unpriced_requests:,} requests in range are unpriced "
            "(--strict)",
            err=True,
        )
        sys.exit(1)


@click.command()
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366))
@click.option(
    "--by",
    shell_complete=complete_dimensions,
    default="provider",
    show_default=True,
    help="Stack each day's bar by provider, model, key, endpoint or tag:NAME.",
)
@filter_options
def chart(
    days: int,
    by: str,
    providers: tuple[str, ...],
    models: tuple[str, ...],
    keys: tuple[str, ...],
    tags: tuple[str, ...],
) -> None:
    """Daily spend for the last N days as bars in the terminal, stacked by provider or model."""
    from meterfox_cli.cli.common import current_ledger, default_base, load_settings
    from meterfox_cli.errors import MeterFoxError
    from meterfox_cli.report.chart import day_range, render_chart
    from meterfox_cli.report.empty import getting_started
    from meterfox_cli.store.dimensions import TIME_DIMENSIONS, parse_dimensions
    from meterfox_cli.store.queries import read_report
    from meterfox_cli.store.select import TimeRange
    from meterfox_cli.timewindow import day_start

    dims = parse_dimensions(by)
    if len(dims) != 1 or dims[0] in TIME_DIMENSIONS:
        raise MeterFoxError("chart --by takes one of provider, model, key, endpoint, tag:NAME")
    first, last = day_range(days)
    filters = make_filters(providers, models, keys, tags)
    window = TimeRange(day_start(first), None)
    result = read_report(current_ledger(), ("day", dims[0]), window, filters, latency=False)
    if result is None:
        click.echo(getting_started(default_base(load_settings())))
        return
    render_chart(result, _console(), first_day=first, last_day=last)


def _usd_limit(text: str | None):
    """`--fail-over 25` (or `$25`, `25.50`) as a Decimal of USD."""
    from decimal import Decimal, InvalidOperation

    if text is None:
        return None
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise click.BadParameter(
            f"{text!r}: expected USD, e.g. 25 or 2.50", param_hint="--fail-over"
        )
    return amount


def _fail_if_over(result, limit, window: str) -> None:
    """One line and exit 1 when the report's priced spend is over `limit` USD."""
    from meterfox_cli.money import exact_usd, human_usd

    spend = result.total.cost_usd or 0
    if spend > limit:
        click.echo(
            f"meterfox: spend {human_usd(spend)} is over --fail-over {exact_usd(limit)} ({window})",
            err=True,
        )
        sys.exit(1)


def _billed(dims, window, filters):
    """The billed buckets as a report (None when nothing was ever synced)."""
    from meterfox_cli.cli.common import current_ledger
    from meterfox_cli.store.billed import billed_report, sync_states

    ledger = current_ledger()
    existing = ledger.read_connection()
    if existing is None:  # no ledger yet: nothing synced (and none is made here)
        return None
    existing.close()
    conn = ledger.open_writer()  # the schema current (SQLite migrates; PostgreSQL is checked)
    try:
        if not sync_states(conn):
            return None
        return billed_report(conn, dims, window, filters)
    finally:
        conn.close()


def _show_table(result, title: str) -> None:
    """rich's table for a short report in a terminal; the plain one (same columns and cells,
    no measuring pass: rich takes ~1 s over 1,365 rows) for a long one, or for a pipe."""
    import shutil

    from meterfox_cli.report.table import RICH_MAX_ROWS, plain_table, render_table

    if sys.stdout.isatty() and len(result.rows) <= RICH_MAX_ROWS:
        render_table(result, _console(), title=title)
        return
    width = shutil.get_terminal_size().columns  # COLUMNS, the terminal, else 80: as rich
    click.echo(plain_table(result, width=width, title=title), nl=False)


def _console():
    from rich.console import Console

    return Console(highlight=False)


COMMANDS = [report, chart]
