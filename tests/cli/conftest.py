"""The `meterfox` command as a real process, for the tests in tests/cli/ and the features after
them: `launch_serve` runs `meterfox serve` until the block ends, `launch` any other long-running
command, `run_meterfox` a command to completion (`run_process` any program).

Every process gets the test's environment (the autouse fixture's METERFOX_HOME and keyring
settings) plus what the test adds, reads no terminal, and is stopped by its PID and waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.fakes.otlp import FakeCollector

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0
# `--workers` for every launch_serve; the `serve_workers` fixture runs a test with 1, then 2.
SERVE_WORKERS = [1]
STOP_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 60.0

Process = asyncio.subprocess.Process
Env = Mapping[str, str | None]  # added to the test's environment; None removes a variable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def meterfox_command(*args: str) -> list[str]:
    """The command line that runs this checkout's `meterfox ARGS`."""
    return [sys.executable, "-m", "meterfox_cli", *args]


def meterfox_env(extra: Env | None = None) -> dict[str, str]:
    """The test's environment, this checkout first on the import path, then `extra` (a value of
    None removes that variable)."""
    assert "METERFOX_HOME" in os.environ, "no test home: a process would use the real one"
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path}
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Launched:
    """A running process and all it has printed so far (read as it comes, so a chatty process
    never blocks on a full pipe)."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self._out = bytearray()
        self._err = bytearray()
        self._signalled = False
        self._readers = [
            asyncio.create_task(_drain(process.stdout, self._out)),
            asyncio.create_task(_drain(process.stderr, self._err)),
        ]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return self._out.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self._err.decode(errors="replace")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the process once: `stop` then only waits (a second SIGTERM would kill a
        `meterfox serve` that is still draining)."""
        self._signalled = True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    async def expect(self, text: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until `text` appears in the output (stdout or stderr)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.returncode is not None:
                await self.wait()
                assert text in self.output, f"exited {self.returncode}: {self.output}"
                return
            assert time.monotonic() < deadline, f"no {text!r} in {timeout} s: {self.output}"
            await asyncio.sleep(0.02)

    async def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
        """Wait for the process to end by itself (killed if it takes longer than `timeout`)."""
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await asyncio.gather(*self._readers)
        return self.process.returncode

    async def stop(
        self, sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S
    ) -> int:
        """Signal the process (unless the test did already), wait for it and its output, and
        return its exit code; SIGKILL if it has not ended within `timeout`."""
        if self.returncode is None and not self._signalled:
            self.send_signal(sig)
        return await self.wait(timeout)


def writer_processes(pid: int) -> list[int]:
    """The record writer's processes `meterfox serve` (pid `pid`) has started
    (store/writer_process.py): its children running that module, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                command = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"meterfox_cli.store.writer_process" in command:
                    found.append(int(child))
    return found


async def gone(pids: list[int], timeout: float = STOP_TIMEOUT_S) -> None:
    """Wait until none of `pids` is running (a zombie counts as gone); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running after {timeout} s: {pids}"
        await asyncio.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _drain(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    while stream is not None and (chunk := await stream.read(65536)):
        into.extend(chunk)


class Served(Launched):
    """A running `meterfox serve` on 127.0.0.1:`port` (over HTTPS when `tls`, a client context
    that trusts its certificate, is given)."""

    def __init__(self, process: Process, port: int, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(process)
        self.port = port
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def base(self, slug: str) -> str:
        """The base URL an SDK uses for provider `slug` (add the SDK's path, e.g. /v1)."""
        return f"{self.url}/{slug}"

    async def health(self) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url + "/_meterfox/health", ssl=self.tls) as response:
                return await response.json()

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until this process says it listens (so a daemon already on the port cannot pass
        for it) and its health endpoint answers 200; fail with its output if it exits."""
        deadline = time.monotonic() + timeout
        await self.expect(f"MeterFox {self.url} ", timeout)
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    health = self.url + "/_meterfox/health"
                    async with session.get(health, ssl=self.tls) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"serve was not healthy within {timeout} s: {self.output}")


async def _spawn(
    command: list[str], env: Mapping[str, str], *, stdin: int, **popen: object
) -> Process:
    return await asyncio.create_subprocess_exec(
        *command,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        **popen,
    )


@contextlib.asynccontextmanager
async def launch(*args: str, env: Env | None = None) -> AsyncIterator[Launched]:
    """`meterfox ARGS` running in the background until the block ends (then stopped)."""
    command = meterfox_command(*args)
    launched = Launched(await _spawn(command, meterfox_env(env), stdin=asyncio.subprocess.DEVNULL))
    try:
        yield launched
    finally:
        await launched.stop()


@contextlib.asynccontextmanager
async def launch_serve(
    *args: str,
    upstreams: Mapping[str, TestServer | str] | None = None,
    env: Env | None = None,
    port: int | None = None,
    ready: bool = True,
    tls: ssl.SSLContext | None = None,
    **popen: object,
) -> AsyncIterator[Served]:
    """`meterfox serve` on a free loopback port (or `port`), healthy before the block starts
    (unless `ready=False`: then call `wait_ready`), stopped with SIGTERM when it ends. Pass
    `tls` (a client context trusting the certificate `args` give it) for a daemon on HTTPS.

    With the `serve_workers` fixture, `--workers N` is added (N from the fixture's param).
    `upstreams` sends each provider slug to a fake (a TestServer or an origin URL); `args` are
    any other `serve` options; `env` adds to or removes from the test's environment; `popen`
    goes to the subprocess (e.g. a `preexec_fn` that sets a resource limit).
    """
    port = port or free_port()
    options = ["--workers", str(SERVE_WORKERS[0])] if SERVE_WORKERS[0] > 1 else []
    for slug, upstream in (upstreams or {}).items():
        options += ["--upstream", f"{slug}={_origin(upstream)}"]
    command = meterfox_command("serve", "--port", str(port), *options, *args)
    process = await _spawn(command, meterfox_env(env), stdin=asyncio.subprocess.DEVNULL, **popen)
    served = Served(process, port, tls)
    try:
        if ready:
            await served.wait_ready()
        yield served
    finally:
        await served.stop()


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def serve_workers(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test against `meterfox serve` and `meterfox serve --workers 2` (issue 17:
    records, keys and revocation behave the same with one worker or several)."""
    SERVE_WORKERS[0] = request.param
    try:
        yield request.param
    finally:
        SERVE_WORKERS[0] = 1


def _origin(upstream: TestServer | str) -> str:
    if isinstance(upstream, TestServer):
        return str(upstream.make_url("")).rstrip("/")
    return upstream.rstrip("/")


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


async def run_process(
    *command: str,
    env: Mapping[str, str],
    input: str | None = None,
    timeout: float = RUN_TIMEOUT_S,
) -> Finished:
    """Run a program to completion with exactly `env` (killed after `timeout` seconds)."""
    stdin = asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL
    launched = Launched(await _spawn(list(command), env, stdin=stdin))
    if input is not None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            launched.process.stdin.write(input.encode())
            await launched.process.stdin.drain()
        launched.process.stdin.close()
    code = await launched.wait(timeout)
    return Finished(code, launched.stdout, launched.stderr)


async def run_meterfox(
    *args: str, input: str | None = None, env: Env | None = None, timeout: float = RUN_TIMEOUT_S
) -> Finished:
    """`meterfox ARGS` to completion in its own process (the test's event loop runs meanwhile)."""
    return await run_process(
        *meterfox_command(*args), env=meterfox_env(env), input=input, timeout=timeout
    )


@pytest.fixture
async def collector() -> AsyncIterator[tuple[FakeCollector, TestServer]]:
    """A stand-in OpenTelemetry collector on loopback (tests/fakes/otlp.py) and its server."""
    fake = FakeCollector()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, server
    finally:
        await server.close()
