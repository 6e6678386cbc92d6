"""`meterfox sync` and `meterfox reconcile` as real processes, against the fake admin APIs and a
real proxy that recorded part of the same traffic: every status from a case built for it, each
number checked against the test's own arithmetic."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from meterfox_cli.money import from_nanousd
from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.billed import snapshot
from meterfox_cli.store.db import connect
from tests.cli.conftest import launch, run_meterfox
from tests.fakes.admin_apis import DAY, Billed, FakeAdminAPIs, serve
from tests.fakes.upstream import Reply
from tests.fixtures.anthropic import message
from tests.fixtures.openai_style import chat

ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"


@pytest.fixture
def admin():
    fake = FakeAdminAPIs()
    with serve(fake) as url:
        yield fake, url


def admin_env(fake: FakeAdminAPIs) -> dict[str, str]:
    return {
        "OPENAI_ADMIN_KEY": fake.admin_keys["openai"],
        "ANTHROPIC_ADMIN_KEY": fake.admin_keys["anthropic"],
        "OPENROUTER_MANAGEMENT_KEY": fake.admin_keys["openrouter"],
    }


def point_config_at(url: str) -> None:
    """config.toml sends each provider (proxy and sync alike) to the fake."""
    paths = resolve_paths()
    paths.ensure()
    paths.config_file.write_text(
        f'[providers.openai]\nbase_url = "{url}"\n'
        f'[providers.anthropic]\nbase_url = "{url}"\n'
        f'[providers.openrouter]\nbase_url = "{url}/api"\n'
    )


async def send(proxy, slug: str, path: str, reply: dict) -> None:
    proxy.upstream.reply = Reply(json_body=reply)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            proxy.base(slug) + path, json={"model": "x", "messages": []}, headers={"x-api-key": "k"}
        ) as response:
            assert response.status == 200
            await response.read()


def proxied_sums(db: Path) -> dict[tuple[str, str], tuple[int, int, int, int, str]]:
    """(provider, model) → requests, input, output, cost nano-USD, UTC day, from the records."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT provider, model, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
            "SUM(cost_nanousd), MAX(date(ts, 'unixepoch')) FROM requests GROUP BY 1, 2"
        ).fetchall()
    finally:
        conn.close()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def usd(nanousd: int) -> Decimal:
    return from_nanousd(nanousd)


