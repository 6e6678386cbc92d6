"""config.toml: names MeterFox does not know are named with the closest valid one (`serve`
warns and starts, `doctor` fails; in the price tables they are errors), and `[[prices]]` and
`[pricing]` give clear errors and exact decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.config import (
    AlertsConfig,
    BudgetConfig,
    Config,
    PriceOverride,
    PricingConfig,
    SyncConfig,
    Timeouts,
    Webhook,
    config_from_dict,
)
from meterfox_cli.errors import ConfigError
from tests.cli.conftest import launch_serve
from tests.pricing.cases import D

TYPOS = "[sever]\nport = 9999\n\n[server]\nprot = 1\n\n[timeouts]\nfirst_bite = 5\n"


def test_unknown_sections_and_keys_are_named_with_the_closest_valid_name():
    config = config_from_dict(
        {
            "sever": {"port": 9999},
            "server": {"prot": 1, "host": "127.0.0.1"},
            "timeouts": {"first_bite": 5, "idle": 7},
            "providers": {"vllm": {"base_url": "http://127.0.0.1:8000", "formt": "openai"}},
            "zzz": {},
        }
    )
    assert config.unknown == (
        "unknown section [sever]; did you mean [server]?",
        "[server] has an unknown key 'prot'; did you mean 'port'?",
        "[timeouts] has an unknown key 'first_bite'; did you mean 'first_byte'?",
        "[providers.vllm] has an unknown key 'formt'; did you mean 'format'?",
        "unknown section [zzz]; known: server, timeouts, providers, prices, pricing, reconcile, "
        "store, sync, metrics, otel, alerts, budget",
    )
    # Everything else is read as usual; the unknown names are ignored.
    assert config.port == Config().port
    assert config.timeouts == Timeouts(idle=7)


def test_a_config_of_known_names_has_nothing_to_say():
    every = {
        "server": {
            "host": "127.0.0.1",
            "port": 8787,
            "max_body_bytes": 1000,
            "require_proxy_key": True,
            "max_connections": 10,
            "rest_after": "90s",
        },
        "timeouts": {
            "connect": 1,
            "first_byte": 2,
            "idle": 3,
            "client_header": 4,
            "client_body": 5,
        },
        "providers": {"x": {"base_url": "http://127.0.0.1:1", "format": "openai"}},
        "prices": [{"provider": "x", "model": "m", "input": 1, "output": 2, "note": "n"}],
        "pricing": {"hardware": {"gpu-x": "0.001"}, "prices_file": "p.json"},
        "reconcile": {"tolerance": 0.05},
        "sync": {"every": "1h", "providers": ["openai"]},
        "alerts": {
            "thresholds": [50],
            "webhooks": [],
            "webhook_format": "json",
            "desktop": True,
            "spike_factor": 3,
        },
        "budget": {"monthly": 1, "providers": {"openai": 1}, "tags": {"a=b": 1}},
    }
    assert config_from_dict(every).unknown == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"pricing": {"prices_fil": "p.json"}},
            r"\[pricing\] has an unknown key 'prices_fil'; did you mean 'prices_file'\?",
        ),
        (
            {"prices": [{"model": "m", "input": 1, "output": 1, "ouptut": 2}]},
            r"\[\[prices\]\] #1 has an unknown key 'ouptut'; did you mean 'output'\?",
        ),
    ],
)
def test_in_the_price_tables_an_unknown_name_is_an_error(data, message):
    """A misspelt price setting would price requests wrongly: refused, not warned about."""
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_doctor_fails_on_a_typo_in_config(meterfox_home):
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "config.toml").write_text(TYPOS)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1, result.output
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL config")]
    assert len(fails) == 3, result.stdout
    assert "did you mean [server]?" in fails[0]
    assert "'prot'; did you mean 'port'?" in fails[1]
    assert "'first_bite'; did you mean 'first_byte'?" in fails[2]


async def test_serve_warns_about_a_typo_and_still_starts(meterfox_home):
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "config.toml").write_text(TYPOS)
    async with launch_serve() as served:
        pass
    text = served.stderr
    assert served.returncode == 0, text
    assert "unknown section [sever]; did you mean [server]?" in text
    assert "[server] has an unknown key 'prot'; did you mean 'port'?" in text
    assert "[timeouts] has an unknown key 'first_bite'; did you mean 'first_byte'?" in text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": "x", "input": 1}, "need both input and output"),
        ({"model": "x", "input": 1, "output": 1, "discount": 0.5}, "exactly one kind"),
        ({"model": "x"}, "exactly one kind"),
        ({"model": "x", "discount": -1}, "non-negative"),
        ({"model": "x", "discount": "cheap"}, "expected a number"),
        ({"model": "x", "hardware": "gpu-unknown"}, "unknown hardware"),
        ({"model": "x", "input": 1, "output": 1, "colour": "red"}, "unknown key 'colour'"),
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


def test_a_provider_may_not_take_an_admin_key_name():
    with pytest.raises(ConfigError, match="kept for the admin keys"):
        config_from_dict({"providers": {"openai-admin": {"base_url": "http://127.0.0.1:1"}}})


def test_store_url_is_read_and_anything_but_postgresql_is_refused():
    from meterfox_cli.config import ConfigError, config_from_dict, ledger_url, masked_url

    config = config_from_dict({"store": {"url": "postgresql://u:pw@h/db"}})
    assert config.store_url == "postgresql://u:pw@h/db"
    assert config.unknown == ()
    assert ledger_url(config, {}) == "postgresql://u:pw@h/db"
    assert ledger_url(config, {"METERFOX_DATABASE_URL": "postgresql://e@h/db"}) == (
        "postgresql://e@h/db"
    )
    assert ledger_url(config_from_dict({}), {}) is None
    assert masked_url("postgresql://u:pw@h:1/db?sslmode=require") == (
        "postgresql://u:***@h:1/db?sslmode=require"
    )
    assert masked_url("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ConfigError, match=r"\[store\] url"):
        config_from_dict({"store": {"url": "mysql://h/db"}})


def test_the_recording_host_is_the_config_name_else_the_hostname():
    import socket

    from meterfox_cli.config import config_from_dict, recording_host

    assert recording_host(config_from_dict({"store": {"host": " ci-1 "}})) == "ci-1"
    assert recording_host(config_from_dict({})) == socket.gethostname()
    with pytest.raises(ConfigError, match=r"\[store\] host"):
        config_from_dict({"store": {"host": ""}})


@pytest.mark.parametrize(
    ("every", "seconds"),
    [("30m", 1800), ("1h", 3600), ("6h", 21600), ("1d", 86400), ("90s", 90), (" 2h ", 7200)],
)
def test_sync_every_is_a_duration(every, seconds):
    sync = config_from_dict({"sync": {"every": every}}).sync
    assert sync == SyncConfig(every_s=seconds) and sync.enabled


def test_sync_is_off_by_default_and_providers_are_read_as_names():
    assert Config().sync == SyncConfig() and not Config().sync.enabled
    assert config_from_dict({}).sync.every_s is None
    sync = config_from_dict({"sync": {"every": "1h", "providers": ["OpenAI ", "anthropic"]}}).sync
    assert sync.providers == ("openai", "anthropic")


@pytest.mark.parametrize("every", ["1 hour", "1.5h", "0m", "-1h", "1w", "", 3600, True])
def test_a_bad_sync_every_is_a_clear_config_error(every):
    with pytest.raises(
        ConfigError,
        match=r'config: \[sync\] every must be a duration such as "30m", "1h", "6h" or "1d", got ',
    ):
        config_from_dict({"sync": {"every": every}})


@pytest.mark.parametrize("providers", ["openai", [], [1], [""]])
def test_bad_sync_providers_are_a_clear_config_error(providers):
    with pytest.raises(ConfigError, match=r"\[sync\] providers must be a list of provider names"):
        config_from_dict({"sync": {"every": "1h", "providers": providers}})


def test_a_typo_in_sync_is_named():
    config = config_from_dict({"sync": {"evrey": "1h", "provider": ["openai"]}, "sinc": {}})
    assert config.unknown == (
        "[sync] has an unknown key 'evrey'; did you mean 'every'?",
        "[sync] has an unknown key 'provider'; did you mean 'providers'?",
        "unknown section [sinc]; did you mean [sync]?",
    )
    assert config.sync == SyncConfig()  # misspelt: off, and serve says why


def test_metrics_and_otel_sections_are_read_and_checked():
    config = config_from_dict(
        {
            "metrics": {"tag_labels": ["team", " team"], "max_models": 5, "token": "t" * 16},
            "otel": {
                "endpoint": "http://127.0.0.1:4318/",
                "export_every": "30s",
                "headers": {"x-api-key": "abc"},
            },
        }
    )
    assert config.metrics.enabled and config.metrics.tag_labels == ("team",)
    assert (config.metrics.max_models, config.metrics.token) == (5, "t" * 16)
    assert config.otel.endpoint == "http://127.0.0.1:4318" and config.otel.enabled
    assert config.otel.export_every_s == 30 and config.otel.headers == (("x-api-key", "abc"),)
    assert not Config().otel.enabled and Config().metrics.enabled
    for bad in (
        {"metrics": {"enabled": "yes"}},
        {"metrics": {"max_models": 0}},
        {"metrics": {"tag_labels": "team"}},
        {"metrics": {"token": "short"}},
        {"otel": {"endpoint": "127.0.0.1:4318"}},
        {"otel": {"endpoint": "http://x", "export_every": "soon"}},
    ):
        with pytest.raises(ConfigError):
            config_from_dict(bad)


def test_alerts_and_budget_are_read_with_their_defaults():
    assert config_from_dict({}).alerts == AlertsConfig(thresholds=(50, 80, 100), desktop=True)
    assert config_from_dict({}).budget == BudgetConfig()
    config = config_from_dict(
        {
            "alerts": {
                "thresholds": [100, 25],
                "webhooks": [
                    "https://hooks.slack.com/services/T/B/x",
                    {"url": "http://127.0.0.1:9/hook", "format": "json"},
                ],
                "desktop": False,
                "spike_factor": 2.5,
            },
            "budget": {
                "monthly": 200,
                "providers": {"OpenAI": 120},
                "tags": {"Team = search": "50.50"},
            },
        }
    )
    assert config.alerts == AlertsConfig(
        thresholds=(25, 100),
        webhooks=(
            Webhook("https://hooks.slack.com/services/T/B/x", "slack"),
            Webhook("http://127.0.0.1:9/hook", "json"),
        ),
        desktop=False,
        spike_factor=Decimal("2.5"),
    )
    assert config.budget == BudgetConfig(
        monthly=Decimal(200),
        providers=(("openai", Decimal(120)),),
        tags=((("team", "search"), Decimal("50.50")),),
    )
    assert config.unknown == ()


def test_webhook_format_sets_the_body_of_plain_urls():
    config = config_from_dict(
        {"alerts": {"webhooks": ["http://127.0.0.1:9/a"], "webhook_format": "json"}}
    )
    assert config.alerts.webhooks == (Webhook("http://127.0.0.1:9/a", "json"),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"alerts": {"treshold": [50]}}, r"\[alerts\] has an unknown key 'treshold'; did you mean"),
        ({"alert": {"desktop": False}}, r"unknown section \[alert\]; did you mean \[alerts\]\?"),
        ({"budget": {"monthy": 200}}, r"\[budget\] has an unknown key 'monthy'; did you mean"),
        ({"budgets": {"monthly": 200}}, r"unknown section \[budgets\]; did you mean \[budget\]\?"),
        ({"alerts": {"thresholds": [50, "80"]}}, r"thresholds must be a list of percents"),
        ({"alerts": {"thresholds": 80}}, r"thresholds must be a list of percents"),
        ({"alerts": {"webhooks": "https://x"}}, r"webhooks must be a list of URLs"),
        ({"alerts": {"webhooks": ["hooks.slack.com/x"]}}, r"is not an http\(s\) URL"),
        ({"alerts": {"webhooks": [{"url": "https://x", "fmt": "json"}]}}, r"must be a list"),
        ({"alerts": {"webhooks": [{"url": "https://x", "format": "xml"}]}}, r'"slack" or "json"'),
        ({"alerts": {"webhook_format": "teams"}}, r'webhook_format must be "slack" or "json"'),
        ({"alerts": {"desktop": "yes"}}, r"desktop must be true or false"),
        ({"alerts": {"spike_factor": 1}}, r"spike_factor must be above 1"),
        ({"alerts": {"spike_factor": "x"}}, r"spike_factor: expected a number"),
        ({"budget": {"monthly": 0}}, r"\[budget\] monthly: a budget must be above zero"),
        ({"budget": {"monthly": -5}}, r"expected a non-negative number"),
        ({"budget": {"tags": {"search": 5}}}, r"'search' must be \"NAME=VALUE\""),
        ({"budget": {"providers": {"openai": "lots"}}}, r"providers openai: expected a number"),
    ],
)
def test_a_mistake_in_alerts_or_budget_is_an_error_that_names_it(data, message):
    """A misspelt alert or budget setting would keep an alert from ever firing: refused."""
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 300.0), ("90s", 90.0), ("10m", 600.0), ("never", None)]
)
def test_rest_after_is_a_duration_or_never_and_five_minutes_by_default(value, seconds):
    server = {} if value is None else {"rest_after": value}
    assert config_from_dict({"server": server}).rest_after_s == seconds


@pytest.mark.parametrize("value", ["0s", "soon", 5, True])
def test_a_rest_after_that_is_not_a_duration_is_a_clear_error(value):
    with pytest.raises(
        ConfigError, match=r'\[server\] rest_after \(or "never"\) must be a duration'
    ):
        config_from_dict({"server": {"rest_after": value}})
