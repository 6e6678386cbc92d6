"""Shell completion through click's own protocol on the installed `meterfox` command
(`_METERFOX_COMPLETE=bash_complete` with COMP_WORDS / COMP_CWORD, as the bash script sends):
provider slugs from the config, key names and tag dimensions from the database."""

from __future__ import annotations

import time

import pytest

from meterfox_cli.cli.completion import SHELLS
from meterfox_cli.keys.proxy_keys import create_key, key_spec
from meterfox_cli.providers.registry import build_registry
from tests.fakes.records import Req, insert
from tests.service.conftest import run_installed, user_env  # noqa: F401  (a fixture)


async def complete(env: dict[str, str], line: str) -> list[str]:
    """What bash would offer for the last word of `line` (a trailing space: a new word)."""
    words = line.split(" ")
    done = await run_installed(
        env={
            **env,
            "_METERFOX_COMPLETE": "bash_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [entry.split(",", 1)[1] for entry in done.stdout.splitlines() if entry]


@pytest.fixture
def recorded(conn, meterfox_home):
    """A config with a provider of its own, two proxy keys, and a request tagged `feature`."""
    (meterfox_home / "config.toml").write_text(
        '[providers.vllm]\nbase_url = "http://127.0.0.1:1"\n'
    )
    registry = build_registry(())
    for name in ("app-one", "app-two", "batch"):
        create_key(conn, key_spec(registry, name))
    insert(conn, Req(ts=time.time(), tags=(("feature", "search"), ("team", "core"))))


async def test_provider_slugs_come_from_the_live_config(recorded, user_env):  # noqa: F811
    assert await complete(user_env, "meterfox report --provider vl") == ["vllm"]
    offered = await complete(user_env, "meterfox keys set ")
    assert {"openai", "anthropic", "vllm"} <= set(offered)


async def test_key_names_come_from_the_database(recorded, user_env):  # noqa: F811
    assert await complete(user_env, "meterfox report --key app") == ["app-one", "app-two"]
    assert await complete(user_env, "meterfox keys revoke b") == ["batch"]


async def test_by_dimensions_complete_after_a_comma_with_recorded_tags(recorded, user_env):  # noqa: F811
    assert await complete(user_env, "meterfox report --by provider,mo") == [
        "provider,model",
        "provider,month",
    ]
    assert await complete(user_env, "meterfox chart --by tag:") == ["tag:feature", "tag:team"]


async def test_without_a_database_or_with_a_broken_one_completion_stays_quiet(
    meterfox_home,
    user_env,  # noqa: F811
):
    assert await complete(user_env, "meterfox report --key ") == []
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "meterfox.db").write_bytes(b"not a database at all" * 100)
    assert await complete(user_env, "meterfox report --key ") == []
    assert await complete(user_env, "meterfox report --by ho") == ["host"]
    (meterfox_home / "config.toml").write_text("[[[ not toml")
    assert await complete(user_env, "meterfox report --provider o") == []


@pytest.mark.parametrize("shell", SHELLS)
async def test_completion_prints_clicks_script_for_each_shell(shell, user_env):  # noqa: F811
    done = await run_installed("completion", shell, env=user_env)
    assert done.returncode == 0
    assert "_METERFOX_COMPLETE" in done.stdout and f"{shell}_complete" in done.stdout
