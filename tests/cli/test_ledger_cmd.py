"""A PostgreSQL ledger from the command line: `meterfox db migrate`, a real `meterfox serve`
recording into it, `meterfox report` reading it with the same output as from SQLite, and
`serve` refusing a ledger whose schema is behind."""

from __future__ import annotations

import csv
import io
import socket

import aiohttp
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.store.pg_migrations import PG_MIGRATIONS
from tests.cli.conftest import launch_serve, run_meterfox
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES

URL_ENV = "METERFOX_DATABASE_URL"


def test_db_migrate_applies_each_migration_once(pg_url, monkeypatch):
    monkeypatch.setenv(URL_ENV, pg_url)
    first = CliRunner().invoke(main, ["db", "migrate"])
    assert first.exit_code == 0, first.output
    assert [line for line in first.output.splitlines() if line.startswith("applied")] == [
        f"applied {name}" for name, _ in PG_MIGRATIONS
    ]
    again = CliRunner().invoke(main, ["db", "migrate"])
    assert again.exit_code == 0
    assert "applied" not in again.output.replace("migrations applied", "")
    assert "schema up to date (0 migrations applied)" in again.output


async def test_serve_refuses_a_ledger_behind_in_one_sentence(pg_url):
    served = await run_meterfox("serve", "--port", "0", env={URL_ENV: pg_url}, timeout=30)
    assert served.returncode == 2
    assert served.stderr.strip().splitlines() == [
        f"meterfox: the ledger {pg_url} is behind this meterfox "
        f"({len(PG_MIGRATIONS)} migrations to apply): run `meterfox db migrate`"
    ]


async def test_requests_through_serve_land_in_postgresql_and_report_as_on_sqlite(
    upstream_server, pg_url
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    ledger = {URL_ENV: pg_url}
    assert (await run_meterfox("db", "migrate", env=ledger)).returncode == 0
    for env in (ledger, {URL_ENV: None}):  # the same requests into each store in turn
        async with launch_serve(upstreams={"openai": server}, env=env) as served:
            async with aiohttp.ClientSession() as session:
                for i in range(3):
                    async with session.post(
                        f"{served.url}/openai/v1/chat/completions",
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
                    ) as response:
                        assert response.status == 200
                        await response.read()
            await served.stop()
    reports = {}
    for name, env in (("postgresql", ledger), ("sqlite", {URL_ENV: None})):
        done = await run_meterfox(
            "report", "--since", "all", "--by", "provider,model", "--format", "csv", env=env
        )
        assert done.returncode == 0, done.stderr
        reports[name] = without_timings(done.stdout)
    assert reports["postgresql"] == reports["sqlite"]
    by_host = await run_meterfox(
        "report", "--since", "all", "--by", "host", "--format", "csv", env=ledger
    )
    hosts = [row["group"] for row in csv.DictReader(io.StringIO(by_host.stdout))]
    assert hosts == [socket.gethostname()]  # no [store] host in the config: the machine's name
    (row,) = reports["sqlite"]  # the model the upstream's reply names
    assert row["group"] == f"openai / {CASES[0].body['model']}"
    assert row["requests"] == "3" and int(row["input_tokens"]) > 0


def without_timings(text: str) -> list[dict[str, str]]:
    """A CSV report's rows without the latency columns (each store saw its own requests)."""
    rows = csv.DictReader(io.StringIO(text))
    return [
        {k: v for k, v in row.items() if "latency" not in k and "ttfb" not in k} for row in rows
    ]
