"""config.toml → a frozen Config. Command-line flags override the file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meterfox_cli.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


@dataclass(frozen=True)
class Timeouts:
    """Seconds. The defaults never cut a long reasoning stream short: a model may think for
    minutes before its first byte, so only connecting is tight."""

    connect: float = 10.0
    first_byte: float = 600.0
    idle: float = 300.0


@dataclass(frozen=True)
class ProviderConfig:
    """A `[providers.NAME]` table: a new provider, or a new base URL for a built-in one."""

    slug: str
    base_url: str
    format: str | None = None


@dataclass(frozen=True)
class Config:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    providers: tuple[ProviderConfig, ...] = ()
    timeouts: Timeouts = Timeouts()
    max_body_bytes: int = 32 * 1024 * 1024
    require_proxy_key: bool | None = None


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file is the default config, a broken one a clear error."""
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return config_from_dict(data, source=str(path))


def config_from_dict(data: Mapping[str, object], source: str = "config") -> Config:
    server = _table(data, "server", source)
    timeouts = _table(data, "timeouts", source)
    providers: list[ProviderConfig] = []
    for slug, table in _table(data, "providers", source).items():
        if not isinstance(table, dict) or not isinstance(table.get("base_url"), str):
            raise ConfigError(f'{source}: [providers.{slug}] needs base_url = "https://…"')
        fmt = table.get("format")
        providers.append(ProviderConfig(slug, table["base_url"], str(fmt) if fmt else None))
    require_proxy_key = server.get("require_proxy_key")
    if require_proxy_key is not None and not isinstance(require_proxy_key, bool):
        raise ConfigError(f"{source}: [server] require_proxy_key must be true or false")
    try:
        return Config(
            host=str(server.get("host", DEFAULT_HOST)),
            port=int(server.get("port", DEFAULT_PORT)),
            providers=tuple(providers),
            timeouts=Timeouts(**{k: float(v) for k, v in timeouts.items()}),
            max_body_bytes=int(server.get("max_body_bytes", 32 * 1024 * 1024)),
            require_proxy_key=require_proxy_key,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _table(data: Mapping[str, object], name: str, source: str) -> dict[str, object]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    return value
