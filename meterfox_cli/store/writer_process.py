"""The record writer in a process of its own, as `serve` runs it: `ProcessWriter` is the proxy's
side, `python -m meterfox_cli.store.writer_process` the writer's (a RecordWriter: pricing, rows,
inserts, triggers, the PostgreSQL outbox and the observers all run there, under its own GIL).

The proxy's side appends each record to a deque (no lock, as RecordWriter does); a feeder
thread sends them in batches down the child's stdin, each record a flat tuple of plain values
(marshal: the cheapest encoding measured, docs/performance.md). After each batch it commits, the
child sends its figures back on its stdout (pickled: written, queued, errors, the observers'
reports), which is what `/_meterfox/health` and the Prometheus page show.

Guarantees: `close()` returns once the child has committed every record submitted before it (or
given up at the deadline, as RecordWriter does). When the pipe closes without a `close()` — the
proxy died, even by SIGKILL — the child still commits every record it has received, then exits:
only records still in the proxy's deque (at most one feed interval's) are lost. The child
ignores SIGINT and SIGTERM (a Ctrl-C or a service manager's stop reaches the whole group while
the proxy still has records to send: it stops at end of input), and it leaves, after committing,
if it is orphaned while something else still holds the pipe open.

At rest (`rest_after_s`, `[server] rest_after` under `serve`): with no record for that long and
nothing unfinished, the feeder closes the child's input — the same end of input — and the next
record starts a new child, which counts on from the last one's figures.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from meterfox_cli.pricing.quote import Price
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.store.backend import Ledger, as_ledger
from meterfox_cli.store.observers import InWriter, RecordObserver, Row
from meterfox_cli.usage import Reading, Usage

if TYPE_CHECKING:  # the writer's modules load in its process; the proxy's side needs none
    from meterfox_cli.store.writer import RecordWriter

log = logging.getLogger("meterfox.writer")

# How often the feeder sends what the proxy has submitted. The child's writer then waits up to
# its own batch interval for more: a record's commit lag is at most the sum of the two.
FEED_INTERVAL_S = 0.01
STATUS_INTERVAL_S = 0.05  # the child's figures, when they change between batches
ORPHAN_CHECK_S = 1.0
CLOSE_MARGIN_S = 25.0  # beyond the close deadline: the observers' flush (OpenTelemetry's 20 s)


# --- the wire --------------------------------------------------------------------------------


def to_wire(record: UsageRecord) -> tuple:
    """A record as plain values (marshal takes no dataclasses): its fields in order, the
    reading's flattened after them."""
    reading = record.reading
    usage = reading.usage
    cost = reading.reported_cost_usd
    return (
        record.id,
        record.started_at,
        record.provider,
        record.model,
        record.endpoint,
        record.method,
        record.status,
        record.streamed,
        str(record.outcome),
        record.key_name,
        record.ttfb_ms,
        record.latency_ms,
        record.tags,
        reading.model,
        None
        if usage is None
        else (
            usage.input_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.cache_write_1h_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            usage.units,
        ),
        None if cost is None else str(cost),
        reading.price_context,
        reading.dedupe_key,
    )


_OUTCOMES = {str(outcome): outcome for outcome in Outcome}


def from_wire(fields: Sequence) -> UsageRecord:
    """The record `to_wire` flattened (positional arguments, and the outcome looked up, not
    parsed: about 2 µs a record less in the writer's process)."""
    usage, cost = fields[14], fields[15]
    reading = Reading(
        fields[13],
        None if usage is None else Usage(*usage),
        None if cost is None else Decimal(cost),
        fields[16],
        fields[17],
    )
    return UsageRecord(*fields[:8], _OUTCOMES[fields[8]], *fields[9:12], reading, fields[12])


def _encode(batch: list[UsageRecord]) -> bytes:
    """A batch as marshal bytes; pickled instead if a field is of a type marshal refuses (a
    subclass of str or int from some library): a tag byte says which."""
    flat = [to_wire(record) for record in batch]
    try:
        return b"m" + marshal.dumps(flat)
    except ValueError:
        return b"p" + pickle.dumps(flat, pickle.HIGHEST_PROTOCOL)


