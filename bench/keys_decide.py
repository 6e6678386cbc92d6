"""How long the proxy's key check takes per request, on the event loop.

    METERFOX_HOME=$(mktemp -d) PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring \
        XDG_DATA_HOME=$(mktemp -d) python bench/keys_decide.py

Uses a throwaway home and keyrings.alt's file backend; prints microseconds per decision for a
valid proxy key, an unknown one, and a passthrough credential.
"""

from __future__ import annotations

import os
import timeit

from meterfox_cli.keys.authorizer import KeyAuthorizer
from meterfox_cli.keys.budget import parse_budget
from meterfox_cli.keys.provider_keys import ProviderKeys, choose_store, env_passphrase
from meterfox_cli.keys.proxy_keys import KeySpec, create_key
from meterfox_cli.paths import resolve_paths
from meterfox_cli.proxy.auth import Credential
from meterfox_cli.store.db import connect


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
            runs = 200_000
            seconds = timeit.timeit(
                lambda c=credential: authorizer.decide("openai", c), number=runs
            )
            print(f"{label:<42} {seconds / runs * 1e6:6.2f} µs per decide")
    finally:
        authorizer.close()
        conn.close()


if __name__ == "__main__":
    main()
