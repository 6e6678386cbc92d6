"""What one request may cost at most, read from its body before it goes upstream: the amount a
budgeted key reserves at admission.

Output: the largest `max_tokens`, `max_output_tokens`, `max_completion_tokens` or Gemini
`maxOutputTokens` the body sets (times `n` choices), else DEFAULT_OUTPUT_TOKENS. Input: one
token per CHARS_PER_TOKEN bytes of body, which errs high for text and far higher for inline
images. Both are priced at the model's rates, at the request's time, by the same price book the
record writer uses. A request without a body starts nothing billable (a read, a cancel): it
reserves nothing. One whose model or body cannot be priced is unpriced (`nanousd` None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meterfox_cli.pricing.book import PriceBook, price_reading
from meterfox_cli.providers.base import RequestPlan
from meterfox_cli.usage import Reading, Usage

DEFAULT_OUTPUT_TOKENS = 4096
CHARS_PER_TOKEN = 4
MAX_CHOICES = 128
_LIMIT_NAMES = ("max_tokens", "max_output_tokens", "max_completion_tokens")
# For bodies the adapter does not parse (Gemini's, which may hold inline media): every such
# key anywhere in the body; the largest value wins.
_LIMIT_IN_BYTES = re.compile(
    rb'"(?:max_tokens|max_output_tokens|max_completion_tokens|maxOutputTokens)"\s*:\s*([0-9]{1,15})'
)


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    nanousd: int | None  # None: nothing could price it

    @property
    def priced(self) -> bool:
        return self.nanousd is not None


FREE = Estimate(0, 0, 0)


def estimate(
    provider: str, plan: RequestPlan, body: bytes | None, book: PriceBook, at: float
) -> Estimate:
    """The most this request should cost, at list price (`at`: unix seconds)."""
    if body == b"":
        return FREE
    if body is None or plan.model is None:
        return Estimate(0, 0, None)
    input_tokens = -(-len(body) // CHARS_PER_TOKEN)
    output_tokens = output_limit(plan.request_json, body) or DEFAULT_OUTPUT_TOKENS
    output_tokens *= choices(plan.request_json)
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    price = price_reading(provider, plan.model, at, Reading(model=plan.model, usage=usage), book)
    return Estimate(input_tokens, output_tokens, price.cost_nanousd)


def output_limit(request_json: object, body: bytes) -> int | None:
    """The largest output-token limit the request sets, or None."""
    if isinstance(request_json, dict):
        config = request_json.get("generationConfig")
        found = [request_json.get(name) for name in _LIMIT_NAMES]
        if isinstance(config, dict):
            found.append(config.get("maxOutputTokens"))
    else:
        found = [int(match) for match in _LIMIT_IN_BYTES.findall(body)]
    limits = [n for n in found if type(n) is int and n > 0]
    return max(limits) if limits else None


def choices(request_json: object) -> int:
    """How many completions one request asks for (OpenAI's `n`)."""
    n = request_json.get("n") if isinstance(request_json, dict) else None
    return min(n, MAX_CHOICES) if type(n) is int and n > 1 else 1
