"""The dashboard's own thread and read connection: every dashboard query runs there, never on
the proxy's event loop; the rare writes (revoke, create) open a connection of their own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from meterfox_cli.store.db import connect

T = TypeVar("T")


class Reader:
    """One worker thread holding one read-only connection (opened on first use)."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="meterfox-dashboard")
        self._conn: sqlite3.Connection | None = None

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read, query)

    async def write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, change)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = connect(self.database, readonly=True)
        return query(self._conn)

    def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        conn = connect(self.database)
        try:
            return change(conn)
        finally:
            conn.close()
