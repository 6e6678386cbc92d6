"""`/_meterfox/metrics` from a real `meterfox serve`: after a mix of requests through a fake
upstream (two providers, every token type, an upstream error, a stream, a tag), the page
parses with prometheus_client's own parser and its counters equal `meterfox report` over the
same records; the access rules hold at the real socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from decimal import Decimal

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from meterfox_cli.paths import resolve_paths
from tests.cli.conftest import launch_serve, run_meterfox
from tests.fakes.upstream import Reply, sse
from tests.fixtures import anthropic
from tests.fixtures.openai_style import chat, chat_stream_chunks

MINI, FOUR_O = "gpt-4o-mini", "gpt-4o"
OPENAI_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "prompt_tokens_details": {"cached_tokens": 1024},
    "completion_tokens_details": {"reasoning_tokens": 120},
}


def reply_for(received) -> Reply:
    """Anthropic's Messages for /v1/messages; OpenAI chat otherwise, by the body's model:
    `broken` answers 500, a stream is streamed."""
    if received.path_qs.endswith("/v1/messages"):
        return Reply(json_body=anthropic.JSON_BODY)
    body = received.json()
    if body["model"] == "broken":
        return Reply(status=500, json_body={"error": {"message": "upstream fell over"}})
    if body.get("stream"):
        chunks = chat_stream_chunks(body["model"], ["Hel", "lo"], OPENAI_USAGE)
        return Reply(chunks=sse(*chunks), content_type="text/event-stream")
    return Reply(json_body=chat(body["model"], OPENAI_USAGE))


async def drive(url: str) -> int:
    """The mix; returns how many requests were sent."""
    calls = [
        ("/openai/v1/chat/completions", {"model": MINI}, {"X-MeterFox-Tag-Feature": "search"}),
        ("/openai/v1/chat/completions", {"model": MINI}, {}),
        ("/openai/v1/chat/completions", {"model": FOUR_O, "stream": True}, {}),
        ("/openai/v1/chat/completions", {"model": "broken"}, {}),
        ("/anthropic/v1/messages", {"model": anthropic.MODEL, "max_tokens": 600}, {}),
    ]
    async with aiohttp.ClientSession() as session:
        for path, body, headers in calls:
            auth = {"x-api-key": "sk-ant-TESTONLY"} if "anthropic" in path else {}
            auth |= {"Authorization": "Bearer sk-TESTONLY-metrics"}
            async with session.post(
                url + path,
                json={**body, "messages": [{"role": "user", "content": "hi"}]},
                headers={**auth, **headers},
            ) as response:
                await response.read()
    return len(calls)


async def written(served, count: int) -> None:
    deadline = time.monotonic() + 15
    while (await served.health())["records_written"] < count:
        assert time.monotonic() < deadline, "records were not written"
        await asyncio.sleep(0.05)


async def scrape(url: str, headers: dict | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/_meterfox/metrics", headers=headers or {}) as response:
            return response.status, await response.text()


def samples(text: str) -> dict[str, list]:
    """Each sample name → its samples, as prometheus_client's parser reads the page."""
    found: dict[str, list] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append(sample)
    return found


def by_provider_model(found: dict[str, list], name: str, **match: str) -> dict:
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for sample in found[name]:
        if all(sample.labels.get(k) == v for k, v in match.items()):
            sums[(sample.labels["provider"], sample.labels["model"])] += sample.value
    return dict(sums)


def write_config(text: str) -> None:
    path = resolve_paths().config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def test_the_metrics_page_parses_and_its_counters_equal_the_report(upstream_server):
    fake, server = upstream_server
    fake.reply = reply_for
    write_config('[metrics]\ntag_labels = ["feature"]\n')
    upstreams = {"openai": server, "anthropic": server}
    async with launch_serve(upstreams=upstreams) as served:
        sent = await drive(served.url)
        await written(served, sent)
        status, text = await scrape(served.url)
    assert status == 200
    found = samples(text)
    report = json.loads((await run_meterfox("report", "--since", "all", "--format", "json")).stdout)
    assert {(r["provider"], r["model"]) for r in report} == {
        ("openai", MINI),
        ("openai", FOUR_O),
        ("openai", "broken"),
        ("anthropic", anthropic.MODEL),
    }
    columns = {
        "input": "input_tokens",
        "cached_input": "cached_tokens",
        "cache_write": "cache_write_tokens",
        "output": "output_tokens",
        "reasoning": "reasoning_tokens",
    }
    expected_requests = {(r["provider"], r["model"]): r["requests"] for r in report}
    assert by_provider_model(found, "meterfox_requests_total") == expected_requests
    assert sum(expected_requests.values()) == sent
    errors = by_provider_model(found, "meterfox_errors_total")
    assert errors == {key: r["errors"] for r in report if r["errors"] for key in [_key(r)]}
    assert errors == {("openai", "broken"): 1}
    for kind, column in columns.items():
        tokens = by_provider_model(found, "meterfox_tokens_total", type=kind)
        assert tokens == {_key(r): r[column] for r in report}, kind
    assert (
        by_provider_model(found, "meterfox_tokens_total", type="cache_write")[
            ("anthropic", anthropic.MODEL)
        ]
        == 1500
    )
    cost = by_provider_model(found, "meterfox_cost_usd_total")
    for row in report:
        assert Decimal(str(cost[_key(row)])) == Decimal(row["cost_usd"] or 0).quantize(
            Decimal("1e-9")
        ), row
    assert cost[("openai", MINI)] > 0
    # Labels: key and status on every counter, the tag only where given; histograms filled.
    [tagged] = [s for s in found["meterfox_requests_total"] if s.labels["tag_feature"] == "search"]
    assert tagged.labels == {
        "provider": "openai",
        "model": MINI,
        "key": "passthrough",
        "status": "200",
        "tag_feature": "search",
    }
    assert tagged.value == 1
    [broken] = found["meterfox_errors_total"]
    assert (broken.labels["status"], broken.labels["outcome"]) == ("500", "upstream_error")
    latency_counts = by_provider_model(found, "meterfox_request_duration_seconds_count")
    assert latency_counts == expected_requests
    ttfb = by_provider_model(found, "meterfox_time_to_first_byte_seconds_count")
    assert ttfb[("openai", FOUR_O)] == 1
    [queued] = found["meterfox_writer_queued_records"]
    assert queued.value == 0


def _key(row: dict) -> tuple[str, str]:
    return (row["provider"], row["model"])


async def test_a_scrape_needs_a_loopback_host_or_with_a_token_the_bearer(upstream_server):
    _, server = upstream_server
    async with launch_serve(upstreams={"openai": server}) as served:
        assert (await scrape(served.url))[0] == 200
        rebound = {"Host": f"attacker.example:{served.port}"}
        assert (await scrape(served.url, rebound))[0] == 403
    write_config('[metrics]\ntoken = "scrape-token-0123456789"\n')
    async with launch_serve(upstreams={"openai": server}) as served:
        assert (await scrape(served.url))[0] == 401
        wrong = {"Authorization": "Bearer scrape-token-wrong-000000"}
        assert (await scrape(served.url, wrong))[0] == 401
        right = {"Authorization": "Bearer scrape-token-0123456789"}
        status, text = await scrape(served.url, {**right, "Host": "metrics.example:9"})
        assert status == 200
        assert "meterfox_requests_total" in text or "# TYPE meterfox_requests" in text
    write_config("[metrics]\nenabled = false\n")
    async with launch_serve(upstreams={"openai": server}) as served:
        assert (await scrape(served.url))[0] == 404
