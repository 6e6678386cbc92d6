"""Reads for tests to send to the dashboard's read worker that import nothing else there (the
worker imports a read's module to unpickle it; a test module would bring its own imports)."""

from __future__ import annotations

import sys
import time

WEB_SERVER = ("aiohttp", "meterfox_cli.web.routes")


def web_server_loaded(conn: object) -> list[str]:
    """Which of the daemon's web-server modules the worker has imported."""
    return sorted(name for name in WEB_SERVER if name in sys.modules)


def count_to(conn: object, last: int):
    """A streamed read: 1, 2, … `last`, then its end."""
    yield from range(1, last + 1)


def count_forever(conn: object):
    """A streamed read that never ends (until its worker does)."""
    n = 0
    while True:
        n += 1
        yield n
        time.sleep(0.01)
