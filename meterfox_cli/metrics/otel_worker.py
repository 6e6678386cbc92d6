"""The OpenTelemetry export process: `python -m meterfox_cli.metrics.otel_worker`, started by
`otel.OtelObserver`. Reads length-prefixed pickled frames on stdin — first `(OtelConfig, tags)`,
then batches of committed rows — and feeds them to the SDK (otel_sdk.py); at EOF (the daemon
closed the pipe, or died) it flushes what is batched and exits. It runs at a lower priority,
so a busy machine serves the proxy first.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import BinaryIO

NICENESS = 10


def frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


def read_frame(stream: BinaryIO) -> object | None:
    """The next value, or None at EOF (a frame cut short by a dying daemon counts as EOF)."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "big")
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def main() -> None:
    # Ctrl-C reaches the whole process group: the daemon's shutdown closes our stdin, and we
    # flush then; a SIGINT of our own would lose the last batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    from meterfox_cli.logs import configure_logging
    from meterfox_cli.metrics.otel_sdk import OtelExporter

    configure_logging()
    stream = sys.stdin.buffer
    config, tags = read_frame(stream)
    exporter = OtelExporter(config, tags)
    try:
        while (batch := read_frame(stream)) is not None:
            exporter.observe(batch)
    finally:
        exporter.close()


if __name__ == "__main__":
    main()
