"""Provider slugs → where they live upstream and which wire format they speak."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from meterfox_cli.config import ProviderConfig
from meterfox_cli.errors import ConfigError
from meterfox_cli.providers.anthropic import AnthropicFormat
from meterfox_cli.providers.base import WireFormat
from meterfox_cli.providers.cohere import CohereFormat
from meterfox_cli.providers.gemini import GeminiFormat
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.providers.replicate import ReplicateFormat


@dataclass(frozen=True)
class Provider:
    """One upstream. `sdk_path` is what an SDK's base URL adds after the slug (e.g. `/v1`);
    `sdk_env` is the environment variable its official SDK reads for a base URL."""

    slug: str
    base_url: str
    wire: WireFormat
    sdk_path: str = ""
    sdk_env: str | None = None
    pricing_id: str | None = None  # genai-prices provider id, where it has one

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def upstream_url(self, rest: str) -> str:
        """The upstream URL for a request path after the slug (which starts with `/`).

        When the base URL has a path (`/openai` for Groq, `/inference` for Fireworks) and an SDK
        already sends it (the `groq` SDK calls `/openai/v1/...`), it is not added twice.
        """
        base_path = urlsplit(self.base_url).path.rstrip("/")
        if base_path and (rest == base_path or rest.startswith(base_path + "/")):
            return self.origin + rest
        return self.base_url.rstrip("/") + rest


def _openai(inject: bool = True) -> OpenAIFormat:
    return OpenAIFormat(inject_stream_usage=inject)


# Wire formats a user may name in config.toml (`format = "openai"`). Native formats register here.
FORMATS: dict[str, Callable[[], WireFormat]] = {
    "openai": _openai,
    "anthropic": AnthropicFormat,
    "gemini": GeminiFormat,
    "cohere": CohereFormat,
    "replicate": ReplicateFormat,
}


def _builtin() -> list[Provider]:
    return [
        Provider("openai", "https://api.openai.com", _openai(), "/v1", "OPENAI_BASE_URL", "openai"),
        # Native formats. Each SDK adds the API version itself (`/v1/messages`, `v1beta/models/…`,
        # `v2/chat`, `/v1/predictions`), so the SDK base URL is the bare slug. The environment
        # variables are the ones each SDK's source reads (docs/providers.md).
        Provider(
            "anthropic",
            "https://api.anthropic.com",
            AnthropicFormat(),
            "",
            "ANTHROPIC_BASE_URL",
            "anthropic",
        ),
        Provider(
            "gemini",
            "https://generativelanguage.googleapis.com",
            GeminiFormat(),
            "",
            "GOOGLE_GEMINI_BASE_URL",
            "google",
        ),
        Provider("cohere", "https://api.cohere.com", CohereFormat(), "", "CO_API_URL", "cohere"),
        Provider(
            "replicate", "https://api.replicate.com", ReplicateFormat(), "", "REPLICATE_BASE_URL"
        ),
        Provider("openrouter", "https://openrouter.ai/api", _openai(), "/v1", None, "openrouter"),
        # Mistral sends usage on the last chunk by default; stream_options is not documented.
        Provider("mistral", "https://api.mistral.ai", _openai(inject=False), "", None, "mistral"),
        Provider("together", "https://api.together.xyz", _openai(), "/v1", None, "together"),
        Provider(
            "fireworks", "https://api.fireworks.ai/inference", _openai(), "/v1", None, "fireworks"
        ),
        Provider("deepseek", "https://api.deepseek.com", _openai(), "", None, "deepseek"),
        Provider("groq", "https://api.groq.com/openai", _openai(), "", "GROQ_BASE_URL", "groq"),
        Provider("perplexity", "https://api.perplexity.ai", _openai(), "", None, "perplexity"),
        Provider("xai", "https://api.x.ai", _openai(), "/v1", None, "x-ai"),
        Provider("cerebras", "https://api.cerebras.ai", _openai(), "/v1", None, "cerebras"),
    ]


ALIASES: dict[str, str] = {
    "google": "gemini",
}


@dataclass(frozen=True)
class Registry:
    providers: Mapping[str, Provider]
    aliases: Mapping[str, str]

    def get(self, slug: str) -> Provider | None:
        return self.providers.get(self.aliases.get(slug, slug))

    def __iter__(self):
        return iter(self.providers.values())

    def pricing_ids(self) -> dict[str, str]:
        """Each slug and alias → its provider's genai-prices id, for the providers with one."""
        slugs = [*self.providers, *self.aliases]
        return {slug: p.pricing_id for slug in slugs if (p := self.get(slug)) and p.pricing_id}


def build_registry(
    configured: Iterable[ProviderConfig] = (),
    overrides: Mapping[str, str] | None = None,
) -> Registry:
    """Built-ins, then `[providers.NAME]` tables from config, then `--upstream NAME=URL` flags.

    A config table for a built-in slug without `format` only moves its base URL; any other
    table declares a provider (OpenAI format unless it names another).
    """
    providers = {p.slug: p for p in _builtin()}
    for item in configured:
        slug = ALIASES.get(item.slug, item.slug)
        existing = providers.get(slug)
        if existing and item.format is None:
            providers[slug] = replace(existing, base_url=item.base_url)
            continue
        wire = _wire(item.slug, item.format or "openai")
        providers[slug] = (
            replace(existing, base_url=item.base_url, wire=wire)
            if existing
            else Provider(slug, item.base_url, wire)
        )
    for slug, base_url in (overrides or {}).items():
        target = ALIASES.get(slug, slug)
        if target not in providers:
            raise ConfigError(f"--upstream {slug}=…: no provider named {slug!r}")
        providers[target] = replace(providers[target], base_url=base_url)
    for provider in providers.values():
        _check_base_url(provider)
    return Registry(providers=providers, aliases=dict(ALIASES))


def _wire(slug: str, format_name: str) -> WireFormat:
    if format_name not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise ConfigError(f"provider {slug!r}: unknown format {format_name!r} (known: {known})")
    return FORMATS[format_name]()


def _check_base_url(provider: Provider) -> None:
    parts = urlsplit(provider.base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(
            f"provider {provider.slug!r}: base URL {provider.base_url!r} must be http(s)://host[/path]"
        )
