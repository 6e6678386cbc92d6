"""Live: finished requests pushed to every open page as Server-Sent Events. One poller reads
rows committed since it last looked (`store/feed.read_new`, each row once even when another
daemon commits a lower row id late) and writes them as one event in
the dashboard's read process (`web/reader`), every `interval` seconds and only while a page
listens; the proxy's loop only passes the text on, and its hot path is untouched."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from functools import partial

from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.feed import Cursor, cursor_at_end, latest, read_new
from meterfox_cli.store.rows import RequestLine
from meterfox_cli.web.reader import Reader
from meterfox_cli.web.shapes import line_json

INTERVAL_S = 0.5
BACKLOG = 20  # the requests a page is shown when it opens Live
QUEUE_LIMIT = 100  # batches a slow page may fall behind before it is dropped


class LiveFeed:
    def __init__(self, reader: Reader, interval: float = INTERVAL_S) -> None:
        self._reader = reader
        self._interval = interval
        self._listeners: set[asyncio.Queue[str | None]] = set()
        self._wake = asyncio.Event()
        self._watching = asyncio.Event()  # set once the poller knows where it starts
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        for queue in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def backlog(self) -> str:
        return await self._reader.read(backlog_event)

    async def listen(self) -> asyncio.Queue[str | None]:
        """A queue of events for one page. When this returns the poller has its starting row,
        so a backlog read after it misses nothing (a request may come twice: pages keep the
        rowids they showed)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)
        self._listeners.add(queue)
        self._wake.set()
        await self._watching.wait()
        return queue

    def leave(self, queue: asyncio.Queue[str | None]) -> None:
        self._listeners.discard(queue)

    async def _run(self) -> None:
        cursor = None
        while True:
            if not self._listeners:
                self._wake.clear()
                self._watching.clear()
                await self._wake.wait()
                cursor = None
            if cursor is None:
                cursor = await self._reader.read(partial(cursor_at_end, now=time.monotonic()))
                self._watching.set()
            read = partial(new_event, cursor=cursor, now=time.monotonic())
            cursor, event = await self._reader.read(read)
            if event:
                self._publish(event)
            await asyncio.sleep(self._interval)

    def _publish(self, event: str) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._listeners.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)  # too slow: this page is closed, it reconnects


def backlog_event(conn: LedgerConnection) -> str:
    return _event(latest(conn, BACKLOG))


def new_event(conn: LedgerConnection, cursor: Cursor, now: float) -> tuple[Cursor, str | None]:
    """The rows new since `cursor` as one event, and the cursor after them (in the read
    process: the proxy's loop only hands the text on)."""
    batch, cursor = read_new(conn, cursor, now)
    return cursor, (_event(batch) if batch else None)


def _event(lines: list[RequestLine]) -> str:
    return f"event: requests\ndata: {json.dumps([line_json(line) for line in lines])}\n\n"
