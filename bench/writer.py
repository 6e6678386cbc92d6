"""Record writer throughput: how many records per second reach SQLite, priced, in batches.

    python -m bench.writer [--records 100000] [--no-pricing] [--tags N]

Submits realistic records (varied usage across several providers and models, a tag each)
through the project's own RecordWriter into a fresh database in a temp METERFOX_HOME, as fast as
it can, and reports records/s from the first submit to the last commit. The target (issue 7)
is >= 10,000 records/s sustained. (Its `--without PREFIX`, which dropped INSERT triggers to
measure them, went with them: the rollups are summed per batch since migration 016; see
bench/insert_batches.py for the write path's CPU per record.)
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from meterfox_cli.pricing.book import price_record
from meterfox_cli.pricing.quote import UNPRICED
from meterfox_cli.records import Outcome, UsageRecord, new_request_id
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading, Usage

MODELS = [
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4.1-2025-04-14"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("gemini", "gemini-2.5-flash"),
    ("deepseek", "deepseek-chat"),
    ("groq", "llama-3.3-70b-versatile"),
]


TAG_VALUES = {"feature": ["search", "chat", "summary"], "env": ["prod", "dev"], "team": ["a", "b"]}


def record(rng: random.Random, tags: int = 1) -> UsageRecord:
    provider, model = rng.choice(MODELS)
    prompt = rng.randint(10, 20_000)
    cached = rng.choice([0, 0, prompt // 2])
    output = rng.randint(1, 2_000)
    usage = Usage(input_tokens=prompt, cached_tokens=cached, output_tokens=output)
    return UsageRecord(
        id=new_request_id(),
        started_at=time.time(),
        provider=provider,
        model=model,
        endpoint="/v1/chat/completions",
        method="POST",
        status=200,
        streamed=rng.random() < 0.5,
        outcome=Outcome.OK,
        key_name="passthrough",
        ttfb_ms=rng.uniform(50, 500),
        latency_ms=rng.uniform(500, 5000),
        reading=Reading(model=model, usage=usage),
        tags=tuple((name, rng.choice(values)) for name, values in list(TAG_VALUES.items())[:tags]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--no-pricing", action="store_true")
    parser.add_argument("--tags", type=int, default=1, help="tags on each record (0-3)")
    args = parser.parse_args()
    rng = random.Random(7)
    records = [record(rng, args.tags) for _ in range(args.records)]
    home = Path(tempfile.mkdtemp(prefix="meterfox-writer-bench-"))
    pricer = (lambda r: UNPRICED) if args.no_pricing else price_record
    writer = RecordWriter(home / "meterfox.db", pricer=pricer)
    writer.start()
    price_record(records[0])  # load the price data before the clock starts
    started = time.perf_counter()
    for item in records:
        writer.submit(item)
    deadline = started + 600
    while writer.written < len(records) and time.perf_counter() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    writer.close()
    print(
        f"{writer.written} records in {elapsed:.2f} s: {writer.written / elapsed:,.0f} records/s "
        f"({'no pricing' if args.no_pricing else 'priced'}, {args.tags} tags each; largest batch {writer.max_batch}, "
        f"dropped {writer.dropped})"
    )


if __name__ == "__main__":
    main()
