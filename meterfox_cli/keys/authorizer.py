"""The proxy's key check: MeterFox proxy keys in, provider keys out, without blocking the loop.

`decide` runs on the event loop for every request and only reads an immutable `KeySnapshot`:
a dict lookup by the presented key's SHA-256, a clock read, a budget comparison. Everything
that blocks (SQLite, the keyring, scrypt) happens in one watcher thread, which every
`poll_s` (0.25 s) reads the key version counter (one indexed row) and, when it moved, reloads
the keys and re-reads only the provider keys whose index entry changed. So a `keys revoke`
reaches a running daemon within `poll_s` plus one read, and a `keys set` without a restart.

Budgets are checked against the watcher's spend counts, refreshed on the same tick: a key can
overshoot by what its requests in flight (and the record writer's queue) cost in that window.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.keys.budget import Period, SpendCounter, next_period_start
from meterfox_cli.keys.provider_keys import ProviderKeys, StoreChoice, StoredKey, stored_keys
from meterfox_cli.keys.proxy_keys import KeyStatus, ProxyKey, all_keys, hash_secret
from meterfox_cli.money import format_usd
from meterfox_cli.proxy.auth import PASSTHROUGH, Authorizer, Credential, Decision, is_proxy_key
from meterfox_cli.records import PASSTHROUGH_KEY
from meterfox_cli.store.db import connect

log = logging.getLogger("meterfox.keys")

POLL_S = 0.25
RETRY_S = 10.0  # a provider key that could not be read is tried again this often
# The record of a request made with a key MeterFox does not know: never the key itself.
UNKNOWN_KEY_NAME = "(unknown-proxy-key)"


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """The watcher's copy of one provider key: read from `entry`, or why it could not be."""

    entry: StoredKey
    secret: str | None
    error: str | None


@dataclass(frozen=True)
class KeySnapshot:
    """Everything `decide` reads, replaced whole by the watcher (never mutated)."""

    keys: Mapping[bytes, ProxyKey] = field(default_factory=dict)
    provider_keys: Mapping[str, str] = field(default_factory=dict)
    provider_key_errors: Mapping[str, str] = field(default_factory=dict)
    spend: Mapping[str, int] = field(default_factory=dict)


