"""`meterfox prices`, `meterfox explain` and `meterfox reprice`, on a real database.

Records are written by the real RecordWriter (and, end to end, by the real proxy fed by the
real openai SDK); commands run through click's CliRunner with METERFOX_HOME set per test.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.paths import resolve_paths
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading, Usage
from tests.conftest import read_records
from tests.fakes.records import usage_record
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

FINE_TUNE = "ft:gpt-4.1-mini-2025-04-14:acme:support:B7xK2"
FINE_TUNE_PRICE = """
[[prices]]
provider = "openai"
model = "ft:gpt-4.1-mini-*"
input = 0.80
cached_input = 0.20
output = 3.20
note = "fine-tuned gpt-4.1-mini, openai.com/api/pricing"
"""


def run(*args: str, code: int = 0) -> str:
    """The output of `meterfox ARGS`, which must exit with `code`."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def stored(
    request_id: str,
    provider: str,
    model: str,
    usage: Usage | None,
    *,
    at: datetime = datetime(2025, 8, 20, 12, tzinfo=UTC),
    reported: Decimal | None = None,
    context: tuple[tuple[str, str], ...] = (),
) -> UsageRecord:
    return usage_record(
        id=request_id,
        started_at=at.timestamp(),
        provider=provider,
        model=model,
        status=200 if usage else 502,
        outcome=Outcome.OK if usage else Outcome.UPSTREAM_ERROR,
        reading=Reading(
            model=model, usage=usage, reported_cost_usd=reported, price_context=context
        ),
    )


def write_records(*records: UsageRecord) -> Path:
    """Commit records with the real writer and its default pricer, as the proxy does."""
    paths = resolve_paths()
    paths.ensure()
    writer = RecordWriter(paths.database)
    writer.start()
    for item in records:
        writer.submit(item)
    writer.close()
    assert writer.written == len(records)
    return paths.database


def row(db: Path, request_id: str) -> sqlite3.Row:
    return next(r for r in read_records(db) if r["id"] == request_id)


# --- End to end: unknown model → unpriced → override → reprice → priced ---------------------


async def test_unknown_model_through_the_proxy_is_priced_after_an_override_and_reprice(
    proxy, meterfox_home
):
    usage = {
        "prompt_tokens": 1_200,
        "completion_tokens": 300,
        "total_tokens": 1_500,
        "prompt_tokens_details": {"cached_tokens": 1_024},
    }
    proxy.upstream.reply = Reply(json_body=chat(FINE_TUNE, usage))
    client = proxy.track(
        openai.AsyncOpenAI(
            base_url=proxy.base("openai") + "/v1", api_key="sk-caller", max_retries=0
        )
    )
    raw = await client.chat.completions.with_raw_response.create(
        model=FINE_TUNE, messages=[{"role": "user", "content": "hi"}]
    )
    request_id = raw.headers["x-meterfox-request-id"]
    record = await proxy.record()
    assert record["id"] == request_id
    assert (record["cost_nanousd"], record["cost_source"]) == (None, "unpriced")
    assert json.loads(record["price_detail"])["reason"].startswith("no price for model")

    out = run("report", "--format", "json")
    [group] = json.loads(out)
    assert (group["cost_usd"], group["unpriced_requests"]) == (None, 1)

    write_config(meterfox_home, FINE_TUNE_PRICE)
    out = run("reprice")
    assert "Repriced 1 requests. Changed 1 (1 newly priced, 0 now unpriced)." in out

    record = row(proxy.db_path, request_id)
    # 176 uncached × $0.80 + 1,024 cached × $0.20 + 300 output × $3.20, per MTok
    expected = (176 * Decimal("0.80") + 1_024 * Decimal("0.20") + 300 * Decimal("3.20")) / 10**6
    assert record["cost_source"] == "override"
    assert Decimal(record["cost_nanousd"]) / 10**9 == expected
    assert f"Total cost: $0 → ${expected}" in out

    out = run("explain", request_id)
    assert 'Cost source: override — config.toml [[prices]] #1 (provider="openai"' in out
    assert "176 tokens × $0.8/MTok  = $0.0001408" in out
    assert "1,024 tokens × $0.2/MTok  = $0.0002048" in out
    assert "300 tokens × $3.2/MTok  = $0.00096" in out
    assert f"= ${expected}" in out
    assert "Warning" not in out


