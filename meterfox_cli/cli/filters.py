"""The request filters (--provider/--model/--key/--tag) and --since help shared by the commands
that read recorded requests: report, chart, tail and export.

Only click is imported at module level; the query types load when a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from meterfox_cli.cli.completion import complete_key_names, complete_providers

if TYPE_CHECKING:
    from meterfox_cli.store.select import Filters

TIME_HELP = "7d, 24h, 30m, 2w, today, month, all, or a date/time (2026-11-01)"


def filter_options(command: Callable) -> Callable:
    """--provider / --model / --key / --tag, shared by report, chart, tail and export."""
    options = [
        click.option(
            "--provider",
            "providers",
            multiple=True,
            help="Only this provider.",
            shell_complete=complete_providers,
        ),
        click.option("--model", "models", multiple=True, help="Only this model."),
        click.option(
            "--key",
            "keys",
            multiple=True,
            help="Only this proxy key name.",
            shell_complete=complete_key_names,
        ),
        click.option(
            "--tag", "tags", multiple=True, metavar="NAME=VALUE", help="Only requests so tagged."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_filters(
    providers: tuple[str, ...],
    models: tuple[str, ...],
    keys: tuple[str, ...],
    tags: tuple[str, ...],
) -> Filters:
    from meterfox_cli.store.select import parse_filters

    return parse_filters(providers, models, keys, tags)
