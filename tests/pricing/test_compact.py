"""The compact table stands for genai-prices' data exactly: the shipped file is what the
installed genai-prices builds, each lookup gives genai-prices' own answer, and every model in the
data prices through it as through the reference path (same Decimal, same provenance), without
importing genai-prices or pydantic."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from itertools import combinations

import pytest

from meterfox_cli.pricing import compact
from meterfox_cli.pricing.book import PriceBook, price_reading
from meterfox_cli.pricing.compact import current_table
from meterfox_cli.usage import Reading, Usage


@pytest.fixture(scope="module")
def snapshot():
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot()


def test_the_shipped_table_is_the_installed_genai_prices_data():
    """Fails after a genai-prices upgrade: run `python -m meterfox_cli.pricing.compact`."""
    assert compact.TABLE_FILE.read_text(encoding="utf-8") == compact.table_text()
    assert compact._shipped() is not None  # and it is the one in use


def test_the_table_finds_every_provider_as_genai_prices_does(snapshot):
    from genai_prices.data_snapshot import find_provider_by_id

    from meterfox_cli.pricing.genai import pricing_id

    table = current_table()
    names = [p.id for p in snapshot.providers]
    names += [n.upper() for n in names] + [
        "gemini",
        "xai",
        "bedrock",
        "novita",
        "nobody",
        "litellm",
    ]
    for name in names:
        theirs = find_provider_by_id(snapshot.providers, name)
        ours = table.find_provider(name)
        assert (ours and ours.id) == (theirs and theirs.id), name
    assert pricing_id("together") == "together"
    assert pricing_id("nobody") is None


def _names(clause) -> list[str]:
    """Names a match clause takes (and near misses around it)."""
    op, arg = clause
    if op in ("or", "and"):
        return [name for sub in arg for name in _names(sub)]
    if op == "re":
        return []
    return [arg, f"{arg}-20250514", f"x-{arg}x"]


def test_the_table_finds_every_model_as_genai_prices_does(snapshot):
    table = current_table()
    asked = [
        (provider.id, name)
        for provider in table.providers
        for model in provider.models
        for name in (model.id, *_names(model.match)[:6])
    ]
    asked += [("litellm", name) for name in LITELLM_NAMES] + [("openai", "no-such-model")]
    for pid, name in asked:
        try:
            p, m = snapshot.find_provider_model(name, None, pid, None)
            theirs = (p.id, m.id)
        except LookupError:
            theirs = None
        ours = table.find_model(pid, name)
        assert (ours and (ours[0].id, ours[1].id)) == theirs, (pid, name)
    assert len(asked) > 10_000


LITELLM_NAMES = [
    "openai/gpt-4o",
    "anthropic/claude-sonnet-4-5-20250929",
    "nobody/gpt-4o",
    "gpt-4o",
    "claude-3-5-haiku",
    "gemini/gemini-2.5-pro",
]


TIMES = [
    datetime(2024, 3, 1, 12, tzinfo=UTC),
    datetime(2025, 8, 15, 2, 30, tzinfo=UTC),  # inside DeepSeek's off-peak hours then
    datetime(2026, 11, 29, 9, tzinfo=UTC),
]
CONTEXTS = [
    (),
    (("service_tier", "flex"),),
    (("service_tier", "priority"),),
    (("processing", "batch"),),
    (("speed", "fast"),),
    (("search_type", "web"),),
]


def test_every_model_gets_the_prices_genai_prices_gives_it(snapshot):
    table = current_table()
    for theirs, ours in zip(snapshot.providers, table.providers, strict=True):
        for info, model in zip(theirs.models, ours.models, strict=True):
            for at in TIMES:
                for context in CONTEXTS:
                    expected = info.get_prices(at, dict(context) or None).__dict__
                    got = model.get_prices(at, dict(context) or None)
                    assert list(got) == list(expected), (info.id, at, context)
                    for key, value in expected.items():
                        assert _plain(got[key]) == _plain(value), (info.id, key)


def _plain(rate):
    tiers = getattr(rate, "tiers", None)
    if tiers is None:
        return rate
    return rate.base, tuple(
        (t[0], t[1]) if isinstance(t, tuple) else (t.start, t.price) for t in tiers
    )


USAGES = [
    Usage(input_tokens=1_234, output_tokens=567),
    Usage(input_tokens=250_000, cached_tokens=40_000, output_tokens=9_000, reasoning_tokens=3_000),
    Usage(
        input_tokens=12_000,
        cached_tokens=2_000,
        cache_write_tokens=5_000,
        cache_write_1h_tokens=1_000,
        output_tokens=800,
    ),
    Usage(
        input_tokens=3_000,
        output_tokens=900,
        units=(("input_audio_tokens", 1_000.0), ("output_audio_tokens", 300.0)),
    ),
    Usage(input_tokens=900, output_tokens=80, units=(("web_search_requests", 2.0),)),
    Usage(input_tokens=10, cached_tokens=50, output_tokens=5),  # refused: both say why
]


def test_every_model_prices_through_the_table_as_through_genai_prices():
    """The equivalence that lets the writer price without genai-prices: for every model of
    every provider in the data, a spread of usages, times and price contexts."""
    table = current_table()
    book = PriceBook(pricing_ids=tuple((p.id, p.id) for p in table.providers))
    priced = 0
    for provider in table.providers:
        for model in provider.models:
            for index, usage in enumerate(USAGES):
                at = TIMES[index % len(TIMES)].timestamp()
                context = CONTEXTS[index % len(CONTEXTS)]
                reading = Reading(model=model.id, usage=usage, price_context=context)
                fast = price_reading(provider.id, model.id, at, reading, book)
                reference = price_reading(provider.id, model.id, at, reading, book, fast=False)
                assert fast == reference, (provider.id, model.id, usage)
                priced += fast.source == "computed"
    assert priced > 10_000


def test_unknown_models_are_unpriced_as_genai_prices_says():
    reading = Reading(model="gpt-nonexistent", usage=Usage(input_tokens=5, output_tokens=5))
    at = TIMES[-1].timestamp()
    fast = price_reading("openai", "gpt-nonexistent", at, reading)
    assert fast == price_reading("openai", "gpt-nonexistent", at, reading, fast=False)
    assert fast.source == "unpriced"


KEYS = [
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "output_reasoning_tokens",
    "input_audio_tokens",
    "cache_audio_read_tokens",
]


def test_missing_usage_counts_as_zero_exactly_where_genai_prices_infers_zero():
    from meterfox_cli.pricing.genai import zero_keys

    table = current_table()
    every = frozenset(table.units)
    for size in range(len(KEYS) + 1):
        for present in combinations(KEYS, size):
            reported = frozenset(present)
            assert table.zero_keys(every - reported, reported) == zero_keys(
                every - reported, reported
            ), present


def test_pricing_from_the_table_imports_neither_genai_prices_nor_pydantic():
    code = """
