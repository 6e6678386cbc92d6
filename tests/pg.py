"""A real PostgreSQL server for the tests, started by the suite itself: `initdb` and `pg_ctl`
from Debian's `postgresql` package (scripts/test installs it) in a temp dir, on a free loopback
port, as an unprivileged user (`nobody` when the suite runs as root), stopped by its PID.
`pg_server` is the session's; `pg_restartable` is a module's own, which its tests may `stop`
and `start` again (the database away and back) without disturbing anyone else's."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0
SUPERUSER = "meterfox"
MISSING = (
    "the PostgreSQL server binaries (initdb, pg_ctl) are not installed: run scripts/test, "
    "which installs the Debian package `postgresql`"
)


@dataclass(frozen=True, slots=True)
class PgServer:
    """A running server: where it listens, and how to reach a database on it."""

    port: int
    data_dir: Path
    bin_dir: Path
    log: Path
    options: str  # the postmaster's command-line options (the port, the socket dir…)

    def start(self) -> None:
        """Start the server (again), on the same port and data; returns once it accepts."""
        _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", self.options,
              "-l", str(self.log), "-w", "-t", str(int(START_TIMEOUT_S)), "start"])  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown (sessions ended, as a server restart does); returns once it is gone."""
        _stop(self.pid())

    def pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def server_bin_dir() -> Path:
    """The newest installed server's bin directory; the test fails (never skips) without one."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not found:
        pytest.fail(MISSING, pytrace=False)
    return Path(found[-1]).parent


def _version(path: str) -> float:
    return float(Path(path).parent.parent.name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as `nobody`."""
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session, in its own temp dir."""
    yield from _server()


@pytest.fixture(scope="module")
def pg_restartable() -> Iterator[PgServer]:
    """A PostgreSQL server of the module's own, which its tests may stop and start."""
    yield from _server()


def _server() -> Iterator[PgServer]:
    """A new server in its own temp dir, running until the generator ends."""
    bin_dir = server_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="meterfox-pg-"))
    data, run = root / "data", root / "run"
    run.mkdir()
    if os.geteuid() == 0:  # the server's user owns its dir (under /tmp: a path it can pass)
        for directory in (root, run):
            shutil.chown(directory, "nobody")
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"])
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {run} -c fsync=off -c full_page_writes=off"
    server = PgServer(port, data, bin_dir, root / "log", options)
    server.start()
    try:
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str]) -> None:
    """Run a server binary as the server's user; its output in the failure if it fails."""
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}", pytrace=False)


def _stop(pid: int) -> None:
    """A fast shutdown by the postmaster's PID; waits until it is gone."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a new, empty database of its own for this test."""
    return pg_server.create_database()
