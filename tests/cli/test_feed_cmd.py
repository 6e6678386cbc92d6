"""`meterfox tail` (live, read-only, beside a running proxy) and `meterfox export`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import socket
import sys
import time
from pathlib import Path

import openai
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.paths import resolve_paths
from tests.fakes.records import Req, at, record_to
from tests.fakes.upstream import FakeUpstream, Reply
from tests.fixtures.openai_style import chat

USAGE = {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def recorded(meterfox_home: Path) -> Path:
    db = resolve_paths().database
    record_to(
        db,
        Req(
            at("2026-11-03 10:00"),
            provider="openai",
            model="gpt-4o",
            key="backend",
            input_tokens=1200,
            output_tokens=30,
            cost_nano=4_000_000,
            tags=(("team", "a"),),
        ),
        Req(at("2026-11-03 11:00"), provider="groq", model="llama", cost_nano=1_000_000),
        Req(at("2026-11-04 09:00"), provider="openai", model="ft:x", cost_nano=None, unpriced=True),
    )
    return db


def test_tail_once_shows_the_latest_requests_with_a_running_total(recorded):
    result = run("tail", "--once", "--limit", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("time") and "running total" in lines[0]
    assert len(lines) == 3
    assert "llama" in lines[1] and lines[1].endswith("1 req $0.0010")
    assert "ft:x" in lines[2] and "unpriced" in lines[2]
    assert lines[2].endswith("2 req $0.0010 (+1 unpriced)")


def test_tail_filters(recorded):
    result = run("tail", "--once", "--provider", "groq")
    assert [line for line in result.stdout.splitlines()[1:]] == [
        line for line in result.stdout.splitlines()[1:] if "groq" in line
    ]
    assert len(result.stdout.splitlines()) == 2


def test_tail_without_a_database_says_how_to_start(meterfox_home):
    result = run("tail", "--once")
    assert result.exit_code == 0
    assert "meterfox serve" in result.stderr


def test_export_streams_every_request_in_range(recorded, tmp_path):
    result = run("export", "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["model"] for row in rows] == ["gpt-4o", "llama", "ft:x"]
    assert rows[0]["tags"] == {"team": "a"} and rows[0]["cost_nanousd"] == 4_000_000
    since = run("export", "--since", "2026-11-04")
    assert [r["model"] for r in csv.DictReader(io.StringIO(since.stdout))] == ["ft:x"]
    target = tmp_path / "out.csv"
    written = run("export", "--provider", "openai", "-o", str(target))
    assert "2 requests" in written.stderr
    assert len(list(csv.DictReader(target.open()))) == 2


def test_export_of_nothing_is_a_header(meterfox_home):
    result = run("export")
    assert result.exit_code == 0
    assert result.stdout.startswith("id,time,ts,day,provider,model")
    assert len(result.stdout.splitlines()) == 1


# --- against a running proxy ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start(*args: str, home: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "METERFOX_HOME": str(home)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meterfox_cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_port(port: int, process: asyncio.subprocess.Process, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"serve exited: {(await process.stderr.read()).decode()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("serve did not start listening")


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_tail_shows_a_request_made_through_a_running_proxy(meterfox_home):
    upstream = FakeUpstream()
    upstream.reply = Reply(json_body=chat("gpt-4o-mini-2024-07-18", USAGE))
    upstream_server = TestServer(upstream.app(), host="127.0.0.1")
    await upstream_server.start_server()
    port = free_port()
    origin = str(upstream_server.make_url("")).rstrip("/")
    serve = await start(
        "serve", "--port", str(port), "--upstream", f"openai={origin}", home=meterfox_home
    )
    tail = None
    try:
        await wait_for_port(port, serve)
        tail = await start(
            "tail",
            "--limit",
            "0",
            "--count",
            "1",
            "--timeout",
            "30",
            "--interval",
            "0.1",
            home=meterfox_home,
        )
        await asyncio.sleep(0.5)  # let tail open the database before the request
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/openai/v1", api_key="sk-caller", max_retries=0
        )
        try:
            completion = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        finally:
            await client.close()
        assert completion.usage.prompt_tokens == 1234
        out, err = await asyncio.wait_for(tail.communicate(), 40)
        assert tail.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert len(lines) == 2, out.decode()
        line = lines[1]
        assert "passthrough" in line and "openai" in line and "gpt-4o-mini-2024-07-18" in line
        assert "1,234 → 56" in line and " 200 " in line
        assert "1 req $" in line  # the running total
    finally:
        if tail is not None:
            await stop(tail)
        await stop(serve)
        await upstream_server.close()
