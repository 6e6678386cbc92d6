"""`serve --workers N`: N copies of the proxy on one port, one per core. A supervisor checks the
port is free, forks the workers (each builds its own app: its own upstream session, record
writer, key watcher), reports ready once all listen, sends each the stop signal once, and stops
them all if one dies. The kernel spreads connections over the workers (SO_REUSEPORT)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import ssl
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.proxy.server import cannot_listen, run_event_loop, serve

READY_TIMEOUT_S = 60.0


@dataclass
class Workers:
    """The supervisor's view of its workers: pid -> worker number."""

    pids: dict[int, int] = field(default_factory=dict)
    stopping: bool = False

    def stop(self, *_: object) -> None:
        """Send every live worker SIGTERM, once (they ignore SIGINT)."""
        if self.stopping:
            return
        self.stopping = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def run_workers(
    build: Callable[[int], web.Application],
    host: str,
    port: int,
    count: int,
    *,
    loop: str,
    on_ready: Callable[[str], None],
    max_connections: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Run `count` workers, worker i serving `build(i)`, until SIGINT or SIGTERM; the exit code
    (0 when every worker stopped cleanly)."""
    _check_port_free(host, port)
    ready_read, ready_write = os.pipe()
    workers = Workers()
    previous = {sig: signal.signal(sig, workers.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for number in range(count):
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                os.close(ready_read)
                _worker(build, number, host, port, loop, ready_write, max_connections, tls)
            workers.pids[pid] = number
        os.close(ready_write)
        url = _wait_ready(ready_read, count, workers)
        if url is not None:
            on_ready(url)
        return _wait_all(workers)
    finally:
        os.close(ready_read)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _worker(
    build: Callable[[int], web.Application],
    number: int,
    host: str,
    port: int,
    loop: str,
    ready: int,
    max_connections: int | None,
    tls: ssl.SSLContext | None,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor sends SIGTERM, once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        app = build(number)

        def listening(url: str) -> None:
            os.write(ready, (url + "\n").encode())

        running = serve(app, host, port, listening, max_connections, tls=tls, worker=True)
        run_event_loop(running, loop)
    except MeterFoxError as exc:
        print(f"meterfox: worker {number}: {exc}", file=sys.stderr)
        code = 2
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _check_port_free(host: str, port: int) -> None:
    """A bind without SO_REUSEPORT fails while anything (another serve, with workers or not)
    holds the port; the workers then bind it together."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise cannot_listen(exc, host, port) from exc


def _wait_ready(ready: int, count: int, workers: Workers) -> str | None:
    """The URL once every worker listens; None if one exits first or a stop comes (the others
    are then stopped)."""
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(lines) < count and not workers.stopping and time.monotonic() < deadline:
        readable, _, _ = select.select([ready], [], [], 0.05)
        if readable:
            chunk = os.read(ready, 4096)
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in done]
            if not chunk:  # every worker closed its end: some died before listening
                break
        if _reap(workers, block=False):
            break
    if len(lines) < count:
        workers.stop()
        return None
    return lines[0]


def _reap(workers: Workers, block: bool) -> list[tuple[int, int]]:
    """Collect exited workers: (worker number, exit code) each; stop the rest if one went."""
    exited = []
    while workers.pids:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        number = workers.pids.pop(pid, None)
        if number is None:
            continue
        exited.append((number, os.waitstatus_to_exitcode(status)))
        if not workers.stopping:
            print(f"meterfox: worker {number} exited ({exited[-1][1]}): stopping", file=sys.stderr)
            workers.stop()
        if block:
            break
    return exited


def _wait_all(workers: Workers) -> int:
    worst = 0
    while workers.pids:
        for _, code in _reap(workers, block=True):
            if code != 0:
                worst = worst or (code if code > 0 else 1)
    return worst
