"""How long the proxy's key check takes per request, on the event loop.

    METERFOX_HOME=$(mktemp -d) PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring \
        XDG_DATA_HOME=$(mktemp -d) python bench/keys_decide.py

Uses a throwaway home and keyrings.alt's file backend; prints microseconds per decision for a
valid proxy key, an unknown one (`decide` alone, then with the `look_up` the negative cache
answers), and a passthrough credential; then per admission and settlement of a budgeted key's
request (its worst-case estimate and its real cost, both priced on the loop).
"""

from __future__ import annotations

import asyncio
import os
import time
import timeit

from meterfox_cli.keys.authorizer import KeyAuthorizer
from meterfox_cli.keys.budget import parse_budget
from meterfox_cli.keys.provider_keys import ProviderKeys, choose_store, env_passphrase
from meterfox_cli.keys.proxy_keys import KeySpec, create_key
from meterfox_cli.paths import resolve_paths
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.proxy.auth import Credential
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.store.db import connect
from meterfox_cli.usage import Reading, Usage

RUNS = 200_000


def main() -> None:
    assert os.environ.get("METERFOX_HOME"), "set METERFOX_HOME to a throwaway directory"
    paths = resolve_paths()
    paths.ensure()
    conn = connect(paths.database)
    choice = choose_store(paths.data_dir, env_passphrase())
    ProviderKeys(conn, choice).set("openai", "sk-bench-not-a-real-key")
    secrets_ = [
        create_key(conn, KeySpec(f"app{i}", budget=parse_budget("100/month"))).secret
        for i in range(1000)
    ]
    authorizer = KeyAuthorizer(paths.database, choice)
    authorizer.start()
    try:
        cases = {
            "valid proxy key (1000 keys, with budget)": Credential(
                "authorization", "Bearer ", secrets_[500]
            ),
            "unknown proxy key": Credential("authorization", "Bearer ", "mf-" + "x" * 43),
            "passthrough": Credential("authorization", "Bearer ", "sk-callers-own"),
        }
        for label, credential in cases.items():
            seconds = timeit.timeit(
                lambda c=credential: authorizer.decide("openai", c), number=RUNS
            )
            print(f"{label:<52} {seconds / RUNS * 1e6:6.2f} µs per decide")
        unknown = cases["unknown proxy key"]
        seconds = asyncio.run(_looked_up(authorizer, unknown, RUNS // 4))
        print(f"{'unknown proxy key, decide + look_up (cached)':<52} {seconds * 1e6:6.2f} µs")
        seconds = _admit_and_settle(authorizer, cases["valid proxy key (1000 keys, with budget)"])
        print(f"{'admit + settle (budgeted key, gpt-4o-mini)':<52} {seconds * 1e6:6.2f} µs")
    finally:
        authorizer.close()
        conn.close()


async def _looked_up(authorizer: KeyAuthorizer, credential: Credential, runs: int) -> float:
    """Seconds per unknown key answered from the negative cache (after one real look-up)."""
    await authorizer.look_up("openai", credential)
    started = time.perf_counter()
    for _ in range(runs):
        authorizer.decide("openai", credential)
        await authorizer.look_up("openai", credential)
    return (time.perf_counter() - started) / runs


def _admit_and_settle(authorizer: KeyAuthorizer, credential: Credential) -> float:
    """Seconds per admission (estimate, reservation) and settlement (real cost) on the loop."""
    body = b'{"model": "gpt-4o-mini", "max_tokens": 500, "messages": [{"role": "user"}]}'
    plan = OpenAIFormat().plan("/v1/chat/completions", {}, body)
    usage = Usage(input_tokens=20, output_tokens=300)
    record = UsageRecord(
        "bench", time.time(), "openai", "gpt-4o-mini", "/v1/chat/completions", "POST", 200,
        False, Outcome.OK, "app500", 1.0, 2.0, Reading(model="gpt-4o-mini", usage=usage),
    )  # fmt: skip
    decision = authorizer.decide("openai", credential)

    def once() -> None:
        authorizer.admit(decision, "openai", plan, body).settle(record)

    once()
    runs = RUNS // 10
    return timeit.timeit(once, number=runs) / runs


if __name__ == "__main__":
    main()
