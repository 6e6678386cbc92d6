"""Where the dashboard's queries run: every read in one long-lived worker process of its own
(`web/worker.py`, started when the daemon starts the Overview's keeper, or else on the first
read; stopped with the app), so neither its database nor its Python work takes the proxy's GIL;
the daemon only sends a picklable query and hands on the already-shaped answer (or, for a
streamed query such as the keeper's, each answer as the worker yields it). The reads go to the
ledger (either store: the worker is sent which as its first message, so a PostgreSQL URL never
shows in a process list). The rare writes (revoke, create) run on a thread of the daemon with a
connection of their own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from meterfox_cli.store.backend import Ledger, as_ledger
from meterfox_cli.web.worker import frame

T = TypeVar("T")

THREADS = 4  # the Overview's three reads and Live's poll run side by side in the worker
STOP_WAIT_S = 2.0


class WorkerGone(RuntimeError):
    """The read process ended while a read was waiting (the next read starts a new one)."""


class _Worker:
    """One running read process and the reads waiting for its answers."""

    def __init__(
        self, process: subprocess.Popen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self._reader = reader
        self._writer = writer
        self._waiting: dict[int, asyncio.Future] = {}
        self._streams: dict[int, asyncio.Queue] = {}
        self._idents = itertools.count()
        self._answers = asyncio.get_running_loop().create_task(self._receive())

    @property
    def alive(self) -> bool:
        return not self._answers.done() and self.process.poll() is None

    async def call(self, query: Callable[[Any], T]) -> T:
        ident = next(self._idents)
        answer = self._waiting[ident] = asyncio.get_running_loop().create_future()
        try:
            await self._ask(ident, query, streamed=False)
            return await answer
        finally:
            self._waiting.pop(ident, None)

    async def stream(self, query: Callable[[Any], Iterator[T]]) -> AsyncIterator[T]:
        ident = next(self._idents)
        items = self._streams[ident] = asyncio.Queue()
        try:
            await self._ask(ident, query, streamed=True)
            while True:
                ok, value = await items.get()
                if ok is None:
                    return
                if not ok:
                    raise value
                yield value
        finally:
            self._streams.pop(ident, None)  # what the worker still sends for it is dropped

    async def _ask(self, ident: int, query: Callable[[Any], Any], streamed: bool) -> None:
        try:
            self._writer.write(frame((ident, query, streamed)))
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise WorkerGone("the dashboard's read process is gone") from exc

    async def _receive(self) -> None:
        try:
            while True:
                size = int.from_bytes(await self._reader.readexactly(4), "big")
                ident, ok, value = pickle.loads(await self._reader.readexactly(size))
                items = self._streams.get(ident)
                if items is not None:
                    items.put_nowait((ok, value))
                    continue
                answer = self._waiting.get(ident)
                if answer is not None and not answer.done():
                    answer.set_result(value) if ok else answer.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            gone = WorkerGone("the dashboard's read process ended")
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_exception(gone)
            for items in self._streams.values():
                items.put_nowait((False, gone))

    async def stop(self) -> None:
        self._writer.close()  # the worker reads EOF and exits
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        for _ in range(int(STOP_WAIT_S / 0.05)):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        else:
            self.process.kill()
            self.process.wait()
        self._answers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._answers


class Reader:
    """The dashboard's reads, in a worker process started on the first one: from `ledger`
    (default: the SQLite file `database`); its writes (keys) go to the same ledger."""

    def __init__(self, database: Path, threads: int = THREADS, ledger: Ledger | None = None):
        self.database = database
        self.ledger = as_ledger(database) if ledger is None else ledger
        self._threads = threads
        self._worker: _Worker | None = None
        self._starting: asyncio.Lock | None = None

    async def read(self, query: Callable[[Any], T]) -> T:
        """`query(conn)` in the worker; `query` must pickle (a module-level function, or a
        `functools.partial` of one) and should return plain, already-shaped data. A read the
        worker died under is asked once more of a new one (reads change nothing)."""
        try:
            return await (await self._running()).call(query)
        except WorkerGone:
            return await (await self._running()).call(query)

    async def stream(self, query: Callable[[Any], Iterator[T]]) -> AsyncIterator[T]:
        """What `query(conn)` yields in the worker, as it yields it (on a thread and connection
        of its own there), until it ends; WorkerGone when the worker does (no retry: the caller
        decides when to ask again). `query` must pickle, as for `read`."""
        worker = await asyncio.shield(self._running())  # a cancelled start still ends with one
        async for item in worker.stream(query):
            yield item

    async def write(self, change: Callable[[Any], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._write, change)

    @property
    def pid(self) -> int | None:
        """The worker's process id while one runs."""
        return self._worker.process.pid if self._worker and self._worker.alive else None

    async def close(self) -> None:
        if self._starting is not None:
            async with self._starting:  # a start under way finishes, so that it is stopped too
                pass
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.stop()

    async def _running(self) -> _Worker:
        if self._worker is not None and self._worker.alive:
            return self._worker
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._worker is None or not self._worker.alive:
                if self._worker is not None:
                    await self._worker.stop()
                self._worker = await self._start()
        return self._worker

    async def _start(self) -> _Worker:
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "meterfox_cli.web.worker",
                    str(theirs.fileno()),
                    str(self.database),
                    str(self._threads),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(frame(self.ledger))  # where to read: the worker's first message
        return _Worker(process, reader, writer)

    def _write(self, change: Callable[[Any], T]) -> T:
        """A change (revoke, create) on a connection of its own to the ledger, where `keys`
        and every daemon read proxy keys (the local file, or the team's PostgreSQL)."""
        conn = self.ledger.open_writer()
        try:
            return change(conn)
        finally:
            conn.close()
