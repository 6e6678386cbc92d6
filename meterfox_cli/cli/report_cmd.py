"""`meterfox report`."""

from __future__ import annotations

import time
from datetime import datetime

import click

from meterfox_cli.errors import MeterFoxError


@click.command()
@click.option(
    "--by",
    "by",
    default="model",
    show_default=True,
    help="model, provider, endpoint, day, key or tag:NAME.",
)
@click.option("--since", default=None, help="Start: 7d, 24h, 30m, or a date (2026-11-01).")
@click.option("--until", default=None, help="End (exclusive), same forms as --since.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def report(by: str, since: str | None, until: str | None, fmt: str) -> None:
    """What your AI calls cost, grouped by model, provider, endpoint, day, key or tag."""
    from meterfox_cli import report as render
    from meterfox_cli.cli.common import load_settings
    from meterfox_cli.store.db import connect
    from meterfox_cli.store.queries import TimeRange, group_by

    settings = load_settings()
    window = TimeRange(parse_when(since), parse_when(until))
    conn = connect(settings.paths.database, readonly=True)
    try:
        rows = group_by(conn, by.strip().lower() if not by.startswith("tag:") else by, window)
    finally:
        conn.close()
    if fmt == "json":
        click.echo(render.to_json(rows))
    elif fmt == "csv":
        click.echo(render.to_csv(rows), nl=False)
    else:
        from rich.console import Console

        render.render_table(rows, by, Console())


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(value: str | None, now: float | None = None) -> float | None:
    """`7d` / `24h` / `30m` / `2w` ago, or an ISO date or datetime (local time), as unix seconds."""
    if value is None:
        return None
    text = value.strip().lower()
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return (now if now is not None else time.time()) - int(text[:-1]) * _UNITS[text[-1]]
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError as exc:
        raise MeterFoxError(f"cannot read time {value!r}: use 7d, 24h, 30m or 2026-11-01") from exc


COMMANDS = [report]
