"""A real `meterfox serve` with the dashboard: the attacks a web page elsewhere could try — a
foreign Host (DNS rebinding), a cross-origin POST, a POST without the token — each refused,
and the key they aimed at still works; no API response holds a provider key or a whole proxy
key except the creation that shows it once."""

from __future__ import annotations

import aiohttp
import openai

from meterfox_cli.web.guard import TOKEN_HEADER
from tests.cli.conftest import launch_serve, run_meterfox
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

PROVIDER_KEY = "sk-proj-TESTONLY-dashboard-3333"


async def meterfox(*args: str, input: str = "") -> str:
    done = await run_meterfox(*args, input=input)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def ask(served, secret: str) -> None:
    client = openai.AsyncOpenAI(
        base_url=served.base("openai") + "/v1", api_key=secret, max_retries=0
    )
    try:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await client.close()


async def test_attacks_are_refused_and_the_key_still_works(upstream_server, encrypted_file_store):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {"prompt_tokens": 3, "completion_tokens": 1}))
    await meterfox("keys", "set", "openai", input=PROVIDER_KEY)
    secret = (await meterfox("keys", "create", "app", "--provider", "openai")).strip()
    async with launch_serve(upstreams={"openai": server}) as served:
        assert f"dashboard    {served.url}/_meterfox/" in served.output
        revoke = f"{served.url}/_meterfox/api/keys/app/revoke"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.url}/_meterfox/api/session") as response:
                token = (await response.json())["csrf_token"]
            attacks = [
                # DNS rebinding: the attacker's name resolves to 127.0.0.1; the token even known
                {
                    "Host": f"evil.example:{served.port}",
                    "Origin": f"http://evil.example:{served.port}",
                    TOKEN_HEADER: token,
                    "Content-Type": "application/json",
                },
                # a cross-origin fetch from another site (it cannot read the token: no CORS)
                {
                    "Origin": "http://evil.example",
                    TOKEN_HEADER: token,
                    "Content-Type": "application/json",
                },
                # a same-origin-looking request without the token
                {"Origin": served.url, "Content-Type": "application/json"},
                # a cross-site form post: a simple request
                {
                    "Origin": "http://evil.example",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            ]
            for headers in attacks:
                async with session.post(revoke, headers=headers, data=b"{}") as response:
                    assert response.status in (403, 415), headers
                    assert "revoked_at" not in await response.text()
                await ask(served, secret)  # the key still works
            async with session.get(
                f"{served.url}/_meterfox/api/keys", headers={"Host": f"evil.example:{served.port}"}
            ) as response:
                assert response.status == 403
            bodies = []
            for path in (
                "",
                "api/overview",
                "api/report?since=all",
                "api/keys",
                "api/overview/tags",
            ):
                async with session.get(f"{served.url}/_meterfox/{path}") as response:
                    assert response.status == 200
                    bodies.append(await response.text())
            for body in bodies:
                for leak in (PROVIDER_KEY, PROVIDER_KEY[-12:], secret, secret[12:]):
                    assert leak not in body
            assert secret[:11] in bodies[3]  # the prefix identifies the key
    assert len(fake.received) == 4


async def test_a_key_created_in_the_api_is_shown_once_and_works(
    upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {"prompt_tokens": 3, "completion_tokens": 1}))
    await meterfox("keys", "set", "openai", input=PROVIDER_KEY)
    async with launch_serve(upstreams={"openai": server}) as served:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.url}/_meterfox/api/session") as response:
                token = (await response.json())["csrf_token"]
            headers = {TOKEN_HEADER: token, "Origin": served.url}
            body = {"name": "web", "providers": ["openai"], "budget": "5/day", "tags": ["team=ui"]}
            async with session.post(
                f"{served.url}/_meterfox/api/keys", json=body, headers=headers
            ) as response:
                assert response.status == 201
                made = await response.json()
            async with session.post(
                f"{served.url}/_meterfox/api/keys", json=body, headers=headers
            ) as response:
                assert response.status == 400  # a live key of that name exists, as in the CLI
                assert "keys rotate web" in (await response.json())["error"]["message"]
            async with session.get(f"{served.url}/_meterfox/api/keys") as response:
                listed = await response.text()
        assert made["secret"].startswith("mf-") and made["secret"] not in listed
        await ask(served, made["secret"])
    listing = await meterfox("keys", "list", "--format", "json")
    assert '"budget_usd": "5.000000000"' in listing and '"team": "ui"' in listing
