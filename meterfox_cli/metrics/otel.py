"""OpenTelemetry export, daemon side (off unless `[otel] endpoint` is set): a RecordObserver
that hands each committed batch to the export process (otel_worker.py), where the official
SDK makes the spans and histograms (otel_sdk.py) and sends them over OTLP/HTTP.

On the writer's thread, a batch costs one queue put; a thread of this observer pickles it into
the process's pipe. The SDK's work per span never takes the proxy's GIL. If the export process
falls behind (the machine saturated), batches past the queue's bound are dropped and counted:
telemetry never holds back a record or a request.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence

from meterfox_cli.config import OtelConfig
from meterfox_cli.metrics.otel_sdk import check_installed
from meterfox_cli.metrics.otel_worker import frame
from meterfox_cli.store.observers import Row

log = logging.getLogger("meterfox.otel")

MAX_BATCHES = 1000  # queued for the export process; a batch is up to the writer's batch size
CLOSE_WAIT_S = 20.0  # for the process to flush at shutdown (the SDK's export timeout is 10 s)


class OtelObserver:
    def __init__(self, config: OtelConfig, tags: Sequence[str] = ()) -> None:
        check_installed()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "meterfox_cli.metrics.otel_worker"],
            stdin=subprocess.PIPE,
        )
        self._pipe = self._process.stdin
        self._queue: queue.Queue[list[Row] | None] = queue.Queue(MAX_BATCHES)
        self._thread = threading.Thread(
            target=self._send, args=(frame((config, tuple(tags))),), name="meterfox-otel"
        )
        self._thread.daemon = True
        self._thread.start()
        self.dropped = 0

    def observe(self, rows: Sequence[Row]) -> None:
        try:
            self._queue.put_nowait(list(rows))
        except queue.Full:
            self.dropped += len(rows)
            if self.dropped == len(rows) or self.dropped % 10_000 < len(rows):
                log.warning("OpenTelemetry export is behind: %d records not exported", self.dropped)

    def close(self) -> None:
        """Send what is queued, close the pipe, wait for the process to flush (blocks)."""
        self._queue.put(None)
        self._thread.join(CLOSE_WAIT_S)
        try:
            self._process.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            log.error("the OpenTelemetry export process did not finish; stopping it")
            self._process.kill()
            self._process.wait()

    def _send(self, first: bytes) -> None:
        try:
            self._pipe.write(first)
            while (batch := self._queue.get()) is not None:
                self._pipe.write(frame(batch))
                self._pipe.flush()
        except (BrokenPipeError, OSError) as exc:
            log.error("the OpenTelemetry export process is gone (%s); export stopped", exc)
        finally:
            with contextlib.suppress(OSError):
                self._pipe.close()
