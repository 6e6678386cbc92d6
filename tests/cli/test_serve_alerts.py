"""Budget alerts from a real `meterfox serve`: a budgeted key driven through the proxy past
50/80/100 % fires each threshold exactly once to webhook receivers on 127.0.0.1, across
restarts (one crossed while no daemon ran fires after the next start); the monthly, provider,
tag and spike rules; a webhook that hangs or answers 500 leaves the proxy's latency as it was.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime, timedelta
from decimal import Decimal

import aiohttp

from meterfox_cli.alerts.channels import WEBHOOK_ATTEMPTS, WEBHOOK_TIMEOUT_S
from meterfox_cli.paths import resolve_paths
from tests.cli.conftest import launch_serve, run_meterfox
from tests.cli.test_serve_keys import meterfox
from tests.fakes.records import Req, record_to
from tests.fakes.upstream import Reply
from tests.fakes.webhooks import Hook, webhook_receiver
from tests.fixtures.openai_style import chat

OPENAI_KEY = "sk-proj-TESTONLY-alerts-4444"
MODEL = "gpt-4o-mini"
# One output token costs $0.001 and input costs nothing, so a reply of N tokens costs exactly
# N/1000 USD and its worst case (max_tokens = N) reserves exactly that: a $1/day key reaches
# 100 % without being refused first.
PRICES = f'[[prices]]\nprovider = "openai"\nmodel = "{MODEL}"\ninput = 0\noutput = 1000\n'
SETTLE_S = 5.0  # more than two alert checks (POLL_S = 2): long enough for a repeat to show


def write_config(*sections: str) -> None:
    paths = resolve_paths()
    paths.ensure()
    paths.config_file.write_text(PRICES + "\n".join(sections))


def alerts_section(*hooks: tuple[Hook, str], extra: str = "") -> str:
    entries = ", ".join(f'{{ url = "{hook.url}", format = "{fmt}" }}' for hook, fmt in hooks)
    return f"[alerts]\nwebhooks = [{entries}]\ndesktop = false\n{extra}\n"


def replying(fake, tokens: int) -> None:
    fake.reply = Reply(json_body=chat(MODEL, {"prompt_tokens": 5, "completion_tokens": tokens}))


async def ask(url: str, tokens: int, secret: str | None = None, tags: dict | None = None) -> int:
    headers = {"Authorization": f"Bearer {secret or OPENAI_KEY}"}
    headers.update({f"X-MeterFox-Tag-{name}": value for name, value in (tags or {}).items()})
    body = {"model": MODEL, "max_tokens": tokens, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url + "/openai/v1/chat/completions", json=body, headers=headers
        ) as response:
            await response.read()
            return response.status


async def written(served, count: int) -> None:
    """Wait until the daemon has committed `count` records."""
    deadline = time.monotonic() + 10
    while (await served.health())["records_written"] < count:
        assert time.monotonic() < deadline, "records were not written"
        await asyncio.sleep(0.05)


def thresholds(hook: Hook) -> list[int]:
    return [body["threshold_percent"] for body in hook.bodies]


def local_midnight_utc(day_offset: int = 0) -> str:
    today = datetime.now().date() + timedelta(days=day_offset)
    ts = datetime.combine(today, datetime.min.time()).timestamp()
    return datetime.utcfromtimestamp(ts).isoformat(timespec="seconds") + "Z"


async def test_a_budgeted_key_fires_50_80_100_once_each_across_restarts(
    upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    async with webhook_receiver() as generic, webhook_receiver() as slack:
        write_config(alerts_section((generic, "json"), (slack, "slack")))
        await meterfox("keys", "set", "openai", input=OPENAI_KEY)
        secret = (await meterfox("keys", "create", "capped", "--budget", "1/day")).strip()
        async with launch_serve(upstreams={"openai": server}) as served:
            replying(fake, 200)
            assert await ask(served.url, 200, secret) == 200  # 20 %: nothing
            replying(fake, 300)
            assert await ask(served.url, 300, secret) == 200  # 50 %
            await generic.wait_for(1)
            await asyncio.sleep(SETTLE_S)
            assert thresholds(generic) == [50]
        started = time.time()
        async with launch_serve(upstreams={"openai": server}) as served:
            await asyncio.sleep(SETTLE_S)  # a restart repeats nothing...
            assert thresholds(generic) == [50]
            assert await ask(served.url, 300, secret) == 200  # ...and 80 % fires once
            await generic.wait_for(2)
            await asyncio.sleep(SETTLE_S)
            assert thresholds(generic) == [50, 80]
        # 100 % is crossed while no daemon runs (another process records the last $0.20).
        record_to(resolve_paths().database, Req(ts=time.time(), key="capped", cost_nano=2 * 10**8))
        async with launch_serve(upstreams={"openai": server}) as served:
            await generic.wait_for(3)
            await asyncio.sleep(SETTLE_S)
            assert await ask(served.url, 1, secret) == 429  # spent: the key is refused
        assert thresholds(generic) == [50, 80, 100]
        assert [body["text"] for body in slack.bodies] == [b["text"] for b in generic.bodies]
        assert all(set(body) == {"text"} for body in slack.bodies)

    eighty = generic.bodies[1]
    today = datetime.now().date().isoformat()
    assert eighty["source"] == "meterfox"
    assert eighty["event"] == "budget"
    assert eighty["rule"] == "key:capped"
    assert eighty["subject"] == "proxy key 'capped'"
    assert eighty["threshold_percent"] == 80
    assert eighty["percent"] == "80.0"
    assert eighty["spend_usd"] == "0.8"
    assert eighty["budget_usd"] == "1"
    assert eighty["period"] == "day"
    assert eighty["period_start"] == local_midnight_utc()
    assert eighty["period_end"] == local_midnight_utc(1)
    fired_at = datetime.fromisoformat(eighty["at"]).timestamp()
    assert started - 1 <= fired_at <= time.time()
    # The linear projection: $0.80 over at least an hour of the day, to the day's end.
    assert Decimal("0.8") <= Decimal(eighty["projected_usd"]) <= Decimal("0.8") * 24
    assert eighty["command"] == f"meterfox report --key capped --since {today}"
    assert eighty["text"].startswith(
        "MeterFox: proxy key 'capped' crossed 80% of its $1.00/day budget: $0.80 spent (80.0%)"
    )
    assert f"More: meterfox report --key capped --since {today}" in eighty["text"]
    assert generic.bodies[2]["spend_usd"] == "1"

    listing = await run_meterfox("alerts")
    assert listing.returncode == 0, listing.stderr
    fired = [line for line in listing.stdout.splitlines() if "key:capped" in line]
    assert len(fired) == 4  # the budget's line and the three firings
    assert "spent $1.00 (100.0%)" in fired[0]
    assert [line.split()[3] for line in fired[1:]] == ["100%", "80%", "50%"]


async def test_monthly_provider_and_tag_budgets_and_the_spike_rule(
    upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    # Seven quiet days before today: $0.01 a day, so a spike is today over 3 × $0.01.
    now = datetime.now()
    midnight = datetime.combine(now.date(), datetime.min.time())
    history = [
        Req(ts=(midnight - timedelta(days=d) + timedelta(hours=12)).timestamp(), cost_nano=10**7)
        for d in range(1, 8)
    ]
    record_to(resolve_paths().database, *history)
    month_so_far = sum(r.cost_nano for r in history if r.ts >= midnight.replace(day=1).timestamp())
    async with webhook_receiver() as hook:
        budgets = (
            "[budget]\nmonthly = 10\n[budget.providers]\nopenai = 1\n"
            '[budget.tags]\n"team=search" = 0.5\n'
        )
        write_config(alerts_section((hook, "json"), extra="spike_factor = 3"), budgets)
        async with launch_serve(upstreams={"openai": server}) as served:
            await asyncio.sleep(SETTLE_S)
            assert hook.bodies == []  # nothing crossed yet
            replying(fake, 25)  # $0.025 today: under 3 × $0.01 ...
            assert await ask(served.url, 25) == 200
            await written(served, 1)
            await asyncio.sleep(SETTLE_S)
            assert hook.bodies == []
            replying(fake, 250)  # ... $0.275: a spike; the tag's $0.50 is half spent
            assert await ask(served.url, 250, tags={"team": "search"}) == 200
            await hook.wait_for(2)
            replying(fake, 300)  # openai's $1: over 50 % (with the month's history)
            assert await ask(served.url, 300, tags={"team": "search"}) == 200
            await hook.wait_for(4)
            await asyncio.sleep(SETTLE_S)
    fired = sorted((body["rule"], body["threshold_percent"]) for body in hook.bodies)
    openai_share = (Decimal(month_so_far) / 10**9 + Decimal("0.575")) * 100
    openai = [t for t in (50, 80, 100) if t <= openai_share]
    expected = [("provider:openai", max(openai))] if openai else []
    # The tag first crossed 50 % ($0.25 of $0.50), then 100 % ($0.55).
    expected += [("spike", 300), ("tag:team=search", 50), ("tag:team=search", 100)]
    assert fired == sorted(expected)
    spike = next(body for body in hook.bodies if body["rule"] == "spike")
    assert spike["event"] == "spike"
    assert spike["spend_usd"] == "0.275"
    assert spike["budget_usd"] == "0.03"  # 3 × the $0.01 daily average
    assert spike["command"] == "meterfox report --by day,model --since 7d"
    assert "is 27.5x the 7-day daily average of $0.01 (alert over 3x)" in spike["text"]
    tag = next(body for body in hook.bodies if body["rule"] == "tag:team=search")
    assert tag["subject"] == "tag team=search's monthly budget"
    assert tag["budget_usd"] == "0.5"
    assert tag["period"] == "month"
    assert "--tag team=search" in tag["command"]


async def settled(daemon) -> None:
    """Five requests through `daemon`, committed: its writer's process has started (serve
    listens before it has), so a latency measured next sees neither daemon's start."""
    await latencies(daemon.url, 5)
    deadline = time.monotonic() + 30
    while (await daemon.health())["records_written"] < 5:
        assert time.monotonic() < deadline, "the writer's process did not commit"
        await asyncio.sleep(0.05)


