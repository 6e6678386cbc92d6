"""Shared by the pricing tests: providers' published list prices for real-shaped usage
(written here with their sources, never taken from genai-prices), and record and book builders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from meterfox_cli.config import config_from_dict
from meterfox_cli.money import NANO
from meterfox_cli.pricing.book import PriceBook
from meterfox_cli.records import UsageRecord
from meterfox_cli.usage import Reading, Usage
from tests.fakes.records import usage_record

MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class Published:
    """A provider's published list price, USD per million tokens (per 1K for requests)."""

    source: str
    input: Decimal
    output: Decimal
    cached: Decimal | None = None
    write_5m: Decimal | None = None
    write_1h: Decimal | None = None
    per_k_requests: Decimal | None = None

    def cost(self, u: Usage) -> Decimal:
        """The bill, worked out by hand from the published rates."""
        one_hour = u.cache_write_1h_tokens
        five_min = u.cache_write_tokens - one_hour
        uncached = u.input_tokens - u.cached_tokens - u.cache_write_tokens
        total = (
            uncached * self.input
            + u.cached_tokens * (self.cached if self.cached is not None else self.input)
            + five_min * (self.write_5m if self.write_5m is not None else self.input)
            + one_hour * (self.write_1h if self.write_1h is not None else self.input)
            + u.output_tokens * self.output
        ) / MTOK
        if self.per_k_requests is not None:
            total += self.per_k_requests / 1000
        return total


def D(text: str) -> Decimal:
    return Decimal(text)


@dataclass(frozen=True)
class Case:
    name: str
    provider: str  # MeterFox slug
    model: str  # as the response names it
    at: datetime
    usage: Usage
    published: Published
    context: tuple[tuple[str, str], ...] = field(default=())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


AUG_2025 = utc(2025, 8, 20, 12)
OPENAI = "https://openai.com/api/pricing (2025-08)"
ANTHROPIC = "https://docs.anthropic.com/en/docs/about-claude/pricing (2025-08)"
GEMINI = "https://ai.google.dev/gemini-api/docs/pricing (2025-08)"
DEEPSEEK = "https://api-docs.deepseek.com/quick_start/pricing (price list until 2025-09-05)"

