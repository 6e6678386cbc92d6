"""`meterfox tail` (live, read-only, beside a running proxy) and `meterfox export`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.paths import resolve_paths
from tests.cli.conftest import launch, launch_serve
from tests.fakes.records import Req, at, record_to
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

USAGE = {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def recorded(meterfox_home: Path) -> Path:
    db = resolve_paths().database
    record_to(
        db,
        Req(
            at("2026-11-03 10:00"),
            provider="openai",
            model="gpt-4o",
            key="backend",
            input_tokens=1200,
            output_tokens=30,
            cost_nano=4_000_000,
            tags=(("team", "a"),),
        ),
        Req(at("2026-11-03 11:00"), provider="groq", model="llama", cost_nano=1_000_000),
        Req(at("2026-11-04 09:00"), provider="openai", model="ft:x", cost_nano=None, unpriced=True),
    )
    return db


def test_tail_once_shows_the_latest_requests_with_a_running_total(recorded):
    result = run("tail", "--once", "--limit", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("time") and "running total" in lines[0]
    assert len(lines) == 3
    assert "llama" in lines[1] and lines[1].endswith("1 req $0.0010")
    assert "ft:x" in lines[2] and "unpriced" in lines[2]
    assert lines[2].endswith("2 req $0.0010 (+1 unpriced)")


def test_tail_filters(recorded):
    result = run("tail", "--once", "--provider", "groq")
    assert [line for line in result.stdout.splitlines()[1:]] == [
        line for line in result.stdout.splitlines()[1:] if "groq" in line
    ]
    assert len(result.stdout.splitlines()) == 2


def test_tail_without_a_database_says_how_to_start(meterfox_home):
    result = run("tail", "--once")
    assert result.exit_code == 0
    assert "meterfox serve" in result.stderr


def test_export_streams_every_request_in_range(recorded, tmp_path):
    result = run("export", "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["model"] for row in rows] == ["gpt-4o", "llama", "ft:x"]
    assert rows[0]["tags"] == {"team": "a"} and rows[0]["cost_nanousd"] == 4_000_000
    since = run("export", "--since", "2026-11-04")
    assert [r["model"] for r in csv.DictReader(io.StringIO(since.stdout))] == ["ft:x"]
    target = tmp_path / "out.csv"
    written = run("export", "--provider", "openai", "-o", str(target))
    assert "2 requests" in written.stderr
    assert len(list(csv.DictReader(target.open()))) == 2


def test_export_of_nothing_is_a_header(meterfox_home):
    result = run("export")
    assert result.exit_code == 0
    assert result.stdout.startswith("id,time,ts,day,provider,model")
    assert len(result.stdout.splitlines()) == 1


# --- against a running proxy ---------------------------------------------------------------


async def test_tail_shows_a_request_made_through_a_running_proxy(upstream_server):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o-mini-2024-07-18", USAGE))
    async with launch_serve(upstreams={"openai": server}) as served:
        tail_args = ("--limit", "0", "--count", "1", "--timeout", "30", "--interval", "0.1")
        async with launch("tail", *tail_args) as tail:
            await tail.expect("running total", 30)  # its header: it has opened the database
            client = openai.AsyncOpenAI(
                base_url=f"{served.url}/openai/v1", api_key="sk-caller", max_retries=0
            )
            try:
                completion = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            finally:
                await client.close()
            assert completion.usage.prompt_tokens == 1234
            assert await tail.wait(timeout=40) == 0, tail.stderr
            lines = tail.stdout.splitlines()
            assert len(lines) == 2, tail.stdout
            line = lines[1]
            assert "passthrough" in line and "openai" in line and "gpt-4o-mini-2024-07-18" in line
            assert "1,234 → 56" in line and " 200 " in line
            assert "1 req $" in line  # the running total