async def test_sync_then_reconcile_gives_every_status_with_its_numbers(proxy, admin):
    fake, url = admin
    # What went through the proxy.
    for _ in range(2):
        await send(
            proxy,
            "openai",
            "/v1/chat/completions",
            chat("gpt-4o-mini", {"prompt_tokens": 1200, "completion_tokens": 300}),
        )
    await send(
        proxy,
        "openai",
        "/v1/chat/completions",
        chat("gpt-4o", {"prompt_tokens": 2000, "completion_tokens": 500}),
    )
    await send(
        proxy,
        "anthropic",
        "/v1/messages",
        message({"input_tokens": 1000, "output_tokens": 100}) | {"model": ANTHROPIC_MODEL},
    )
    await send(
        proxy,
        "openrouter",
        "/v1/chat/completions",
        chat("openai/gpt-4o-mini", {"prompt_tokens": 50, "completion_tokens": 5, "cost": 0.0001}),
    )
    await proxy.records(5)
    sums = proxied_sums(proxy.db_path)
    mini, big = sums[("openai", "gpt-4o-mini")], sums[("openai", "gpt-4o")]
    haiku = sums[("anthropic", ANTHROPIC_MODEL)]
    routed = sums[("openrouter", "openai/gpt-4o-mini")]
    assert mini[:3] == (2, 2400, 600) and haiku[:3] == (1, 1000, 100)
    day_text = mini[4]
    day = int(time.mktime(time.strptime(day_text, "%Y-%m-%d"))) - time.timezone
    day -= day % DAY
    yesterday = day - DAY

    # What the providers billed.
    fake.page_size = 1  # several pages per endpoint
    fake.ledger += [
        # match: the dated snapshot of the alias the proxy saw, same tokens, same money
        Billed("openai", day, "gpt-4o-mini-2024-07-18", 2400, 600, 2, usd(mini[3]), Decimal(0)),
        # price_mismatch: same tokens, twice the money
        Billed("openai", day, "gpt-4o", 2000, 500, 1, usd(big[3]), usd(big[3])),
        # bypassed: three times what went through the proxy
        Billed("anthropic", day, ANTHROPIC_MODEL, 3000, 300, 3, usd(haiku[3]) * 3, Decimal(0)),
        # bypassed, nothing proxied at all (yesterday)
        Billed(
            "openai",
            yesterday,
            "gpt-4.1-nano",
            10_000,
            1_000,
            4,
            Decimal("0.0012"),
            Decimal("0.0004"),
        ),
    ]
    # proxy_only: OpenRouter has not published today's activity
    point_config_at(url)

    synced = await run_meterfox("sync", "--since", "3d", env=admin_env(fake))
    assert synced.returncode == 0, synced.stderr
    lines = synced.stdout.splitlines()
    assert len(lines) == 3
    openai_line = next(line for line in lines if line.startswith("openai:"))
    # 2 + 1 + 4 requests; tokens 2400+2000+10000 in, 600+500+1000 out
    assert "3 buckets, 7 requests, 14,400 input + 2,100 output tokens" in openai_line
    assert "anthropic:" in synced.stdout and "requests not given" in synced.stdout

    result = await run_meterfox("reconcile", "--since", "3d", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {(r["provider"], r["model"]): r for r in json.loads(result.stdout)}
    assert set(rows) == {
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o"),
        ("openai", "gpt-4.1-nano"),
        ("anthropic", "claude-3-5-haiku-latest"),
        ("openrouter", "openai/gpt-4o-mini"),
    }

    row = rows[("openai", "gpt-4o-mini")]
    assert row["status"] == "match" and row["day"] == day_text
    assert (row["proxied_requests"], row["billed_requests"]) == (2, 2)
    assert (row["proxied_input_tokens"], row["billed_input_tokens"]) == (2400, 2400)
    assert (row["proxied_output_tokens"], row["billed_output_tokens"]) == (600, 600)
    assert (
        Decimal(str(row["proxied_cost_usd"]))
        == Decimal(str(row["billed_cost_usd"]))
        == usd(mini[3])
    )
    assert row["coverage"] == 1

    row = rows[("openai", "gpt-4o")]
    assert row["status"] == "price_mismatch"
    assert Decimal(str(row["billed_cost_usd"])) == 2 * usd(big[3])
    assert row["coverage"] == 0.5
    per_m = usd(big[3]) * 1_000_000 / 2500
    assert f"${per_m:.2f}/Mtok vs billed ${2 * per_m:.2f}/Mtok" in row["note"]

    row = rows[("anthropic", "claude-3-5-haiku-latest")]
    assert row["status"] == "bypassed" and row["billed_requests"] is None
    assert (row["billed_input_tokens"], row["billed_output_tokens"]) == (3000, 300)
    assert Decimal(str(row["coverage"])) == Decimal("0.3333")
    assert "2,200 billed tokens" in row["note"]  # 3300 - 1100

    row = rows[("openai", "gpt-4.1-nano")]
    assert row["status"] == "bypassed" and row["proxied_requests"] == 0
    assert Decimal(str(row["billed_cost_usd"])) == Decimal("0.0016") and row["coverage"] == 0

    row = rows[("openrouter", "openai/gpt-4o-mini")]
    assert row["status"] == "proxy_only" and row["billed_cost_usd"] is None
    assert row["proxied_input_tokens"] == routed[1] == 50
    assert "not over yet" in row["note"] or "published" in row["note"]

    table = await run_meterfox("reconcile", "--since", "3d", "--strict")
    assert table.returncode == 1
    assert "4 of 5 rows do not match" in table.stderr
    body = table.stdout
    assert "total" in body
    order = [body.index(name) for name in ("gpt-4.1-nano", "gpt-4o-mini")]
    assert order == sorted(order)  # $0.0016 at stake before $0 at stake

    csv_out = await run_meterfox(
        "reconcile", "--since", "3d", "--format", "csv", "--by", "provider"
    )
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("day,provider,model,proxied_requests")
    assert len(lines) == 4  # header + three providers


async def test_a_plain_api_key_gets_one_sentence(admin):
    _fake, url = admin
    result = await run_meterfox(
        "sync", "openai", "--base-url", url, env={"OPENAI_ADMIN_KEY": "sk-proj-plain"}
    )
    assert result.returncode == 2
    message_lines = [line for line in result.stderr.splitlines() if line.startswith("meterfox:")]
    assert len(message_lines) == 1
    assert "organization admin key" in message_lines[0]
    assert "platform.openai.com/settings/organization/admin-keys" in message_lines[0]
    assert "sk-proj-plain" not in result.stderr + result.stdout


async def test_a_stored_admin_key_is_used(admin, plaintext_keyring):
    fake, url = admin
    fake.ledger.append(
        Billed(
            "anthropic",
            int(time.time()) // DAY * DAY - DAY,
            ANTHROPIC_MODEL,
            10,
            1,
            1,
            Decimal("0.01"),
            Decimal(0),
        )
    )
    stored = await run_meterfox(
        "keys", "set", "anthropic-admin", input=fake.admin_keys["anthropic"]
    )
    assert stored.returncode == 0, stored.stderr
    result = await run_meterfox(
        "sync", "anthropic", "--base-url", url, "--since", "3d", env={"ANTHROPIC_ADMIN_KEY": None}
    )
    assert result.returncode == 0, result.stderr
    assert "anthropic:" in result.stdout and "$0.01" in result.stdout
    assert fake.received[0].headers["x-api-key"] == fake.admin_keys["anthropic"]
    db = connect(resolve_paths().database)
    try:
        dump = "\n".join(map(str, db.execute("SELECT * FROM billed_buckets").fetchall()))
    finally:
        db.close()
    assert fake.admin_keys["anthropic"] not in dump


async def test_killed_mid_run_then_run_again_equals_one_clean_run(admin, tmp_path):
    fake, url = admin
    today = int(time.time()) // DAY * DAY
    fake.ledger += [
        Billed(
            "openai",
            today - n * DAY,
            f"m{n % 3}",
            100 * n,
            10 * n,
            n,
            Decimal(n) / 1000,
            Decimal(0),
        )
        for n in range(1, 25)
    ]
    since = time.strftime("%Y-%m-%d", time.gmtime(today - 25 * DAY))
    env = admin_env(fake)
    fake.page_size = 1
    fake.delay_s = 0.05
    db = resolve_paths().database
    async with launch("sync", "openai", "--base-url", url, "--since", since, env=env) as running:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _has_state(db):
            await asyncio.sleep(0.05)
        assert _has_state(db), running.output
        running.send_signal(signal.SIGKILL)
        await running.wait()
    conn = connect(db)
    partial = snapshot(conn)
    conn.close()
    fake.delay_s = 0.0
    assert 0 < len(partial) < 24  # killed part-way
    again = await run_meterfox("sync", "openai", "--base-url", url, env=env)  # resumes
    assert again.returncode == 0, again.stderr
    clean_home = tmp_path / "clean"
    clean = await run_meterfox(
        "sync",
        "openai",
        "--base-url",
        url,
        "--since",
        since,
        env={**env, "METERFOX_HOME": str(clean_home)},
    )
    assert clean.returncode == 0, clean.stderr
    conn, clean_conn = connect(db), connect(clean_home / db.name)
    try:
        assert snapshot(conn) == snapshot(clean_conn)
        assert len(snapshot(conn)) == 24
    finally:
        conn.close()
        clean_conn.close()


def _has_state(db: Path) -> bool:
    if not db.exists():
        return False
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM sync_state").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_report_source_billed_sums_the_buckets(conn):
    from click.testing import CliRunner

    from meterfox_cli.cli import main
    from meterfox_cli.store.billed import COMPUTED, COST_API, BilledBucket, replace_window

    day = int(time.time()) // DAY * DAY - 2 * DAY

    def bucket(provider, model, start, tokens, cost, requests, source=COST_API):
        return BilledBucket(
            provider,
            start,
            start + DAY,
            model,
            requests=requests,
            input_tokens=tokens,
            output_tokens=tokens // 10,
            cost_nanousd=cost,
            cost_source=source,
        )

    replace_window(
        conn,
        "openai",
        day,
        day + 2 * DAY,
        [
            bucket("openai", "gpt-4o", day, 1000, 5_000, 3),
            bucket("openai", "gpt-4o", day + DAY, 2000, 7_000, 4),
            bucket("openai", "o3", day, 500, 9_000, 1, COMPUTED),
        ],
        time.time(),
    )
    replace_window(
        conn,
        "anthropic",
        day,
        day + DAY,
        [
            bucket("anthropic", ANTHROPIC_MODEL, day, 300, 1_000, None),
        ],
        time.time(),
    )
    runner = CliRunner()
    done = runner.invoke(
        main, ["report", "--source", "billed", "--since", "7d", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    rows = {(r["provider"], r["model"]): r for r in json.loads(done.stdout)}
    assert rows[("openai", "gpt-4o")]["requests"] == 7
    assert rows[("openai", "gpt-4o")]["input_tokens"] == 3000
    assert Decimal(str(rows[("openai", "gpt-4o")]["cost_usd"])) == Decimal("0.000012")
    assert Decimal(str(rows[("openai", "o3")]["cost_usd"])) == Decimal("0.000009")
    assert rows[("anthropic", ANTHROPIC_MODEL)]["requests"] == 0  # the API gives no count
    by_day = runner.invoke(
        main, ["report", "--source", "billed", "--since", "7d", "--by", "day", "--format", "csv"]
    )
    assert by_day.exit_code == 0, by_day.output
    assert len(by_day.stdout.splitlines()) == 3  # header + two UTC days
    refused = runner.invoke(main, ["report", "--source", "billed", "--by", "key"])
    assert refused.exit_code == 2 and "no proxy keys" in refused.output


def test_reconcile_compares_only_the_days_a_sync_covered(conn):
    from click.testing import CliRunner

    from meterfox_cli.cli import main
    from meterfox_cli.store.billed import COST_API, BilledBucket, replace_window
    from tests.fakes.records import Req, record_to

    today = int(time.time()) // DAY * DAY
    record_to(
        resolve_paths().database,
        Req(ts=today - 10 * DAY + 3600),  # before the synced span: nothing known, not shown
        Req(ts=today - DAY + 3600),
        Req(ts=today - DAY + 7200),
    )
    billed = BilledBucket(
        "openai",
        today - DAY,
        today,
        "gpt-4o",
        requests=2,
        input_tokens=200,
        output_tokens=20,
        cost_nanousd=2000,
        cost_source=COST_API,
    )
    replace_window(conn, "openai", today - 3 * DAY, today, [billed], time.time())
    done = CliRunner().invoke(main, ["reconcile", "--format", "json"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.stdout)
    assert row["status"] == "match" and row["proxied_requests"] == 2 == row["billed_requests"]
    assert (row["proxied_input_tokens"], row["proxied_output_tokens"]) == (200, 20)