async def latencies(url: str, count: int) -> list[float]:
    """Each of `count` sequential requests' round trip, in seconds."""
    found = []
    async with aiohttp.ClientSession() as session:
        body = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {OPENAI_KEY}"}
        for _ in range(count):
            started = time.perf_counter()
            async with session.post(
                url + "/openai/v1/chat/completions", json=body, headers=headers
            ) as response:
                await response.read()
                assert response.status == 200
            found.append(time.perf_counter() - started)
    return found


async def test_a_webhook_that_hangs_or_fails_leaves_the_proxy_latency_unchanged(
    upstream_server, tmp_path
):
    fake, server = upstream_server
    replying(fake, 1)
    # The month is over its $1 budget before serve starts: the alert goes out at once, to a
    # receiver that never answers and one that answers 500 (retried WEBHOOK_ATTEMPTS times).
    record_to(resolve_paths().database, Req(ts=time.time(), cost_nano=2 * 10**9))
    quiet_home = tmp_path / "quiet"  # the same proxy with no alerts at all, side by side
    async with (
        webhook_receiver(hang=True) as hanging,
        webhook_receiver(status=500) as failing,
    ):
        write_config(
            alerts_section((hanging, "json"), (failing, "slack")), "[budget]\nmonthly = 1\n"
        )
        async with (
            launch_serve(upstreams={"openai": server}) as alerting,
            launch_serve(
                upstreams={"openai": server}, env={"METERFOX_HOME": str(quiet_home)}
            ) as quiet,
        ):
            await hanging.wait_for(1)
            await failing.wait_for(1)
            await asyncio.gather(settled(alerting), settled(quiet))
            with_alerts, without = [], []
            for _ in range(4):  # interleaved, so the machine's noise falls on both alike
                with_alerts += await latencies(alerting.url, 10)
                without += await latencies(quiet.url, 10)
            # The measurement ran while the hanging webhook's attempts were still held open.
            assert time.monotonic() - hanging.times[0] < WEBHOOK_TIMEOUT_S * WEBHOOK_ATTEMPTS
            assert len(hanging.bodies) <= WEBHOOK_ATTEMPTS
            await failing.wait_for(WEBHOOK_ATTEMPTS)
            await asyncio.sleep(1)
            assert len(failing.bodies) == WEBHOOK_ATTEMPTS  # bounded retries
            health = await alerting.health()
    assert health["alerts"]["sent"] == 1
    assert health["alerts"]["last_error"] is None
    median_with, median_without = statistics.median(with_alerts), statistics.median(without)
    assert median_with <= median_without * 1.5 + 0.002, (median_with, median_without)
    print(
        f"median latency with a hanging and a failing webhook {median_with * 1000:.2f} ms, "
        f"without alerts {median_without * 1000:.2f} ms"
    )


