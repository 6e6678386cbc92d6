"""`[sync] every`: a real `meterfox serve` syncs billed usage by itself from the fake admin APIs
(the billed table fills, health shows it, later runs resume incrementally); a failing admin API
shows in health while proxied requests go on being served and recorded; SIGTERM during a sync
ends serve promptly with every proxy record."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from decimal import Decimal

import aiohttp
import pytest

from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.billed import read_buckets
from meterfox_cli.store.db import connect
from meterfox_cli.sync.pages import day_floor
from meterfox_cli.sync.run import RESUME_MARGIN_S
from tests.cli.conftest import Served, launch_serve, run_meterfox
from tests.cli.test_sync_cmd import admin_env
from tests.conftest import read_records
from tests.fakes.admin_apis import DAY, Billed, FakeAdminAPIs, Fault, serve
from tests.fakes.upstream import Reply
from tests.fixtures.anthropic import message

USAGE = "/v1/organization/usage/completions"
WAIT_S = 20.0


@pytest.fixture
def admin():
    fake = FakeAdminAPIs()
    with serve(fake) as url:
        yield fake, url


def configure(url: str, sync: str = '[sync]\nevery = "1s"\nproviders = ["openai"]\n') -> None:
    """OpenAI (proxy and sync alike) at the fake admin API; the `[sync]` table as given."""
    paths = resolve_paths()
    paths.ensure()
    paths.config_file.write_text(f'[providers.openai]\nbase_url = "{url}"\n{sync}')


async def health_when(served: Served, ready: Callable[[dict], object]) -> dict:
    """Poll health until `ready(health)` is true (the sync runs on its own schedule)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        health = await served.health()
        if ready(health):
            return health
        assert time.monotonic() < deadline, f"health never got there: {health}\n{served.output}"
        await asyncio.sleep(0.1)


def openai_sync(health: dict) -> dict:
    return health["sync"]["providers"].get("openai", {})


async def proxied(served: Served) -> int:
    """One Anthropic request through the proxy (to the fake upstream); its status."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            served.base("anthropic") + "/v1/messages",
            json={"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": []},
            headers={"x-api-key": "k"},
        ) as response:
            await response.read()
            return response.status


def usage_starts(fake: FakeAdminAPIs) -> list[int]:
    """The start_time of each chunk asked of the usage endpoint (first pages only)."""
    return [
        int(dict(seen.query)["start_time"])
        for seen in list(fake.received)
        if seen.path == USAGE and "page" not in dict(seen.query)
    ]


def run_starts(fake: FakeAdminAPIs) -> list[int]:
    """Where each sync began: a run's chunks go forward in time, the next run starts again."""
    starts: list[int] = []
    previous = None
    for start in usage_starts(fake):
        if previous is None or start <= previous:
            starts.append(start)
        previous = start
    return starts


async def test_serve_syncs_by_itself_and_resumes_incrementally(admin, meterfox_home):
    fake, url = admin
    started = time.time()
    today = day_floor(started)
    fake.ledger += [
        Billed(
            "openai", today - DAY, "gpt-4o-mini", 1000, 100, 3, Decimal("0.01"), Decimal("0.02")
        ),
        Billed("openai", today, "gpt-4o", 2000, 500, 1, Decimal("0.1"), Decimal("0.2")),
    ]
    configure(url)
    async with launch_serve(env=admin_env(fake)) as served:
        health = await health_when(served, lambda h: openai_sync(h).get("last_ok_at"))
        section = health["sync"]
        assert section["enabled"] is True and section["every_s"] == 1
        assert section["last_run_at"] and section["next_run_at"]
        assert openai_sync(health)["last_error"] is None
        # only the provider named in [sync] providers, though every admin key is set
        assert set(section["providers"]) == {"openai"}
        # a later run by itself, resumed from the last end minus the margin
        await health_when(served, lambda h: len(run_starts(fake)) >= 2)
    ended = time.time()
    assert served.returncode == 0, served.output
    assert "Syncing billed usage every 1s." in served.stderr
    assert "under a minute: meant for tests" in served.stderr
    for key in fake.admin_keys.values():
        assert key not in served.output

    conn = connect(meterfox_home / "meterfox.db")
    try:
        buckets = read_buckets(conn)
    finally:
        conn.close()
    billed = {(b.model, b.input_tokens, b.output_tokens, b.requests) for b in buckets}
    assert billed == {("gpt-4o-mini", 1000, 100, 3), ("gpt-4o", 2000, 500, 1)}
    assert sum(b.cost_nanousd for b in buckets) == 330_000_000  # $0.33
    first, second = run_starts(fake)[:2]
    assert first == today - 30 * DAY  # never synced: 30 days back
    # resumed: the first sync's end (between start and end of this test) less the margin
    assert second in {day_floor(started - RESUME_MARGIN_S), day_floor(ended - RESUME_MARGIN_S)}