class KeyAuthorizer(Authorizer):
    """Checks `mf-` proxy keys and swaps in the provider key; passes other credentials through
    (or, with `require_proxy_key`, refuses them)."""

    def __init__(
        self,
        db_path: Path,
        choice: StoreChoice | Callable[[], StoreChoice],
        *,
        require_proxy_key: bool = False,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.require_proxy_key = require_proxy_key
        self.snapshot = KeySnapshot()
        self._watcher = KeyWatcher(db_path, choice, poll_s, clock, self._publish)
        self._clock = clock

    def start(self) -> None:
        self._watcher.start()

    def close(self) -> None:
        self._watcher.close()

    def _publish(self, snapshot: KeySnapshot) -> None:
        self.snapshot = snapshot  # one reference swap: atomic for the loop's readers

    def decide(self, provider_slug: str, credential: Credential | None) -> Decision:
        if credential is None or not is_proxy_key(credential.secret):
            return _REQUIRED if self.require_proxy_key else PASSTHROUGH
        snapshot = self.snapshot
        key = snapshot.keys.get(hash_secret(credential.secret))
        if key is None:
            return _refuse(
                UNKNOWN_KEY_NAME,
                401,
                "MeterFox: unknown proxy key; check it was copied whole, or create one with "
                "`meterfox keys create NAME`",
                "invalid_proxy_key",
            )
        now = self._clock()
        refusal = _check_key(key, provider_slug, now, snapshot)
        if refusal is not None:
            return refusal
        secret = snapshot.provider_keys.get(provider_slug)
        if secret is None:
            why = snapshot.provider_key_errors.get(provider_slug)
            message = (
                f"MeterFox cannot read the {provider_slug} key: {why}"
                if why
                else f"MeterFox has no {provider_slug} key: run `meterfox keys set {provider_slug}`"
            )
            return _refuse(key.name, 401, message, "provider_key_missing")
        return Decision(key.name, replacement=secret, tags=key.tags)


_REQUIRED = Decision(
    PASSTHROUGH_KEY,
    status=401,
    message=(
        "MeterFox: this proxy only accepts MeterFox proxy keys (mf-…); ask its owner for one "
        "(`meterfox keys create NAME`)"
    ),
    error_kind="proxy_key_required",
)


def _refuse(name: str, status: int, message: str, kind: str) -> Decision:
    return Decision(name, status=status, message=message, error_kind=kind)


def _check_key(key: ProxyKey, provider: str, now: float, snapshot: KeySnapshot) -> Decision | None:
    status = key.status(now)
    if status is KeyStatus.REVOKED:
        return _refuse(
            key.name,
            401,
            f"MeterFox: proxy key {key.name!r} was revoked; ask its owner for the new one "
            f"(`meterfox keys rotate {key.name}`)",
            "proxy_key_revoked",
        )
    if status is KeyStatus.EXPIRED:
        return _refuse(
            key.name,
            401,
            f"MeterFox: proxy key {key.name!r} expired; ask its owner for a new one "
            f"(`meterfox keys rotate {key.name}`)",
            "proxy_key_expired",
        )
    if not key.allows(provider):
        return _refuse(
            key.name,
            401,
            f"MeterFox: proxy key {key.name!r} may not call {provider} (only "
            f"{', '.join(key.providers)}); use a key created with --provider {provider}",
            "proxy_key_not_allowed",
        )
    budget = key.budget
    spent = snapshot.spend.get(key.name, 0)
    if budget is not None and spent >= budget.nanousd:
        resets = datetime.fromtimestamp(next_period_start(budget.period, now))
        return _refuse(
            key.name,
            429,
            f"MeterFox: proxy key {key.name!r} has spent {format_usd(spent)} of its "
            f"{budget} budget; it resets {resets:%Y-%m-%d %H:%M}, or raise it with "
            f"`meterfox keys budget {key.name} AMOUNT/PERIOD`",
            "budget_exceeded",
        )
    return None


class KeyWatcher:
    """The one thread that reads keys, provider keys and spend, and publishes snapshots."""

    def __init__(
        self,
        db_path: Path,
        choice: StoreChoice | Callable[[], StoreChoice],
        poll_s: float,
        clock: Callable[[], float],
        publish: Callable[[KeySnapshot], None],
    ) -> None:
        self._db_path = db_path
        # A callable is resolved the first time a provider key must be read: choosing a store
        # imports and probes every keyring backend, which a passthrough-only daemon never needs.
        self._choice = choice
        self._poll_s = poll_s
        self._clock = clock
        self._publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterfox-keys", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._keys: list[ProxyKey] = []
        self._loaded: dict[str, LoadedKey] = {}
        self._spend = SpendCounter()
        self._failing = False
        self._retry_at = 0.0

    def start(self) -> None:
        """Load everything once (blocking), then keep it fresh in the background."""
        self._conn = connect(self._db_path)
        self.refresh()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.refresh()
            except (sqlite3.Error, MeterFoxError) as exc:
                if not self._failing:
                    log.error("cannot refresh keys (%s); keeping the last ones, retrying", exc)
                self._failing = True
            else:
                if self._failing:
                    log.warning("reading keys again")
                self._failing = False

    def refresh(self) -> None:
        conn = self._conn
        assert conn is not None
        version = conn.execute("SELECT version FROM key_state WHERE id = 1").fetchone()[0]
        unreadable = any(loaded.error for loaded in self._loaded.values())
        if version != self._version or (unreadable and time.monotonic() >= self._retry_at):
            keys = all_keys(conn)
            if self._loaded or stored_keys(conn):
                self._load_provider_keys(ProviderKeys(conn, self._store_choice()))
            self._keys = keys
            self._version = version
            self._retry_at = time.monotonic() + RETRY_S
        now = self._clock()
        periods: dict[str, Period] = {
            key.name: key.budget.period
            for key in self._keys
            if key.budget is not None and key.revoked_at is None
        }
        spend = self._spend.refresh(conn, periods, now)
        self._publish(
            KeySnapshot(
                keys={key.key_hash: key for key in self._keys},
                provider_keys={p: k.secret for p, k in self._loaded.items() if k.secret},
                provider_key_errors={p: k.error for p, k in self._loaded.items() if k.error},
                spend=spend,
            )
        )

    def _store_choice(self) -> StoreChoice:
        if not isinstance(self._choice, StoreChoice):
            self._choice = self._choice()
        return self._choice

    def _load_provider_keys(self, provider_keys: ProviderKeys) -> None:
        """Read the provider keys whose index entry is new or changed, or that could not be
        read last time; forget removed ones."""
        stored = {entry.provider: entry for entry in provider_keys.stored()}
        loaded = {p: k for p, k in self._loaded.items() if p in stored}
        for provider, entry in stored.items():
            previous = loaded.get(provider)
            if previous is not None and previous.entry == entry and previous.secret:
                continue
            try:
                secret = provider_keys.read(entry)
                error = None if secret else f"it is no longer in {entry.store}; set it again"
            except MeterFoxError as exc:
                secret, error = None, str(exc)
            if error and (previous is None or previous.error != error):
                log.error("cannot read the %s key: %s", provider, error)
            loaded[provider] = LoadedKey(entry, secret, error)
        self._loaded = loaded
