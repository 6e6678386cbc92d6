"""`meterfox keys …`: provider keys in the keyring (indexed in this machine's file), proxy keys
for apps and their budgets (in the ledger: the local file, or the PostgreSQL server a team
shares)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import click

from meterfox_cli.cli.common import (
    Settings,
    current_ledger,
    default_base,
    load_settings,
    prompt_passphrase,
)
from meterfox_cli.cli.completion import complete_key_names, complete_providers
from meterfox_cli.errors import KeyError_

if TYPE_CHECKING:
    import sqlite3

    from meterfox_cli.keys.provider_keys import StoreChoice
    from meterfox_cli.keys.proxy_keys import KeyListing, NewKey
    from meterfox_cli.store.dialect import LedgerConnection

MAX_KEY_CHARS = 16 * 1024


class SectionedGroup(click.Group):
    """A group whose --help lists its commands under titled sections, in the order they were
    added: each `@group.command(..., section=TITLE)` names the section it belongs to."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sections: dict[str, list[str]] = {}

    def command(self, *args, section: str, **kwargs):
        add = super().command(*args, **kwargs)

        def register(function) -> click.Command:
            command = add(function)
            self.sections.setdefault(section, []).append(command.name)
            return command

        return register

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sectioned = {name for names in self.sections.values() for name in names}
        others = [name for name in self.list_commands(ctx) if name not in sectioned]
        shown = {
            title: [(name, self.commands[name]) for name in names if not self.commands[name].hidden]
            for title, names in {**self.sections, "Other commands": others}.items()
        }
        width = max((len(name) for rows in shown.values() for name, _ in rows), default=0)
        limit = formatter.width - 6 - width
        for title, rows in shown.items():
            if rows:
                with formatter.section(title):
                    # Names padded to one width, so both sections' help texts line up.
                    formatter.write_dl(
                        [(name.ljust(width), cmd.get_short_help_str(limit)) for name, cmd in rows]
                    )


PROVIDER_KEYS = "Provider keys (your own API keys, held by MeterFox)"
PROXY_KEYS = "Proxy keys (mf-… keys your apps use in their place)"


@click.group(cls=SectionedGroup)
def keys() -> None:
    """Provider keys (kept in the OS keyring) and the proxy keys apps use instead.

    An app given a proxy key never holds the provider key: MeterFox swaps it in on the way out,
    records the request under the proxy key's name, and refuses it the moment it is revoked.
    """


@keys.command("set", section=PROVIDER_KEYS)
@click.argument("provider", shell_complete=complete_providers)
def set_key(provider: str) -> None:
    """Store PROVIDER's API key: typed at a hidden prompt, or piped in.

    echo "$OPENAI_API_KEY" | meterfox keys set openai

    The admin keys `meterfox sync` reads go here too: openai-admin, anthropic-admin,
    openrouter-admin.
    """
    from meterfox_cli.keys.provider_keys import ProviderKeys

    with _local() as (settings, conn):
        slug = _provider_slug(settings, provider)
        choice = _store_choice(settings)
        secret = _read_secret(slug)
        store = ProviderKeys(conn, choice).set(slug, secret)
    click.echo(f"Stored the {slug} key in the {store.label}.")
    click.echo("A running `meterfox serve` uses it within a second.", err=True)


@keys.command("unset", section=PROVIDER_KEYS)
@click.argument("provider", shell_complete=complete_providers)
def unset_key(provider: str) -> None:
    """Delete PROVIDER's stored API key."""
    from meterfox_cli.keys.provider_keys import ProviderKeys

    with _local() as (settings, conn):
        slug = _provider_slug(settings, provider)
        removed = ProviderKeys(conn, _store_choice(settings)).unset(slug)
    if not removed:
        raise KeyError_(f"no {slug} key is stored: `meterfox keys providers` lists them")
    click.echo(f"Deleted the {slug} key.")


@keys.command("providers", section=PROVIDER_KEYS)
def list_providers() -> None:
    """List the providers that have a stored key (never the key)."""
    from meterfox_cli.keys.provider_keys import stored_keys

    with _local() as (_settings, conn):
        stored = stored_keys(conn)
    if not stored:
        click.echo("No provider keys stored: `meterfox keys set PROVIDER` adds one.")
    for entry in stored:
        click.echo(f"{entry.provider:<12} {_when(entry.set_at):<17} {_store_name(entry.store)}")


