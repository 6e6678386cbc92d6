"""Reads for tests to send to the dashboard's read worker that import nothing else there (the
worker imports a read's module to unpickle it; a test module would bring its own imports)."""

from __future__ import annotations

import sys

WEB_SERVER = ("aiohttp", "meterfox_cli.web.routes")


def web_server_loaded(conn: object) -> list[str]:
    """Which of the daemon's web-server modules the worker has imported."""
    return sorted(name for name in WEB_SERVER if name in sys.modules)