async def test_streamed_request_through_the_proxy_is_priced_at_the_published_rate(proxy):
    from tests.fakes.upstream import sse
    from tests.fixtures.openai_style import chat_stream_chunks

    usage = {
        "prompt_tokens": 3_072,
        "completion_tokens": 417,
        "total_tokens": 3_489,
        "prompt_tokens_details": {"cached_tokens": 2_048},
    }
    chunks = sse(*chat_stream_chunks("gpt-4o-2024-08-06", ["Hel", "lo"], usage))
    proxy.upstream.reply = Reply(chunks=chunks, content_type="text/event-stream")
    client = proxy.track(
        openai.AsyncOpenAI(
            base_url=proxy.base("openai") + "/v1", api_key="sk-caller", max_retries=0
        )
    )
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    async for _ in stream:
        pass
    record = await proxy.record()
    # https://openai.com/api/pricing: gpt-4o $2.50 input, $1.25 cached input, $10.00 output /MTok
    expected = (1_024 * Decimal("2.50") + 2_048 * Decimal("1.25") + 417 * Decimal("10")) / 10**6
    assert record["cost_source"] == "computed"
    assert Decimal(record["cost_nanousd"]) / 10**9 == expected


# --- explain ----------------------------------------------------------------------------------


def test_explain_shows_each_bucket_rate_and_the_total(meterfox_home):
    usage = Usage(
        input_tokens=21_000,
        cached_tokens=6_000,
        cache_write_tokens=12_000,
        cache_write_1h_tokens=8_000,
        output_tokens=900,
    )
    write_records(stored("0193aaaa000001", "anthropic", "claude-opus-4-1-20250805", usage))
    out = run("explain", "0193aaaa000001")
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0].startswith("Request 0193aaaa000001  anthropic  claude-opus-4-1-20250805")
    assert (
        "Cost source: computed — genai-prices 0.2.3 (bundled data): anthropic/claude-opus-4-1"
        in out
    )
    expected = [
        ("input", "3,000 tokens × $15/MTok", "$0.045"),
        ("cache write (5m)", "4,000 tokens × $18.75/MTok", "$0.075"),
        ("cache read", "6,000 tokens × $1.5/MTok", "$0.009"),
        ("output", "900 tokens × $75/MTok", "$0.0675"),
        ("cache write (1h)", "8,000 tokens × $30/MTok", "$0.24"),
    ]
    for label, arithmetic, cost in expected:
        assert any(
            line.startswith(label) and arithmetic in line and line.endswith(f"= {cost}")
            for line in lines
        ), (label, out)
    assert any(line.startswith("total") and line.endswith("= $0.4365") for line in lines)
    assert "Stored cost: $0.4365" in out


def test_explain_provider_cost_unpriced_no_usage_and_prefixes(meterfox_home):
    write_records(
        stored(
            "0193bbbb000001",
            "openrouter",
            "anthropic/claude-sonnet-4",
            Usage(
                input_tokens=2_000, cached_tokens=1_200, cache_write_tokens=300, output_tokens=150
            ),
            reported=Decimal("0.00105"),
        ),
        stored("0193cccc000001", "openai", FINE_TUNE, Usage(input_tokens=5, output_tokens=5)),
        stored("0193dddd000001", "openai", "gpt-4o", None),
    )
    out = run("explain", "0193bbbb")
    assert "Cost source: provider — reported by openrouter" in out
    assert "reported by the provider  = $0.00105" in out
    assert "(at list prices it would be $0.005235)" in out

    out = run("explain", "0193cccc000001")
    assert "Unpriced: no price for model" in out and "[[prices]]" in out

    out = run("explain", "0193dddd000001")
    assert "No usage in the response" in out

    out = run("explain", "0193", code=2)  # too short to be a prefix
    assert "no request with id '0193'" in out
    run("explain", "ffffffffffff", code=2)


def test_explain_on_a_missing_database_is_a_clear_error(meterfox_home):
    out = run("explain", "0193aaaa000001", code=2)
    assert "no database" in out


# --- reprice ----------------------------------------------------------------------------------


