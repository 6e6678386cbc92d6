"""What several commands share: resolving paths, config and the provider registry; the base URL
they print; the passphrase prompt that unlocks the encrypted key file (keys and serve)."""

from __future__ import annotations

import contextlib
import os
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from meterfox_cli.config import Config, ledger_url, load_config
from meterfox_cli.errors import ConfigError
from meterfox_cli.paths import Paths, resolve_paths

if TYPE_CHECKING:
    from meterfox_cli.pricing.book import PriceBook
    from meterfox_cli.providers.registry import Registry
    from meterfox_cli.store.backend import Ledger


@dataclass(frozen=True)
class Settings:
    paths: Paths
    config: Config
    registry: Registry


def load_settings(upstreams: dict[str, str] | None = None) -> Settings:
    from meterfox_cli.providers.registry import build_registry

    paths = resolve_paths()
    config = load_config(paths.config_file)
    registry = build_registry(config.providers, upstreams)
    return Settings(paths, config, registry)


def current_ledger(settings: Settings | None = None) -> Ledger:
    """The ledger commands record to and report from: METERFOX_DATABASE_URL or `[store] url`
    (PostgreSQL), else the local SQLite file, as when nothing is set."""
    from meterfox_cli.store.backend import ledger_at

    if settings is None:
        paths = resolve_paths()
        url = ledger_url(load_config(paths.config_file), os.environ)
        return ledger_at(url, paths.database)
    return ledger_at(ledger_url(settings.config, os.environ), settings.paths.database)


def price_book(settings: Settings) -> PriceBook:
    """The config's price overrides, with its `[pricing] prices_file` loaded if it names one,
    and the genai-prices id of each provider in the registry."""
    from meterfox_cli.pricing.book import PriceBook

    pricing_ids = settings.registry.pricing_ids()
    try:
        return PriceBook.load(settings.config.pricing, settings.paths.config_dir, pricing_ids)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[pricing] prices_file: {exc}") from exc


def parse_upstreams(values: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--upstream {value!r}: expected NAME=URL")
        parsed[name.strip()] = url.strip()
    return parsed


def default_base(settings: Settings) -> str:
    host = settings.config.host
    host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    scheme = "https" if settings.config.tls else "http"
    return f"{scheme}://{host}:{settings.config.port}"


def daemon_tls(settings: Settings) -> ssl.SSLContext | None:
    """How this CLI trusts its own daemon on HTTPS: the system's CAs and the configured
    certificate itself (self-signed or not); None on plain HTTP."""
    if settings.config.tls is None:
        return None
    context = ssl.create_default_context()
    with contextlib.suppress(OSError, ssl.SSLError):  # unreadable: the system's CAs decide
        context.load_verify_locations(cafile=settings.config.tls.cert)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def prompt_passphrase(new: bool) -> str:
    """METERFOX_PASSPHRASE or METERFOX_PASSPHRASE_FILE, else a hidden prompt when there is a
    terminal, else a clear error."""
    from meterfox_cli.keys.provider_keys import env_passphrase, has_env_passphrase

    if has_env_passphrase(os.environ) or not sys.stdin.isatty():
        return env_passphrase()(new)
    if new:
        click.echo("No OS keyring here: provider keys go in an encrypted file.", err=True)
    return click.prompt(
        "Passphrase for the MeterFox key file" + (" (new)" if new else ""),
        hide_input=True,
        confirmation_prompt=new,
        err=True,
    )
