"""The dashboard's JSON API over a seeded database (bench/seed_db.py, the benchmark's own mix):
Explore's report and CSV are `meterfox report --format json|csv`'s, to the nano-dollar; the
overview's month is the report's month; Live pushes a request as it finishes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date, timedelta
from decimal import Decimal

import aiohttp
import pytest

from bench.seed_db import seed
from meterfox_cli.paths import resolve_paths
from meterfox_cli.timewindow import month_start
from meterfox_cli.web.guard import access_for
from meterfox_cli.web.mount import dashboard_mount
from tests.cli.conftest import run_meterfox
from tests.conftest import start_proxy
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

ROWS = 3000


@pytest.fixture
async def dashboard(upstream_server):
    paths = resolve_paths()
    paths.ensure()
    seed(paths.database, ROWS, 45, 7, time.time())
    fake, server = upstream_server
    mount = dashboard_mount(paths.database, access_for(True, None))
    proxy, proxy_server = await start_proxy(fake, server, mounts=(mount,))
    yield proxy
    await proxy_server.close()


async def fetch(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200, await response.text()
            return await response.text()


def exact(text: str):
    return json.loads(text, parse_float=Decimal)


async def cli(*args: str) -> str:
    done = await run_meterfox(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


FORTNIGHT = (date.today() - timedelta(days=14)).isoformat()  # a fixed moment, not "14d ago"
WEEK = (date.today() - timedelta(days=7)).isoformat()
VIEWS = [
    ("by=provider,model", "--by provider,model"),
    ("by=day&since=all", "--by day --since all"),
    (f"by=key,tag:feature&since={FORTNIGHT}", f"--by key,tag:feature --since {FORTNIGHT}"),
    (
        f"by=week,model&since={FORTNIGHT}T09:30&until={WEEK}&provider=openai&provider=anthropic"
        "&tag=env=prod",
        f"--by week,model --since {FORTNIGHT}T09:30 --until {WEEK} --provider openai "
        "--provider anthropic --tag env=prod",
    ),
]


@pytest.mark.parametrize(("query", "args"), VIEWS)
async def test_explore_is_the_cli_report_to_the_nano_dollar(dashboard, query, args):
    api = exact(await fetch(f"{dashboard.url}/_meterfox/api/report?{query}"))
    terminal = exact(await cli("report", "--format", "json", *args.split()))
    assert api["rows"] and len(api["rows"]) == len(terminal)
    assert api["rows"] == terminal  # every field, exact decimals, the same order
    total = api["total"]
    assert total["cost_nanousd"] == sum(r["cost_nanousd"] or 0 for r in api["rows"])
    assert total["requests"] == sum(r["requests"] for r in api["rows"])


async def test_the_csv_download_is_the_cli_csv(dashboard):
    api = await fetch(f"{dashboard.url}/_meterfox/api/report.csv?by=provider,model&since=all")
    assert api == await cli("report", "--format", "csv", "--by", "provider,model", "--since", "all")


async def test_the_overviews_month_is_the_reports_month(dashboard):
    overview = json.loads(await fetch(f"{dashboard.url}/_meterfox/api/overview?by=model"))
    terminal = exact(await cli("report", "--format", "json"))
    month = sum(row["cost_nanousd"] or 0 for row in terminal)
    assert month > 0
    assert overview["spend"]["month"]["nanousd"] == month
    assert overview["month"]["requests"] == sum(row["requests"] for row in terminal)
    assert overview["month"]["unpriced_requests"] == sum(r["unpriced_requests"] for r in terminal)
    assert overview["spend"]["projected_month"]["nanousd"] >= month
    first = date.fromtimestamp(month_start()).isoformat()
    daily = overview["daily"]
    assert daily["by"] == "model"
    in_month = [i for i, day in enumerate(daily["days"]) if day >= first]
    if len(in_month) == date.today().day:  # the chart's 30 days hold the whole month
        charted = sum(s["nanousd"][i] for s in daily["series"] for i in in_month)
        assert charted == month
    assert {m["name"] for m in overview["top_models"]} <= {r["model"] for r in terminal}
    by_provider = exact(await cli("report", "--format", "json", "--by", "provider"))
    providers = json.loads(await fetch(f"{dashboard.url}/_meterfox/api/overview/providers"))
    assert [
        (p["name"], p["requests"], p["errors"], p["cost"]["nanousd"])
        for p in providers["providers"]
    ] == [(r["provider"], r["requests"], r["errors"], r["cost_nanousd"]) for r in by_provider]
    assert all(p["latency_p50_ms"] <= p["latency_p95_ms"] for p in providers["providers"])
    for top in overview["top_models"]:  # the month's report is by provider,model
        costs = [r["cost_nanousd"] for r in terminal if (r["model"] or "(unknown)") == top["name"]]
        priced = [cost for cost in costs if cost is not None]
        assert top["cost"]["nanousd"] == (sum(priced) if priced else None)


async def test_top_tags_name_the_seeded_tags(dashboard):
    tags = json.loads(await fetch(f"{dashboard.url}/_meterfox/api/overview/tags"))["tags"]
    assert {t["tag"] for t in tags} == {"feature", "env"}
    assert all(t["rows"] for t in tags)


async def test_live_pushes_a_request_as_it_finishes(dashboard):
    dashboard.upstream.reply = Reply(
        json_body=chat("gpt-4o-mini", {"prompt_tokens": 11, "completion_tokens": 5})
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{dashboard.url}/_meterfox/api/live") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            backlog = await read_event(stream)
            assert len(backlog) == 20 and all(r["rowid"] for r in backlog)
            async with session.post(
                f"{dashboard.url}/openai/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": []},
                headers={"Authorization": "Bearer sk-test"},
            ) as response:
                assert response.status == 200
            pushed = await asyncio.wait_for(read_event(stream), 5)
    assert [(r["model"], r["input_tokens"], r["output_tokens"]) for r in pushed] == [
        ("gpt-4o-mini", 11, 5)
    ]
    assert pushed[0]["rowid"] > backlog[-1]["rowid"]


async def read_event(stream: aiohttp.ClientResponse) -> list[dict]:
    data = None
    async for raw in stream.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            return data
    raise AssertionError("the stream ended")
