"""Fill a MeterFox database with N synthetic but realistic request records.

    METERFOX_HOME=/tmp/mf-bench python bench/seed_db.py --rows 1000000

Records go through the project's own storage path: `UsageRecord` → `store.rows.insert_records`
inside `transaction`, on a connection from `store.db.connect`
(so the schema and every migration are the real ones). The mix: ~15 models over 7 providers
with skewed popularity, `--days` of timestamps (busier on weekdays and in working hours),
streamed and non-streamed calls with log-normal latencies, four keys, `feature`/`env` tags on
most requests, ~2% upstream errors with no usage, and one fine-tuned model with no price
(`cost_source = 'unpriced'`). Prices are synthetic per-million-token rates, not real ones.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meterfox_cli.paths import resolve_paths
from meterfox_cli.pricing.quote import NO_USAGE, UNPRICED, Price
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.store.db import connect, transaction
from meterfox_cli.store.rows import REQUEST_COLUMNS, insert_records, insert_rows, named_rows
from meterfox_cli.usage import Reading, Usage

BATCH = 20_000


@dataclass(frozen=True)
class Model:
    provider: str
    name: str
    endpoint: str
    weight: float
    input_per_m: Decimal | None  # synthetic USD per million input tokens; None: unpriced
    output_per_m: Decimal
    latency_ms: float  # median total latency
    reasoning: bool = False
    embedding: bool = False


def _m(*args, **kwargs) -> Model:
    return Model(*args, **kwargs)


CHAT = "/v1/chat/completions"
# fmt: off
MODELS = [
    _m("openai", "gpt-4o", CHAT, 14, Decimal("2.5"), Decimal("10"), 2400),
    _m("openai", "gpt-4o-mini", CHAT, 22, Decimal("0.15"), Decimal("0.6"), 1100),
    _m("openai", "gpt-4.1", CHAT, 6, Decimal("2"), Decimal("8"), 2600),
    _m("openai", "o3-mini", CHAT, 4, Decimal("1.1"), Decimal("4.4"), 9000, reasoning=True),
    _m("openai", "text-embedding-3-small", "/v1/embeddings", 10, Decimal("0.02"), Decimal(0), 180,
       embedding=True),
    _m("openai", "ft:gpt-4o-mini:acme:support:9xk2", CHAT, 3, None, Decimal(0), 1300),
    _m("anthropic", "claude-sonnet-4-20250514", "/v1/messages", 12, Decimal("3"), Decimal("15"),
       3500),
    _m("anthropic", "claude-3-5-haiku-20241022", "/v1/messages", 7, Decimal("0.8"), Decimal("4"),
       1400),
    _m("anthropic", "claude-opus-4-20250514", "/v1/messages", 1.5, Decimal("15"), Decimal("75"),
       7000),
    _m("gemini", "gemini-2.5-pro", "/v1beta/models/gemini-2.5-pro:generateContent", 4,
       Decimal("1.25"), Decimal("10"), 8000, reasoning=True),
    _m("gemini", "gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent", 8,
       Decimal("0.3"), Decimal("2.5"), 1600),
    _m("mistral", "mistral-large-latest", CHAT, 2, Decimal("2"), Decimal("6"), 2900),
    _m("mistral", "mistral-small-latest", CHAT, 3, Decimal("0.1"), Decimal("0.3"), 900),
    _m("groq", "llama-3.3-70b-versatile", "/v1/chat/completions", 3, Decimal("0.59"),
       Decimal("0.79"), 450),
    _m("openrouter", "deepseek/deepseek-r1", CHAT, 2, Decimal("0.55"), Decimal("2.19"), 12000,
       reasoning=True),
]
# fmt: on
KEYS = [("backend", 55), ("passthrough", 25), ("notebook", 12), ("ci", 8)]
FEATURES = [("chat", 40), ("search", 25), ("summarize", 20), ("agent", 15)]
ERRORS = [
    (429, Outcome.UPSTREAM_ERROR),
    (500, Outcome.UPSTREAM_ERROR),
    (503, Outcome.UPSTREAM_ERROR),
    (200, Outcome.CLIENT_CLOSED),
]


def weighted(pairs):
    items, weights = zip(*pairs, strict=True)
    return list(items), list(weights)


def timestamps(rng: random.Random, count: int, days: float, end: float) -> list[float]:
    """`count` times in (end - days, end], busier on weekdays and between 08:00 and 20:00."""
    out: list[float] = []
    start = end - days * 86400
    while len(out) < count:
        ts = rng.uniform(start, end)
        t = time.localtime(ts)
        keep = (1.0 if t.tm_wday < 5 else 0.35) * (1.0 if 8 <= t.tm_hour < 20 else 0.3)
        if rng.random() < keep:
            out.append(ts)
    out.sort()
    return out


def make_usage(rng: random.Random, model: Model) -> Usage:
    if model.embedding:
        return Usage(input_tokens=int(rng.lognormvariate(math.log(400), 0.8)) + 1)
    inp = int(rng.lognormvariate(math.log(1800), 1.0)) + 10
    cached = int(inp * rng.choice((0, 0, 0.5, 0.8))) if inp > 1024 else 0
    out = int(rng.lognormvariate(math.log(350), 0.9)) + 1
    reasoning = int(rng.lognormvariate(math.log(900), 0.8)) if model.reasoning else 0
    write = int(inp * 0.3) if model.provider == "anthropic" and rng.random() < 0.1 else 0
    return Usage(
        input_tokens=inp,
        cached_tokens=cached,
        cache_write_tokens=write,
        output_tokens=out + reasoning,
        reasoning_tokens=reasoning,
    )


def price(model: Model, usage: Usage | None) -> Price:
    if usage is None:
        return NO_USAGE
    if model.input_per_m is None:
        return UNPRICED
    uncached = usage.input_tokens - usage.cached_tokens
    usd = (
        uncached * model.input_per_m
        + usage.cached_tokens * model.input_per_m / 4
        + usage.output_tokens * model.output_per_m
    ) / 1_000_000
    return Price(int(usd * 1_000_000_000), "computed", "bench synthetic price")


def make_record(rng: random.Random, ts: float, model: Model, key: str, tags) -> UsageRecord:
    failed = rng.random() < 0.02
    status, outcome = rng.choice(ERRORS) if failed else (200, Outcome.OK)
    usage = None if failed else make_usage(rng, model)
    streamed = not model.embedding and rng.random() < 0.6
    latency = rng.lognormvariate(math.log(model.latency_ms), 0.55)
    ttfb = latency * rng.uniform(0.05, 0.35) if streamed else None
    return UsageRecord(
        id=f"{int(ts * 1000):011x}{rng.getrandbits(40):010x}",
        started_at=ts,
        provider=model.provider,
        model=model.name,
        endpoint=model.endpoint,
        method="POST",
        status=status,
        streamed=streamed,
        outcome=outcome,
        key_name=key,
        ttfb_ms=None if ttfb is None else round(ttfb, 3),
        latency_ms=round(latency, 3),
        reading=Reading(model=model.name, usage=usage),
        tags=tags,
    )


def make_tags(rng: random.Random, features, feature_weights) -> tuple[tuple[str, str], ...]:
    roll = rng.random()
    if roll < 0.3:
        return ()
    feature = ("feature", rng.choices(features, feature_weights)[0])
    if roll < 0.45:
        return (feature,)
    return (("env", "prod" if rng.random() < 0.8 else "dev"), feature)


def seed(db_path: Path, rows: int, days: float, seed_value: int, end: float) -> float:
    """Add `rows` records; return the seconds spent writing them."""
    rng = random.Random(seed_value)
    keys, key_weights = weighted(KEYS)
    features, feature_weights = weighted(FEATURES)
    model_weights = [m.weight for m in MODELS]
    conn = connect(db_path)
    writing = 0.0
    started = time.perf_counter()
    try:
        times = timestamps(rng, rows, days, end)
        for offset in range(0, rows, BATCH):
            batch = []
            for ts in times[offset : offset + BATCH]:
                model = rng.choices(MODELS, model_weights)[0]
                key = rng.choices(keys, key_weights)[0]
                record = make_record(rng, ts, model, key, make_tags(rng, features, feature_weights))
                batch.append((record, price(model, record.reading.usage)))
            begun = time.perf_counter()
            with transaction(conn):
                insert_records(conn, batch)
            writing += time.perf_counter() - begun
            done = min(offset + BATCH, rows)
            print(f"\r{done:,} / {rows:,} rows", end="", file=sys.stderr, flush=True)
    finally:
        conn.close()
    print(
        f"\nseeded {rows:,} rows in {time.perf_counter() - started:.1f}s "
        f"({writing:.1f}s in INSERT transactions, {writing / rows * 1e6:.1f} µs a record) "
        f"→ {db_path}",
        file=sys.stderr,
    )
    return writing


def grow_to(db_path: Path, target: int) -> None:
    """Copy recorded requests (and their tags) inside the database until it holds `target`:
    the same times and contents under new ids, spread evenly over the ledger (every k-th
    rowid), inserted as the writer inserts (`store.rows.insert_rows`: the rollups follow); it
    may overshoot by part of a 20,000-rowid chunk. Faster than making records in Python; the
    ledger is then denser, not longer."""
    conn = connect(db_path)
    columns = ", ".join(REQUEST_COLUMNS)
    try:
        started, round_ = time.perf_counter(), 0
        while (have := conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]) < target:
            round_ += 1
            top = conn.execute("SELECT MAX(rowid) FROM requests").fetchone()[0]
            every = max(1, math.ceil(have / (target - have)))
            suffix = f"c{round_}"
            for low in range(0, top, BATCH):  # a transaction per 20,000 rowids
                chosen = f"rowid > {low} AND rowid <= {low + BATCH} AND rowid % {every} = 0"
                with transaction(conn):
                    rows = named_rows(
                        conn.execute(f"SELECT {columns} FROM requests WHERE {chosen}")
                    )
                    tags = conn.execute(
                        "SELECT t.request_id || ?, t.name, t.value FROM request_tags t "
                        f"JOIN requests r ON r.id = t.request_id WHERE {chosen.replace('rowid', 'r.rowid')}",
                        (suffix,),
                    ).fetchall()
                    insert_rows(conn, [{**row, "id": row["id"] + suffix} for row in rows], tags)
                have += len(rows)
                print(f"\r{have:,} / {target:,} rows", end="", file=sys.stderr, flush=True)
                if have >= target:
                    break
    finally:
        conn.close()
    print(f"\ngrew to {target:,} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="how many records to add")
    parser.add_argument("--days", type=float, default=45, help="span of timestamps, ending now")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same rows)")
    parser.add_argument(
        "--grow-to",
        type=int,
        default=None,
        help="instead: copy the recorded requests inside the database up to this many rows",
    )
    args = parser.parse_args(argv)
    paths = resolve_paths()
    paths.ensure()
    if args.grow_to is not None:
        grow_to(paths.database, args.grow_to)
        return
    seed(paths.database, args.rows, args.days, args.seed, time.time())


if __name__ == "__main__":
    main()
