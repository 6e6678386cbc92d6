"""The one place finished records are observed: the `RecordObserver` port, how the writer
tells its observers about each committed batch (metrics and OpenTelemetry both listen here), and
`InWriter`: an observer built where the writer runs, which may be another process.

Observers run on the writer's thread after a batch commits, never on the event loop: the
proxy's hot path does not know they exist. Each sees exactly the rows the ledger took (a
deduplicated record with its usage removed, as stored), so what they count equals what
`meterfox report` reads. A failing observer is logged and skipped; it never stops a write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meterfox_cli.pricing.quote import Price
from meterfox_cli.records import UsageRecord

log = logging.getLogger("meterfox.observers")

Row = tuple[UsageRecord, Price]


class RecordObserver(Protocol):
    def observe(self, rows: Sequence[Row]) -> None:
        """One committed batch, in commit order. Called on the writer's thread: be quick."""

    def close(self) -> None:
        """Flush and stop, after the writer's last batch (blocking is fine: off the loop)."""


@dataclass(frozen=True, slots=True)
class InWriter:
    """An observer to build where the writer runs: `build(*args)` (both picklable, so the
    writer's own process can build it: store/writer_process.py). If the built observer has a
    `report()` (a small picklable value), what it returns after each batch is handed to `absorb`
    in the proxy's process: Prometheus counts in the writer's process and its page is served
    from the proxy's this way. If it also has a `resume(report)`, a writer's process started
    after a rest (store/writer_process.py) hands it the last process's last report first, so
    its figures count on rather than start again."""

    build: Callable[..., RecordObserver]
    args: tuple[object, ...] = ()
    absorb: Callable[[object], None] | None = None

    def here(self) -> RecordObserver:
        """Built in this process (the in-thread writer): each batch, then its report."""
        built = self.build(*self.args)
        if self.absorb is None:
            return built
        return _Reporting(built, self.absorb)


class _Reporting:
    def __init__(self, observer: RecordObserver, absorb: Callable[[object], None]) -> None:
        self._observer, self._absorb = observer, absorb

    def observe(self, rows: Sequence[Row]) -> None:
        self._observer.observe(rows)
        self._absorb(self._observer.report())  # type: ignore[attr-defined]

    def close(self) -> None:
        self._observer.close()


class Observers:
    """The writer's observers: each batch goes to every one; one that raises is logged once
    per kind of failure and the others still see the batch."""

    def __init__(self) -> None:
        self._observers: list[RecordObserver] = []
        self._failed: set[tuple[int, str]] = set()

    def add(self, observer: RecordObserver | InWriter) -> None:
        self._observers.append(observer.here() if isinstance(observer, InWriter) else observer)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def notify(self, rows: Sequence[Row]) -> None:
        for observer in self._observers:
            try:
                observer.observe(rows)
            except Exception as exc:
                failure = (id(observer), type(exc).__name__)
                if failure not in self._failed:
                    self._failed.add(failure)
                    log.exception("record observer %r failed; its figures lag", observer)

    def close(self) -> None:
        for observer in self._observers:
            try:
                observer.close()
            except Exception:
                log.exception("record observer %r failed to close", observer)
