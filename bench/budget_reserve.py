"""What sharing a budgeted request's reservation through the ledger adds to its admission, one
request at a time (c=1): `admit` reserving in this process alone (as before) against `admit`
plus the ledger's write transaction (keys/reservations.py), awaited on the event loop, on
SQLite and, given `--url`, on PostgreSQL. An unbudgeted key's `admit` is timed too (it does
no I/O either way).

    python -m bench.budget_reserve [--url postgresql://user@127.0.0.1:5432/db] [--runs 2000]

The database must be a throwaway one: the bench migrates it and creates a key named
`bench-budgeted-<random>`. Each reservation is deleted after it is timed, as its record's insert
would (so the table stays as small as in a daemon). Nothing else writes meanwhile: a busy
writer's batch makes SQLite's BEGIN IMMEDIATE wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from meterfox_cli.keys.authorizer import KeyAuthorizer
from meterfox_cli.keys.budget import parse_budget
from meterfox_cli.keys.proxy_keys import KeySpec, create_key
from meterfox_cli.keys.reservations import release
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.proxy.auth import Decision
from meterfox_cli.records import Outcome, UsageRecord, new_request_id
from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.sqlite import SqliteLedger
from meterfox_cli.usage import Reading, Usage

BODY = b'{"model": "gpt-4o-mini", "max_tokens": 500, "messages": [{"role": "user"}]}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a throwaway PostgreSQL database to measure too")
    parser.add_argument("--runs", type=int, default=2000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        ledgers: list[tuple[str, Ledger]] = [("sqlite", SqliteLedger(Path(home) / "ledger.db"))]
        if options.url:
            ledgers.append(("postgresql", PostgresLedger(options.url)))
        for name, ledger in ledgers:
            ledger.migrate()
            for line in measure(ledger, Path(home) / f"{name}-local.db", options.runs):
                print(f"{name:<11} {line}")


def measure(ledger: Ledger, local_file: Path, runs: int) -> list[str]:
    conn = ledger.open_writer(5000)
    key = f"bench-budgeted-{secrets.token_hex(4)}"
    create_key(conn, KeySpec(key, budget=parse_budget("1000000/month")))
    authorizer = KeyAuthorizer(local_file, _no_provider_keys, key_ledger=ledger)
    authorizer.start()
    try:
        timings = asyncio.run(_time_admissions(authorizer, conn, key, runs))
    finally:
        authorizer.close()
        conn.close()
    lines = []
    for label, seconds in timings.items():
        p50, p99 = _percentile(seconds, 50), _percentile(seconds, 99)
        lines.append(f"{label:<44} p50 {p50 * 1e3:7.3f} ms   p99 {p99 * 1e3:7.3f} ms")
    added = [s - b for s, b in zip(timings["shared"], timings["local"], strict=True)]
    lines.append(
        f"{'added by sharing (paired)':<44} p50 {_percentile(added, 50) * 1e3:7.3f} ms   "
        f"p99 {_percentile(added, 99) * 1e3:7.3f} ms"
    )
    return lines


async def _time_admissions(authorizer: KeyAuthorizer, conn, key: str, runs: int):
    plan = OpenAIFormat().plan("/v1/chat/completions", {}, BODY)
    budgeted, free = Decision(key), Decision("bench-unbudgeted")
    timings: dict[str, list[float]] = {"unbudgeted": [], "local": [], "shared": []}
    for i in range(runs + runs // 10):  # the first tenth warms up
        for label, decision, shared in (
            ("unbudgeted", free, False),
            ("local", budgeted, False),
            ("shared", budgeted, True),
        ):
            request_id = new_request_id()
            started = time.perf_counter()
            admission = authorizer.admit(
                decision, "openai", plan, BODY, request_id if shared else None
            )
            if admission.pending is not None:
                admission = await admission.pending
            took = time.perf_counter() - started
            assert admission.refusal is None, admission.refusal
            admission.settle(_record(request_id, decision.key_name))
            if shared:
                release(conn, request_id)  # as the record's insert does
            if i >= runs // 10:
                timings[label].append(took)
    return timings


def _record(request_id: str, key: str) -> UsageRecord:
    usage = Usage(input_tokens=20, output_tokens=300)
    return UsageRecord(
        request_id, time.time(), "openai", "gpt-4o-mini", "/v1/chat/completions", "POST", 200,
        False, Outcome.OK, key, 1.0, 2.0, Reading(model="gpt-4o-mini", usage=usage),
    )  # fmt: skip


def _no_provider_keys():
    raise AssertionError("the bench reads no provider key")


def _percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


if __name__ == "__main__":
    main()