def test_reprice_dry_run_changes_nothing_and_since_limits_the_window(meterfox_home):
    old = datetime(2025, 1, 10, 12, tzinfo=UTC)
    new = datetime.now(tz=UTC)
    db = write_records(
        stored("0193eeee000001", "openai", FINE_TUNE, Usage(input_tokens=10**6), at=old),
        stored("0193eeee000002", "openai", FINE_TUNE, Usage(input_tokens=10**6), at=new),
    )
    write_config(meterfox_home, FINE_TUNE_PRICE)

    out = run("reprice", "--dry-run")
    assert "Would change 2 (2 newly priced, 0 now unpriced)" in out
    assert {r["cost_source"] for r in read_records(db)} == {"unpriced"}

    out = run("reprice", "--since", "7d")
    assert "Repriced 1 requests. Changed 1" in out
    assert "Total cost: $0 → $0.8 (+$0.8)" in out
    sources = {r["id"]: (r["cost_source"], r["cost_nanousd"]) for r in read_records(db)}
    assert sources == {
        "0193eeee000001": ("unpriced", None),
        "0193eeee000002": ("override", 800_000_000),
    }

    out = run("reprice")  # again: only the old row changes now
    assert "Repriced 2 requests. Changed 1" in out
    out = run("reprice")
    assert "Changed 0" in out and "(+$0)" in out


def test_reprice_after_removing_an_override_reports_newly_unpriced(meterfox_home):
    """The writer prices with the overrides `meterfox serve` loaded; reprice follows the
    config as it is now."""
    from meterfox_cli.config import load_config
    from meterfox_cli.pricing.book import PriceBook

    write_config(meterfox_home, FINE_TUNE_PRICE)
    book = PriceBook.from_config(load_config(meterfox_home / "config.toml").pricing)
    paths = resolve_paths()
    paths.ensure()
    writer = RecordWriter(paths.database, pricer=book)
    writer.start()
    writer.submit(stored("0193ffff000001", "openai", FINE_TUNE, Usage(input_tokens=10**6)))
    writer.close()
    assert row(paths.database, "0193ffff000001")["cost_source"] == "override"

    write_config(meterfox_home, "")
    out = run("reprice")
    assert "Changed 1 (0 newly priced, 1 now unpriced)" in out
    assert "Total cost: $0.8 → $0 (-$0.8)" in out


def test_provider_costs_stay_as_reported_on_reprice(meterfox_home):
    db = write_records(
        stored(
            "0193abab000001",
            "xai",
            "grok-4-0709",
            Usage(input_tokens=37, output_tokens=1329),
            reported=Decimal("0.0200535"),
        )
    )
    write_config(meterfox_home, '[[prices]]\nprovider = "*"\nmodel = "*"\ndiscount = 0.5\n')
    out = run("reprice")
    assert "Changed 0" in out
    assert row(db, "0193abab000001")["cost_nanousd"] == 20_053_500


# --- prices -----------------------------------------------------------------------------------


def test_prices_shows_rates_tiers_and_their_source(meterfox_home):
    out = run("prices", "gemini-2.5-pro", "--provider", "gemini", "--at", "2025-08-20")
    assert "gemini  gemini-2.5-pro" in out
    assert "computed: genai-prices 0.2.3 (bundled data): google/gemini-2.5-pro" in out
    assert "input              $1.25/MTok; $2.5 when the prompt is over 200,000 tokens" in out
    assert "output             $10/MTok; $15 when the prompt is over 200,000 tokens" in out


def test_prices_shows_service_tiers_and_the_time_they_apply(meterfox_home):
    out = run("prices", "o4-mini", "-p", "openai", "--at", "2026-11-01")
    assert "service_tier=flex: input $0.55, output $2.2, cache read $0.138" in out
    out = run("prices", "o4-mini", "-p", "openai", "--at", "2025-08-01")
    assert "service_tier=flex" not in out


def test_prices_shows_an_override_first(meterfox_home):
    write_config(meterfox_home, FINE_TUNE_PRICE)
    out = run("prices", FINE_TUNE, "-p", "openai")
    assert (
        'override: config.toml [[prices]] #1 (provider="openai", model="ft:gpt-4.1-mini-*")' in out
    )
    assert "cache read         $0.2/MTok" in out


def test_prices_looks_in_user_declared_providers_under_genai_prices_name(meterfox_home):
    write_config(meterfox_home, '[providers.novita]\nbase_url = "https://api.novita.ai/openai"\n')
    source = "computed: genai-prices 0.2.3 (bundled data): novita/deepseek/deepseek-r1"
    out = run("prices", "deepseek/deepseek-r1", "-p", "novita", "--at", "2025-08-20")
    assert source in out
    out = run("prices", "deepseek/deepseek-r1", "--at", "2025-08-20")  # the config's registry
    assert "novita  deepseek/deepseek-r1" in out and source in out


