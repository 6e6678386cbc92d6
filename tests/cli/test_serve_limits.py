"""`meterfox serve` as a real process against callers who would wear it down (issue 12):
a keyless 30 MiB body and an `Expect: 100-continue` it will refuse (finding 4)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp

from tests.cli.test_serve_faults import serving
from tests.fixtures.openai_style import many_messages

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
    async with serving("--require-proxy-key") as (process, base):
        rss_before = peak_rss_mb(process.pid)
        stop = asyncio.Event()
        probe = asyncio.create_task(slowest_health(base, stop))
        await asyncio.sleep(0.3)
        status, refused_s = await post_raw(base, body)
        await asyncio.sleep(0.5)
        stop.set()
        worst_health = await probe
        rss_growth = peak_rss_mb(process.pid) - rss_before
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
    async with serving("--require-proxy-key") as (_, base):
        status, _ = await post_raw(base, b"{}" * 1000, "Expect: 100-continue", send_body=False)
    assert status.startswith("HTTP/1.1 401"), status