@keys.command("create", section=PROXY_KEYS)
@click.argument("name")
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="A provider the key may call (repeatable; default: every provider).",
    shell_complete=complete_providers,
)
@click.option("--expires", default=None, help="Lifetime: 30d, 12h, 2w (default: never).")
@click.option("--budget", default=None, help="Spend limit: 25/month, 2/day, 10/week (USD).")
@click.option("--tag", "tags", multiple=True, metavar="NAME=VALUE", help="Tag every request.")
@click.option(
    "--allow-unpriced",
    is_flag=True,
    help="With --budget: let through requests MeterFox cannot price (they count as $0).",
)
def create(
    name: str,
    providers: tuple[str, ...],
    expires: str | None,
    budget: str | None,
    tags: tuple[str, ...],
    allow_unpriced: bool,
) -> None:
    """Mint a proxy key NAME for an app, and print it (the only time it is shown).

    The app uses it as its API key, with its base URL pointed at MeterFox.
    """
    from meterfox_cli.keys.proxy_keys import create_key, key_spec

    with _ledger() as (settings, conn):
        spec = key_spec(
            settings.registry,
            name,
            providers=providers,
            expires=expires,
            budget=budget,
            tags=tags,
            allow_unpriced=allow_unpriced,
        )
        new = create_key(conn, spec)
    _show_new_key(settings, new, "Created")


@keys.command("list", section=PROXY_KEYS)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def list_keys(fmt: str) -> None:
    """List proxy keys: prefix, providers, last use, spend this period, budget, status."""
    from meterfox_cli.keys.proxy_keys import list_keys as core_list

    with _ledger() as (_settings, conn):
        listings = core_list(conn)
    if fmt == "json":
        import json

        from meterfox_cli.keys.proxy_keys import listing_fields

        click.echo(json.dumps([listing_fields(item) for item in listings], indent=2))
        return
    if not listings:
        click.echo("No proxy keys: `meterfox keys create NAME` mints one.")
        return
    _render_table(listings)


@keys.command("revoke", section=PROXY_KEYS)
@click.argument("name", shell_complete=complete_key_names)
def revoke(name: str) -> None:
    """Revoke the key NAME: a running `meterfox serve` refuses it within a second."""
    from meterfox_cli.keys.proxy_keys import revoke_key

    with _ledger() as (_settings, conn):
        key = revoke_key(conn, name)
    click.echo(f"Revoked {key.name} ({key.prefix}…).")


@keys.command("rotate", section=PROXY_KEYS)
@click.argument("name", shell_complete=complete_key_names)
@click.option("--expires", default=None, help="Lifetime of the new key (default: the old one's).")
def rotate(name: str, expires: str | None) -> None:
    """Mint a new key under NAME (same rules) and revoke the old one."""
    from meterfox_cli.keys.proxy_keys import parse_duration, rotate_key

    with _ledger() as (settings, conn):
        new = rotate_key(conn, name, parse_duration(expires) if expires else None)
    _show_new_key(settings, new, "Rotated")


@keys.command("budget", section=PROXY_KEYS)
@click.argument("name", shell_complete=complete_key_names)
@click.argument("budget")
@click.option(
    "--allow-unpriced/--refuse-unpriced",
    default=None,
    help="Let through, or refuse, requests MeterFox cannot price (default: as before; a new "
    "key refuses them).",
)
def set_budget(name: str, budget: str, allow_unpriced: bool | None) -> None:
    """Set the key NAME's budget (25/month, 2/day, 10/week), or remove it with `none`.

    A budgeted key reserves each request's worst case (its max_tokens at the model's rates)
    while it runs, and refuses requests MeterFox cannot price unless --allow-unpriced.
    """
    from meterfox_cli.keys.budget import parse_budget
    from meterfox_cli.keys.proxy_keys import set_budget as core_set_budget

    parsed = None if budget.strip().lower() == "none" else parse_budget(budget)
    with _ledger() as (_settings, conn):
        key = core_set_budget(conn, name, parsed, allow_unpriced)
    unpriced = "allowed" if key.allow_unpriced else "refused"
    click.echo(f"{key.name}: budget {key.budget or 'none'}; unpriced requests {unpriced}.")


