"""The dashboard's read process: `python -m meterfox_cli.web.worker FD DATABASE THREADS`, started
by `web/reader.Reader` (when the daemon starts, or on the first dashboard read). It runs each
read on one of its own threads (each with its own read connection to the ledger, either store)
and sends back the already-shaped result, so the dashboard's Python work never takes the daemon's GIL; it runs at
the idle CPU priority (`lower_priority`), so when the CPUs are busy the proxy comes first and
the dashboard waits. It exits when the daemon closes its end of the socket, or dies (even by
SIGKILL: the socket ends, and the parent pid changes).

Frames on the socket, both ways: a 4-byte big-endian length, then a pickle. The first frame
from the daemon is the ledger to read (store/backend.Ledger). A request is
`(ident, query, streamed)`, `query` a picklable callable taking the connection (a module-level
function or a `functools.partial` of one); an answer is `(ident, ok, result_or_exception)`.
A streamed query returns an iterator and runs on a thread (and connection) of its own for as
long as it yields: each item is an answer `(ident, True, item)`, and its end `(ident, None,
None)` (or `(ident, False, exception)`)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_HEADER = struct.Struct(">I")
PARENT_CHECK_S = 1.0
NICE = 19  # where the idle scheduling class is not available


def frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def json_text(query: Callable[..., Any], conn: Any, *args: Any, **kwargs: Any) -> str:
    """`query`'s result as JSON text, built here in the worker (the daemon only sends it)."""
    return json.dumps(query(conn, *args, **kwargs))


def _receive(sock: socket.socket) -> object:
    header = _exactly(sock, _HEADER.size)
    return pickle.loads(_exactly(sock, _HEADER.unpack(header)[0]))


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Answering:
    def __init__(self, sock: socket.socket, ledger: Any) -> None:
        self._sock = sock
        self._ledger = ledger
        self._local = threading.local()
        self._sending = threading.Lock()

    def answer(self, ident: int, query: Callable[[Any], Any]) -> None:
        try:
            reply = frame((ident, True, query(self._conn())))
        except Exception as exc:  # the daemon turns it back into the same exception
            reply = _failure(ident, exc)
        self._send(reply)

    def stream(self, ident: int, query: Callable[[Any], Iterator[Any]]) -> None:
        try:
            for item in query(self._conn()):
                self._send(frame((ident, True, item)))
            reply = frame((ident, None, None))
        except Exception as exc:
            reply = _failure(ident, exc)
        self._send(reply)

    def _send(self, reply: bytes) -> None:
        with self._sending:
            try:
                self._sock.sendall(reply)
            except OSError:
                os._exit(0)  # the daemon is gone

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._ledger.is_lost(conn):  # the server dropped it
            conn = self._local.conn = None
        if conn is None:
            from meterfox_cli.errors import StoreError

            conn = self._ledger.read_connection()
            if conn is None:
                raise StoreError(f"no ledger at {self._ledger.describe()} yet")
            self._local.conn = conn
        return conn


def _failure(ident: int, exc: Exception) -> bytes:
    try:
        return frame((ident, False, exc))
    except Exception:  # an exception that does not pickle
        return frame((ident, False, RuntimeError(repr(exc))))


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def lower_priority() -> None:
    """SCHED_IDLE where the OS has it (Linux): the worker runs only on a CPU nothing else wants,
    and any proxy thread that wakes takes the CPU from it at once; else the lowest nice."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(NICE)


def main(argv: list[str]) -> None:
    fd, threads = int(argv[0]), int(argv[2])  # argv[1]: the database, for a process list
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the daemon, and the daemon us
    lower_priority()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        ledger = _receive(sock)
    except (EOFError, OSError):
        os._exit(0)
    answering = _Answering(sock, ledger)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="meterfox-dashboard")
    while True:
        try:
            ident, query, streamed = _receive(sock)  # type: ignore[misc]
        except (EOFError, OSError):
            os._exit(0)  # the daemon closed its end or died: stop now, mid-read or not
        if streamed:
            name = f"meterfox-dashboard-stream-{ident}"
            thread = threading.Thread(
                target=answering.stream, args=(ident, query), name=name, daemon=True
            )
            thread.start()
        else:
            pool.submit(answering.answer, ident, query)


if __name__ == "__main__":
    main(sys.argv[1:])
