"""`meterfox providers`, `env` and `paths`."""

from __future__ import annotations

from click.testing import CliRunner

from meterfox_cli.cli import main


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
