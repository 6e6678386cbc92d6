"""`meterfox serve` as a real process under faults: SIGKILL mid-load, two daemons on one
database, limits and timeouts from config.toml, credentials kept out of the log, owner-only
files. (SIGTERM and a port in use are in test_serve.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import stat
import time
from pathlib import Path

import aiohttp
import pytest

from tests.cli.conftest import Served, free_port, gone, launch_serve, writer_processes
from tests.conftest import read_records
from tests.fakes.raw import Conn, RawUpstream
from tests.fakes.upstream import Reply, sse
from tests.fixtures.openai_style import CASES, chat_stream_chunks

CHAT = CASES[0].body
USAGE = {"prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15}


async def stop(served: Served) -> tuple[str, str]:
    assert await served.stop(signal.SIGTERM) == 0, served.stderr[-2000:]
    return served.stdout, served.stderr


async def health(session: aiohttp.ClientSession, base: str) -> dict:
    async with session.get(base + "/_meterfox/health") as response:
        return await response.json()


async def chat(session: aiohttp.ClientSession, base: str, i: int = 0) -> int:
    async with session.post(
        base + "/openai/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
    ) as response:
        await response.read()
        return response.status


# --- SIGKILL ---------------------------------------------------------------------------------


async def test_sigkill_mid_load_keeps_every_committed_record_and_the_db_reopens(
    upstream_server, meterfox_home
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CHAT)
    completed = 0
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        base = served.url
        stop_load = asyncio.Event()

        async def worker(n: int) -> None:
            nonlocal completed
            with contextlib.suppress(aiohttp.ClientError):
                while not stop_load.is_set():
                    assert await chat(session, base, n) == 200
                    completed += 1

        workers = [asyncio.create_task(worker(n)) for n in range(8)]
        deadline = time.monotonic() + 20
        while completed < 400 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        committed, deadline = 0, time.monotonic() + 20
        while committed == 0 and time.monotonic() < deadline:  # the writer starts beside serve
            committed = (await health(session, base))["records_written"]
            await asyncio.sleep(0.02)
        writers = writer_processes(served.pid)
        served.process.kill()  # SIGKILL: no handler, no drain
        await served.process.wait()
        await gone(writers)  # the writer's process commits what it received, then ends
        stop_load.set()
        await asyncio.wait(workers, timeout=10)
    assert committed > 0 and completed >= 400
    db_path = meterfox_home / "meterfox.db"
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        survived = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        conn.close()
    # Every record committed before the kill is there; at most the writer's in-flight batch
    # and queue are lost (docs/performance.md measures that window).
    assert committed <= survived <= completed + 8

    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        assert await chat(session, served.url) == 200
        await stop(served)
    assert len(read_records(db_path)) == survived + 1


@pytest.mark.usefixtures("serve_workers")
async def test_sigterm_mid_stream_lets_every_stream_finish_and_records_each(
    upstream_server, meterfox_home
):
    """SIGTERM while 20 streams are half-way: the daemon stops accepting, lets each stream
    finish, and writes every record before it exits."""
    fake, server = upstream_server
    chunks = sse(*chat_stream_chunks("m", ["w"] * 8, USAGE), done=True)
    fake.reply = Reply(chunks=chunks, content_type="text/event-stream", delay_s=0.1)
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        base = served.url
        started = asyncio.Event()
        n = 20

        async def stream() -> bytes:
            async with session.post(
                base + "/openai/v1/chat/completions",
                json={"model": "m", "stream": True, "stream_options": {"include_usage": True}},
            ) as response:
                body = await response.content.readany()
                started.set()
                return body + await response.read()

        tasks = [asyncio.create_task(stream()) for _ in range(n)]
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.2)
        served.send_signal(signal.SIGTERM)
        bodies = await asyncio.gather(*tasks)
        await served.stop(timeout=30)
    assert served.returncode == 0
    assert all(body == b"".join(chunks) for body in bodies)
    records = read_records(meterfox_home / "meterfox.db")
    assert len(records) == n
    assert {(r["outcome"], r["input_tokens"]) for r in records} == {("ok", 7)}


# --- two daemons, one database -------------------------------------------------------------------


async def test_two_serve_on_one_database_both_record(upstream_server, meterfox_home, serve_workers):
    """Both start at once on a database that does not exist yet (so both migrate it), then
    write concurrently: WAL and the busy timeout serialise them without losing a record. With
    2 workers each, four writers share the file; a health answer is one worker's, so the
    records are counted in the database."""
    fake, server = upstream_server
    fake.reply = Reply(json_body=CHAT)
    async with contextlib.AsyncExitStack() as daemons:
        first, second = [
            await daemons.enter_async_context(
                launch_serve(upstreams={"openai": server}, ready=False)
            )
            for _ in range(2)
        ]
        await asyncio.gather(first.wait_ready(), second.wait_ready())
        bases = [first.url, second.url]
        n = 150
        async with aiohttp.ClientSession() as session:
            statuses = await asyncio.gather(*(chat(session, bases[i % 2], i) for i in range(2 * n)))
            assert statuses == [200] * (2 * n)
            deadline = time.monotonic() + 10
            while len(read_records(meterfox_home / "meterfox.db")) < 2 * n:
                assert time.monotonic() < deadline, "records were not written"
                await asyncio.sleep(0.05)
            for base in bases:
                h = await health(session, base)
                assert h["status"] == "ok" and h["records_dropped"] == 0
                if serve_workers == 1:
                    assert h["records_written"] == n
        await asyncio.gather(stop(first), stop(second))
    records = read_records(meterfox_home / "meterfox.db")
    assert len(records) == 2 * n and len({r["id"] for r in records}) == 2 * n


# --- limits and timeouts from config.toml ------------------------------------------------------


async def test_body_limit_and_timeouts_come_from_config_toml(upstream_server, meterfox_home):
    fake, server = upstream_server
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "config.toml").write_text(
        "[server]\nmax_body_bytes = 2000\n\n[timeouts]\nconnect = 0.5\nfirst_byte = 0.5\nidle = 1\n"
    )
    fake.reply = lambda received: Reply(
        json_body=CHAT, stall_s=3 if "slow" in received.path_qs else 0
    )
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        url = served.url + "/openai/v1/chat/completions"
        small = b'{"model": "m", "x": "' + b"a" * 1000 + b'"}'
        big = b'{"model": "m", "x": "' + b"a" * 3000 + b'"}'
        headers = {"Content-Type": "application/json"}
        async with session.post(url, data=small, headers=headers) as response:
            assert response.status == 200
        async with session.post(url, data=big, headers=headers) as response:
            assert response.status == 413
            assert "2000-byte limit" in (await response.json())["error"]["message"]
        started = time.monotonic()
        async with session.post(url + "?slow=1", data=small, headers=headers) as response:
            assert response.status == 504
        assert time.monotonic() - started < 2  # connect + first_byte, not the 3 s stall
        await stop(served)
    assert len(fake.received) == 2  # the oversized body never went upstream


# --- credentials never reach the log -------------------------------------------------------------

SECRETS = {
    "authorization": "sk-proj-SECRETbearer0123456789",
    "x-api-key": "sk-ant-SECRETxapikey0123456789",
    "x-goog-api-key": "AIzaSECRETgoogheader0123456789",
    "query": "AIzaSECRETquerykey0123456789",
    "malformed": "sk-SECRETmalformed0123456789",
}


async def garbage(conn: Conn) -> None:
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    conn.reset()


async def test_logs_never_contain_a_credential(upstream_server, meterfox_home):
    """Requests with keys in every place SDKs put them, through every path that logs: success,
    upstream 5xx, unreachable, timeout, invalid response, cut body, a request the server cannot
    parse, a client hang-up. The daemon's whole output is then searched for the keys."""
    fake, server = upstream_server
    fake.reply = lambda received: Reply(
        status=500 if "fail" in received.path_qs else 200,
        json_body=CHAT,
        stall_s=3 if "slow" in received.path_qs else 0,
    )
    broken = await RawUpstream(garbage).start()
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "config.toml").write_text("[timeouts]\nfirst_byte = 0.5\nidle = 0.5\n")
    dead = f"http://127.0.0.1:{free_port()}"
    upstreams = {"openai": server, "anthropic": server, "gemini": dead, "cohere": broken.url}
    try:
        async with launch_serve(upstreams=upstreams) as served:
            await send_with_keys(served.url)
            stdout, stderr = await stop(served)
    finally:
        await broken.close()
    output = stdout + stderr
    assert "upstream gemini is unreachable" in output  # the paths that log did log
    assert "upstream cohere" in output
    for name, secret in SECRETS.items():
        assert secret not in output, f"{name} key leaked into the log"
        assert secret[4:20] not in output, f"part of the {name} key leaked into the log"
    database = (meterfox_home / "meterfox.db").read_bytes()
    for secret in SECRETS.values():
        assert secret.encode() not in database