def _decode(data: bytes) -> list[tuple]:
    body = memoryview(data)[1:]
    return marshal.loads(body) if data[:1] == b"m" else pickle.loads(body)


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's bytes, or None at EOF (a frame cut short by a dying peer counts as EOF).
    `stream` may be unbuffered (a read returns what the pipe holds): read until complete."""
    head = _read_exactly(stream, 4)
    if head is None:
        return None
    return _read_exactly(stream, int.from_bytes(head, "big"))


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


@dataclass(frozen=True)
class WriterSpec:
    """What the child builds its RecordWriter from (the first frame, pickled)."""

    ledger: Ledger
    pricer: Callable[[UsageRecord], Price]
    host: str
    outbox: Path | None
    batch_size: int
    max_queue: int
    observers: tuple[tuple[Callable[..., RecordObserver], tuple[object, ...]], ...]
    close_timeout_s: float
    # each observer's last report from the child before (after a rest), to count on from
    resume: tuple[object, ...] = ()


@dataclass(frozen=True)
class Status:
    """The child's figures, as of its last message."""

    written: int = 0
    queued: int = 0
    received: int = 0
    dropped: int = 0
    failing_since: float | None = None  # monotonic: one clock for every process on the machine
    last_error: str | None = None
    healthy: bool = True
    waiting: int | None = None
    max_batch: int = 0
    max_commit_lag_s: float = 0.0


# --- the proxy's side ------------------------------------------------------------------------


class _Child:
    """One writer process, as the proxy's side sees it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.reported = threading.Event()  # its first figures: the database is open
        self.ended = threading.Event()  # its figures' pipe closed: it has committed all it will
        self.ending = False  # we closed its input (a rest, or close()): its end is expected
        self.reader: threading.Thread | None = None

    def end_input(self) -> None:
        self.ending = True
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]


def _carried(base: Status, now: Status) -> Status:
    """A child's figures on top of those its predecessors left (`base`): the counts add up,
    the maxima carry over, the state (queue, health, outbox) is the child's own."""
    return replace(
        now,
        written=base.written + now.written,
        received=base.received + now.received,
        dropped=base.dropped + now.dropped,
        max_batch=max(base.max_batch, now.max_batch),
        max_commit_lag_s=max(base.max_commit_lag_s, now.max_commit_lag_s),
    )


