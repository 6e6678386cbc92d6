"""`meterfox serve` as a real process: start-up, port in use, clean stop with every record."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import read_records
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_serve(port: int, *args: str, **popen) -> asyncio.subprocess.Process:
    """`meterfox serve` on `port`; `popen` goes to the subprocess (e.g. a preexec_fn)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meterfox_cli",
        "serve",
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        **popen,
    )


async def wait_healthy(port: int, timeout: float = 10) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < timeout:
            try:
                async with session.get(f"http://127.0.0.1:{port}/_meterfox/health") as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("serve did not become healthy")


async def test_sigterm_after_concurrent_requests_leaves_every_record(
    upstream_server, meterfox_home
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    port = free_port()
    upstream = str(server.make_url("")).rstrip("/")
    process = await start_serve(port, "--upstream", f"openai={upstream}")
    try:
        await wait_healthy(port)
        n = 40
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> int:
                async with session.post(
                    f"http://127.0.0.1:{port}/openai/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
                ) as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.gather(*(one(i) for i in range(n)))
        assert statuses == [200] * n
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    records = read_records(meterfox_home / "meterfox.db")
    assert len(records) == n
    assert {r["input_tokens"] for r in records} == {CASES[0].expected["input_tokens"]}


async def test_second_serve_on_the_same_port_is_a_one_line_error(meterfox_home):
    port = free_port()
    first = await start_serve(port)
    try:
        await wait_healthy(port)
        second = await start_serve(port)
        _, stderr = await asyncio.wait_for(second.communicate(), 15)
        assert second.returncode == 2
        lines = stderr.decode().strip().splitlines()
        assert lines == [
            f"meterfox: port {port} on 127.0.0.1 is in use (another `meterfox serve`?); stop it or pass --port"
        ]
    finally:
        first.send_signal(signal.SIGINT)
        await asyncio.wait_for(first.wait(), 15)
    assert first.returncode == 0


async def test_serve_prints_one_base_url_per_provider(meterfox_home):
    port = free_port()
    process = await start_serve(port)
    try:
        await wait_healthy(port)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/_meterfox/health") as response:
                health = json.loads(await response.text())
        assert health["records_written"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(process.communicate(), 15)
    text = stdout.decode()
    assert f"http://127.0.0.1:{port}/openai/v1" in text
    assert f"http://127.0.0.1:{port}/anthropic" in text
    assert f"http://127.0.0.1:{port}/groq" in text
