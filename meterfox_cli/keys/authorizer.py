"""The proxy's key check: MeterFox proxy keys in, provider keys out, without blocking the loop.

`decide` runs on the event loop for every request and only reads an immutable `KeySnapshot`:
a dict lookup by the presented key's SHA-256, a clock read, a budget comparison. Everything
that blocks (the ledger, the keyring, scrypt) happens in one watcher thread, which every
`poll_s` (0.25 s) reads the key version counters (one indexed row in the ledger, where proxy
keys live, and one in the local file, where the index of this machine's provider keys lives)
and, when one moved, reloads the keys and re-reads only the provider keys whose index entry
changed. So a `keys revoke` reaches a running daemon within `poll_s` plus one read, and a
`keys set` without a restart. A ledger that pushes changes (PostgreSQL's NOTIFY, through
`Ledger.watch_keys`) wakes the watcher at once; polling goes on beneath it, so a lost push
channel costs speed, never correctness. The watcher does not know which store it reads.

A proxy key `decide` does not know may have been created since the last poll: `look_up` waits
for a refresh that starts after it was asked (concurrent misses share one; refreshes forced this
way are at least FORCED_REFRESH_MIN_S apart), then answers from the new snapshot. A key still
unknown then goes in a bounded negative cache, emptied whenever the keys change: a flood of
bogus keys costs the database a few reads a second, whatever its size.

Budgets: `admit` reserves each request's worst case (keys/estimate.py), first in this
process's Ledger (a refusal there needs no I/O: what this process knows the key holds is part
of what the database holds), then, given the request's id, in the database's
`key_reservations`, in one write transaction off the loop (keys/reservations.py), which every
worker and daemon on the ledger admits against: that answer is the one that counts. The
moment the request ends both reservations are lowered to its real cost (`settle`; the
ledger's in the reservation thread, ahead of this process's next admission), and the record's
insert deletes the ledger's (a trigger). Requests nothing can
price are refused on a budgeted key unless the key allows them (`allow_unpriced`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from meterfox_cli.config import is_admin_key_name
from meterfox_cli.errors import MeterFoxError
from meterfox_cli.keys.budget import (
    Budget,
    Period,
    SpendCounter,
    next_period_start,
    period_start,
)
from meterfox_cli.keys.estimate import Estimate, estimate
from meterfox_cli.keys.ledger import Ledger
from meterfox_cli.keys.provider_keys import ProviderKeys, StoreChoice, StoredKey, stored_keys
from meterfox_cli.keys.proxy_keys import KeyStatus, ProxyKey, all_keys, hash_secret, key_version
from meterfox_cli.keys.reservations import HOLD_S, Reserver, sweep
from meterfox_cli.money import format_usd
from meterfox_cli.pricing.book import DEFAULT_BOOK, PriceBook, price_record
from meterfox_cli.providers.base import RequestPlan
from meterfox_cli.proxy.auth import (
    ADMITTED,
    LOOK_UP,
    PASSTHROUGH,
    Admission,
    Authorizer,
    Credential,
    Decision,
    is_proxy_key,
)
from meterfox_cli.records import PASSTHROUGH_KEY, UsageRecord
from meterfox_cli.store.backend import KeyWatch, as_ledger
from meterfox_cli.store.backend import Ledger as StoreLedger
from meterfox_cli.store.db import connect
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.sqlite import SqliteLedger

log = logging.getLogger("meterfox.keys")

POLL_S = 0.25
FORCED_REFRESH_MIN_S = 0.05  # the shortest gap between two refreshes when misses ask for one
UNKNOWN_CACHE_SIZE = 10_000  # hashes of keys known not to exist; emptied when full
RETRY_S = 10.0  # a provider key that could not be read is tried again this often
SWEEP_S = 30.0  # expired shared reservations are deleted this often (while keys have budgets)
# After the ledger failed to take a reservation, admissions go by this process's view alone
# for this long before the ledger is tried again (so an outage costs one timeout, not one each).
SHARED_RETRY_S = 5.0
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
    # The ledger's and the local file's key version counters when the keys were read.
    version: tuple[int, int] | None = None
    budgeted: Mapping[str, ProxyKey] = field(default_factory=dict)  # live keys, by name


class KeyAuthorizer(Authorizer):
    """Checks `mf-` proxy keys and swaps in the provider key; passes other credentials through
    (or, with `require_proxy_key`, refuses them). Proxy keys and their spend are read from
    `key_ledger` (default: the SQLite file at `db_path`); the index of provider keys from the
    file at `db_path`, always local."""

    def __init__(
        self,
        db_path: Path,
        choice: StoreChoice | Callable[[], StoreChoice],
        *,
        key_ledger: StoreLedger | None = None,
        require_proxy_key: bool = False,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.time,
        book: PriceBook = DEFAULT_BOOK,
        on_connect: Callable[[LedgerConnection], None] | None = None,
        hold_s: float = HOLD_S,
    ) -> None:
        """`hold_s`: how long a shared reservation counts if its request never records
        (keys/reservations.hold_seconds of the proxy's timeouts)."""
        self.require_proxy_key = require_proxy_key
        self.snapshot = KeySnapshot()
        self.ledger = Ledger()
        store_ledger = as_ledger(key_ledger or db_path)
        self._reserver = Reserver(store_ledger, hold_s)
        self._shared_failing = False
        self._shared_retry_at = 0.0  # monotonic: while failing, not before this
        self._watcher = KeyWatcher(
            store_ledger,
            db_path,
            choice,
            poll_s,
            clock,
            self._publish,
            self.ledger,
            on_connect,
        )
        self._clock = clock
        self._book = book
        self._unknown: set[bytes] = set()
        self._unknown_version: int | None = None
        self._looked_up = 0

    def start(self) -> None:
        self._watcher.start()

    def close(self) -> None:
        self._watcher.close()
        self._reserver.close()

    def _publish(self, snapshot: KeySnapshot) -> None:
        """Called off the loop (start, the watcher thread). The price data (the compact
        table's header, pricing/compact.py) is loaded here, before the first budgeted key is
        published, so no request's estimate loads it on the loop; without budgets this process
        never loads it (the writer's process prices the records)."""
        if snapshot.budgeted:
            self._book.warm()
        self.snapshot = snapshot  # one reference swap: atomic for the loop's readers

    def decide(self, provider_slug: str, credential: Credential | None) -> Decision:
        if credential is None or not is_proxy_key(credential.secret):
            return _REQUIRED if self.require_proxy_key else PASSTHROUGH
        snapshot = self.snapshot
        key = snapshot.keys.get(hash_secret(credential.secret))
        if key is None:
            return LOOK_UP
        now = self._clock()
        refusal = _check_key(key, provider_slug, now, self.ledger)
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

    async def look_up(self, provider_slug: str, credential: Credential | None) -> Decision:
        """A proxy key missing from the snapshot: known not to exist (the negative cache), or
        looked for again in a refresh that starts after this call."""
        key_hash = hash_secret(credential.secret) if credential else b""
        if not self._is_known_unknown(key_hash):
            self._looked_up += 1
            await self._watcher.fresh_snapshot()
        decision = self.decide(provider_slug, credential)
        if decision is not LOOK_UP:
            return decision
        if not self._watcher.loaded:  # the ledger, where keys live, never answered yet
            return _LEDGER_AWAY
        self._remember_unknown(key_hash)
        return _UNKNOWN

    def admit(
        self,
        decision: Decision,
        provider_slug: str,
        plan: RequestPlan,
        body: bytes | None,
        request_id: str | None = None,
    ) -> Admission:
        """Reserve a budgeted key's worst case for this request, or refuse it. With the
        request's id (its record's), the answer is `pending`: the reservation shared in the
        ledger; without (a Realtime session's units), this process's alone."""
        key = self.snapshot.budgeted.get(decision.key_name)
        if key is None or key.budget is None:
            return ADMITTED
        now = self._clock()
        worst = estimate(provider_slug, plan, body, self._book, now)
        if worst.nanousd is None:
            if not key.allow_unpriced:
                return Admission(_unpriced(key, provider_slug, plan))
            worst = Estimate(worst.input_tokens, worst.output_tokens, 0)
        nanousd = worst.nanousd or 0
        spent = self.ledger.reserve(key.name, key.budget.nanousd, nanousd)
        if spent is not None:
            return Admission(_over_budget(key.name, key.budget, spent, now, worst))
        admitted = Admission(settle=partial(self._settle, key.name, nanousd))
        if request_id is None or (
            self._shared_failing and time.monotonic() < self._shared_retry_at
        ):
            return admitted
        return Admission(pending=self._reserve_shared(key, worst, request_id, now, admitted))

    async def _reserve_shared(
        self, key: ProxyKey, worst: Estimate, request_id: str, now: float, admitted: Admission
    ) -> Admission:
        """The ledger's answer for a request this process admitted: `admitted`, or a refusal
        (this process's reservation given back). A ledger that cannot be reached leaves this
        process's answer standing (the proxy keeps forwarding; logged once per outage), and
        for SHARED_RETRY_S the ledger is not asked."""
        budget = key.budget
        assert budget is not None
        nanousd = worst.nanousd or 0
        try:
            held = await self._reserver.reserve(
                request_id=request_id,
                key_name=key.name,
                nanousd=nanousd,
                budget_nanousd=budget.nanousd,
                since=period_start(budget.period, now),
            )
        except asyncio.CancelledError:  # the client left: no record will come
            self._reserver.release_soon(request_id)
            self.ledger.settle(key.name, nanousd, request_id, now, 0)
            raise
        except Exception as exc:
            if not self._shared_failing:
                log.error("cannot reserve in the ledger (%s); admitting on this daemon's view", exc)
            self._shared_failing = True
            self._shared_retry_at = time.monotonic() + SHARED_RETRY_S
            return admitted
        if self._shared_failing:
            log.warning("reserving in the ledger again")
            self._shared_failing = False
        if held is None:
            return Admission(settle=partial(self._settle, key.name, nanousd, shared=True))
        self.ledger.settle(key.name, nanousd, request_id, now, 0)
        return Admission(_over_budget(key.name, budget, held, now, worst))

    def _settle(
        self, key_name: str, reserved: int, record: UsageRecord, *, shared: bool = False
    ) -> None:
        """The response ended: its real cost replaces its reservation (runs on the loop), and,
        `shared`, the ledger's copy soon after (before this process's next reservation)."""
        cost = 0
        try:
            if record.reading.usage is not None:
                cost = price_record(record, self._book).cost_nanousd or 0
        except Exception:  # the reservation must go back whatever happens to pricing
            log.exception("pricing %s for its key's budget failed", record.id)
        self.ledger.settle(key_name, reserved, record.id, record.started_at, max(cost, 0))
        if shared:
            self._reserver.settle_soon(record.id, max(cost, 0))

    @property
    def keys_unavailable(self) -> str | None:
        """The ledger that holds the keys never answered yet: every proxy key is refused."""
        return None if self._watcher.loaded else _LEDGER_AWAY.message

    def stats(self) -> dict[str, object]:
        return {
            **self.ledger.stats(),
            "looked_up": self._looked_up,
            "forced_refreshes": self._watcher.forced_refreshes,
            "key_changes_pushed": self._watcher.pushed,
            "key_changes_listening": self._watcher.listening,
            "unknown_keys_cached": len(self._unknown)
            if self._unknown_version == self.snapshot.version
            else 0,
        }

    def _is_known_unknown(self, key_hash: bytes) -> bool:
        return self._unknown_version == self.snapshot.version and key_hash in self._unknown

    def _remember_unknown(self, key_hash: bytes) -> None:
        version = self.snapshot.version
        if version != self._unknown_version or len(self._unknown) >= UNKNOWN_CACHE_SIZE:
            self._unknown = set()
            self._unknown_version = version
        self._unknown.add(key_hash)


_REQUIRED = Decision(
    PASSTHROUGH_KEY,
    status=401,
    message=(
        "MeterFox: this proxy only accepts MeterFox proxy keys (mf-…); ask its owner for one "
        "(`meterfox keys create NAME`)"
    ),
    error_kind="proxy_key_required",
)
_UNKNOWN = Decision(
    UNKNOWN_KEY_NAME,
    status=401,
    message="MeterFox: unknown proxy key; check it was copied whole, or create one with "
    "`meterfox keys create NAME`",
    error_kind="invalid_proxy_key",
)

_LEDGER_AWAY = Decision(
    UNKNOWN_KEY_NAME,
    status=503,
    message="MeterFox cannot reach the ledger that holds its proxy keys yet; retry when it "
    "is back (requests with your own provider key go through meanwhile)",
    error_kind="ledger_unavailable",
)


def _refuse(name: str, status: int, message: str, kind: str) -> Decision:
    return Decision(name, status=status, message=message, error_kind=kind)


def _check_key(key: ProxyKey, provider: str, now: float, ledger: Ledger) -> Decision | None:
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
    if budget is not None:
        spent = ledger.spent(key.name)
        if spent >= budget.nanousd:
            return _over_budget(key.name, budget, spent, now)
    return None


def _over_budget(
    name: str, budget: Budget, spent: int, now: float, worst: Estimate | None = None
) -> Decision:
    resets = datetime.fromtimestamp(next_period_start(budget.period, now))
    this = ""
    if worst is not None:
        this = (
            f"; this request may cost up to {format_usd(worst.nanousd or 0)} "
            f"({worst.input_tokens:,} input and {worst.output_tokens:,} output tokens: "
            "set max_tokens lower to reserve less)"
        )
    return _refuse(
        name,
        429,
        f"MeterFox: proxy key {name!r} has spent or reserved {format_usd(spent)} of its "
        f"{budget} budget{this}; it resets {resets:%Y-%m-%d %H:%M}, or raise it with "
        f"`meterfox keys budget {name} AMOUNT/PERIOD`",
        "budget_exceeded",
    )


def _unpriced(key: ProxyKey, provider: str, plan: RequestPlan) -> Decision:
    what = f"model {plan.model!r} at {provider}" if plan.model else "a request naming no model"
    return _refuse(
        key.name,
        403,
        f"MeterFox: proxy key {key.name!r} has a budget, and MeterFox cannot price {what}; "
        f"add a [[prices]] entry to config.toml, or let the key through unpriced requests "
        f"(`meterfox keys create {key.name} --allow-unpriced` on a new key)",
        "unpriced_request",
    )


class KeyWatcher:
    """The one thread that reads keys, provider keys and spend, and publishes snapshots: every
    `poll_s`, or sooner (never within FORCED_REFRESH_MIN_S of the last) when a look-up waits or
    the ledger says a key changed."""

    def __init__(
        self,
        key_ledger: StoreLedger,
        db_path: Path,
        choice: StoreChoice | Callable[[], StoreChoice],
        poll_s: float,
        clock: Callable[[], float],
        publish: Callable[[KeySnapshot], None],
        ledger: Ledger,
        on_connect: Callable[[LedgerConnection], None] | None = None,
    ) -> None:
        self._key_ledger = key_ledger
        self._db_path = db_path
        # A callable is resolved the first time a provider key must be read: choosing a store
        # imports and probes every keyring backend, which a passthrough-only daemon never needs.
        self._choice = choice
        self._poll_s = poll_s
        self._clock = clock
        self._publish = publish
        self._ledger = ledger
        self._on_connect = on_connect  # a test hook: runs on the watcher's connection
        self._stop = threading.Event()
        self._wake = threading.Event()  # a look-up is waiting for the next refresh
        self._waiting: asyncio.Future[None] | None = None
        self._waiting_lock = threading.Lock()
        self._last_start = 0.0
        self.forced_refreshes = 0  # refreshes that some look-up waited for
        self._thread = threading.Thread(target=self._run, name="meterfox-keys", daemon=True)
        self._conn: LedgerConnection | None = None  # the ledger: proxy keys and spend
        self._local: sqlite3.Connection | None = None  # this machine's file: provider keys
        self._watch: KeyWatch | None = None
        self.pushed = 0  # changes the ledger pushed (each wakes a refresh)
        self._version: tuple[int, int] | None = None
        self._keys: list[ProxyKey] = []
        self._loaded: dict[str, LoadedKey] = {}
        self._spend = SpendCounter()
        self._failing = False
        self._retry_at = 0.0
        self._sweep_at = 0.0

    @property
    def loaded(self) -> bool:
        """Whether the proxy keys were read from the ledger at least once."""
        return self._version is not None

    @property
    def listening(self) -> bool:
        """Whether the ledger is pushing key changes right now (else polling alone)."""
        return self._watch is not None and self._watch.listening

    def start(self) -> None:
        """Load everything once (blocking), then keep it fresh in the background."""
        self._local = connect(self._db_path)
        self._last_start = time.monotonic()
        try:
            self._open_ledger()
            self.refresh()
        except Exception as exc:
            if not self._key_ledger.is_passing(exc):
                raise
            log.error("cannot read proxy keys (%s); refusing them until the ledger answers", exc)
            self._failing = True  # the thread retries every poll, and says when it reads again
        self._watch = self._key_ledger.watch_keys(self._changed)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread.is_alive():
            self._thread.join(5)
        _resolve(self._take_waiting())
        for conn in (self._conn, self._local):
            if conn is not None:
                conn.close()

    def _ledger_is_local(self) -> bool:
        """Whether the key ledger is this machine's SQLite file (the default): then one
        connection to it reads both, opened once (each open reads the whole schema)."""
        ledger = self._key_ledger
        return isinstance(ledger, SqliteLedger) and ledger.path == self._db_path

    def _open_ledger(self) -> None:
        if self._conn is not None and self._conn is not self._local:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        if self._ledger_is_local() and self._local is not None:
            self._conn = self._local
        else:
            self._conn = self._key_ledger.open_writer()
        if self._on_connect is not None:
            self._on_connect(self._conn)

    def _changed(self) -> None:
        """The ledger says a key changed (from its listening thread): refresh now."""
        self.pushed += 1
        self._wake.set()

    async def fresh_snapshot(self) -> None:
        """Return once a refresh that started after this call has published (or failed).
        Every caller meanwhile shares that one refresh. On the event loop; never blocks it."""
        if not self._thread.is_alive() or self._stop.is_set():
            return
        with self._waiting_lock:
            if self._waiting is None:
                self._waiting = asyncio.get_running_loop().create_future()
                self._wake.set()
            waiting = self._waiting
        await asyncio.shield(waiting)

    def _run(self) -> None:
        while self._sleep():
            waiting = self._take_waiting()
            self._last_start = time.monotonic()
            try:
                self.refresh()
            except Exception as exc:  # whatever the store raises: the thread must go on
                if not self._failing:
                    log.error("cannot refresh keys (%s); keeping the last ones, retrying", exc)
                self._failing = True
            else:
                if self._failing:
                    log.warning("reading keys again")
                self._failing = False
            finally:
                _resolve(waiting)

    def _sleep(self) -> bool:
        """Wait until the next refresh is due; False when stopping."""
        while not self._stop.is_set():
            asked = self._wake.is_set()
            due = self._last_start + (FORCED_REFRESH_MIN_S if asked else self._poll_s)
            left = due - time.monotonic()
            if left <= 0:
                return True
            (self._stop if asked else self._wake).wait(left)
        return False

    def _take_waiting(self) -> asyncio.Future[None] | None:
        with self._waiting_lock:
            waiting, self._waiting = self._waiting, None
            self._wake.clear()
        if waiting is not None:
            self.forced_refreshes += 1
        return waiting

    def refresh(self) -> None:
        if self._conn is None or self._key_ledger.is_lost(self._conn):
            self._open_ledger()
        conn, local = self._conn, self._local
        assert conn is not None and local is not None
        version = (
            key_version(conn),
            key_version(local),
        )
        unreadable = any(loaded.error for loaded in self._loaded.values())
        if version != self._version or (unreadable and time.monotonic() >= self._retry_at):
            keys = all_keys(conn)
            if self._loaded or stored_keys(local):
                self._load_provider_keys(ProviderKeys(local, self._store_choice()))
            self._keys = keys
            self._version = version
            self._retry_at = time.monotonic() + RETRY_S
        now = self._clock()
        live = [key for key in self._keys if key.budget is not None and key.revoked_at is None]
        periods: dict[str, Period] = {key.name: key.budget.period for key in live if key.budget}
        spend = self._spend.refresh(conn, periods, now, self._ledger.uncounted_ids())
        if live and time.monotonic() >= self._sweep_at:
            self._sweep_at = time.monotonic() + SWEEP_S
            sweep(conn, time.time())
        self._ledger.recorded(spend, self._spend.counted, self._spend.starts)
        self._publish(
            KeySnapshot(
                keys={key.key_hash: key for key in self._keys},
                provider_keys={p: k.secret for p, k in self._loaded.items() if k.secret},
                provider_key_errors={p: k.error for p, k in self._loaded.items() if k.error},
                spend=spend,
                version=self._version,
                budgeted={key.name: key for key in live},
            )
        )

    def _store_choice(self) -> StoreChoice:
        if not isinstance(self._choice, StoreChoice):
            self._choice = self._choice()
        return self._choice

    def _load_provider_keys(self, provider_keys: ProviderKeys) -> None:
        """Read the provider keys whose index entry is new or changed, or that could not be
        read last time; forget removed ones."""
        stored = {
            entry.provider: entry
            for entry in provider_keys.stored()
            if not is_admin_key_name(entry.provider)  # for `meterfox sync`, never the proxy
        }
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


def _resolve(waiting: asyncio.Future[None] | None) -> None:
    """Wake the look-ups waiting on `waiting`, from any thread."""
    if waiting is None:
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        waiting.get_loop().call_soon_threadsafe(_set_done, waiting)


def _set_done(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)