class ProcessWriter:
    """RecordWriter's interface, the writing done in a child process (see the module's
    docstring). Observers must be able to run there: an `InWriter`, or an observer with an
    `in_writer()` (PrometheusMetrics), whose reports come back to it here.

    With `rest_after_s`, the child rests: once no record has come for that long and nothing is
    unfinished (records queued anywhere, records waiting in the PostgreSQL outbox, a write
    failing, the child not yet open), the feeder closes its input, the child's ordinary end
    (commit all, close its observers, exit). The next record starts a new child; records wait
    in the deque meanwhile. The figures carry on across children (`Status` and every
    observer's report: a new child starts from its predecessor's last report, `resume`)."""

    def __init__(
        self,
        ledger: Path | Ledger,
        *,
        pricer: Callable[[UsageRecord], Price] | None = None,
        host: str = "",
        outbox: Path | None = None,
        batch_size: int = 1000,
        max_queue: int = 100_000,
        feed_interval_s: float = FEED_INTERVAL_S,
        close_timeout_s: float = 30.0,
        rest_after_s: float | None = None,
    ) -> None:
        """`rest_after_s`: how long the child is kept with nothing to do (None: for ever)."""
        from meterfox_cli.pricing.book import price_record

        self._ledger = as_ledger(ledger)
        self._pricer = pricer or price_record
        self._host, self._outbox = host, outbox
        self._batch_size, self._max_queue = batch_size, max_queue
        self._feed_interval_s = feed_interval_s
        self._close_timeout_s = close_timeout_s
        self._rest_after_s = rest_after_s
        self._pending: deque[UsageRecord] = deque()
        self._observers: list[tuple[Callable[..., RecordObserver], tuple[object, ...]]] = []
        self._absorbs: list[Callable[[object], None] | None] = []
        self._reports: list[object] = []  # each observer's last report: the next child's start
        self._here: list[RecordObserver] = []  # observers of this process, closed at the end
        self._base = Status()  # the figures the children before the current one left
        self._status = Status()  # the current child's on top of `_base`
        self._closing = threading.Event()
        self._child: _Child | None = None  # None: not started, or resting
        self._children: list[_Child] = []  # every child started, waited for by close()
        self._feeder = threading.Thread(target=self._feed, name="meterfox-feeder", daemon=True)
        self._quiet_since = 0.0  # monotonic: since when nothing was sent or unfinished
        self._sent = 0
        self._dropped = 0
        self._gone: str | None = None  # why the child is gone, if it went before `close`

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def db_path(self) -> Path:
        from meterfox_cli.store.writer import ledger_file

        return ledger_file(self._ledger)

    @property
    def queued(self) -> int:
        status = self._status
        return len(self._pending) + max(self._sent - status.received, 0) + status.queued

    @property
    def waiting(self) -> int | None:
        """Records in the PostgreSQL outbox (None without one). Until the child's first report
        (it is not waited for: a few tenths of a second), counted in the outbox file itself: a
        daemon stopped earlier may have left records there. (Records not yet in the child's
        hands are `queued`.)"""
        if self._status.waiting is None and self._outbox is not None:
            from meterfox_cli.store.outbox import waiting_in

            return waiting_in(self._outbox)
        return self._status.waiting

    @property
    def written(self) -> int:
        return self._status.written

    @property
    def dropped(self) -> int:
        return self._dropped + self._status.dropped

    @property
    def failing_since(self) -> float | None:
        return self._status.failing_since

    @property
    def last_error(self) -> str | None:
        return self._gone or self._status.last_error

    @property
    def healthy(self) -> bool:
        return self._gone is None and self._status.healthy

    @property
    def max_batch(self) -> int:
        return self._status.max_batch

    @property
    def max_commit_lag_s(self) -> float:
        return self._status.max_commit_lag_s

    @property
    def alive(self) -> bool:
        child = self._child
        return child is not None and child.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The current child's (None while it rests)."""
        child = self._child
        return None if child is None else child.process.pid

    @property
    def state(self) -> str:
        """`running`, `starting` (its database not open yet) or `resting` (no process: the
        next record starts one)."""
        child = self._child
        if child is None:
            return "resting"
        return "running" if child.reported.is_set() else "starting"

    def add_observer(self, observer: RecordObserver | InWriter) -> None:
        """Build `observer` in the writer's process: an `InWriter`, or an observer with an
        `in_writer()`, kept here for its reports. Register before `start`."""
        if not isinstance(observer, InWriter):
            in_writer = getattr(observer, "in_writer", None)
            if in_writer is None:
                raise TypeError(f"{observer!r} cannot observe from the writer's process")
            self._here.append(observer)
            observer = in_writer()
        self._observers.append((observer.build, observer.args))
        self._absorbs.append(observer.absorb)
        self._reports.append(None)

    def start(self) -> None:
        """Start the child, without waiting for it: records submitted while it starts (a few
        tenths of a second, off the proxy's way to listening) wait in the pipe, counted as
        queued, and are committed once it has opened the database, which `serve` has created
        and migrated before (Ledger.check), so opening it is quick and no other daemon finds it
        half-migrated. A child that cannot start makes health say why (degraded); a database
        that cannot be opened yet is logged, not fatal, as with RecordWriter."""
        self._spawn()
        self._quiet_since = time.monotonic()
        self._feeder.start()

    def submit(self, record: UsageRecord) -> None:
        """Queue a record without blocking (a full queue drops it, counted, as RecordWriter)."""
        if len(self._pending) >= self._max_queue:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error("record queue full: %d records dropped so far", self._dropped)
            return
        self._pending.append(record)

    def close(self, timeout: float | None = None) -> None:
        """Send everything queued (starting a child if it rests and records came), close the
        pipe and wait for every child to commit it all and exit (blocks: off the event loop)."""
        self._closing.set()
        if not self._children:
            return
        if self._feeder.is_alive():
            self._feeder.join()
        elif self._child is not None:
            self._child.end_input()
        wait = (timeout or self._close_timeout_s) + CLOSE_MARGIN_S
        deadline = time.monotonic() + wait
        for child in self._children:
            try:
                child.process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                log.error("the record writer's process did not finish in %.0f s; stopping it", wait)
                child.process.kill()
                child.process.wait()
            if child.reader is not None:
                child.reader.join(5)

    def close_observers(self) -> None:
        """The child closed its own with its writer; these are this side's (a page's)."""
        for observer in self._here:
            try:
                observer.close()
            except Exception:
                log.exception("record observer %r failed to close", observer)

    def _spawn(self) -> _Child:
        """A new child, given its spec (and the observers' last reports, to count on from)."""
        spec = pickle.dumps(
            WriterSpec(
                ledger=self._ledger,
                pricer=self._pricer,
                host=self._host,
                outbox=self._outbox,
                batch_size=self._batch_size,
                max_queue=self._max_queue,
                observers=tuple(self._observers),
                close_timeout_s=self._close_timeout_s,
                resume=tuple(self._reports),
            ),
            pickle.HIGHEST_PROTOCOL,
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "meterfox_cli.store.writer_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        child = _Child(process)
        self._children = [c for c in self._children if c.process.poll() is None] + [child]
        self._child = child
        child.reader = threading.Thread(
            target=self._read, args=(child,), name="meterfox-status", daemon=True
        )
        child.reader.start()
        assert process.stdin is not None
        process.stdin.write(_frame(spec))
        process.stdin.flush()
        return child

    def _feed(self) -> None:
        try:
            stopping = False
            while not stopping:
                stopping = self._closing.wait(self._feed_interval_s)
                if self._pending:
                    if not self._send_pending():
                        return
                elif not stopping and self._quiet_enough():
                    self._rest()
        finally:
            if self._child is not None:
                self._child.end_input()

    def _send_pending(self) -> bool:
        """Send what is queued, to the child or, if it rests, to a new one; False if the
        child is gone (what it did not take is lost)."""
        child = self._child
        if child is None:
            try:
                child = self._wake()
            except OSError as exc:
                self._gone = f"the record writer's process could not start again ({exc})"
                self._lose(0, exc)
                return False
        pipe = child.process.stdin
        while self._pending:
            batch = self._take()
            try:
                pipe.write(_frame(_encode(batch)))  # type: ignore[union-attr]
                pipe.flush()  # type: ignore[union-attr]
            except OSError as exc:
                self._lose(len(batch), exc)
                return False
            self._sent += len(batch)
        self._quiet_since = time.monotonic()
        return True

    def _quiet_enough(self) -> bool:
        """Time to rest: nothing sent and nothing unfinished for `rest_after_s`."""
        if self._rest_after_s is None or self._child is None:
            return False
        now = time.monotonic()
        if self._unfinished(self._child):
            self._quiet_since = now
            return False
        return now - self._quiet_since >= self._rest_after_s

    def _unfinished(self, child: _Child) -> bool:
        """Anything a rest would leave undone, or hide: the child not open yet (or not yet
        reporting), records queued (here, in the pipe, in its writer), records waiting in the
        PostgreSQL outbox, a write failing (or an outbox behind: `healthy`)."""
        status = self._status
        return (
            not child.reported.is_set()
            or self.queued > 0
            or bool(status.waiting)
            or status.failing_since is not None
            or not self.healthy
        )

    def _rest(self) -> None:
        child, self._child = self._child, None
        assert child is not None
        log.info(
            "no record for %s s: the record writer's process (pid %d) rests until the next one",
            f"{self._rest_after_s:g}",
            child.process.pid,
        )
        child.end_input()

    def _wake(self) -> _Child:
        """A new child for the records that came: once the one that rested has said its last
        (it has committed all, closed its database and outbox; its observers may still be
        flushing, an OpenTelemetry export among them: that goes on beside the new one)."""
        last = self._children[-1] if self._children else None
        if last is not None and not last.ended.wait(self._close_timeout_s + CLOSE_MARGIN_S):
            log.error(
                "the record writer's process (pid %d) did not end; stopping it", last.process.pid
            )
            last.process.kill()
            last.ended.wait(5)
        return self._spawn()

    def _take(self) -> list[UsageRecord]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(self._batch_size, len(pending)))]

    def _lose(self, count: int, exc: OSError) -> None:
        """The child is gone: what it did not take is lost, and so is what comes after."""
        self._closing.set()
        lost = count + len(self._pending)
        self._pending.clear()
        self._dropped += lost
        log.error("the record writer's process is gone (%s): %d records lost", exc, lost)

    def _absorb(self, reports: list[object]) -> None:
        for i, (absorb, report) in enumerate(zip(self._absorbs, reports, strict=True)):
            if report is None:
                continue
            self._reports[i] = report
            if absorb is not None:
                try:
                    absorb(report)
                except Exception:
                    log.exception("an observer's report failed; its figures lag")

    def _read(self, child: _Child) -> None:
        stream = child.process.stdout
        while (data := _read_frame(stream)) is not None:  # type: ignore[arg-type]
            fields, reports = pickle.loads(data)
            if reports is not None:  # before the figures: a page never lags `records_written`
                self._absorb(reports)
            self._status = _carried(self._base, Status(*fields))
            child.reported.set()
        self._base = self._status  # what the next child counts on from
        child.ended.set()
        code = child.process.wait()
        if child.ending and code == 0:
            return
        self._gone = f"the record writer's process exited (code {code}); see the log"
        log.error("%s", self._gone)
        if not child.ending:
            self._closing.set()  # the feeder stops; records submitted from now on are dropped


