"""config.toml → a frozen Config. Command-line flags override the file."""

from __future__ import annotations

import fnmatch
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from meterfox_cli.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_REST_AFTER_S = 300.0  # [server] rest_after: five minutes


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Upstream: the defaults never cut a long reasoning stream short (a model may
    think for minutes before its first byte), so only connecting is tight. Clients: the
    request's headers must arrive within `client_header` of the connection opening or of the
    previous response, a JSON body (read whole) within `client_body`."""

    connect: float = 10.0
    first_byte: float = 600.0
    idle: float = 300.0
    client_header: float = 30.0
    client_body: float = 60.0


@dataclass(frozen=True)
class ProviderConfig:
    """A `[providers.NAME]` table: a new provider, or a new base URL for a built-in one."""

    slug: str
    base_url: str
    format: str | None = None


_RATE_FIELDS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")
_PRICE_FIELDS = (
    "provider", "model", *_RATE_FIELDS, "discount", "hardware", "per_second", "note"
)  # fmt: skip


@dataclass(frozen=True)
class PriceOverride:
    """One `[[prices]]` entry: the user's own price for a provider and model (globs allowed).

    Exactly one kind of price: token rates in USD per million tokens (`input` and `output`
    required; `cached_input`, `cache_write`, `cache_write_1h` default to the input rate), or a
    `discount` factor applied to the list price, or a time price for usage billed in seconds
    (`per_second` USD, or `hardware` naming a row of the hardware table).
    """

    provider: str
    model: str
    position: int  # 1-based, in file order: the first matching entry wins
    input: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    output: Decimal | None = None
    discount: Decimal | None = None
    hardware: str | None = None
    per_second: Decimal | None = None
    note: str | None = None

    @property
    def kind(self) -> str:
        if self.discount is not None:
            return "discount"
        if self.hardware is not None or self.per_second is not None:
            return "time"
        return "tokens"

    def matches(self, provider: str, model: str | None) -> bool:
        """Case-insensitive glob match on our provider slug and the model name."""
        return fnmatch.fnmatchcase(provider.lower(), self.provider.lower()) and (
            model is not None and fnmatch.fnmatchcase(model.lower(), self.model.lower())
        )

    def describe(self) -> str:
        where = f'provider="{self.provider}", model="{self.model}"'
        return f"config.toml [[prices]] #{self.position} ({where})"


@dataclass(frozen=True)
class PricingConfig:
    """Price overrides and the extra rows of the time-priced hardware table (USD per second)."""

    overrides: tuple[PriceOverride, ...] = ()
    hardware: tuple[tuple[str, Decimal], ...] = ()
    prices_file: str | None = None  # a local genai-prices data.json (offline refresh)
    # `[pricing.cache_storage]`: model → USD per 1M tokens per hour a Gemini cache is kept
    cache_storage: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True)
class SyncConfig:
    """`[sync]`: `serve` syncs billed usage by itself every `every_s` seconds (None: off, the
    default), for the named `providers` (None: every provider with an admin key)."""

    every_s: float | None = None
    providers: tuple[str, ...] | None = None

    @property
    def enabled(self) -> bool:
        return self.every_s is not None


DEFAULT_THRESHOLDS = (50, 80, 100)
WEBHOOK_FORMATS = ("slack", "json")


@dataclass(frozen=True)
class Webhook:
    """One `[alerts] webhooks` entry: where to POST, and which body: `slack` (`{"text": …}`,
    which Slack, Discord's /slack URL and Teams connectors take) or `json` (every figure)."""

    url: str
    format: str = "slack"


@dataclass(frozen=True)
class AlertsConfig:
    """`[alerts]`: the percents of a budget that fire (`thresholds`), where alerts go beside the
    daemon's log (`webhooks`, `desktop`), and the spike rule (`spike_factor`: today's spend over
    that many times the trailing 7-day daily average; None: off)."""

    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    webhooks: tuple[Webhook, ...] = ()
    desktop: bool = True
    spike_factor: Decimal | None = None


@dataclass(frozen=True)
class BudgetConfig:
    """`[budget]`: USD per calendar month (local time) for all spend (`monthly`), and per
    provider (`[budget.providers]`) and per tag (`[budget.tags]`, `"NAME=VALUE" = USD`)."""

    monthly: Decimal | None = None
    providers: tuple[tuple[str, Decimal], ...] = ()
    tags: tuple[tuple[tuple[str, str], Decimal], ...] = ()


@dataclass(frozen=True)
class TlsFiles:
    """The PEM certificate (chain) and private key `serve` speaks HTTPS with."""

    cert: Path
    key: Path


def tls_files(cert: object, key: object, where: str) -> TlsFiles | None:
    """Both files, or neither (plain HTTP); one without the other is an error."""
    if cert is None and key is None:
        return None
    if not isinstance(cert, str | Path) or not isinstance(key, str | Path):
        raise ConfigError(
            f"{where}: HTTPS needs both a certificate and its key "
            "(tls_cert and tls_key, or --tls-cert and --tls-key)"
        )
    return TlsFiles(Path(cert).expanduser(), Path(key).expanduser())


@dataclass(frozen=True)
class MetricsConfig:
    """`[metrics]`: `/_meterfox/metrics` for Prometheus (docs/observability.md). On unless
    `enabled = false`. At most `max_models` model names (and `max_tag_values` values of each
    tag) become label values, later ones count under `other`; only the tags named in
    `tag_labels` become labels. With `token` set, a scrape must send `Authorization: Bearer`
    it, from any Host (so beyond loopback too); without, only at the loopback names."""

    enabled: bool = True
    max_models: int = 100
    max_tag_values: int = 100
    tag_labels: tuple[str, ...] = ()
    token: str | None = None


@dataclass(frozen=True)
class OtelConfig:
    """`[otel]`: export a span per request and the GenAI metrics over OTLP/HTTP to
    `endpoint` (the collector's base URL; None: off), as `service_name`, metrics every
    `export_every_s`, with `headers` on each export (a hosted collector's key)."""

    endpoint: str | None = None
    service_name: str = "meterfox"
    export_every_s: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None


@dataclass(frozen=True)
class Config:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    providers: tuple[ProviderConfig, ...] = ()
    timeouts: Timeouts = Timeouts()
    max_body_bytes: int = 32 * 1024 * 1024
    require_proxy_key: bool | None = None
    pricing: PricingConfig = PricingConfig()
    reconcile_tolerance: Decimal = Decimal("0.02")  # [reconcile] tolerance: 2% either way
    max_connections: int | None = None  # None: as many as the open-file limit leaves room for
    # [server] rest_after: how long the record writer's and the dashboard's processes are kept
    # with nothing for them to do (no record, no dashboard request) before they stop, to start
    # again when needed; None ("never"): they run as long as the daemon.
    rest_after_s: float | None = DEFAULT_REST_AFTER_S
    store_url: str | None = None  # [store] url: a PostgreSQL ledger; None: the local SQLite file
    store_host: str | None = None  # [store] host: this daemon's name on its records
    sync: SyncConfig = SyncConfig()
    tls: TlsFiles | None = None  # [server] tls_cert + tls_key: serve HTTPS (and wss://)
    metrics: MetricsConfig = MetricsConfig()
    otel: OtelConfig = OtelConfig()
    alerts: AlertsConfig = AlertsConfig()
    budget: BudgetConfig = BudgetConfig()
    unknown: tuple[str, ...] = ()  # names in the file MeterFox does not know (see unknown_names)


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file is the default config, a broken one a clear error."""
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return config_from_dict(data, source=str(path))


# `meterfox keys set openai-admin` stores an admin key (usage and cost APIs) beside the provider
# keys; no provider may take such a name, and the proxy never loads one.
ADMIN_KEY_SUFFIX = "-admin"


def is_admin_key_name(name: str) -> bool:
    return name.endswith(ADMIN_KEY_SUFFIX)


def config_from_dict(data: Mapping[str, object], source: str = "config") -> Config:
    """The config in `data`. A name it does not know is ignored and listed in `unknown` (for
    `serve` to warn about and `doctor` to fail on), except in the price, alert and budget
    tables, where a misspelt setting would price requests wrongly or keep an alert from
    firing: there it is an error."""
    unknown = unknown_names(data)
    strict = [message for message in unknown if _is_strict(message)]
    if strict:
        raise ConfigError(f"{source}: {'; '.join(strict)}")
    server = _table(data, "server", source)
    timeouts = _table(data, "timeouts", source)
    providers: list[ProviderConfig] = []
    for slug, table in _table(data, "providers", source).items():
        if is_admin_key_name(slug):
            raise ConfigError(
                f"{source}: [providers.{slug}]: names ending in {ADMIN_KEY_SUFFIX!r} are kept for "
                "the admin keys `meterfox sync` reads; choose another name"
            )
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
            timeouts=Timeouts(**{k: float(v) for k, v in timeouts.items() if k in _TIMEOUTS}),
            max_body_bytes=int(server.get("max_body_bytes", 32 * 1024 * 1024)),
            require_proxy_key=require_proxy_key,
            pricing=pricing_from_dict(data, source),
            reconcile_tolerance=_tolerance(data, source),
            max_connections=_positive_int(server.get("max_connections"), "max_connections"),
            rest_after_s=_rest_after(server.get("rest_after"), source),
            store_url=_store_url(_table(data, "store", source), source),
            store_host=_store_host(_table(data, "store", source), source),
            sync=_sync(data, source),
            tls=tls_files(server.get("tls_cert"), server.get("tls_key"), f"{source}: [server]"),
            metrics=_metrics(data, source),
            otel=_otel(data, source),
            alerts=_alerts(data, source),
            budget=_budget(data, source),
            unknown=tuple(unknown),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


# Every name config.toml may hold: a table maps its names to their own schema (None for a
# value); `_ANY` stands for free names (a provider's slug, a hardware row). A list is an array
# of tables ([[prices]]).
_ANY = "*"
_TIMEOUTS = tuple(field.name for field in fields(Timeouts))
_SCHEMA: dict[str, object] = {
    "server": dict.fromkeys(
        (
            "host",
            "port",
            "max_body_bytes",
            "require_proxy_key",
            "max_connections",
            "tls_cert",
            "tls_key",
            "rest_after",
        )
    ),
    "timeouts": dict.fromkeys(_TIMEOUTS),
    "providers": {_ANY: dict.fromkeys(("base_url", "format"))},
    "prices": [dict.fromkeys(_PRICE_FIELDS)],
    "pricing": {"hardware": {_ANY: None}, "cache_storage": {_ANY: None}, "prices_file": None},
    "reconcile": {"tolerance": None},
    "store": {"url": None, "host": None},
    "sync": dict.fromkeys(("every", "providers")),
    "metrics": dict.fromkeys(("enabled", "max_models", "max_tag_values", "tag_labels", "token")),
    "otel": {
        **dict.fromkeys(("endpoint", "service_name", "export_every")),
        "headers": {_ANY: None},
    },
    "alerts": dict.fromkeys(
        ("thresholds", "webhooks", "webhook_format", "desktop", "spike_factor")
    ),
    "budget": {"monthly": None, "providers": {_ANY: None}, "tags": {_ANY: None}},
}
# Where an unknown name is an error, not a warning: the tables themselves, and a section
# whose closest known name is one of them (`[alert]`, `[budgets]`).
_STRICT_TABLES = ("[pricing", "[[prices]]", "[alerts", "[budget")
_STRICT_HINTS = ("did you mean [alerts]?", "did you mean [budget]?")


def _is_strict(message: str) -> bool:
    return message.startswith(_STRICT_TABLES) or message.endswith(_STRICT_HINTS)


_MISSING = object()


def unknown_names(data: Mapping[str, object]) -> list[str]:
    """Each section or key in `data` that MeterFox does not know, with the closest known name
    (or the known ones, when none is close), in file order."""
    return _unknown_in(data, _SCHEMA, "")


def _unknown_in(data: Mapping[str, object], schema: Mapping[str, object], where: str) -> list[str]:
    found: list[str] = []
    for name, value in data.items():
        known = schema[name] if name in schema else schema.get(_ANY, _MISSING)
        if known is _MISSING:
            found.append(_describe(name, isinstance(value, dict), schema, where))
        elif isinstance(known, list) and isinstance(value, list):
            for position, entry in enumerate(value, 1):
                if isinstance(entry, dict):
                    found += _unknown_in(entry, known[0], f"[[{name}]] #{position}")
        elif isinstance(known, dict) and isinstance(value, dict):
            found += _unknown_in(value, known, f"[{where[1:-1]}.{name}]" if where else f"[{name}]")
    return found


def _describe(name: str, is_table: bool, schema: Mapping[str, object], where: str) -> str:
    import difflib  # here: only a config with a mistake needs it, not every start

    names = [known for known in schema if known != _ANY]
    close = difflib.get_close_matches(name, names, n=1)
    if where:
        what, hint = f"{where} has an unknown key {name!r}", f"{close[0]!r}" if close else ""
    else:
        what = f"unknown section [{name}]" if is_table else f"unknown top-level key {name!r}"
        hint = f"[{close[0]}]" if close else ""
    return f"{what}; did you mean {hint}?" if hint else f"{what}; known: {', '.join(names)}"


DATABASE_URL_ENV = "METERFOX_DATABASE_URL"


def _store_url(store: Mapping[str, object], source: str) -> str | None:
    url = store.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(_LEDGER_SCHEMES)):
        raise ConfigError(f'{source}: [store] url must be "postgresql://user@host:5432/dbname"')
    return url or None


_LEDGER_SCHEMES = ("postgresql://", "postgres://")


def _store_host(store: Mapping[str, object], source: str) -> str | None:
    host = store.get("host")
    if host is not None and (not isinstance(host, str) or not host.strip()):
        raise ConfigError(f'{source}: [store] host must be a name, e.g. host = "ci-runner-1"')
    return host.strip() if host else None


def recording_host(config: Config) -> str:
    """The name this daemon stores on each record (`report --by host`): `[store] host`, else
    the machine's hostname."""
    return config.store_host or socket.gethostname()


def ledger_url(config: Config, environ: Mapping[str, str]) -> str | None:
    """The PostgreSQL ledger to use: METERFOX_DATABASE_URL wins over `[store] url`; None means
    the local SQLite file, as when nothing is set."""
    return environ.get(DATABASE_URL_ENV) or config.store_url


def masked_url(url: str) -> str:
    """`url` fit to print: a password in it is replaced by `***` (the one place that masks)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _rest_after(value: object, source: str) -> float | None:
    """`[server] rest_after`: a duration, or "never"."""
    if value is None:
        return DEFAULT_REST_AFTER_S
    if isinstance(value, str) and value.strip().lower() == "never":
        return None
    return parse_duration(value, f'{source}: [server] rest_after (or "never")')


def _positive_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"[server] {name} must be a whole number above 0, got {value!r}")
    return value


def pricing_from_dict(data: Mapping[str, object], source: str = "config") -> PricingConfig:
    """`[[prices]]` entries and the `[pricing.hardware]` and `[pricing.cache_storage]` tables."""
    entries = data.get("prices", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: prices must be an array of tables: [[prices]]")
    overrides = tuple(
        _price_override(entry, position, source) for position, entry in enumerate(entries, 1)
    )
    pricing = _table(data, "pricing", source)
    prices_file = pricing.get("prices_file")
    if prices_file is not None and not isinstance(prices_file, str):
        raise ConfigError(f"{source}: [pricing] prices_file must be a path string")
    rows = _rate_rows(pricing, "hardware", source)
    known = {name for name, _ in rows}
    for override in overrides:
        if override.hardware and override.hardware not in known:
            _check_builtin_hardware(override, source)
    return PricingConfig(
        overrides=overrides,
        hardware=rows,
        prices_file=prices_file,
        cache_storage=_rate_rows(pricing, "cache_storage", source),
    )


def _rate_rows(
    pricing: Mapping[str, object], table: str, source: str
) -> tuple[tuple[str, Decimal], ...]:
    """A `[pricing.TABLE]` of name = USD rate, in file order."""
    return tuple(
        (name, _money(value, f"{source} [pricing.{table}] {name}"))
        for name, value in _table(pricing, table, f"{source} [pricing]").items()
    )


def _price_override(entry: object, position: int, source: str) -> PriceOverride:
    where = f"{source} [[prices]] #{position}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    provider, model = entry.get("provider", "*"), entry.get("model")
    if not isinstance(provider, str) or not isinstance(model, str) or not model:
        raise ConfigError(f'{where}: needs model = "name or glob" (and optionally provider)')
    money = {
        name: _money(entry[name], f"{where} {name}")
        for name in (*_RATE_FIELDS, "discount", "per_second")
        if name in entry
    }
    hardware, note = entry.get("hardware"), entry.get("note")
    override = PriceOverride(
        provider=provider,
        model=model,
        position=position,
        hardware=str(hardware) if hardware is not None else None,
        note=str(note) if note is not None else None,
        **money,
    )
    _check_one_kind(override, where)
    return override


def _check_one_kind(o: PriceOverride, where: str) -> None:
    rates = [getattr(o, name) for name in _RATE_FIELDS]
    kinds = [
        any(rate is not None for rate in rates),
        o.discount is not None,
        o.hardware is not None or o.per_second is not None,
    ]
    if sum(kinds) != 1:
        raise ConfigError(
            f"{where}: give exactly one kind of price: token rates (input, output, …), "
            "a discount, or a time price (per_second or hardware)"
        )
    if kinds[0] and (o.input is None or o.output is None):
        raise ConfigError(f"{where}: token rates need both input and output (USD per MTok)")
    if o.hardware is not None and o.per_second is not None:
        raise ConfigError(f"{where}: give per_second or hardware, not both")


def _check_builtin_hardware(override: PriceOverride, source: str) -> None:
    from meterfox_cli.replicate_prices import HARDWARE_USD_PER_SECOND

    if override.hardware not in HARDWARE_USD_PER_SECOND:
        known = ", ".join(sorted(HARDWARE_USD_PER_SECOND))
        raise ConfigError(
            f"{source} [[prices]] #{override.position}: unknown hardware {override.hardware!r}; "
            f"add it under [pricing.hardware] or use one of: {known}"
        )


def _money(value: object, where: str) -> Decimal:
    """A non-negative amount from TOML: a number, or a string for exact decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        amount = Decimal(value if isinstance(value, str) else repr(value))
    except InvalidOperation as exc:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{where}: expected a non-negative number, got {value!r}")
    return amount


def _tolerance(data: Mapping[str, object], source: str) -> Decimal:
    """`[reconcile] tolerance`: a fraction from 0 to 1 (0.02 is 2%), how far a proxied figure
    may be from the billed one and still match."""
    table = _table(data, "reconcile", source)
    if "tolerance" not in table:
        return Decimal("0.02")
    value = _money(table["tolerance"], f"{source} [reconcile] tolerance")
    if value > 1:
        raise ConfigError(f"{source}: [reconcile] tolerance is a fraction: 0.02 means 2%")
    return value


# `[sync] every`: a whole number and a unit. Seconds are for tests: under a minute is below the
# minimum for real use (SYNC_MIN_REAL_S), which `serve` says when it starts.
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SYNC_MIN_REAL_S = 60


def parse_duration(value: object, where: str) -> float:
    """A duration such as "30m", "1h", "6h" or "1d" (seconds, "90s", for tests) in seconds."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f'{where} must be a duration such as "30m", "1h", "6h" or "1d", got {value!r}'
        )
    return float(int(match[1]) * _UNIT_S[match[2]])


def _sync(data: Mapping[str, object], source: str) -> SyncConfig:
    """`[sync] every` (off when absent) and `[sync] providers` (a list of names)."""
    table = _table(data, "sync", source)
    every = table.get("every")
    providers = table.get("providers")
    if providers is not None and (
        not isinstance(providers, list)
        or not providers
        or not all(isinstance(name, str) and name.strip() for name in providers)
    ):
        raise ConfigError(
            f'{source}: [sync] providers must be a list of provider names, e.g. ["openai"]'
        )
    return SyncConfig(
        every_s=None if every is None else parse_duration(every, f"{source}: [sync] every"),
        providers=None if providers is None else tuple(p.strip().lower() for p in providers),
    )


def _metrics(data: Mapping[str, object], source: str) -> MetricsConfig:
    """`[metrics]`: see MetricsConfig."""
    table = _table(data, "metrics", source)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{source}: [metrics] enabled must be true or false")
    tags = table.get("tag_labels", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise ConfigError(
            f'{source}: [metrics] tag_labels must be a list of tag names, e.g. ["feature"]'
        )
    token = table.get("token")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ConfigError(f"{source}: [metrics] token must be a string of 16 characters or more")
    caps = {}
    for name in ("max_models", "max_tag_values"):
        value = table.get(name, getattr(MetricsConfig, name))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{source}: [metrics] {name} must be a whole number above zero")
        caps[name] = value
    return MetricsConfig(
        enabled=enabled,
        tag_labels=tuple(dict.fromkeys(t.strip() for t in tags)),
        token=token,
        **caps,
    )


def _otel(data: Mapping[str, object], source: str) -> OtelConfig:
    """`[otel]`: see OtelConfig. The endpoint must be an http(s) URL."""
    table = _table(data, "otel", source)
    endpoint = table.get("endpoint")
    if endpoint is not None and (
        not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://"))
    ):
        raise ConfigError(f'{source}: [otel] endpoint must be a URL, e.g. "http://127.0.0.1:4318"')
    service = table.get("service_name", "meterfox")
    if not isinstance(service, str) or not service.strip():
        raise ConfigError(f"{source}: [otel] service_name must be a name")
    headers = _table(table, "headers", f"{source}: [otel]")
    if not all(isinstance(value, str) for value in headers.values()):
        raise ConfigError(f"{source}: [otel.headers] values must be strings")
    every = table.get("export_every")
    return OtelConfig(
        endpoint=None if endpoint is None else endpoint.rstrip("/"),
        service_name=service.strip(),
        export_every_s=10.0
        if every is None
        else parse_duration(every, f"{source}: [otel] export_every"),
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
    )


def _alerts(data: Mapping[str, object], source: str) -> AlertsConfig:
    """`[alerts]`: each setting checked, with the form it takes in the error."""
    table = _table(data, "alerts", source)
    where = f"{source}: [alerts]"
    thresholds = table.get("thresholds", list(DEFAULT_THRESHOLDS))
    if not isinstance(thresholds, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) and 0 < t <= 1000 for t in thresholds
    ):
        raise ConfigError(
            f"{where} thresholds must be a list of percents of a budget (whole numbers from 1 "
            "to 1000), e.g. [50, 80, 100]"
        )
    default_format = table.get("webhook_format", "slack")
    if default_format not in WEBHOOK_FORMATS:
        raise ConfigError(f'{where} webhook_format must be "slack" or "json"')
    desktop = table.get("desktop", True)
    if not isinstance(desktop, bool):
        raise ConfigError(f"{where} desktop must be true or false")
    factor = table.get("spike_factor")
    spike = None if factor is None else _money(factor, f"{where} spike_factor")
    if spike is not None and spike <= 1:
        raise ConfigError(f"{where} spike_factor must be above 1, e.g. 3 (3 times the average)")
    return AlertsConfig(
        thresholds=tuple(sorted(set(thresholds))),
        webhooks=_webhooks(table.get("webhooks", []), str(default_format), where),
        desktop=desktop,
        spike_factor=spike,
    )


def _webhooks(entries: object, default_format: str, where: str) -> tuple[Webhook, ...]:
    """Each entry a URL (in `webhook_format`) or `{ url = "…", format = "slack" | "json" }`."""
    usage = (
        f'{where} webhooks must be a list of URLs or {{ url = "https://…", format = "json" }} '
        "tables"
    )
    if not isinstance(entries, list):
        raise ConfigError(usage)
    hooks = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict) or set(entry) - {"url", "format"}:
            raise ConfigError(usage)
        url, fmt = entry.get("url"), entry.get("format", default_format)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{where} webhooks: {url!r} is not an http(s) URL")
        if fmt not in WEBHOOK_FORMATS:
            raise ConfigError(f'{where} webhooks: format must be "slack" or "json", got {fmt!r}')
        hooks.append(Webhook(url, str(fmt)))
    return tuple(hooks)


def _budget(data: Mapping[str, object], source: str) -> BudgetConfig:
    """`[budget] monthly`, `[budget.providers]` and `[budget.tags]`: USD per month."""
    table = _table(data, "budget", source)
    where = f"{source}: [budget]"
    monthly = table.get("monthly")
    providers = _table(table, "providers", where)
    tags = _table(table, "tags", where)
    tag_budgets = []
    for tag, amount in tags.items():
        name, sep, value = tag.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f'{where}.tags: {tag!r} must be "NAME=VALUE", e.g. "team=search"')
        tag_budgets.append(((name.strip().lower(), value.strip()), _usd(amount, where, tag)))
    return BudgetConfig(
        monthly=None if monthly is None else _usd(monthly, where, "monthly"),
        providers=tuple(
            (name.lower(), _usd(amount, f"{where}.providers", name))
            for name, amount in providers.items()
        ),
        tags=tuple(tag_budgets),
    )


def _usd(value: object, where: str, name: str) -> Decimal:
    amount = _money(value, f"{where} {name}")
    if amount == 0:
        raise ConfigError(f"{where} {name}: a budget must be above zero (USD per month)")
    return amount


def _table(data: Mapping[str, object], name: str, source: str) -> dict[str, object]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    return value
