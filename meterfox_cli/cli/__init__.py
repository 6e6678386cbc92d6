"""The `meterfox` command. Thin: each command parses, calls one core function, renders.

Heavy modules (aiohttp, rich, pricing data) are imported inside the commands that need them,
so `meterfox --help` starts fast.
"""

from __future__ import annotations

import click

from meterfox_cli import __version__
from meterfox_cli.cli import (
    alerts_cmd,
    completion,
    dashboard_cmd,
    db_cmd,
    doctor_cmd,
    feed_cmd,
    info,
    keys_cmd,
    pricing_cmd,
    report_cmd,
    serve_cmd,
    service_cmd,
    sync_cmd,
)
from meterfox_cli.errors import MeterFoxError


class MeterFoxGroup(click.Group):
    """Turns domain errors into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MeterFoxError as exc:
            click.echo(f"meterfox: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=MeterFoxGroup)
@click.version_option(__version__, prog_name="meterfox")
def main() -> None:
    """MeterFox: a local proxy that records what every AI API call costs.

    Run `meterfox serve`, point your app's base URL at it (`meterfox providers` lists them,
    `eval "$(meterfox env)"` sets them), then ask `meterfox report`.
    """


for command in (
    *serve_cmd.COMMANDS,
    *dashboard_cmd.COMMANDS,
    *info.COMMANDS,
    *report_cmd.COMMANDS,
    *feed_cmd.COMMANDS,
    *pricing_cmd.COMMANDS,
    *keys_cmd.COMMANDS,
    *doctor_cmd.COMMANDS,
    *sync_cmd.COMMANDS,
    *db_cmd.COMMANDS,
    *service_cmd.COMMANDS,
    *completion.COMMANDS,
    *alerts_cmd.COMMANDS,
):
    main.add_command(command)
