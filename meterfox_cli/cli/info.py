"""`meterfox providers`, `meterfox env`, `meterfox paths`."""

from __future__ import annotations

import os

import click

from meterfox_cli.cli.common import default_base, load_settings
from meterfox_cli.config import ledger_url, masked_url


@click.command()
def providers() -> None:
    """List each provider's slug, upstream, and the base URL to give its SDK."""
    settings = load_settings()
    base = default_base(settings)
    rows = [
        (p.slug, f"{base}/{p.slug}{p.sdk_path}", p.base_url, p.wire.name) for p in settings.registry
    ]
    width = max(len(url) for _, url, _, _ in rows)
    for slug, url, upstream, wire in rows:
        click.echo(f"{slug:<12} {url:<{width}}  → {upstream}  ({wire} format)")


_SHELLS = {
    "bash": 'export {name}="{value}"',
    "zsh": 'export {name}="{value}"',
    "fish": 'set -gx {name} "{value}"',
    "powershell": '$Env:{name} = "{value}"',
}


@click.command()
@click.option("--shell", type=click.Choice(sorted(_SHELLS)), default="bash", show_default=True)
def env(shell: str) -> None:
    """Print the environment lines that point the official SDKs at MeterFox.

    `eval "$(meterfox env)"` routes an existing app through the proxy with no code change.
    """
    settings = load_settings()
    base = default_base(settings)
    for provider in settings.registry:
        if provider.sdk_env:
            value = f"{base}/{provider.slug}{provider.sdk_path}"
            click.echo(_SHELLS[shell].format(name=provider.sdk_env, value=value))


@click.command()
def paths() -> None:
    """Show where MeterFox keeps its config, database and logs."""
    settings = load_settings()
    p = settings.paths
    click.echo(f"config    {p.config_file}")
    click.echo(f"database  {p.database}")
    url = ledger_url(settings.config, os.environ)
    if url is not None:
        click.echo(f"ledger    {masked_url(url)}")
        click.echo(f"outbox    {p.outbox}")
    click.echo(f"logs      {p.log_file}")


COMMANDS = [providers, env, paths]