async def test_a_failing_admin_api_shows_in_health_and_the_proxy_keeps_working(
    admin, upstream_server, meterfox_home
):
    fake, url = admin
    upstream, server = upstream_server
    upstream.reply = Reply(json_body=message({"input_tokens": 10, "output_tokens": 2}))
    fake.fail(USAGE, *[Fault(500, headers={"Retry-After": "0"}) for _ in range(500)])
    configure(url)
    async with launch_serve(upstreams={"anthropic": server}, env=admin_env(fake)) as served:
        health = await health_when(served, lambda h: openai_sync(h).get("last_error"))
        openai = openai_sync(health)
        assert "answered 500 after 5 attempts" in openai["last_error"]
        assert openai["last_ok_at"] is None and openai["last_run_at"]
        assert health["status"] == "ok"  # the proxy itself is fine
        statuses = [await proxied(served) for _ in range(3)]
        await health_when(served, lambda h: h["records_written"] == 3)
        assert statuses == [200, 200, 200]
        # it keeps trying on its schedule, and each failure is logged once
        await health_when(served, lambda h: served.stderr.count("background sync of openai") >= 2)
    assert served.returncode == 0, served.output
    failures = [line for line in served.stderr.splitlines() if "background sync of openai" in line]
    assert all(
        "failed: openai: /v1/organization/usage/completions still answered 500" in f
        for f in failures
    )
    runs = sum(seen.path == USAGE for seen in list(fake.received)) // 5  # five attempts per run
    assert len(failures) in (runs, runs + 1)  # the run cut short by SIGTERM is not a failure
    for key in fake.admin_keys.values():
        assert key not in served.output
    assert len(read_records(meterfox_home / "meterfox.db")) == 3


async def test_sigterm_during_a_sync_ends_promptly_with_every_record(
    admin, upstream_server, meterfox_home
):
    fake, url = admin
    upstream, server = upstream_server
    upstream.reply = Reply(json_body=message({"input_tokens": 10, "output_tokens": 2}))
    fake.delay_s = 8.0  # every admin request hangs: the sync is in flight at SIGTERM
    configure(url)
    async with launch_serve(upstreams={"anthropic": server}, env=admin_env(fake)) as served:
        statuses = await asyncio.gather(*(proxied(served) for _ in range(20)))
        await health_when(served, lambda h: h["sync"]["running"] and fake.received)
        stopping = time.monotonic()
        await served.stop(signal.SIGTERM, timeout=15)
        took = time.monotonic() - stopping
    assert served.returncode == 0, served.output
    assert statuses == [200] * 20
    assert took < 6.0, f"serve took {took:.1f} s to stop during a sync"
    assert len(read_records(meterfox_home / "meterfox.db")) == 20


async def test_sync_settings_are_checked_at_start(admin, meterfox_home):
    _, url = admin
    configure(url, '[sync]\nevery = "1 hour"\n')
    result = await run_meterfox("serve", "--port", "1")
    assert result.returncode != 0
    assert '[sync] every must be a duration such as "30m", "1h", "6h" or "1d"' in result.stderr
    configure(url, '[sync]\nevery = "1h"\nproviders = ["deepseek"]\n')
    result = await run_meterfox("serve", "--port", "1")
    assert result.returncode != 0
    assert "[sync] providers: cannot sync 'deepseek': sync reads openai, anthropic, openrouter" in (
        result.stderr
    )


async def test_sync_is_off_by_default_and_health_says_so(meterfox_home):
    async with launch_serve() as served:
        assert (await served.health())["sync"] == {"enabled": False}


def test_a_stored_admin_key_is_read_with_the_passphrase_serve_was_given(
    admin, monkeypatch, meterfox_home
):
    """The admin key in the encrypted key file, its passphrase typed once at serve's prompt (no
    METERFOX_PASSPHRASE): the background sync reads it with the store serve unlocked."""
    import json
    import os
    import urllib.request

    from tests.cli.conftest import free_port
    from tests.cli.test_keys_tty import Terminal
    from tests.conftest import NULL_KEYRING

    fake, url = admin
    fake.ledger.append(
        Billed("openai", day_floor(time.time()), "gpt-4o", 20, 5, 1, Decimal("1"), Decimal("0"))
    )
    configure(url)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NULL_KEYRING)
    monkeypatch.setenv("METERFOX_PASSPHRASE", "the passphrase")
    stored = asyncio.run(
        run_meterfox("keys", "set", "openai-admin", input=fake.admin_keys["openai"])
    )
    assert stored.returncode == 0, stored.stderr
    monkeypatch.delenv("METERFOX_PASSPHRASE")
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)

    port = free_port()
    terminal = Terminal("serve", "--port", str(port))
    try:
        terminal.expect(b"Passphrase for the MeterFox key file")
        terminal.type("the passphrase")
        terminal.expect(f"MeterFox http://127.0.0.1:{port}".encode())
        deadline = time.monotonic() + WAIT_S
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_meterfox/health") as response:
                openai = json.loads(response.read())["sync"]["providers"].get("openai", {})
            if openai.get("last_ok_at") or openai.get("last_error"):
                break
            assert time.monotonic() < deadline, terminal.shown
            time.sleep(0.1)
    finally:
        os.kill(terminal.proc.pid, signal.SIGTERM)
        code = terminal.finish()
    assert openai["last_error"] is None and openai["last_ok_at"], openai
    assert code == 0, terminal.shown
    assert fake.admin_keys["openai"].encode() not in terminal.shown
    conn = connect(meterfox_home / "meterfox.db")
    try:
        assert [(b.model, b.input_tokens) for b in read_buckets(conn)] == [("gpt-4o", 20)]
    finally:
        conn.close()
