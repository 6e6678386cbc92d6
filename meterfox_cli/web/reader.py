"""The dashboard's own threads, each with its own read connection: every dashboard query runs
there, never on the proxy's event loop; the rare writes (revoke, create) open a connection of
their own. Three threads, so the Overview's three reads run in parallel (SQLite releases the
GIL while it reads) and a slow one (top tags) never holds up the others or Live."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from meterfox_cli.store.db import connect

T = TypeVar("T")


THREADS = 3


class Reader:
    """Worker threads, each holding one read-only connection (opened on its first use)."""

    def __init__(self, database: Path, threads: int = THREADS) -> None:
        self.database = database
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="meterfox-dashboard")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read, query)

    async def write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, change)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for conn in self._conns:
            conn.close()
        self._conns.clear()

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.database, readonly=True)
            self._conns.append(conn)
        return query(conn)

    def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        conn = connect(self.database)
        try:
            return change(conn)
        finally:
            conn.close()
