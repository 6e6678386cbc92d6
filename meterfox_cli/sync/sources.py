"""The providers `meterfox sync` can read, and their admin credentials: the environment variable
wins (CI, cron), else the key stored with `meterfox keys set NAME-admin`."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from meterfox_cli.keys.provider_keys import ProviderKeys, StoreChoice
from meterfox_cli.store.billed import BilledBucket
from meterfox_cli.sync import anthropic, openai, openrouter
from meterfox_cli.sync.buckets import PriceFn
from meterfox_cli.sync.http import AdminClient
from meterfox_cli.sync.pages import OnPage

Fetch = Callable[[AdminClient, int, int, OnPage, PriceFn | None], list[BilledBucket]]


@dataclass(frozen=True)
class Source:
    name: str  # our provider slug
    key_name: str  # what `meterfox keys set` stores the admin key as
    key_env: str
    refused_hint: str
    client: Callable[[str, str], AdminClient]
    fetch: Fetch
    chunk_days: int = 7  # one transaction per chunk: the most a failure can cost
    # How far back the API reaches, and whether it publishes only complete UTC days (then a
    # sync stops at today's midnight): a window outside these is never asked, nor replaced.
    history_days: int | None = None
    complete_days_only: bool = False


def _source(module: ModuleType) -> Source:
    return Source(
        module.NAME,
        module.KEY_NAME,
        module.KEY_ENV,
        module.REFUSED_HINT,
        module.client,
        module.fetch,
        history_days=getattr(module, "HISTORY_DAYS", None),
        complete_days_only=getattr(module, "COMPLETE_DAYS_ONLY", False),
    )


SOURCES: dict[str, Source] = {m.NAME: _source(m) for m in (openai, anthropic, openrouter)}
ADMIN_KEY_NAMES: dict[str, str] = {s.key_name: s.name for s in SOURCES.values()}


def source(name: str) -> Source | None:
    return SOURCES.get(name.strip().lower())


def admin_key(
    src: Source,
    conn: sqlite3.Connection,
    choice: Callable[[], StoreChoice],
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The admin key for `src`: its environment variable, else the stored one, else None.
    The key store is opened only when a key is stored (it may ask for a passphrase)."""
    env = os.environ if environ is None else environ
    if value := env.get(src.key_env, "").strip():
        return value
    keys = ProviderKeys(conn, _Lazy(choice))  # type: ignore[arg-type]
    stored = keys.stored_in(src.key_name)
    return None if stored is None else keys.read(stored)


def configured(conn: sqlite3.Connection, environ: Mapping[str, str] | None = None) -> list[Source]:
    """The sources with an admin key in the environment or in the store (not read here)."""
    env = os.environ if environ is None else environ
    stored = {row[0] for row in conn.execute("SELECT provider FROM provider_keys")}
    return [s for s in SOURCES.values() if env.get(s.key_env, "").strip() or s.key_name in stored]


class _Lazy:
    """A StoreChoice made on first use (it may prompt for the key file's passphrase)."""

    def __init__(self, make: Callable[[], StoreChoice]) -> None:
        self._make = make
        self._choice: StoreChoice | None = None

    def __getattr__(self, name: str):
        if self._choice is None:
            self._choice = self._make()
        return getattr(self._choice, name)