# --- the writer's side -----------------------------------------------------------------------


class _Reporter:
    """The child's figures to the proxy: after each batch (the last observer, so every other
    observer has seen it, with their reports), and every STATUS_INTERVAL_S when they changed."""

    def __init__(
        self, writer: RecordWriter, observers: list[RecordObserver], out: BinaryIO, outbox: bool
    ) -> None:
        self._writer, self._observers, self._out = writer, observers, out
        self._outbox = outbox
        self._lock = threading.Lock()
        self._committed = 0  # records written as of the last batch the observers saw
        self._last: tuple | None = None
        self.received = 0
        self.proxy_gone = False  # its end of our figures' pipe closed: sending stops

    def observe(self, rows: Sequence[Row]) -> None:
        self._committed = self._writer.written
        reports = [getattr(o, "report", _no_report)() for o in self._observers]
        self.send(reports, committing=len(rows))

    def close(self) -> None:
        """As an observer: `finish` has sent the last figures."""

    def finish(self) -> None:
        """The last figures, then the end of them: the proxy may start the next process now
        (after a rest), while the other observers flush."""
        self.send(None)
        with self._lock:
            self.proxy_gone = True
            with contextlib.suppress(OSError):
                self._out.close()

    def send(self, reports: list[object] | None, committing: int = 0) -> None:
        """`committing`: records the writer still counts as queued that are committed (the
        batch being observed)."""
        w = self._writer
        fields = (
            w.written if self._outbox else self._committed,
            max(w.queued - committing, 0),
            self.received,
            w.dropped,
            w.failing_since,
            w.last_error,
            w.healthy,
            w.waiting,
            w.max_batch,
            w.max_commit_lag_s,
        )
        with self._lock:
            if self.proxy_gone or (reports is None and fields == self._last):
                return
            self._last = fields
            try:
                self._out.write(_frame(pickle.dumps((fields, reports), pickle.HIGHEST_PROTOCOL)))
                self._out.flush()
            except OSError:  # the proxy is gone (killed): nobody to tell; committing goes on
                self.proxy_gone = True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(STATUS_INTERVAL_S) and not self.proxy_gone:
            self.send(None)


