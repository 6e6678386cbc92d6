"""Every command on either store, with the same output: the same recorded requests go into a
SQLite file and a real PostgreSQL ledger, and each command (`report` in every format and
grouping, `chart`, `tail`, `export` in both formats, `explain`, `reprice`, `sync` and
`reconcile`, `report --source billed`) runs on both; what it prints must be byte for byte the
same, and must hold the data (so two empty outputs cannot pass). The PostgreSQL runs have a
METERFOX_HOME of their own with no records in its SQLite file, so a command that read the
local file instead of the ledger would print nothing there, and differ."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from meterfox_cli.cli import main
from meterfox_cli.paths import resolve_paths
from meterfox_cli.records import Outcome
from meterfox_cli.store.db import connect, transaction
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.rows import insert_records
from tests.fakes.admin_apis import DAY, Billed, FakeAdminAPIs, serve
from tests.fakes.records import Req

URL_ENV = "METERFOX_DATABASE_URL"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def ago(hours: float, minutes: float = 0) -> float:
    return (NOW - timedelta(hours=hours, minutes=minutes)).timestamp()


# Over the last three days (so `chart` and `report`'s default month see them), with tags of
# several names given out of order, an error, an unpriced model and a streamed request.
REQUESTS = (
    Req(ago(70, 10), model="gpt-4o", input_tokens=1200, output_tokens=300,
        tags=(("team", "search"), ("env", "prod"), ("feature", 'quote " and \\ slash'))),
    Req(ago(49, 59), model="gpt-4o-mini", key="backend", ttfb_ms=35.5, latency_ms=410.25),
    Req(ago(26), provider="anthropic", model="claude-3-5-haiku-20241022", key="ci",
        input_tokens=3000, output_tokens=120, tags=(("team", "ads"),)),
    Req(ago(25, 30), model=None, status=429, outcome=Outcome.UPSTREAM_ERROR, cost_nano=None),
    Req(ago(5, 45), model="ft:gpt-4o-mini:acme::x1", unpriced=True, cost_nano=None,
        tags=(("team", "search"),)),
    Req(ago(2, 5), provider="groq", model="llama-3.3-70b-versatile", latency_ms=99.0),
    Req(ago(1, 1), model="gpt-4o", cached_tokens=60, reasoning_tokens=8, key="backend",
        tags=(("env", "dev"),)),
)  # fmt: skip


@dataclass
class Stores:
    """The two stores holding the same records, and the command line against each."""

    pg_url: str
    pg_home: Path  # METERFOX_HOME of the PostgreSQL runs: a local file with no records
    ids: list[str]
    env: dict[str, str]

    def run(self, store: str, *args: str) -> Result:
        env = {**self.env, URL_ENV: None}
        if store == "postgresql":
            env |= {URL_ENV: self.pg_url, "METERFOX_HOME": str(self.pg_home)}
        result = CliRunner().invoke(main, list(args), env=env)
        assert result.exit_code == 0, (store, args, result.output, result.exception)
        return result

    def both(self, *args: str) -> str:
        """The command's stdout, the same on both stores (asserted)."""
        on_sqlite, on_pg = (self.run(store, *args).stdout for store in ("sqlite", "postgresql"))
        assert on_pg == on_sqlite, args
        return on_sqlite


def pg_home(sqlite_home: Path) -> Path:
    """The PostgreSQL runs' METERFOX_HOME, its SQLite file migrated and empty."""
    home = sqlite_home.with_name("pg-home")
    connect(home / resolve_paths().database.relative_to(sqlite_home)).close()
    return home


@pytest.fixture
def stores(meterfox_home: Path, pg_url: str) -> Stores:
    records = [(req.record(), req.price()) for req in REQUESTS]
    sqlite = connect(resolve_paths().database)
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    pg = ledger.connect()
    for conn, writing in ((sqlite, transaction(sqlite)), (pg, ledger.transaction(pg))):
        with writing:
            insert_records(conn, records, host="laptop-1")
        conn.close()
    return Stores(pg_url, pg_home(meterfox_home), [record.id for record, _ in records], {})


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
@pytest.mark.parametrize("by", ["model", "provider,model", "day", "week", "key", "tag:team"])
def test_report_is_the_same_on_both_stores(stores: Stores, by: str, fmt: str) -> None:
    out = stores.both("report", "--by", by, "--since", "7d", "--format", fmt)
    assert "gpt-4o" in out or by not in ("model", "provider,model")
    if fmt == "json":
        assert sum(row["requests"] for row in json.loads(out)) == len(REQUESTS)


