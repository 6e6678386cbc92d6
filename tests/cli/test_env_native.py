"""`meterfox env` for the native providers: each official SDK, given only those environment
variables (no base URL in code), sends its calls through the proxy."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap

from click.testing import CliRunner

from meterfox_cli.cli import main
from tests.cli.conftest import run_process
from tests.fakes.upstream import Received, Reply
from tests.fixtures import anthropic as fa
from tests.fixtures import cohere as fc
from tests.fixtures import gemini as fg
from tests.fixtures import replicate as fr

NATIVE_ENV = {
    "ANTHROPIC_BASE_URL": "anthropic",
    "GOOGLE_GEMINI_BASE_URL": "gemini",
    "CO_API_URL": "cohere",
    "REPLICATE_BASE_URL": "replicate",
}

APP = textwrap.dedent(
    """
    import json
    import anthropic, cohere, replicate
    from google import genai

    hi = [{"role": "user", "content": "hi"}]
    gemini = genai.Client(api_key="k")  # kept alive: a dropped Client closes its HTTP client
    out = [
        anthropic.Anthropic(api_key="k", max_retries=0)
        .messages.create(model="claude-opus-4-1", max_tokens=8, messages=hi).content[0].text,
        gemini.models.generate_content(model="gemini-2.5-flash", contents="hi").text,
        cohere.ClientV2(api_key="k")
        .chat(model="command-a-03-2025", messages=hi).message.content[0].text,
        replicate.Client(api_token="k").models.predictions.create(
            model="meta/meta-llama-3-8b-instruct", input={}, wait=True
        ).status,
    ]
    print(json.dumps(out))
    """
)


def env_lines(port: int, home) -> dict[str, str]:
    (home / "config.toml").parent.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f"[server]\nport = {port}\n")
    result = CliRunner().invoke(main, ["env"])
    assert result.exit_code == 0, result.output
    return dict(re.findall(r'^export (\w+)="([^"]*)"$', result.output, re.MULTILINE))


def by_path(received: Received) -> Reply:
    path = received.path_qs
    if path.startswith("/v1/messages"):
        return Reply(json_body=fa.JSON_BODY)
    if ":generateContent" in path:
        return Reply(json_body=fg.JSON_BODY)
    if path.startswith("/v2/chat"):
        return Reply(json_body=fc.CHAT_BODY)
    return Reply(status=201, json_body=fr.prediction("succeeded"))


async def test_env_routes_each_native_sdk_through_the_proxy(proxy, meterfox_home, tmp_path):
    port = int(proxy.url.rsplit(":", 1)[1])
    exported = env_lines(port, meterfox_home)
    for name, slug in NATIVE_ENV.items():
        assert exported[name] == f"http://127.0.0.1:{port}/{slug}"
    proxy.upstream.reply = by_path
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **exported}
    app = await run_process(sys.executable, "-c", APP, env=env, timeout=120)
    assert app.returncode == 0, app.stderr[-2000:]
    assert json.loads(app.stdout) == ["Hello there!", "Hello there!", "Hello there!", "succeeded"]
    records = await proxy.records(4)
    assert [r["provider"] for r in records] == ["anthropic", "gemini", "cohere", "replicate"]
    assert all(r["usage_known"] == 1 for r in records)
    assert [r["input_tokens"] for r in records] == [
        fa.JSON_EXPECTED["input_tokens"],
        fg.EXPECTED["input_tokens"],
        fc.CHAT_EXPECTED["input_tokens"],
        fr.EXPECTED["input_tokens"],
    ]
