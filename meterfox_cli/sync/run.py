"""One provider's sync: the window it covers (given, or resumed from the last one minus a
margin), fetched a chunk of days at a time, each chunk committed in one transaction that
replaces that provider's buckets there. A failure keeps the chunks committed and names the
window left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from meterfox_cli.store.billed import BilledBucket, replace_window, synced_until
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.sync.buckets import PriceFn
from meterfox_cli.sync.http import AdminClient, AdminKeyRefused, SyncError
from meterfox_cli.sync.pages import DAY, chunks, day_floor, utc_day
from meterfox_cli.sync.sources import Source

# Providers revise recent buckets for hours (late usage, cost reports a day behind): a resumed
# sync starts this long before the end of the last one.
RESUME_MARGIN_S = 48 * 3600
DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Window:
    start: int  # UTC midnight
    end: int

    def describe(self) -> str:
        last = utc_day(self.end - 1)
        first = utc_day(self.start)
        return first if first == last else f"{first} → {last}"


@dataclass(frozen=True)
class Summary:
    provider: str
    window: Window
    buckets: int
    requests: int | None  # None when the provider gives no request counts
    input_tokens: int
    output_tokens: int
    cost_nanousd: int
    pages: int


def sync_window(
    conn: LedgerConnection, source: Source, since: float | None, until: float | None, now: float
) -> Window:
    """From `since` (else the last synced end minus the margin, else 30 days ago) to `until`
    (else now), the start moved back to its UTC midnight; kept inside what the API publishes
    (OpenRouter: the last 30 complete days)."""
    end = int(now if until is None else min(until, now))
    if source.complete_days_only:
        end = min(end, day_floor(now))
    if since is None:
        last = synced_until(conn, source.name)
        since = now - DEFAULT_DAYS * DAY if last is None else last - RESUME_MARGIN_S
    start = day_floor(since)
    if source.history_days is not None:
        start = max(start, day_floor(now) - source.history_days * DAY)
    if start >= end:
        raise SyncError(
            f"{source.name}: nothing to sync from {utc_day(start)} to {utc_day(end)}"
            + (" (it publishes complete UTC days only)" if source.complete_days_only else "")
        )
    return Window(start, end)


def sync_provider(
    conn: LedgerConnection,
    source: Source,
    api: AdminClient,
    window: Window,
    *,
    on_page: Callable[[], None] = lambda: None,
    price: PriceFn | None = None,
    clock: Callable[[], float] = time.time,
) -> Summary:
    """Fetch and commit `window` chunk by chunk; the summary adds up what was stored."""
    stored: list[BilledBucket] = []
    pages = 0

    def counted() -> None:
        nonlocal pages
        pages += 1
        on_page()

    for start, end in chunks(window.start, window.end, source.chunk_days):
        try:
            buckets = source.fetch(api, start, end, counted, price)
            replace_window(conn, source.name, start, end, buckets, clock())
        except AdminKeyRefused:
            raise  # one sentence: which key, where to create it
        except SyncError as exc:
            left = Window(start, window.end).describe()
            done = f"synced up to {utc_day(start - 1)}; " if start > window.start else ""
            raise SyncError(
                f"{exc}. {source.name}: {done}left: {left} "
                f"(run `meterfox sync {source.name}` again to fill it)"
            ) from exc
        stored.extend(buckets)
    return summarize(source.name, window, stored, pages)


def summarize(provider: str, window: Window, buckets: list[BilledBucket], pages: int) -> Summary:
    counts = [b.requests for b in buckets]
    return Summary(
        provider=provider,
        window=window,
        buckets=len(buckets),
        requests=None if counts and all(c is None for c in counts) else sum(c or 0 for c in counts),
        input_tokens=sum(b.input_tokens for b in buckets),
        output_tokens=sum(b.output_tokens for b in buckets),
        cost_nanousd=sum(b.cost_nanousd or 0 for b in buckets),
        pages=pages,
    )
