"""`meterfox report` and `meterfox chart`, through click's runner and as real processes."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.paths import resolve_paths
from meterfox_cli.records import Outcome
from tests.cli.conftest import meterfox_command, meterfox_env
from tests.fakes.records import Req, record_to

GROUPINGS = [
    "model",
    "provider",
    "key",
    "endpoint",
    "day",
    "week",
    "month",
    "tag:feature",
    "provider,model",
    "day,tag:feature",
]
SUMMED = (
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "unpriced_requests",
)


def this_month(day: int, hour: int = 12) -> float:
    """A time this month that is already past (today's, if `day` is still to come)."""
    now = datetime.now()
    moment = now.replace(day=min(day, now.day), hour=hour, minute=0, second=0, microsecond=0)
    return min(moment.timestamp(), time.time() - 60)


def last_month() -> float:
    return (datetime.now().replace(day=1) - timedelta(days=3)).timestamp()


@pytest.fixture
def recorded(meterfox_home: Path) -> Path:
    db = resolve_paths().database
    record_to(
        db,
        Req(
            this_month(1, 9),
            provider="openai",
            model="gpt-4o",
            key="backend",
            cost_nano=2_500_000_000,
            input_tokens=1000,
            output_tokens=100,
            latency_ms=2000.0,
            ttfb_ms=400.0,
            tags=(("feature", "search"), ("env", "prod")),
        ),
        Req(
            this_month(1, 10),
            provider="openai",
            model="gpt-4o",
            key="ci",
            cost_nano=1_250_000_001,
            input_tokens=500,
            cached_tokens=200,
            output_tokens=50,
            latency_ms=1000.0,
            tags=(("feature", "chat"),),
        ),
        Req(
            this_month(2, 9),
            provider="groq",
            model="llama",
            key="ci",
            endpoint="/openai/v1/chat/completions",
            cost_nano=1_000,
            latency_ms=90.0,
        ),
        Req(
            this_month(2, 11),
            provider="openai",
            model="ft:mine",
            cost_nano=None,
            unpriced=True,
            input_tokens=70,
            output_tokens=7,
            tags=(("feature", "search"),),
        ),
        Req(
            this_month(2, 12),
            provider="groq",
            model="llama",
            status=429,
            outcome=Outcome.UPSTREAM_ERROR,
            cost_nano=None,
        ),
        Req(last_month(), provider="openai", model="gpt-4o", cost_nano=9_000_000_000),
    )
    return db


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def rows_of(*args: str) -> list[dict]:
    result = run("report", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout, parse_float=Decimal)


def test_report_alone_is_this_month_by_provider_and_model(recorded):
    result = run("report")
    assert result.exit_code == 0
    assert "Spend by provider, model" in result.stdout
    rows = rows_of()
    assert [(r["provider"], r["model"]) for r in rows] == [
        ("openai", "gpt-4o"),
        ("groq", "llama"),
        ("openai", "ft:mine"),
    ]
    assert rows[0]["requests"] == 2  # last month's request is not in this month
    assert rows[0]["cost_usd"] == Decimal("3.750000001")


@pytest.mark.parametrize("by", GROUPINGS)
def test_json_totals_equal_the_table_total_for_every_grouping(recorded, by):
    rows = rows_of("--by", by)
    assert sum(row["requests"] for row in rows) == 5
    assert sum(row["cost_nanousd"] or 0 for row in rows) == 3_750_001_001
    markdown = run("report", "--by", by, "--format", "markdown").stdout
    table = [line for line in markdown.splitlines() if line.startswith("| ")][2:]
    assert len(table) == len(rows) + (len(rows) > 1)  # a totals line under several rows
    if len(rows) > 1:
        assert table[-1].startswith("| **total** |")
        assert "| **5** |" in table[-1] and "| **$3.75 \\*** |" in table[-1]


@pytest.mark.parametrize("by", GROUPINGS)
def test_csv_and_json_carry_the_same_rows(recorded, by):
    rows = rows_of("--by", by)
    text = run("report", "--by", by, "--format", "csv").stdout
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["group"] for r in table] == [r["group"] for r in rows]
    for from_csv, from_json in zip(table, rows, strict=True):
        for name in SUMMED:
            assert int(from_csv[name]) == from_json[name]
        expected = "" if from_json["cost_usd"] is None else str(from_json["cost_usd"])
        assert from_csv["cost_usd"] == expected


@pytest.mark.parametrize("by", GROUPINGS)
def test_the_table_names_every_group(recorded, by):
    result = run("report", "--by", by, "--since", "all")
    assert result.exit_code == 0
    for row in rows_of("--by", by, "--since", "all"):
        for dim in by.split(","):
            value = row[dim]
            assert (value if value is not None else "(un") in result.stdout


def test_tag_and_two_dimension_groupings(recorded):
    by_tag = {r["group"]: r for r in rows_of("--by", "tag:feature")}
    assert {name: r["requests"] for name, r in by_tag.items()} == {
        "search": 2,
        "chat": 1,
        "(untagged)": 2,
    }
    assert by_tag["search"]["unpriced_requests"] == 1
    pairs = {r["group"]: r for r in rows_of("--by", "key,provider")}
    assert pairs["ci / groq"]["requests"] == 1
    assert pairs["ci / openai"]["cached_tokens"] == 200


