"""The `meterfox` command. Thin: each command parses, calls one core function, renders.

Heavy modules (aiohttp, rich, pricing data) are imported inside the commands that need them,
so `meterfox --help` starts fast; each command's module is imported only when it runs.
"""

from __future__ import annotations

from importlib import import_module

import click

from meterfox_cli import __version__
from meterfox_cli.errors import MeterFoxError

# Each command, by the module defining it (in its COMMANDS): a module is imported only when one
# of its commands runs, or for `--help` and completion, which list them all; so `serve` does
# not load the report, keys, sync or service commands (tests/cli/test_lazy_commands.py keeps
# this table and the modules' COMMANDS in step).
COMMAND_MODULES: dict[str, str] = {
    "serve": "serve_cmd",
    "dashboard": "dashboard_cmd",
    "providers": "info",
    "env": "info",
    "paths": "info",
    "report": "report_cmd",
    "chart": "report_cmd",
    "tail": "feed_cmd",
    "export": "feed_cmd",
    "prices": "pricing_cmd",
    "explain": "pricing_cmd",
    "reprice": "pricing_cmd",
    "keys": "keys_cmd",
    "doctor": "doctor_cmd",
    "sync": "sync_cmd",
    "reconcile": "sync_cmd",
    "db": "db_cmd",
    "status": "service_cmd",
    "service": "service_cmd",
    "completion": "completion",
    "alerts": "alerts_cmd",
}


class MeterFoxGroup(click.Group):
    """Turns domain errors into one line on stderr and exit code 2, never a traceback; loads
    each command's module when the command is asked for (COMMAND_MODULES)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            for command in import_module(f"meterfox_cli.cli.{module}").COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)

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