import sys, time
from meterfox_cli.pricing.book import DEFAULT_BOOK, price_reading
from meterfox_cli.usage import Reading, Usage
DEFAULT_BOOK.warm()
for provider, model in [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"),
                        ("gemini", "gemini-2.5-pro"), ("openai", "no-such-model")]:
    reading = Reading(model=model, usage=Usage(input_tokens=1000, output_tokens=50))
    print(price_reading(provider, model, time.time(), reading).source)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("genai_prices", "pydantic")))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:4] == ["computed", "computed", "computed", "unpriced"]
    assert out[4] == "[]"


def test_daily_windows_across_midnight_are_genai_prices_own():
    from datetime import time

    from genai_prices.types import TimeOfDateConstraint

    for start, end in [(time(22), time(2)), (time(1), time(4)), (time(0, 30), time(16, 30))]:
        theirs = TimeOfDateConstraint(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
        ours = compact.Daily(start, end)
        for minute in range(0, 24 * 60, 15):
            at = datetime(2026, 1, 1, minute // 60, minute % 60, tzinfo=UTC)
            assert ours.active(at) == theirs.active(at), (start, end, at)


def test_a_table_file_changed_under_a_running_process_is_refused_not_misread(tmp_path, monkeypatch):
    import os

    copy = tmp_path / "genai_table.json"
    copy.write_bytes(compact.TABLE_FILE.read_bytes())
    monkeypatch.setattr(compact, "TABLE_FILE", copy)
    table = compact._shipped()
    assert table.find_model("openai", "gpt-4o")[1].id == "gpt-4o"  # read from the copy
    os.utime(copy, ns=(1, 1))  # as an upgrade rewriting it would
    with pytest.raises(RuntimeError, match="changed since serve started"):
        table.find_model("anthropic", "claude-sonnet-4-5")
