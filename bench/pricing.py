"""How long pricing takes, and whether it shows on the proxy's request path.

1. `price_record` per record, warm, for a mix of record kinds (genai-prices lookups with
   cache and tiers, a provider-reported cost, an override, an unknown model), then over
   records with VARIED usage (random token counts, models, hours and service tiers), so no
   cache keyed on the usage could flatter the figure, against the genai-prices reference
   path on the same records. Per-record figures are CPU time (time.process_time), which
   other load on a shared machine inflates far less than wall time.
2. The proxy's request latency with the real pricer in the writer versus a pricer that does
   nothing, alternating runs (A B A B …) on loopback with a fake upstream.

Run: .venv/bin/python bench/pricing.py [--records 20000] [--requests 400] [--rounds 4]
     .venv/bin/python bench/pricing.py --records-only     # just the per-record figures
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterfox_cli.config import config_from_dict
from meterfox_cli.pricing.book import PriceBook, price_reading, price_record
from meterfox_cli.pricing.quote import UNPRICED
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.usage import Reading, Usage

AT = datetime(2026, 11, 2, 12, tzinfo=UTC).timestamp()


def record(
    provider: str,
    model: str,
    usage: Usage,
    reported: Decimal | None = None,
    *,
    at: float = AT,
    context: tuple[tuple[str, str], ...] = (),
) -> UsageRecord:
    return UsageRecord(
        id="0193a1b2c3d4e5f6",
        started_at=at,
        provider=provider,
        model=model,
        endpoint="/v1/chat/completions",
        method="POST",
        status=200,
        streamed=True,
        outcome=Outcome.OK,
        key_name="passthrough",
        ttfb_ms=100.0,
        latency_ms=900.0,
        reading=Reading(
            model=model, usage=usage, reported_cost_usd=reported, price_context=context
        ),
    )


MIX = {
    "openai gpt-4o, cached": record(
        "openai",
        "gpt-4o-2024-08-06",
        Usage(input_tokens=3072, cached_tokens=2048, output_tokens=417),
    ),
    "anthropic, 5m+1h writes": record(
        "anthropic",
        "claude-sonnet-4-20250514",
        Usage(
            input_tokens=21000,
            cached_tokens=6000,
            cache_write_tokens=12000,
            cache_write_1h_tokens=8000,
            output_tokens=900,
        ),
    ),
    "gemini-2.5-pro >200k": record(
        "gemini", "gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=2000)
    ),
    "openrouter reported": record(
        "openrouter",
        "anthropic/claude-sonnet-4",
        Usage(input_tokens=2000, cached_tokens=1200, output_tokens=150),
        Decimal("0.00105"),
    ),
    "override (fine-tune)": record(
        "openai", "ft:gpt-4.1-mini-2025-04-14:acme::x", Usage(input_tokens=1000, output_tokens=200)
    ),
    "unknown model": record("openai", "acme-secret", Usage(input_tokens=1000, output_tokens=200)),
}

BOOK = PriceBook.from_config(
    config_from_dict(
        {"prices": [{"provider": "openai", "model": "ft:*", "input": 0.8, "output": 3.2}]}
    ).pricing
)


def bench_records(n: int) -> None:
    BOOK.warm()
    for item in MIX.values():  # first lookups fill genai-prices' caches
        price_record(item, BOOK)
    print(f"price_record, warm, {n:,} calls per kind (CPU µs per record: median of 5 runs)")
    totals = []
    for name, item in MIX.items():
        runs = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(n // 5):
                price_record(item, BOOK)
            runs.append((time.process_time() - start) / (n // 5) * 1e6)
        totals.append(statistics.median(runs))
        print(f"  {name:<26} {statistics.median(runs):7.1f} µs")
    print(f"  {'mean over the mix':<26} {statistics.mean(totals):7.1f} µs")


def varied_usage(
    rng: random.Random, *, cache_writes: bool = False, prompt_max: int = 30_000
) -> Usage:
    """A random, internally consistent usage: parts never exceed their totals."""
    uncached = rng.randint(1, prompt_max)
    cached = rng.choice((0, rng.randint(1, 20_000)))
    write_5m = rng.choice((0, rng.randint(1, 10_000))) if cache_writes else 0
    write_1h = rng.choice((0, rng.randint(1, 10_000))) if cache_writes else 0
    visible = rng.randint(0, 4_000)
    reasoning = rng.choice((0, rng.randint(1, 8_000)))
    return Usage(
        input_tokens=uncached + cached + write_5m + write_1h,
        cached_tokens=cached,
        cache_write_tokens=write_5m + write_1h,
        cache_write_1h_tokens=write_1h,
        output_tokens=visible + reasoning,
        reasoning_tokens=reasoning,
    )


def varied_records(n: int, seed: int = 7) -> list[UsageRecord]:
    """`n` records over many models, each with its own random usage and time of day."""
    rng = random.Random(seed)
    day = datetime(2026, 11, 2, tzinfo=UTC).timestamp()

    def at() -> float:
        return day + rng.uniform(0, 86_400)  # any hour: DeepSeek's off-peak prices too

    makers = [
        lambda: record("openai", "gpt-4o-mini", varied_usage(rng), at=at()),
        lambda: record("openai", "gpt-4o-2024-08-06", varied_usage(rng), at=at()),
        lambda: record(
            "openai",
            "o4-mini-2025-04-16",
            varied_usage(rng),
            at=at(),
            context=(("service_tier", rng.choice(("flex", "default", "priority"))),),
        ),
        lambda: record(
            "anthropic", "claude-sonnet-4-20250514", varied_usage(rng, cache_writes=True), at=at()
        ),
        lambda: record(
            "anthropic", "claude-opus-4-1-20250805", varied_usage(rng, cache_writes=True), at=at()
        ),
        lambda: record(  # prompts either side of the 200k tier
            "gemini", "gemini-2.5-pro", varied_usage(rng, prompt_max=400_000), at=at()
        ),
        lambda: record("gemini", "gemini-2.5-flash", varied_usage(rng), at=at()),
        lambda: record(
            "deepseek", "deepseek-chat", varied_usage(rng), at=rng.uniform(1.749e9, 1.757e9)
        ),
        lambda: record("xai", "grok-4-0709", varied_usage(rng), at=at()),
        lambda: record("groq", "llama-3.3-70b-versatile", varied_usage(rng), at=at()),
        lambda: record("mistral", "mistral-small-latest", varied_usage(rng), at=at()),
        lambda: record(
            "openrouter",
            "anthropic/claude-sonnet-4",
            varied_usage(rng),
            Decimal(rng.randint(1, 10**6)) / 10**8,
            at=at(),
        ),
    ]
    return [rng.choice(makers)() for _ in range(n)]


def bench_varied(n: int, runs: int = 7) -> None:
    """The tariff fast path against the genai-prices reference path (`fast=False`) over the
    same records, runs alternating so both see the same machine load."""
    records = varied_records(n)
    paths = {
        "fast path (price_record)": lambda item: price_record(item, BOOK),
        "reference path (fast=False)": lambda item: price_reading(
            item.provider,
            item.reading.model or item.model,
            item.started_at,
            item.reading,
            BOOK,
            fast=False,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for price in paths.values():  # first pass: every model looked up, every price period seen
        for item in records:
            price(item)
    for _ in range(runs):
        for name, price in paths.items():
            start = time.process_time()
            for item in records:
                price(item)
            times[name].append((time.process_time() - start) / len(records) * 1e6)
    print(
        f"price_record, warm, {len(records):,} records of varied usage over 12 models "
        f"(CPU µs per record over {runs} alternating runs)"
    )
    for name, values in times.items():
        print(
            f"  {name:<28} median {statistics.median(values):6.1f}  min {min(values):6.1f}"
            f"  max {max(values):6.1f}"
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    requests: int
    concurrency: int
    chunk_delay_s: float  # between the upstream's SSE chunks; 0 = as fast as loopback goes


USAGE = {
    "prompt_tokens": 3072,
    "completion_tokens": 417,
    "total_tokens": 3489,
    "prompt_tokens_details": {"cached_tokens": 2048},
}


async def one_round(pricer, scenario: Scenario) -> list[float]:
    """Latency (ms) of each streamed chat request through a fresh proxy and writer."""
    import aiohttp
    from aiohttp.test_utils import TestServer

    from meterfox_cli.providers.registry import build_registry
    from meterfox_cli.proxy.app import make_app
    from meterfox_cli.store.writer import RecordWriter
    from tests.fakes.upstream import FakeUpstream, Reply, sse
    from tests.fixtures.openai_style import chat_stream_chunks

    fake = FakeUpstream()
    chunks = sse(*chat_stream_chunks("gpt-4o-2024-08-06", ["Hel", "lo", " there", "!"], USAGE))
    fake.reply = Reply(
        chunks=chunks, content_type="text/event-stream", delay_s=scenario.chunk_delay_s
    )
    upstream = TestServer(fake.app(), host="127.0.0.1")
    await upstream.start_server()
    with tempfile.TemporaryDirectory() as tmp:
        writer = RecordWriter(Path(tmp) / "bench.db", pricer=pricer)
        registry = build_registry(overrides={"openai": str(upstream.make_url("")).rstrip("/")})
        proxy = TestServer(make_app(registry=registry, writer=writer), host="127.0.0.1")
        await proxy.start_server()
        url = str(proxy.make_url("/openai/v1/chat/completions"))
        body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": "Bearer sk-x"}
        latencies: list[float] = []

        async def client(session: aiohttp.ClientSession, count: int) -> None:
            for _ in range(count):
                start = time.perf_counter()
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                latencies.append((time.perf_counter() - start) * 1000)

        per_client = scenario.requests // scenario.concurrency
        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(
                asyncio.gather(*(client(session, per_client) for _ in range(scenario.concurrency))),
                timeout=300,
            )
        await proxy.close()  # drains the writer
        assert writer.written == per_client * scenario.concurrency, writer.written
    await upstream.close()
    return latencies[scenario.concurrency * 5 :]  # drop connection warm-up


def bench_proxy(scenario: Scenario, rounds: int) -> None:
    BOOK.warm()
    pricers = {"no pricing": lambda record: UNPRICED, "real pricing": BOOK}
    results: dict[str, list[float]] = {name: [] for name in pricers}
    for _ in range(rounds):
        for name, pricer in pricers.items():
            results[name] += asyncio.run(one_round(pricer, scenario))
    print(
        f"proxy latency, {scenario.name}: {rounds} alternating rounds × {scenario.requests} "
        f"streamed requests, {scenario.concurrency} concurrent (ms)"
    )
    for name, values in results.items():
        values.sort()
        p50 = statistics.median(values)
        p95 = values[int(len(values) * 0.95)]
        print(f"  {name:<14} p50 {p50:7.3f}  p95 {p95:7.3f}  mean {statistics.mean(values):7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--records-only", action="store_true")
    args = parser.parse_args()
    bench_records(args.records)
    bench_varied(args.records)
    if args.records_only:
        return
    scenarios = [
        Scenario("loopback, no upstream delay (worst case)", args.requests, 1, 0.0),
        Scenario("upstream streams 4 chunks 5 ms apart", args.requests, 8, 0.005),
    ]
    for scenario in scenarios:
        bench_proxy(scenario, args.rounds)


if __name__ == "__main__":
    main()