CASES = [
    Case(
        "openai gpt-4o, cached prompt",
        "openai",
        "gpt-4o-2024-08-06",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=3_072, cached_tokens=2_048, output_tokens=417),
        Published(OPENAI, D("2.50"), D("10.00"), cached=D("1.25")),
    ),
    Case(
        "openai o4-mini, reasoning inside output, cached",
        "openai",
        "o4-mini-2025-04-16",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=1_200, cached_tokens=1_024, output_tokens=500, reasoning_tokens=320),
        Published(OPENAI, D("1.10"), D("4.40"), cached=D("0.275")),
        context=(("service_tier", "default"),),
    ),
    Case(
        "openai o4-mini, flex service tier",
        "openai",
        "o4-mini-2025-04-16",
        utc(2026, 11, 2, 9),
        Usage(input_tokens=9_000, cached_tokens=4_096, output_tokens=2_500, reasoning_tokens=2_000),
        Published(
            "https://platform.openai.com/docs/guides/flex-processing (flex: half of standard)",
            D("0.55"),
            D("2.20"),
            cached=D("0.138"),
        ),
        context=(("service_tier", "flex"),),
    ),
    Case(
        "anthropic claude-sonnet-4, 5-minute cache writes and reads",
        "anthropic",
        "claude-sonnet-4-20250514",
        utc(2025, 8, 20, 12),
        # Anthropic's input_tokens=5 + cache_creation 4735 + cache_read 1000, normalised.
        Usage(input_tokens=5_740, cached_tokens=1_000, cache_write_tokens=4_735, output_tokens=255),
        Published(
            ANTHROPIC, D("3"), D("15"), cached=D("0.30"), write_5m=D("3.75"), write_1h=D("6")
        ),
    ),
    Case(
        "anthropic claude-opus-4-1, 1-hour and 5-minute cache writes",
        "anthropic",
        "claude-opus-4-1-20250805",
        utc(2025, 9, 1, 12),
        Usage(
            input_tokens=21_000,
            cached_tokens=6_000,
            cache_write_tokens=12_000,
            cache_write_1h_tokens=8_000,
            output_tokens=900,
            reasoning_tokens=400,
        ),
        Published(
            ANTHROPIC, D("15"), D("75"), cached=D("1.50"), write_5m=D("18.75"), write_1h=D("30")
        ),
    ),
    Case(
        "gemini-2.5-pro, thinking billed as output",
        "gemini",
        "gemini-2.5-pro",
        utc(2025, 8, 20, 12),
        # candidatesTokenCount 500 + thoughtsTokenCount 1500 = 2000 billed output.
        Usage(input_tokens=10_000, output_tokens=2_000, reasoning_tokens=1_500),
        Published(GEMINI + ", prompts <= 200k", D("1.25"), D("10.00")),
    ),
    Case(
        "gemini-2.5-pro, prompt over 200k moves the whole request to the higher rates",
        "gemini",
        "gemini-2.5-pro",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=250_000, output_tokens=2_000, reasoning_tokens=1_200),
        Published(GEMINI + ", prompts > 200k", D("2.50"), D("15.00")),
    ),
    Case(
        "gemini-2.5-flash, thinking",
        "gemini",
        "gemini-2.5-flash",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=4_321, output_tokens=1_234, reasoning_tokens=1_000),
        Published(GEMINI + ", text input", D("0.30"), D("2.50")),
    ),
    Case(
        "deepseek-chat, cache hits, standard hours (UTC 00:30-16:30)",
        "deepseek",
        "deepseek-chat",
        utc(2025, 6, 10, 10),
        Usage(input_tokens=900, cached_tokens=640, output_tokens=100),
        Published(DEEPSEEK + ", standard", D("0.27"), D("1.10"), cached=D("0.07")),
    ),
    Case(
        "deepseek-chat, cache hits, discount hours (UTC 16:30-00:30)",
        "deepseek",
        "deepseek-chat",
        utc(2025, 6, 10, 20),
        Usage(input_tokens=900, cached_tokens=640, output_tokens=100),
        Published(DEEPSEEK + ", discount", D("0.135"), D("0.550"), cached=D("0.035")),
    ),
    Case(
        "xai grok-4, reasoning outside completion_tokens (priced when no cost is reported)",
        "xai",
        "grok-4-0709",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=37, cached_tokens=5, output_tokens=1_329, reasoning_tokens=799),
        Published("https://docs.x.ai/docs/models (2025-08)", D("3"), D("15"), cached=D("0.75")),
    ),
    Case(
        "groq llama-3.3-70b-versatile",
        "groq",
        "llama-3.3-70b-versatile",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=48, output_tokens=12),
        Published("https://groq.com/pricing (2025-08)", D("0.59"), D("0.79")),
    ),
    Case(
        "mistral-large-2411",
        "mistral",
        "mistral-large-2411",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=2_100, output_tokens=900),
        Published("https://mistral.ai/pricing#api-pricing (2025-08)", D("2"), D("6")),
    ),
    Case(
        "mistral-small-2506",
        "mistral",
        "mistral-small-2506",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=2_100, output_tokens=900),
        Published("https://mistral.ai/pricing#api-pricing (2025-08)", D("0.10"), D("0.30")),
    ),
    Case(
        "cohere command-r-plus-08-2024 (model taken from the request)",
        "cohere",
        "command-r-plus-08-2024",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=6_772, output_tokens=248),  # billed_units
        Published("https://cohere.com/pricing (2025-08)", D("2.50"), D("10.00")),
    ),
    Case(
        "cohere command-a-03-2025",
        "cohere",
        "command-a-03-2025",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=1_500, output_tokens=600),
        Published("https://cohere.com/pricing (2025-08)", D("2.50"), D("10.00")),
    ),
    Case(
        "together Llama-3.3-70B-Instruct-Turbo (OpenAI-shaped usage)",
        "together",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=400, output_tokens=80),
        Published("https://www.together.ai/pricing (2025-08)", D("0.88"), D("0.88")),
    ),
    Case(
        "fireworks llama-v3p1-8b-instruct, full accounts/ name",
        "fireworks",
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=17, output_tokens=40),
        Published("https://fireworks.ai/pricing (serverless, up to 16B)", D("0.20"), D("0.20")),
    ),
    Case(
        "fireworks llama-v3p1-8b-instruct, short name",
        "fireworks",
        "llama-v3p1-8b-instruct",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=17, output_tokens=40),
        Published("https://fireworks.ai/pricing (serverless, up to 16B)", D("0.20"), D("0.20")),
    ),
    Case(
        "perplexity sonar-pro, high search context (when no cost is reported)",
        "perplexity",
        "sonar-pro",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=10, output_tokens=300),
        Published(
            "https://docs.perplexity.ai/getting-started/pricing (2025-08, high search context)",
            D("3"),
            D("15"),
            per_k_requests=D("14"),
        ),
    ),
    Case(
        "replicate meta-llama-3-70b-instruct (official, per token; built-in table)",
        "replicate",
        "meta/meta-llama-3-70b-instruct",
        utc(2025, 8, 20, 12),
        Usage(input_tokens=26, output_tokens=84),
        Published("https://replicate.com/pricing (2024-25)", D("0.65"), D("2.75")),
    ),
]


def record(
    provider: str,
    model: str,
    usage: Usage | None,
    at: datetime = AUG_2025,
    *,
    reported: Decimal | None = None,
    context: tuple[tuple[str, str], ...] = (),
) -> UsageRecord:
    return usage_record(
        id="0193a1b2c3d4e5f6a7b8c9",
        started_at=at.timestamp(),
        provider=provider,
        model=model,
        reading=Reading(
            model=model, usage=usage, reported_cost_usd=reported, price_context=context
        ),
    )


def usd(nanousd: int | None) -> Decimal | None:
    return None if nanousd is None else Decimal(nanousd) * NANO


def book(toml_prices: list[dict], hardware: dict | None = None) -> PriceBook:
    data: dict = {"prices": toml_prices}
    if hardware:
        data["pricing"] = {"hardware": hardware}
    return PriceBook.from_config(config_from_dict(data).pricing)
