"""`[[prices]]` and `[pricing]` in config.toml: clear errors, exact decimals."""

from __future__ import annotations

import pytest

from meterfox_cli.config import PriceOverride, PricingConfig, config_from_dict
from tests.pricing.cases import D


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": "x", "input": 1}, "need both input and output"),
        ({"model": "x", "input": 1, "output": 1, "discount": 0.5}, "exactly one kind"),
        ({"model": "x"}, "exactly one kind"),
        ({"model": "x", "discount": -1}, "non-negative"),
        ({"model": "x", "discount": "cheap"}, "expected a number"),
        ({"model": "x", "hardware": "gpu-unknown"}, "unknown hardware"),
        ({"model": "x", "input": 1, "output": 1, "colour": "red"}, "unknown keys"),
        ({"provider": "openai", "input": 1, "output": 1}, "needs model"),
    ],
)
def test_bad_price_entries_are_clear_config_errors(entry, message):
    from meterfox_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        config_from_dict({"prices": [entry]})


def test_config_reads_exact_decimals():
    pricing = config_from_dict(
        {
            "prices": [{"provider": "openai", "model": "a*", "input": "0.1", "output": 0.3}],
            "pricing": {"hardware": {"gpu-x": "0.0021"}, "prices_file": "prices.json"},
        }
    ).pricing
    assert pricing == PricingConfig(
        overrides=(PriceOverride("openai", "a*", 1, input=D("0.1"), output=D("0.3")),),
        hardware=(("gpu-x", D("0.0021")),),
        prices_file="prices.json",
    )
