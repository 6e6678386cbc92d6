"""The installed `meterfox` command run as a user would, in a home of the test's own: HOME,
the XDG dirs and a runtime dir of its own, no session bus, so `systemctl --user` never reaches
the real user's manager."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from tests.cli.conftest import Finished, meterfox_env, run_process

INSTALLED = Path(sys.executable).parent / "meterfox"  # what `pip install` put on the PATH
READY_TIMEOUT_S = 20.0


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose home is the test's: the installed meterfox on PATH."""
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    path = os.pathsep.join([str(INSTALLED.parent), "/usr/local/bin", "/usr/bin", "/bin"])
    return meterfox_env(
        {
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "DBUS_SESSION_BUS_ADDRESS": None,
            "PATH": path,
            "PYTHONPATH": None,  # the installed command imports the installed package
        }
    )


async def run_installed(*args: str, env: Mapping[str, str], input: str | None = None) -> Finished:
    assert INSTALLED.exists(), f"no installed meterfox at {INSTALLED}: pip install -e ."
    return await run_process(str(INSTALLED), *args, env=env, input=input)


@contextlib.asynccontextmanager
async def running(argv: list[str], env: Mapping[str, str]) -> AsyncIterator[int]:
    """A daemon started from `argv` (a service's command line, as written); yields its PID,
    then stops it by that PID and waits for it."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def healthy(port: int, timeout: float = READY_TIMEOUT_S) -> dict:
    """The health of the daemon on `port`, once it answers (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/_meterfox/health") as response:
                    if response.status == 200:
                        return await response.json()
            assert time.monotonic() < deadline, f"nothing healthy on port {port}"
            await asyncio.sleep(0.1)


def unit_path(env: Mapping[str, str]) -> Path:
    """Where `meterfox service install` writes the unit for the user of `env`."""
    return Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "meterfox.service"


def environment_of(unit: str) -> dict[str, str]:
    """The unit's Environment= settings."""
    settings = [
        shlex.split(line.removeprefix("Environment="))[0]
        for line in unit.splitlines()
        if line.startswith("Environment=")
    ]
    return dict(setting.split("=", 1) for setting in settings)
