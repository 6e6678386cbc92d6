"""`meterfox serve` as a real process against callers who would wear it down (issue 12):
a keyless 30 MiB body and an `Expect: 100-continue` it will refuse (finding 4); a low open-file
limit, 150 idle sockets, idle and trickling clients (finding 5)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from pathlib import Path

import aiohttp

from meterfox_cli.proxy.connections import RESERVED_FILES, ConnectionBudget, connection_budget
from tests.cli.conftest import launch_serve
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES, many_messages

BIG = 30 * 1024 * 1024
CHAT_PATH = "/openai/v1/chat/completions"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


async def post_raw(
    base: str, body: bytes, *extra: str, send_body: bool = True
) -> tuple[str, float]:
    """POST `body` on a raw connection; the response's status line and the seconds from the
    end of the headers to it. The body is sent alongside, as a client would, unless
    `send_body` is false (a client waiting for `100 Continue`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
    head = [
        f"POST {CHAT_PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    started = time.monotonic()
    sending = asyncio.create_task(send_in_chunks(writer, body)) if send_body else None
    try:
        status = await asyncio.wait_for(reader.readline(), 15)
        return status.decode().strip(), time.monotonic() - started
    finally:
        if sending is not None:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
        writer.close()


async def send_in_chunks(writer: asyncio.StreamWriter, body: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        for at in range(0, len(body), 1024 * 1024):
            writer.write(body[at : at + 1024 * 1024])
            await writer.drain()


async def slowest_health(base: str, stop: asyncio.Event) -> float:
    """Poll health until `stop`; the slowest answer, in seconds."""
    worst = 0.0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.monotonic()
            async with session.get(base + "/_meterfox/health") as response:
                await response.read()
            worst = max(worst, time.monotonic() - started)
            await asyncio.sleep(0.01)
    return worst


# --- finding 4: a caller with no valid key costs next to nothing ----------------------------------


async def test_a_keyless_30_mib_body_is_refused_before_it_is_read(meterfox_home):
    """Measured on main before the fix: refused after 1.05 s, health 3 ms -> 948 ms, RSS 66 ->
    361 MB. The daemon now refuses on the headers: it never reads or parses the body."""
    body = many_messages(BIG)
    async with launch_serve("--require-proxy-key") as served:
        base, pid = served.url, served.pid
        rss_before = peak_rss_mb(pid)
        stop = asyncio.Event()
        probe = asyncio.create_task(slowest_health(base, stop))
        await asyncio.sleep(0.3)
        status, refused_s = await post_raw(base, body)
        await asyncio.sleep(0.5)
        stop.set()
        worst_health = await probe
        rss_growth = peak_rss_mb(pid) - rss_before
    print(
        f"\nkeyless 30 MiB: refused in {refused_s * 1000:.0f} ms, slowest health "
        f"{worst_health * 1000:.0f} ms, peak RSS +{rss_growth:.0f} MB"
    )
    assert status.startswith("HTTP/1.1 401"), status
    assert rss_growth < 40, f"the refused body was held: peak RSS grew {rss_growth:.0f} MB"
    assert refused_s < 0.5
    assert worst_health < 0.5


async def test_an_expect_100_continue_request_is_refused_without_continue(meterfox_home):
    """A client that waits for `100 Continue` before sending its body hears the refusal instead,
    so the body never leaves it."""
    async with launch_serve("--require-proxy-key") as served:
        status, _ = await post_raw(
            served.url, b"{}" * 1000, "Expect: 100-continue", send_body=False
        )
    assert status.startswith("HTTP/1.1 401"), status


# --- finding 5: limits on client connections -------------------------------------------------------


def open_file_limit(soft: int, hard: int | None = None):
    """A preexec_fn: the child starts under `ulimit -n` (soft, and hard when given)."""

    def apply() -> None:
        current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard or current_hard))

    return apply


def open_file_limits_of(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


async def test_the_soft_open_file_limit_is_raised_to_the_hard_one(meterfox_home):
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)
    async with launch_serve(preexec_fn=open_file_limit(128, hard)) as served:
        assert open_file_limits_of(served.pid) == (hard, hard)


async def test_150_idle_sockets_under_ulimit_128_leave_room_for_a_real_request(
    upstream_server, meterfox_home
):
    """Measured on main before the fix: the real request timed out and the log filled with
    "accept() out of system resource". Now idle connections make room for new ones, and the
    log says once that the cap was reached. The whole test is bounded to a minute."""
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    idle: list[asyncio.StreamWriter] = []
    status = None
    async with launch_serve(
        upstreams={"openai": server}, preexec_fn=open_file_limit(128, 128)
    ) as served:
        base = served.url  # the launcher drains the log as it comes: a flood cannot block it
        try:
            async with asyncio.timeout(45):
                for _ in range(150):  # 3 s: time for one SYN retry if the backlog was full
                    with contextlib.suppress(TimeoutError, ConnectionError):
                        async with asyncio.timeout(3):
                            _, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
                            idle.append(writer)
                await asyncio.sleep(1)  # the daemon accepts them all
                status = await real_request(base)
        finally:
            for writer in idle:
                writer.close()
            await served.stop()
        stderr = served.stderr
    floods = stderr.count("out of system resource")
    print(f"\n150 idle sockets, ulimit -n 128: real request {status}, {floods} accept() errors")
    assert status == 200
    assert len(idle) == 150
    assert "out of system resource" not in stderr, f"{stderr.count(chr(10))} log lines"
    assert stderr.count("connection cap reached") == 1, stderr[-3000:]


async def real_request(base: str) -> int | None:
    """A chat call's status, or None if it got no answer within 10 s."""
    try:
        async with asyncio.timeout(10), aiohttp.ClientSession() as session:
            async with session.post(
                base + CHAT_PATH, json={"model": "gpt-4o", "messages": []}
            ) as response:
                await response.read()
                return response.status
    except (TimeoutError, aiohttp.ClientError):
        return None


async def closed_after(reader: asyncio.StreamReader, limit_s: float) -> float | None:
    """Seconds until the daemon closes the connection (EOF or reset), or None within limit_s."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - started


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float = 0.2) -> None:
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)


async def test_idle_and_trickling_clients_are_closed(meterfox_home):
    """A client that says nothing, one that sends its headers a byte at a time, and one that
    does the same with its body: each is closed once its timeout has passed."""
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "config.toml").write_text("[timeouts]\nclient_header = 1\nclient_body = 1\n")
    head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    async with launch_serve() as served:
        base = served.url
        clients = [await asyncio.open_connection("127.0.0.1", port_of(base)) for _ in range(3)]
        _, (_, slow_head), (_, slow_body) = clients  # the first says nothing
        slow_body.write(head)
        feeders = [
            asyncio.create_task(trickle(slow_head, head)),
            asyncio.create_task(trickle(slow_body, b"{" + b" " * 999)),
        ]
        try:
            closed = await asyncio.gather(*(closed_after(reader, 6) for reader, _ in clients))
        finally:
            for task in feeders:
                task.cancel()
            for _, writer in clients:
                writer.close()
    print(f"\nclosed after (s): idle, slow head, slow body = {closed}")
    assert all(seconds is not None and seconds < 4 for seconds in closed), closed


def test_the_connection_cap_leaves_accept_room_under_the_open_file_limit():
    """Two descriptors per connection (client and upstream), plus the accept burst and 32 for
    the daemon itself, fit in the limit; a configured cap is kept within it too."""
    assert connection_budget(128) == ConnectionBudget(40, 16, 128)
    assert connection_budget(1024) == ConnectionBudget(432, 128, 1024)
    assert connection_budget(1 << 20).max_connections == 1024
    assert connection_budget(1 << 20, 5000).max_connections == 5000
    assert connection_budget(128, 500).max_connections == 40
    for limit in (64, 128, 256, 1024, 4096):
        budget = connection_budget(limit)
        assert 2 * budget.max_connections + budget.backlog + RESERVED_FILES <= limit