def test_filters(recorded):
    assert {r["model"] for r in rows_of("--by", "model", "--provider", "groq")} == {"llama"}
    assert sum(r["requests"] for r in rows_of("--key", "ci")) == 2
    assert sum(r["requests"] for r in rows_of("--tag", "feature=search")) == 2
    assert sum(r["requests"] for r in rows_of("--tag", "feature=search", "--tag", "env=prod")) == 1
    assert sum(r["requests"] for r in rows_of("--model", "gpt-4o", "--since", "all")) == 3


def test_since_and_until(recorded):
    assert sum(r["requests"] for r in rows_of("--since", "all")) == 6
    until = datetime.fromtimestamp(this_month(1, 10)).isoformat()
    assert sum(r["requests"] for r in rows_of("--since", "all", "--until", until)) == 2


def test_latency_percentiles_per_group(recorded):
    (gpt,) = [r for r in rows_of("--by", "model") if r["model"] == "gpt-4o"]
    assert (gpt["latency_p50_ms"], gpt["latency_p95_ms"], gpt["ttfb_p50_ms"]) == (
        1000.0,
        2000.0,
        400.0,
    )


def test_strict_fails_when_anything_in_range_is_unpriced(recorded):
    failed = run("report", "--strict")
    assert failed.exit_code == 1
    assert "1 requests in range are unpriced" in failed.stderr
    assert "gpt-4o" in failed.stdout  # the report is still shown
    assert run("report", "--strict", "--provider", "groq").exit_code == 0


def test_an_empty_database_says_how_to_start(meterfox_home):
    result = run("report")
    assert result.exit_code == 0
    assert "meterfox serve" in result.stdout
    assert "http://127.0.0.1:8787/openai/v1" in result.stdout
    as_json = run("report", "--format", "json")
    assert json.loads(as_json.stdout) == []
    assert "meterfox serve" in as_json.stderr
    as_csv = run("report", "--format", "csv", "--by", "provider,model")
    assert as_csv.stdout.splitlines()[0].startswith("group,provider,model,requests")
    assert "meterfox serve" in run("chart").stdout


def test_a_window_with_nothing_in_it_says_so(recorded):
    result = run("report", "--provider", "nope")
    assert result.exit_code == 0
    assert result.stdout.startswith("No requests match")
    assert json.loads(run("report", "--provider", "nope", "--format", "json").stdout) == []


def test_a_bad_grouping_is_one_clear_line(recorded):
    result = run("report", "--by", "colour")
    assert result.exit_code == 2
    assert "cannot group by 'colour'" in result.stderr


def test_chart_draws_the_last_days(recorded):
    result = run("chart", "--days", "3", "--by", "model")
    assert result.exit_code == 0
    day_lines = [line for line in result.stdout.splitlines() if line[:4].isdigit()]
    assert len(day_lines) == 3
    assert day_lines[-1].startswith(datetime.now().date().isoformat())


# --- real processes ------------------------------------------------------------------------


def meterfox(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = meterfox_env({"METERFOX_HOME": str(home), "COLUMNS": "200"})
    return subprocess.run(
        meterfox_command(*args),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
@pytest.mark.parametrize("by", ["model", "provider,model", "tag:feature", "day"])
def test_a_real_process_writes_every_format_without_colour_codes(recorded, meterfox_home, fmt, by):
    done = meterfox("report", "--by", by, "--format", fmt, home=meterfox_home)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout
    if fmt == "json":
        rows = json.loads(done.stdout)
        assert sum(r["requests"] for r in rows) == 5
    elif fmt == "csv":
        assert sum(int(r["requests"]) for r in csv.DictReader(io.StringIO(done.stdout))) == 5
    else:
        assert "total" in done.stdout


HEAVY = ("aiohttp", "rich", "genai_prices", "sqlite3", "meterfox_cli.store.queries")


@pytest.mark.parametrize(
    "command",
    [
        "",
        "report",
        "chart",
        "tail",
        "export",
        "serve",
        "providers",
        "env",
        "paths",
        "keys",
        "sync",
        "reconcile",
    ],
)
def test_help_imports_nothing_heavy(meterfox_home, command):
    probe = (
        "import sys\n"
        "from meterfox_cli.cli import main\n"
        f"args = {[command, '--help'] if command else ['--help']!r}\n"
        "try:\n"
        "    main(args)\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Usage:" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]"


def at_a_terminal(*args: str, home: Path) -> str:
    """What `meterfox ARGS` shows on a pseudo-terminal 160 cells wide, read until it exits."""
    master, slave = os.openpty()
    env = meterfox_env({"METERFOX_HOME": str(home), "COLUMNS": "160", "TERM": "dumb"})
    proc = subprocess.Popen(meterfox_command(*args), env=env, stdout=slave, stderr=slave)
    os.close(slave)
    shown, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, shown
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return shown.decode().replace("\r\n", "\n")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_a_terminal_gets_rich_for_a_short_table_and_the_plain_one_past_the_limit(meterfox_home):
    from meterfox_cli.report.table import RICH_MAX_ROWS

    models = [f"model-{i:03d}" for i in range(RICH_MAX_ROWS + 1)]
    record_to(resolve_paths().database, *(Req(this_month(1), model=m) for m in models))
    short = at_a_terminal("report", "--by", "provider", home=meterfox_home)
    assert "│" in short and "openai" in short and "\n-----" not in short
    long = at_a_terminal("report", "--by", "model", home=meterfox_home)
    assert "│" not in long and "\n-----" in long
    assert all(f"\n{model} " in long for model in models)
    piped = meterfox("report", "--by", "provider", home=meterfox_home).stdout
    assert "│" not in piped and "\n-----" in piped and "\nopenai " in piped