async def send_with_keys(base: str) -> None:
    bearer = {"Authorization": f"Bearer {SECRETS['authorization']}"}
    x_api_key = {"x-api-key": SECRETS["x-api-key"]}
    goog = {"x-goog-api-key": SECRETS["x-goog-api-key"]}
    query = f"?key={SECRETS['query']}"
    gemini = "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    calls = [
        ("/openai/v1/chat/completions", bearer),
        ("/openai/v1/chat/completions?fail=1", bearer),
        ("/openai/v1/chat/completions?slow=1", bearer),
        ("/anthropic/v1/messages?fail=1", x_api_key),
        ("/anthropic/v1/messages?slow=1", x_api_key),
        (gemini, goog),
        (gemini + query, {}),
        ("/cohere/v2/chat", bearer),
        ("/cohere/v2/chat" + query, x_api_key),
    ]
    async with aiohttp.ClientSession() as session:
        for path, headers in calls:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.post(
                    base + path, json={"model": "m", "messages": []}, headers=headers
                ) as response:
                    await response.read()
        # A client that hangs up while the upstream stalls.
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with asyncio.timeout(0.2):
                async with session.post(
                    base + "/openai/v1/chat/completions?slow=1", json={}, headers=bearer
                ) as response:
                    await response.read()
    # A request the server cannot parse, with a key in it.
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /openai/v1/chat/completions?key=" + SECRETS["malformed"].encode() + b" HTTP/1.1\r\n"
        b"Authorization: Bearer " + SECRETS["malformed"].encode() + b"\rX: y\r\n\r\n"
    )
    await writer.drain()
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(2):
            await reader.read()
    writer.close()


# --- owner-only files ----------------------------------------------------------------------------


async def test_state_files_and_directories_are_owner_only(upstream_server, tmp_path, monkeypatch):
    home = tmp_path / "fresh-home"  # created by serve itself
    monkeypatch.setenv("METERFOX_HOME", str(home))
    fake, server = upstream_server
    fake.reply = Reply(json_body=CHAT)
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        base = served.url
        assert await chat(session, base) == 200
        deadline = time.monotonic() + 5
        while (await health(session, base))["records_written"] < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        seen = modes(home)  # while running: the WAL and shared-memory files exist too
        await stop(served)
    assert any(name.endswith("-wal") for name in seen), seen
    for name, mode in seen.items():
        want = 0o700 if name.endswith("/") else 0o600
        assert mode == want, f"{name} is {oct(mode)}"


def modes(root: Path) -> dict[str, int]:
    out = {str(root) + "/": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        key = str(path) + ("/" if path.is_dir() else "")
        out[key] = stat.S_IMODE(os.stat(path).st_mode)
    return out
