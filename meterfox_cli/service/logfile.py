"""The daemon's log file as the service writes it (units.py sends its output there): its last
lines, and following it as it grows."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

_READ_CHUNK = 64 * 1024


def last_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of the log (none if it does not exist), read from its end."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            start = max(0, size - _READ_CHUNK * max(1, count // 200 + 1))
            log.seek(start)
            tail = log.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []
    if start > 0:
        tail = tail[1:]  # the first line was cut
    return list(deque(tail, maxlen=count)) if count > 0 else []


def follow(
    path: Path, stop: Callable[[], bool] = lambda: False, poll_s: float = 0.5
) -> Iterator[str]:
    """Each line appended to the log from now on, until `stop()` says so (or Ctrl-C); starts
    over when the file is replaced or truncated."""
    position = path.stat().st_size if path.exists() else 0
    pending = ""
    while not stop():
        size = path.stat().st_size if path.exists() else 0
        if size < position:
            position = 0
        if size > position:
            with open(path, "rb") as log:
                log.seek(position)
                chunk = log.read()
            position += len(chunk)
            pending += chunk.decode("utf-8", "replace")
            *lines, pending = pending.split("\n")
            yield from lines
        else:
            time.sleep(poll_s)