async def test_two_daemons_on_one_postgresql_ledger_send_each_threshold_once(
    upstream_server, pg_url, tmp_path
):
    """A team's shared ledger: each daemon watches the whole ledger, and the one that claims a
    threshold first sends it (the claim is a row in the ledger's alerts_fired table)."""
    fake, server = upstream_server
    ledger = {"METERFOX_DATABASE_URL": pg_url}
    assert (await run_meterfox("db", "migrate", env=ledger)).returncode == 0
    other_home = tmp_path / "other"
    other_home.mkdir()
    async with webhook_receiver() as hook:
        section = alerts_section((hook, "json")) + "[budget]\nmonthly = 1\n"
        write_config(section)
        (other_home / "config.toml").write_text(PRICES + section)
        async with (
            launch_serve(upstreams={"openai": server}, env=ledger) as first,
            launch_serve(
                upstreams={"openai": server}, env={**ledger, "METERFOX_HOME": str(other_home)}
            ) as second,
        ):
            replying(fake, 600)
            assert await ask(first.url, 600) == 200  # $0.60 of $1: 50 %
            await hook.wait_for(1)
            replying(fake, 300)
            assert await ask(second.url, 300) == 200  # $0.90: 80 %, through the other daemon
            await hook.wait_for(2)
            await asyncio.sleep(SETTLE_S)
            sent = [
                (await first.health())["alerts"]["sent"],
                (await second.health())["alerts"]["sent"],
            ]
    assert thresholds(hook) == [50, 80]
    assert sum(sent) == 2
    assert {body["rule"] for body in hook.bodies} == {"monthly"}
    assert hook.bodies[1]["spend_usd"] == "0.9"
