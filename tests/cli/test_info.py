"""`meterfox providers`, `env` and `paths`."""

from __future__ import annotations

from click.testing import CliRunner

from meterfox_cli.cli import main
from tests.cli.conftest import free_port


def test_providers_lists_every_slug_with_its_sdk_base_url():
    result = CliRunner().invoke(main, ["providers"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "http://127.0.0.1:8787/openai/v1" in lines["openai"]
    assert "https://api.groq.com/openai" in lines["groq"]
    expected = {"openai", "anthropic", "gemini", "openrouter", "mistral", "cohere", "replicate",
                "together", "fireworks", "deepseek", "groq", "perplexity", "xai", "cerebras"}  # fmt: skip
    assert expected <= set(lines)


def test_providers_include_custom_ones_from_config(meterfox_home):
    meterfox_home.mkdir(parents=True)
    (meterfox_home / "config.toml").write_text(
        '[server]\nport = 9999\n[providers.vllm]\nbase_url = "http://127.0.0.1:8000"\n'
    )
    result = CliRunner().invoke(main, ["providers"])
    assert "http://127.0.0.1:9999/vllm" in result.output
    assert "http://127.0.0.1:8000" in result.output


def test_env_prints_sdk_variables_for_each_shell():
    bash = CliRunner().invoke(main, ["env"]).output
    assert 'export OPENAI_BASE_URL="http://127.0.0.1:8787/openai/v1"' in bash
    assert 'export ANTHROPIC_BASE_URL="http://127.0.0.1:8787/anthropic"' in bash
    fish = CliRunner().invoke(main, ["env", "--shell", "fish"]).output
    assert 'set -gx OPENAI_BASE_URL "http://127.0.0.1:8787/openai/v1"' in fish
    powershell = CliRunner().invoke(main, ["env", "--shell", "powershell"]).output
    assert '$Env:OPENAI_BASE_URL = "http://127.0.0.1:8787/openai/v1"' in powershell


def test_paths_follow_meterfox_home(meterfox_home):
    result = CliRunner().invoke(main, ["paths"])
    assert result.exit_code == 0
    assert str(meterfox_home / "meterfox.db") in result.output
    assert str(meterfox_home / "config.toml") in result.output


def test_broken_config_is_a_one_line_error(meterfox_home):
    meterfox_home.mkdir(parents=True)
    (meterfox_home / "config.toml").write_text("[server\n")
    result = CliRunner().invoke(main, ["providers"])
    assert result.exit_code == 2
    assert result.output.startswith("meterfox: ") and "not valid TOML" in result.output


SECRET = "s3cr3t-pw-9f2"


def test_paths_shows_the_config_ledger_url_with_its_password_masked(meterfox_home, monkeypatch):
    monkeypatch.delenv("METERFOX_DATABASE_URL", raising=False)
    meterfox_home.mkdir(parents=True)
    (meterfox_home / "config.toml").write_text(
        f'[store]\nurl = "postgresql://team:{SECRET}@db.example:5432/meterfox"\n'
    )
    result = CliRunner().invoke(main, ["paths"])
    assert result.exit_code == 0, result.output
    assert "ledger    postgresql://team:***@db.example:5432/meterfox" in result.output
    assert f"outbox    {meterfox_home / 'outbox.sqlite'}" in result.output  # records wait there
    assert SECRET not in result.output


def test_the_env_ledger_url_wins_and_doctor_masks_it_too(meterfox_home, monkeypatch):
    meterfox_home.mkdir(parents=True)
    (meterfox_home / "config.toml").write_text('[store]\nurl = "postgresql://cfg@a/x"\n')
    port = free_port()  # nothing listens: doctor's check fails, naming the ledger masked
    monkeypatch.setenv("METERFOX_DATABASE_URL", f"postgresql://env:{SECRET}@127.0.0.1:{port}/y")
    paths = CliRunner().invoke(main, ["paths"]).output
    doctor = CliRunner().invoke(main, ["doctor"]).output
    assert f"postgresql://env:***@127.0.0.1:{port}/y" in paths
    assert f"postgresql://env:***@127.0.0.1:{port}/y" in doctor
    assert "cfg@a" not in paths
    assert SECRET not in paths + doctor


def test_doctor_checks_the_ledger_schema_and_round_trip(pg_url, monkeypatch):
    monkeypatch.setenv("METERFOX_DATABASE_URL", pg_url)
    behind = CliRunner().invoke(main, ["doctor"]).output
    assert "behind this meterfox" in behind and "meterfox db migrate" in behind
    assert CliRunner().invoke(main, ["db", "migrate"]).exit_code == 0
    current = [
        line
        for line in CliRunner().invoke(main, ["doctor"]).output.splitlines()
        if line.split()[1:2] == ["ledger"]
    ]
    assert len(current) == 1 and "schema current" in current[0] and " ms" in current[0]


def test_without_a_ledger_url_paths_is_unchanged(monkeypatch):
    monkeypatch.delenv("METERFOX_DATABASE_URL", raising=False)
    lines = CliRunner().invoke(main, ["paths"]).output.splitlines()
    assert [line.split()[0] for line in lines] == ["config", "database", "logs"]
