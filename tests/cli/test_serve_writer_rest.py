"""`meterfox serve` with `[server] rest_after`: its record writer's process exits after the
quiet period and the next request's record starts a new one (store/writer_process.py). Every
record lands once across rest and wake cycles; health stays ok and says `resting`; the
Prometheus counters never go back; "never" keeps the process; `--workers 2` rests each
worker's writer and loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest

from meterfox_cli.paths import resolve_paths
from tests.cli.conftest import Served, free_port, gone, launch_serve, writer_processes
from tests.conftest import read_records
from tests.fakes.otlp import attributes
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES

WAIT_S = 30.0


def write_config(text: str) -> None:
    path = resolve_paths().config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def chat(session: aiohttp.ClientSession, served: Served, n: int) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(n):
        async with session.post(served.url + "/openai/v1/chat/completions", json=body) as r:
            await r.read()
            assert r.status == 200


async def health_until(served: Served, wanted, timeout: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout
    while not wanted(health := await served.health()):
        assert time.monotonic() < deadline, f"health never as wanted: {health}"
        await asyncio.sleep(0.05)
    return health


async def requests_counted(session: aiohttp.ClientSession, served: Served) -> float:
    """`meterfox_requests_total` on /_meterfox/metrics, summed over its label sets."""
    async with session.get(served.url + "/_meterfox/metrics") as response:
        page = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("meterfox_requests_total{")
    )


def descendants(pid: int, module: bytes) -> list[int]:
    """Processes under `pid` (any depth) running `module`."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in map(int, (task / "children").read_text().split()):
                    todo.append(child)
                    with contextlib.suppress(OSError):
                        if module in Path(f"/proc/{child}/cmdline").read_bytes():
                            found.append(child)
    return sorted(set(found))


def descendant_writers(pid: int) -> list[int]:
    """The record writer's processes under `pid` and its children (the workers')."""
    found = writer_processes(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    found += writer_processes(int(child))
    return sorted(set(found))


async def test_the_writer_process_rests_and_wakes_each_record_once_counters_monotonic(
    upstream_server, meterfox_home
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    write_config('[server]\nrest_after = "1s"\n')
    sent, seen, counted = 0, [], 0.0
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        for cycle in range(3):
            await chat(session, served, 5 + cycle)
            sent += 5 + cycle
            await health_until(served, lambda h, n=sent: h["records_written"] == n)
            writers = writer_processes(served.pid)
            assert len(writers) == 1 and writers[0] not in seen, (writers, seen)
            seen += writers
            now = await requests_counted(session, served)
            assert counted <= now == sent
            counted = now
            health = await health_until(served, lambda h: h["writer_process"] == "resting")
            assert health["status"] == "ok" and health["store_error"] is None, health
            assert (health["records_written"], health["records_queued"]) == (sent, 0)
            await gone(writers)
            assert writer_processes(served.pid) == []
            assert await requests_counted(session, served) == sent  # served with none running
        assert await served.stop() == 0, served.stderr[-2000:]
    assert "rests until the next one" in served.stderr
    ids = [r["id"] for r in read_records(meterfox_home / "meterfox.db")]
    assert len(ids) == len(set(ids)) == sent


async def test_never_keeps_the_writer_process(upstream_server, meterfox_home):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    write_config('[server]\nrest_after = "never"\n')
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        writers = writer_processes(served.pid)
        await chat(session, served, 2)
        await health_until(served, lambda h: h["records_written"] == 2)
        await asyncio.sleep(2.5)
        assert writer_processes(served.pid) == writers and len(writers) == 1
        assert (await served.health())["writer_process"] == "running"


@pytest.mark.usefixtures("serve_workers")
async def test_each_workers_writer_rests_and_nothing_is_lost(upstream_server, meterfox_home):
    """With one worker or two: every writer's process rests (none left under the daemon), and
    the records before and after are all in the database once."""
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    write_config('[server]\nrest_after = "1s"\n')
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        before = descendant_writers(served.pid)
        assert before
        await chat(session, served, 10)
        deadline = time.monotonic() + WAIT_S
        while descendant_writers(served.pid):
            assert time.monotonic() < deadline, descendant_writers(served.pid)
            await asyncio.sleep(0.05)
        await gone(before)
        await chat(session, served, 10)
        assert await served.stop() == 0, served.stderr[-2000:]
    ids = [r["id"] for r in read_records(meterfox_home / "meterfox.db")]
    assert len(ids) == len(set(ids)) == 20


async def test_opentelemetry_is_flushed_at_each_rest_and_every_record_exported_once(
    upstream_server, collector, meterfox_home
):
    """The rested process's exporter flushes as it ends (its spans arrive with no export
    interval due: spans are batched for 5 s and metrics for 60 s here), its export process
    goes with it, and the next process exports the rest: each record one span."""
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    otel, receiver = collector
    endpoint = str(receiver.make_url("")).rstrip("/")
    write_config(
        f'[server]\nrest_after = "1s"\n[otel]\nendpoint = "{endpoint}"\nexport_every = "60s"\n'
    )
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        await chat(session, served, 3)
        await health_until(served, lambda h: h["records_written"] == 3)
        await health_until(served, lambda h: h["writer_process"] == "resting")
        deadline = time.monotonic() + WAIT_S
        while len(list(otel.spans())) < 3 or descendants(served.pid, b"otel_worker"):
            assert time.monotonic() < deadline, (list(otel.spans()), served.stderr[-2000:])
            await asyncio.sleep(0.05)
        await chat(session, served, 4)
        await health_until(served, lambda h: h["records_written"] == 7)
        assert await served.stop() == 0, served.stderr[-2000:]
    ids = [attributes(span.attributes)["meterfox.request.id"] for span in otel.spans()]
    records = [r["id"] for r in read_records(meterfox_home / "meterfox.db")]
    assert sorted(ids) == sorted(records) and len(set(ids)) == 7


async def test_an_exporter_still_flushing_does_not_hold_up_the_next_writer_process(
    upstream_server, meterfox_home
):
    """An OpenTelemetry endpoint that does not answer: the rested process's exporter tries
    for seconds as it ends, yet a record after the rest is committed by a new process at once."""
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    nowhere = f"http://127.0.0.1:{free_port()}"
    write_config(f'[server]\nrest_after = "1s"\n[otel]\nendpoint = "{nowhere}"\n')
    async with (
        launch_serve(upstreams={"openai": server}) as served,
        aiohttp.ClientSession() as session,
    ):
        await chat(session, served, 2)
        await health_until(served, lambda h: h["records_written"] == 2)
        first = writer_processes(served.pid)
        await health_until(served, lambda h: h["writer_process"] == "resting")
        began = time.monotonic()
        await chat(session, served, 1)
        await health_until(served, lambda h: h["records_written"] == 3)
        took = time.monotonic() - began
        still = [pid for pid in first if pid in writer_processes(served.pid)]
        assert await served.stop() == 0, served.stderr[-2000:]
    assert still, "the rested process had ended: this test shows nothing"
    assert took < 5.0, f"the record after the rest took {took:.2f} s"
