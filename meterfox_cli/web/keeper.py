"""The Overview kept ready: its three answers (the headline, the providers panel, the top tags),
recomputed in the dashboard's read worker whenever the ledger changed (at most every
`refresh_s`), and held by the daemon as finished JSON bytes, so a cold page is answered at once,
with no worker round trip and no worker CPU on its path.

`keep` runs in the worker (web/worker.py streams what it yields, web/routes.py asks for it
when the daemon starts): every POLL_S it reads the ledger's mark (the proxy keys' version
counter and the newest request ids: three indexed reads) and recomputes a part when the mark
moved and its `refresh_s` has passed since its last computation (the headline at once when
the keys changed: it holds the budget bars), when the local day changed, or MAX_AGE_S after
the last one (the clock alone moves today, the week, the projection). `KeptAnswers` is the
daemon's side: it serves a part only while the ledger is known unchanged since at most the
part's `fresh_s` ago (5 s for the headline and providers, as the on-demand reads are reused;
60 s for the top tags), forgets the headline when the page changes a key, and otherwise
leaves the page to the on-demand read (web/routes.py's `Recent`). Times are time.monotonic,
the same clock in the worker and the daemon (one machine, system-wide)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

from meterfox_cli.keys.proxy_keys import key_version
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.feed import START_SPAN, last_rowid
from meterfox_cli.web.overview import overview, providers_json, tags_json

OVERVIEW_FRESH_S = 5.0  # the headline and providers: never read longer ago than this
TAGS_FRESH_S = 60.0  # top tags read request rows (seconds over a million): once a minute at most
POLL_S = 0.25  # the keeper looks at the ledger's mark this often (as the proxy's key watcher)
CONFIRM_S = 0.5  # and tells the daemon at least this often that its answers are still current
MAX_AGE_S = 60.0  # recomputed this often even when nothing was recorded (the clock moves)
_RECENT_SQL = "SELECT COUNT(*) FROM requests WHERE rowid > ?"


@dataclass(frozen=True, slots=True)
class Part:
    """One of the Overview's answers: how it is read, and how fresh it is kept."""

    name: str
    read: Callable[[LedgerConnection], object]
    refresh_s: float  # recomputed at most this often while records are committed
    fresh_s: float  # served while the ledger is known unchanged since at most this long ago
    holds_keys: bool = False  # recomputed at once on a key change; forgotten on the page's own


PARTS = (
    Part("overview", overview, 2.0, OVERVIEW_FRESH_S, holds_keys=True),
    Part("providers", providers_json, 2.0, OVERVIEW_FRESH_S),
    Part("tags", tags_json, 50.0, TAGS_FRESH_S),
)


@dataclass(frozen=True, slots=True)
class LedgerMark:
    """Moves whenever a proxy key changes or a request is committed: the key version counter,
    the newest request id, and how many of the last START_SPAN ids are committed (a PostgreSQL
    ledger may commit a lower id after a higher one: store/feed.py). A repricing or a prune
    moves none of these: MAX_AGE_S catches them."""

    keys: int
    newest: int
    recent: int


def ledger_mark(conn: LedgerConnection) -> LedgerMark:
    keys = key_version(conn)  # the counter the proxy's key watcher reads
    newest = last_rowid(conn)
    recent = conn.execute(_RECENT_SQL, [newest - START_SPAN]).fetchone()[0]
    return LedgerMark(keys, newest, recent)


@dataclass(frozen=True, slots=True)
class Kept:
    """One look at the ledger, as the worker sends it: `bodies`, the parts recomputed now (JSON
    bytes by name), and `current_at`, by name, the time at which each part's latest body was
    known current (every record committed before then is in it)."""

    current_at: dict[str, float]
    bodies: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class _Computed:
    mark: LedgerMark
    at: float
    day: date


def keep(
    conn: LedgerConnection, parts: tuple[Part, ...] = PARTS, poll_s: float = POLL_S
) -> Iterator[Kept]:
    """In the worker, for as long as the daemon listens: a `Kept` whenever a part was
    recomputed, and at least every CONFIRM_S to say the bodies it has are still current."""
    computed: dict[str, _Computed] = {}
    sent_at = -math.inf
    while True:
        looked = time.monotonic()
        mark, day = ledger_mark(conn), date.today()  # before the reads: they see at least this
        due = [part for part in parts if _due(part, computed.get(part.name), mark, looked, day)]
        bodies = {part.name: json_bytes(part.read(conn)) for part in due}
        computed |= {part.name: _Computed(mark, looked, day) for part in due}
        if bodies or looked - sent_at >= CONFIRM_S:
            current = {
                part.name: looked
                for part in parts
                if part.name in computed and _same(part, computed[part.name].mark, mark)
            }
            yield Kept(current, bodies)
            sent_at = looked
        time.sleep(poll_s)


def json_bytes(value: object) -> bytes:
    """`value` as JSON with every `<` written `\\u003c` (the same JSON to any parser), so the
    page can carry it in a `<script type="application/json">` block that no text in it (a
    model or tag named `</script>…`) can end."""
    return json.dumps(value).replace("<", "\\u003c").encode()


def _due(part: Part, done: _Computed | None, mark: LedgerMark, now: float, day: date) -> bool:
    if done is None or done.day != day or now - done.at >= MAX_AGE_S:
        return True
    if part.holds_keys and done.mark.keys != mark.keys:
        return True
    return not _same(part, done.mark, mark) and now - done.at >= part.refresh_s


def _same(part: Part, before: LedgerMark, now: LedgerMark) -> bool:
    """Nothing the part shows has changed between the two marks."""
    if part.holds_keys:
        return before == now
    return (before.newest, before.recent) == (now.newest, now.recent)


class KeptAnswers:
    """In the daemon: the latest body of each part the keeper sent, served while fresh."""

    def __init__(
        self, parts: tuple[Part, ...] = PARTS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._parts = {part.name: part for part in parts}
        self._clock = clock
        self._bodies: dict[str, bytes] = {}
        self._current_at: dict[str, float] = {}
        self._forgotten_at = -math.inf

    def take(self, kept: Kept) -> None:
        for name, body in kept.bodies.items():
            if self._parts[name].holds_keys and kept.current_at[name] <= self._forgotten_at:
                continue  # read before a key change this daemon made
            self._bodies[name] = body
        for name, at in kept.current_at.items():
            if name in self._bodies:
                self._current_at[name] = at

    def body(self, name: str) -> bytes | None:
        """The part's JSON, or None when there is none yet or the ledger may have changed more
        than its `fresh_s` ago (the caller reads it on demand then)."""
        at = self._current_at.get(name)
        if at is None or self._clock() - at > self._parts[name].fresh_s:
            return None
        return self._bodies.get(name)

    def forget_keys(self) -> None:
        """A key was just created or revoked here: the parts holding keys are not served again
        until one read after now arrives."""
        self._forgotten_at = self._clock()
        for name, part in self._parts.items():
            if part.holds_keys:
                self._bodies.pop(name, None)
                self._current_at.pop(name, None)
