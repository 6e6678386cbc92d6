"""Built-in prices for what genai-prices does not cover: Replicate. Pure data, below both
config (which checks `[[prices]] hardware` names against it) and pricing (which prices with it).

Replicate bills its official language models per token and every other model per second of
the hardware it runs on. Which hardware a community model runs on is not in its responses, so
the user maps models to hardware in config.toml (`[[prices]] provider = "replicate"
model = "owner/name" hardware = "gpu-a100-large"`) and may add rows to the hardware table
(`[pricing.hardware]`). Small on purpose: anything missing is reported as unpriced, never $0.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

HARDWARE_SOURCE = "replicate.com/pricing, hardware table (seen 2026-11)"

# USD per second of run time, by the hardware names Replicate's API and pricing page use.
HARDWARE_USD_PER_SECOND: dict[str, Decimal] = {
    "cpu": Decimal("0.000100"),
    "gpu-t4": Decimal("0.000225"),
    "gpu-a40-small": Decimal("0.000575"),
    "gpu-a40-large": Decimal("0.000725"),
    "gpu-a40-large-2x": Decimal("0.001450"),
    "gpu-a40-large-4x": Decimal("0.002900"),
    "gpu-a40-large-8x": Decimal("0.005800"),
    "gpu-l40s": Decimal("0.000975"),
    "gpu-2x-l40s": Decimal("0.001950"),
    "gpu-4x-l40s": Decimal("0.003900"),
    "gpu-8x-l40s": Decimal("0.007800"),
    "gpu-a100-large": Decimal("0.001400"),
    "gpu-a100-large-2x": Decimal("0.002800"),
    "gpu-a100-large-4x": Decimal("0.005600"),
    "gpu-a100-large-8x": Decimal("0.011200"),
    "gpu-h100": Decimal("0.001525"),
    "gpu-h100-2x": Decimal("0.003050"),
    "gpu-h100-4x": Decimal("0.006100"),
    "gpu-h100-8x": Decimal("0.012200"),
}


@dataclass(frozen=True, slots=True)
class TokenRates:
    """USD per million input and output tokens."""

    input: Decimal
    output: Decimal


TOKEN_MODELS_SOURCE = "replicate.com/pricing, official language models (2024-25 list prices)"

# Replicate's official language models, priced per token (`metrics.input_token_count`,
# `output_token_count`). Keys are `owner/name`; a `:version` suffix is ignored when matching.
TOKEN_MODELS: dict[str, TokenRates] = {
    "meta/meta-llama-3-8b-instruct": TokenRates(Decimal("0.05"), Decimal("0.25")),
    "meta/meta-llama-3-70b-instruct": TokenRates(Decimal("0.65"), Decimal("2.75")),
    "meta/meta-llama-3.1-405b-instruct": TokenRates(Decimal("9.5"), Decimal("9.5")),
}