@contextlib.contextmanager
def _local() -> Iterator[tuple[Settings, sqlite3.Connection]]:
    """This machine's file, where the index of its provider keys lives."""
    from meterfox_cli.store.db import connect

    settings = load_settings()
    settings.paths.ensure()
    conn = connect(settings.paths.database)
    try:
        yield settings, conn
    finally:
        conn.close()


@contextlib.contextmanager
def _ledger() -> Iterator[tuple[Settings, LedgerConnection]]:
    """The ledger, where proxy keys and budgets live (a PostgreSQL one behind or ahead of
    this version is refused in a sentence)."""
    settings = load_settings()
    settings.paths.ensure()
    conn = current_ledger(settings).open_writer()
    try:
        yield settings, conn
    finally:
        conn.close()


def _store_choice(settings: Settings) -> StoreChoice:
    from meterfox_cli.keys.provider_keys import choose_store

    return choose_store(settings.paths.data_dir, prompt_passphrase)


def _provider_slug(settings: Settings, name: str) -> str:
    """A provider's slug, or the name of an admin key `meterfox sync` reads (openai-admin…)."""
    from meterfox_cli.sync.sources import ADMIN_KEY_NAMES

    if name.strip().lower() in ADMIN_KEY_NAMES:
        return name.strip().lower()
    provider = settings.registry.get(name.strip().lower())
    if provider is None:
        raise KeyError_(f"no provider named {name!r}: `meterfox providers` lists them")
    return provider.slug


def _read_secret(slug: str) -> str:
    if sys.stdin.isatty():
        return click.prompt(f"{slug} API key", hide_input=True, err=True)
    secret = sys.stdin.read(MAX_KEY_CHARS + 1)
    if len(secret) > MAX_KEY_CHARS:
        raise KeyError_(f"the input is longer than any API key: pipe in the {slug} key alone")
    return secret


def _show_new_key(settings: Settings, new: NewKey, verb: str) -> None:
    key = new.key
    click.echo(new.secret)
    rules = [f"providers: {', '.join(key.providers) or 'any'}"]
    if key.expires_at is not None:
        rules.append(f"expires {_when(key.expires_at)}")
    if key.budget is not None:
        rules.append(f"budget {key.budget}")
        rules.append(f"unpriced requests {'allowed' if key.allow_unpriced else 'refused'}")
    if key.tags:
        rules.append("tags " + ", ".join(f"{k}={v}" for k, v in key.tags))
    click.echo(f"{verb} proxy key {key.name!r} ({'; '.join(rules)}).", err=True)
    click.echo("It is shown only this once: give it to the app now.", err=True)
    click.echo(
        f"The app uses it as its API key, with base URL {default_base(settings)}/<provider>…",
        err=True,
    )


def _when(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _store_name(store_id: str) -> str:
    return "encrypted file" if store_id == "file" else store_id.replace("keyring:", "keyring ")


def _render_table(listings: list[KeyListing]) -> None:
    from rich.console import Console
    from rich.table import Table

    from meterfox_cli.money import format_usd

    table = Table(box=None, header_style="bold")
    for column in ("name", "key", "providers", "created", "last used", "spent", "budget"):
        table.add_column(column, no_wrap=column in ("name", "key"))
    table.add_column("status")
    colours = {"active": "green", "revoked": "red", "expired": "yellow"}
    for item in listings:
        key = item.key
        table.add_row(
            key.name,
            f"{key.prefix}…",
            ", ".join(key.providers) or "any",
            _when(key.created_at)[:10],
            _when(item.last_used),
            f"{format_usd(item.spend_nanousd)} this {item.spend_period}",
            str(key.budget) if key.budget else "-",
            f"[{colours[item.status]}]{item.status}[/]",
        )
    # Piped output is not cut to 80 columns: a prefix must stay whole to be recognised.
    Console(width=None if sys.stdout.isatty() else 200).print(table)


COMMANDS = [keys]
