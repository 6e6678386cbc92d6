"""The native providers in the registry: slugs, upstreams, SDK base URLs, config formats."""

from __future__ import annotations

import pytest

from meterfox_cli.config import ProviderConfig
from meterfox_cli.errors import ConfigError
from meterfox_cli.providers.anthropic import AnthropicFormat
from meterfox_cli.providers.cohere import CohereFormat
from meterfox_cli.providers.gemini import GeminiFormat
from meterfox_cli.providers.registry import FORMATS, build_registry
from meterfox_cli.providers.replicate import ReplicateFormat


@pytest.mark.parametrize(
    ("slug", "base_url", "wire", "env"),
    [
        ("anthropic", "https://api.anthropic.com", AnthropicFormat, "ANTHROPIC_BASE_URL"),
        (
            "gemini",
            "https://generativelanguage.googleapis.com",
            GeminiFormat,
            "GOOGLE_GEMINI_BASE_URL",
        ),
        ("cohere", "https://api.cohere.com", CohereFormat, "CO_API_URL"),
        ("replicate", "https://api.replicate.com", ReplicateFormat, "REPLICATE_BASE_URL"),
    ],
)
def test_builtin_native_providers(slug, base_url, wire, env):
    provider = build_registry().get(slug)
    assert provider.base_url == base_url
    assert isinstance(provider.wire, wire)
    assert (provider.sdk_path, provider.sdk_env) == ("", env)  # each SDK adds its API version
    assert FORMATS[provider.wire.name]().name == provider.wire.name


def test_google_is_an_alias_of_gemini():
    registry = build_registry()
    assert registry.get("google") is registry.get("gemini")


def test_config_can_declare_a_provider_in_a_native_format():
    registry = build_registry(
        [ProviderConfig("claude-gw", "https://gw.example/anthropic", "anthropic")]
    )
    assert isinstance(registry.get("claude-gw").wire, AnthropicFormat)


def test_unknown_format_names_the_known_ones():
    with pytest.raises(ConfigError, match="anthropic, cohere, gemini, openai, replicate"):
        build_registry([ProviderConfig("x", "https://x.example", "bedrock")])