def _no_report() -> None:
    return None


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    # Our figures go out on a private copy of stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    from meterfox_cli.logs import configure_logging

    configure_logging()
    # Unbuffered, so that select() sees every byte not yet read.
    stream = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
    first = _read_frame(stream)
    if first is None:
        return
    spec: WriterSpec = pickle.loads(first)
    from meterfox_cli.store.writer import RecordWriter

    writer = RecordWriter(
        spec.ledger,
        pricer=spec.pricer,
        host=spec.host,
        outbox=spec.outbox,
        batch_size=spec.batch_size,
        max_queue=spec.max_queue,
    )
    observers = [build(*args) for build, args in spec.observers]
    for observer, report in zip(observers, spec.resume or [None] * len(observers), strict=True):
        resume = getattr(observer, "resume", None)
        if report is not None and resume is not None:  # after a rest: count on from the last
            resume(report)
        writer.add_observer(observer)
    reporter = _Reporter(writer, observers, out, spec.outbox is not None)
    writer.add_observer(reporter)
    writer.start()
    reporter.send([None] * len(observers))  # opened: the proxy's first figures from here
    stop = threading.Event()
    status = threading.Thread(target=reporter.run, args=(stop,), daemon=True)
    status.start()
    warm = getattr(spec.pricer, "warm", None)
    if warm is not None:  # the price data (about 0.2 s) loads while records arrive
        threading.Thread(target=warm, name="meterfox-warm", daemon=True).start()
    for batch in _batches(stream, parent):
        for fields in batch:
            writer.submit(from_wire(fields))
        reporter.received += len(batch)
    writer.close(spec.close_timeout_s)
    stop.set()
    status.join()
    reporter.finish()
    writer.close_observers()


def _batches(stream: BinaryIO, parent: int) -> Iterator[list[tuple]]:
    """Each batch the proxy sends, until the end of input, or until the proxy is gone and
    nothing is left to read while something else holds the pipe open (a backstop: the proxy
    starts its processes without inheriting it)."""
    while True:
        readable, _, _ = select.select([stream], [], [], ORPHAN_CHECK_S)
        if not readable:
            if os.getppid() != parent:
                log.error("the proxy is gone but the record pipe is still open; exiting")
                return
            continue
        data = _read_frame(stream)
        if data is None:
            return
        yield _decode(data)


if __name__ == "__main__":
    main()