def test_prices_for_an_unknown_model_says_so_and_fails(meterfox_home):
    out = run("prices", "acme-secret-model", code=1)
    assert "No price known for 'acme-secret-model'" in out


def test_prices_without_a_model_lists_overrides_and_hardware(meterfox_home):
    write_config(
        meterfox_home,
        FINE_TUNE_PRICE
        + '[[prices]]\nprovider = "replicate"\nmodel = "acme/*"\nhardware = "gpu-b200"\n'
        + '[pricing.hardware]\n"gpu-b200" = "0.0025"\n',
    )
    out = run("prices", "--provider", "replicate")
    assert "#2 provider=replicate model=acme/*  hardware gpu-b200" in out
    assert "gpu-b200             $0.0025/s  (config.toml [pricing.hardware])" in out
    assert "gpu-a100-large       $0.0014/s" in out
    assert "meta/meta-llama-3-70b-instruct       $0.65 / $2.75" in out


def test_bad_price_config_is_one_clear_line(meterfox_home):
    write_config(meterfox_home, '[[prices]]\nmodel = "x"\ninput = 1\n')
    out = run("prices", "gpt-4o", code=2)
    assert "token rates need both input and output" in out


def test_help_does_not_load_the_price_data():
    code = (
        "import sys; from click.testing import CliRunner; from meterfox_cli.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
        "assert 'genai_prices' not in sys.modules, 'genai_prices imported by --help'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("command", ["prices", "explain", "reprice"])
def test_each_command_has_help(command):
    out = run(command, "--help")
    assert "Usage:" in out


def test_explain_a_discount_shows_the_list_subtotal_and_the_factor(meterfox_home):
    write_config(
        meterfox_home,
        '[[prices]]\nprovider = "openai"\nmodel = "gpt-4o*"\ndiscount = 0.8\n'
        'note = "enterprise agreement"\n',
    )
    from meterfox_cli.config import load_config
    from meterfox_cli.pricing.book import PriceBook

    book = PriceBook.from_config(load_config(meterfox_home / "config.toml").pricing)
    paths = resolve_paths()
    paths.ensure()
    writer = RecordWriter(paths.database, pricer=book)
    writer.start()
    usage = Usage(input_tokens=3_000, cached_tokens=2_048, output_tokens=400)
    writer.submit(stored("0193acac000001", "openai", "gpt-4o-2024-08-06", usage))
    writer.close()
    out = run("explain", "0193acac000001")
    assert "× 0.8 (config.toml [[prices]] #1" in out and "enterprise agreement" in out
    lines = [line.strip() for line in out.splitlines()]
    assert any(line.startswith("subtotal") and line.endswith("= $0.00894") for line in lines)
    assert "× 0.8" in lines
    assert any(line.startswith("total") and line.endswith("= $0.007152") for line in lines)
    assert "Stored cost: $0.007152" in out


def test_prices_file_in_config_is_used_relative_to_the_config_dir(meterfox_home):
    from meterfox_cli.pricing.price_data import use_bundled_prices

    data = [
        {
            "id": "openai",
            "name": "OpenAI",
            "api_pattern": "https://api\\.openai\\.com",
            "models": [
                {
                    "id": "gpt-9",
                    "match": {"equals": "gpt-9"},
                    "prices": {"input_mtok": 7, "output_mtok": 21},
                }
            ],
        }
    ]
    write_config(meterfox_home, '[pricing]\nprices_file = "prices.json"\n')
    (meterfox_home / "prices.json").write_text(json.dumps(data))
    try:
        out = run("prices", "gpt-9", "-p", "openai")
        assert f"(prices file {meterfox_home / 'prices.json'}): openai/gpt-9" in out
        assert "input              $7/MTok" in out
    finally:
        use_bundled_prices()


def test_missing_prices_file_is_a_clear_error(meterfox_home):
    write_config(meterfox_home, '[pricing]\nprices_file = "nope.json"\n')
    out = run("prices", "gpt-4o", code=2)
    assert "[pricing] prices_file" in out and "nope.json" in out
