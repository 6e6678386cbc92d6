"""`meterfox serve`'s record writer in a process of its own (store/writer_process.py): what it
keeps when the proxy is killed, and that it never outlives the proxy."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

from tests.cli.conftest import gone, launch_serve, writer_processes
from tests.conftest import read_records
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES

CHAT = CASES[0].body


async def test_sigkill_of_the_proxy_keeps_every_record_its_writer_received(
    upstream_server, meterfox_home
):
    """The writer's process is stopped (SIGSTOP), so nothing can commit; 40 requests are
    answered and their records sent down its pipe; then the proxy, only it, is SIGKILLed and
    the writer continued: it reads to the end of its input, commits all 40 and exits. (With the
    writer a thread of the proxy, records not yet committed died with it.)"""
    fake, server = upstream_server
    fake.reply = Reply(json_body=CHAT)
    n = 40
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        writers = writer_processes(served.pid)
        assert len(writers) == 1
        os.kill(writers[0], signal.SIGSTOP)
        try:

            async def chat(i: int) -> int:
                async with session.post(
                    served.url + "/openai/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
                ) as response:
                    await response.read()
                    return response.status

            assert await asyncio.gather(*(chat(i) for i in range(n))) == [200] * n
            await asyncio.sleep(0.5)  # the feeder sends within 10 ms
            health = await served.health()
            assert health["records_written"] == 0 and health["records_queued"] == n
            served.process.kill()  # SIGKILL: no handler, no drain, no close
        finally:
            os.kill(writers[0], signal.SIGCONT)
        await served.process.wait()  # (asyncio waits for its output pipes: the writer's too)
        await gone(writers)
    records = read_records(meterfox_home / "meterfox.db")
    assert len(records) == n, served.stderr[-3000:]
    assert {r["status"] for r in records} == {200}


async def test_the_writer_process_ends_with_the_proxy_on_sigterm(upstream_server, meterfox_home):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CHAT)
    async with launch_serve(upstreams={"openai": server}) as served:
        writers = writer_processes(served.pid)
        assert len(writers) == 1
        assert await served.stop() == 0
    await gone(writers, timeout=1)