def test_report_filters_and_hosts_are_the_same_on_both_stores(stores: Stores) -> None:
    out = stores.both("report", "--by", "host", "--since", "all", "--tag", "team=search")
    assert "laptop-1" in out
    stores.both("report", "--by", "model", "--since", "30h", "--provider", "openai")


def test_chart_is_the_same_on_both_stores(stores: Stores) -> None:
    assert "openai" in stores.both("chart", "--days", "5", "--by", "provider")
    assert "$0.000001" in stores.both("chart", "--days", "5", "--by", "model")


def test_tail_is_the_same_on_both_stores(stores: Stores) -> None:
    out = stores.both("tail", "--once", "--limit", "20")
    assert len(out.splitlines()) == 1 + len(REQUESTS)
    assert "ft:gpt-4o-mini" in out
    groq = stores.both("tail", "--once", "--provider", "groq")
    assert len(groq.splitlines()) == 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_is_the_same_on_both_stores(stores: Stores, fmt: str) -> None:
    out = stores.both("export", "--format", fmt)
    lines = out.splitlines()
    assert len(lines) == len(REQUESTS) + (fmt == "csv")
    if fmt == "jsonl":
        tags = json.loads(lines[0])["tags"]
        assert tags == {"env": "prod", "feature": 'quote " and \\ slash', "team": "search"}
        assert list(tags) == ["env", "feature", "team"]  # by name, as SQLite gives them
    assert stores.both("export", "--format", fmt, "--since", "30h", "--model", "gpt-4o")


def test_explain_and_reprice_are_the_same_on_both_stores(stores: Stores) -> None:
    dry = stores.both("reprice", "--dry-run")
    assert f"Repriced {len(REQUESTS)} requests" in dry
    done = stores.both("reprice")
    assert done == dry.replace("Would change", "Changed")
    assert "Would change 0" in stores.both("reprice", "--dry-run")  # the writes were kept
    for request_id in (stores.ids[0], stores.ids[2][:12], stores.ids[3], stores.ids[4]):
        assert request_id[:12] in stores.both("explain", request_id)
    # the repriced costs reach the reports (the rollup followed the updates) alike
    rows = json.loads(stores.both("report", "--by", "model", "--since", "7d", "--format", "json"))
    assert sum(row["requests"] for row in rows) == len(REQUESTS)


@pytest.fixture
def admin() -> Iterator[tuple[FakeAdminAPIs, str]]:
    fake = FakeAdminAPIs()
    with serve(fake) as url:
        yield fake, url


def test_sync_and_reconcile_are_the_same_on_both_stores(
    stores: Stores, admin: tuple[FakeAdminAPIs, str]
) -> None:
    fake, url = admin
    day = int(ago(26)) // DAY * DAY
    fake.ledger = [
        Billed("openai", day, "gpt-4o", 1200, 300, 1, Decimal("0.003"), Decimal("0.003")),
        Billed("openai", day + DAY, "gpt-4o-mini", 100, 10, 1, Decimal("0.0001"), Decimal(0)),
        Billed(
            "anthropic", day, "claude-3-5-haiku-20241022", 3000, 120, 3, Decimal("0.1"), Decimal(0)
        ),
    ]
    stores.env = {"OPENAI_ADMIN_KEY": fake.admin_keys["openai"]}
    args = ("sync", "openai", "--since", "5d", "--base-url", url)
    assert "openai:" in stores.both(*args)
    stores.env = {"ANTHROPIC_ADMIN_KEY": fake.admin_keys["anthropic"]}
    stores.both("sync", "anthropic", "--since", "5d", "--base-url", url)
    for fmt in ("json", "csv", "table"):
        out = stores.both("reconcile", "--since", "5d", "--format", fmt)
        assert "gpt-4o" in out
    billed = stores.both("report", "--source", "billed", "--by", "day,model", "--since", "7d")
    assert "claude-3-5-haiku" in billed


def test_commands_on_an_empty_ledger_are_the_same_on_both_stores(
    meterfox_home: Path, pg_url: str
) -> None:
    PostgresLedger(pg_url).migrate()
    connect(resolve_paths().database).close()
    empty = Stores(pg_url, pg_home(meterfox_home), [], {})
    assert empty.both("export", "--format", "csv").startswith("id,time,ts")
    assert empty.both("tail", "--once").startswith("time ")
    assert "meterfox serve" in empty.both("report", "--by", "model")
