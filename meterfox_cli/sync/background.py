"""`serve`'s background sync (`[sync] every`): on its own thread, with its own connections (the
local SQLite file for admin keys, the ledger for what was billed), the incremental `meterfox sync` of each provider (sync/run.py), then again every interval; what
happened, for `/_meterfox/health`. A failure is logged once and shown there, never raised."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from meterfox_cli.keys.provider_keys import StoreChoice
from meterfox_cli.store.backend import Ledger, as_ledger
from meterfox_cli.store.db import connect
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.sync.buckets import PriceFn
from meterfox_cli.sync.run import Window, sync_provider, sync_window
from meterfox_cli.sync.sources import Source, admin_key, configured

log = logging.getLogger("meterfox.sync")

# The first run comes this long after serve starts (or one interval, if that is shorter): the
# proxy is listening first, and a restart loop does not hammer the admin APIs.
FIRST_RUN_DELAY_S = 10.0
# Shutdown waits this long for a run to notice it must stop (between pages and retries it does
# at once; a request in flight is abandoned with the thread, its chunk never committed).
STOP_WAIT_S = 2.0


class _Stopped(Exception):
    """Shutdown came while a run was under way: it ends between two pages or retries."""


@dataclass
class _Outcome:
    """The last run of one provider, for health."""

    last_run_at: float | None = None
    last_ok_at: float | None = None
    last_error: str | None = None
    window: str | None = None


class BackgroundSync:
    """Syncs `providers` (None: every provider with an admin key, as `meterfox sync` does) every
    `every_s` seconds, from `base_urls[provider]`, reading admin keys the way `meterfox sync`
    does (environment first, then the store that `store_choice` opens: serve's, unlocked)."""

    def __init__(
        self,
        database: Path,
        *,
        every_s: float,
        base_urls: Mapping[str, str],
        store_choice: Callable[[], StoreChoice],
        providers: Sequence[Source] | None = None,
        price: PriceFn | None = None,
        first_delay_s: float | None = None,
        clock: Callable[[], float] = time.time,
        ledger: Ledger | None = None,
    ) -> None:
        self.every_s = every_s
        self.first_delay_s = (
            min(FIRST_RUN_DELAY_S, every_s) if first_delay_s is None else first_delay_s
        )
        self._database = database
        self._ledger = as_ledger(database) if ledger is None else ledger
        self._base_urls = base_urls
        self._store_choice = store_choice
        self._providers = providers
        self._price = price
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: dict[str, _Outcome] = {}
        self._last_run_at: float | None = None
        self._error: str | None = None
        self._next_run_at: float | None = None
        self._running = False
        self._thread: threading.Thread | None = None

    # --- the thread -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="meterfox-sync", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Tell the thread to stop and wait at most `wait_s` for it (it is a daemon thread: one
        still in a request ends with the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
            if self._thread.is_alive():
                log.info("background sync: stopped while a request was in flight")

    def _loop(self) -> None:
        delay = self.first_delay_s
        while True:
            with self._lock:
                self._next_run_at = self._clock() + delay
            if self._stop.wait(delay):
                return
            self.run_once()
            delay = self.every_s

    # --- one run ----------------------------------------------------------------------

    def run_once(self) -> None:
        """Sync each provider in turn; record and log (once) each failure. Nothing it meets is
        raised: a failure outside any one provider (the database cannot be opened) is the
        section's own `last_error`."""
        with self._lock:
            self._running = True
            self._last_run_at = self._clock()
            self._error = None
        conn = books = None
        try:
            conn = connect(self._database)
            books = self._ledger.open_writer()
            for src in self._chosen(conn):
                if self._stop.is_set():
                    break
                self._sync_one(conn, books, src)
        except _Stopped:
            log.info("background sync: stopped by shutdown")
        except Exception as exc:  # the proxy must never see it
            log.warning("background sync failed: %s", exc)
            with self._lock:
                self._error = str(exc) or type(exc).__name__
        finally:
            for opened in (conn, books):
                if opened is not None:
                    opened.close()
            with self._lock:
                self._running = False

    def _chosen(self, conn: LedgerConnection) -> Sequence[Source]:
        return self._providers if self._providers is not None else configured(conn)

    def _sync_one(self, conn: LedgerConnection, books: LedgerConnection, src: Source) -> None:
        """`conn`: the local file (admin keys); `books`: the ledger (what was billed)."""
        started = self._clock()
        window: Window | None = None
        try:
            key = admin_key(src, conn, self._store_choice)
            if not key:
                raise LookupError(
                    f"{src.name}: no {src.key_name} key (`meterfox keys set {src.key_name}` "
                    f"or {src.key_env})"
                )
            api = src.client(self._base_urls.get(src.name, ""), key)
            api.sleep = self._pause
            window = sync_window(books, src, None, None, started)
            sync_provider(books, src, api, window, on_page=self._check, price=self._price)
        except _Stopped:
            raise
        except Exception as exc:  # logged and shown in health, never raised
            where = window.describe() if window else "window not chosen"
            log.warning("background sync of %s (%s) failed: %s", src.name, where, exc)
            self._record(src.name, started, window, error=str(exc) or type(exc).__name__)
            return
        self._record(src.name, started, window, error=None)

    def _record(self, provider: str, at: float, window: Window | None, error: str | None) -> None:
        with self._lock:
            outcome = self._outcomes.setdefault(provider, _Outcome())
            outcome.last_run_at = at
            outcome.last_error = error
            outcome.window = window.describe() if window else None
            if error is None:
                outcome.last_ok_at = self._clock()

    def _check(self) -> None:
        """Called after each page: a shutdown ends the run here."""
        if self._stop.is_set():
            raise _Stopped

    def _pause(self, seconds: float) -> None:
        """The client's wait before a retry, cut short by a shutdown."""
        if self._stop.wait(seconds):
            raise _Stopped

    # --- health -----------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """What `/_meterfox/health` shows under `sync` (cheap: it runs on the proxy's loop)."""
        with self._lock:
            return {
                "enabled": True,
                "every_s": self.every_s,
                "running": self._running,
                "last_run_at": _iso(self._last_run_at),
                "last_error": self._error,
                "next_run_at": _iso(self._next_run_at),
                "providers": {
                    name: {
                        "last_run_at": _iso(o.last_run_at),
                        "last_ok_at": _iso(o.last_ok_at),
                        "last_error": o.last_error,
                        "window": o.window,
                    }
                    for name, o in sorted(self._outcomes.items())
                },
            }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
