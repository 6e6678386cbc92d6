"""`meterfox service status|logs`, `meterfox status`, and a service whose provider keys are in
the encrypted file: it reads the passphrase from METERFOX_PASSPHRASE_FILE, and the unit names
that file, never the passphrase."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import aiohttp

from meterfox_cli import __version__
from meterfox_cli.service.logfile import follow, last_lines
from meterfox_cli.service.units import unit_argv
from tests.cli.conftest import free_port, launch_serve, run_meterfox
from tests.conftest import NULL_KEYRING, TEST_PASSPHRASE, read_records
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES
from tests.service.conftest import (
    environment_of,
    healthy,
    run_installed,
    running,
    unit_path,
)

PROVIDER_KEY = "sk-test-provider-key-0123456789"


async def test_service_status_says_installed_answering_today_and_the_log(user_env, upstream_server):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    port = free_port()
    assert (
        await run_installed("service", "install", "--port", str(port), env=user_env)
    ).returncode == 0
    home = Path(user_env["METERFOX_HOME"])
    (home / "config.toml").write_text(f'[providers.openai]\nbase_url = "{server.make_url("")}"\n')
    log = home / "meterfox.log"
    with log.open("a") as out:
        out.write("".join(f"line {i}\n" for i in range(10)))

    before = await run_installed("service", "status", env=user_env)
    assert f"nothing answers at http://127.0.0.1:{port}" in before.stdout

    async with running(unit_argv(unit_path(user_env).read_text()), user_env):
        await healthy(port)
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                url = f"http://127.0.0.1:{port}/openai/v1/chat/completions"
                async with session.post(url, json={"model": "o4-mini", "messages": []}) as r:
                    assert r.status == 200
        deadline = time.monotonic() + 10
        while len(read_records(home / "meterfox.db")) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        done = await run_installed("service", "status", "-n", "2", env=user_env)

    lines = done.stdout.splitlines()
    unit = Path(user_env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "meterfox.service"
    assert lines[0] == f"service    {unit} (systemd)"
    assert lines[1] == "running    unknown: no systemd manager answers for this user"
    assert lines[2] == f"MeterFox {__version__} answers at http://127.0.0.1:{port}"
    assert re.fullmatch(r"  up       \d+ s since \d{4}-\d\d-\d\d \d\d:\d\d", lines[3])
    assert lines[4] == "  today    3 records"
    assert lines[5:] == [f"log        {log}", "  line 8", "  line 9"]
    shown = await run_installed("service", "logs", "-n", "3", env=user_env)
    assert shown.stdout.splitlines() == ["line 7", "line 8", "line 9"]


async def test_status_answers_with_the_daemon_or_how_to_start_one(meterfox_home, upstream_server):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    port = free_port()
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "config.toml").write_text(f"[server]\nport = {port}\n")
    idle = await run_meterfox("status")
    assert idle.returncode == 1
    assert idle.stdout == (
        f"No MeterFox answers at http://127.0.0.1:{port}: start one with `meterfox serve` "
        "(foreground) or `meterfox service install` (at login).\n"
    )
    async with launch_serve(upstreams={"openai": server}, port=port) as served:
        async with aiohttp.ClientSession() as session:
            url = f"{served.url}/openai/v1/chat/completions"
            async with session.post(url, json={"model": "o4-mini", "messages": []}) as r:
                assert r.status == 200
        deadline = time.monotonic() + 10
        while not read_records(meterfox_home / "meterfox.db"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        up = await run_meterfox("status")
    assert up.returncode == 0
    assert up.stdout.splitlines()[0] == f"MeterFox {__version__} answers at http://127.0.0.1:{port}"
    assert up.stdout.splitlines()[2] == "  today    1 records"


def test_follow_yields_the_lines_appended_after_it_starts(tmp_path):
    log = tmp_path / "meterfox.log"
    log.write_text("old\n")
    got: list[str] = []

    def append() -> None:
        time.sleep(0.2)
        with log.open("a") as out:
            out.write("new 1\nnew ")
            out.flush()
            time.sleep(0.1)
            out.write("2\n")

    writer = threading.Thread(target=append)
    writer.start()
    deadline = time.monotonic() + 10
    for line in follow(log, stop=lambda: len(got) >= 2 or time.monotonic() > deadline, poll_s=0.02):
        got.append(line)
    writer.join()
    assert got == ["new 1", "new 2"]
    assert last_lines(log, 2) == ["new 1", "new 2"] and last_lines(tmp_path / "none", 5) == []


async def test_a_service_reads_the_passphrase_from_its_file_and_the_unit_never_holds_it(
    user_env, upstream_server, tmp_path
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    home = Path(user_env["METERFOX_HOME"])
    home.mkdir(parents=True, mode=0o700)
    (home / "config.toml").write_text(f'[providers.openai]\nbase_url = "{server.make_url("")}"\n')
    typing = {
        **user_env,
        "PYTHON_KEYRING_BACKEND": NULL_KEYRING,
        "METERFOX_PASSPHRASE": TEST_PASSPHRASE,
    }
    assert (
        await run_installed("keys", "set", "openai", env=typing, input=PROVIDER_KEY)
    ).returncode == 0
    created = await run_installed("keys", "create", "app", env=typing)
    proxy_key = re.search(r"mf-[A-Za-z0-9_\-]+", created.stdout).group(0)

    # With only METERFOX_PASSPHRASE: the choice is explained, the passphrase stays out.
    port = free_port()
    plain = await run_installed("service", "install", "--port", str(port), env=typing)
    assert plain.returncode == 0
    assert "a service cannot type its passphrase" in plain.stderr
    assert "METERFOX_PASSPHRASE is set here but is never written into the service" in plain.stderr
    assert "METERFOX_PASSPHRASE_FILE=" in plain.stderr and "OS keyring" in plain.stderr
    assert (
        TEST_PASSPHRASE not in unit_path(user_env).read_text()
        and "PASSPHRASE" not in unit_path(user_env).read_text()
    )

    # A passphrase file others can read is refused before anything is written.
    secret = tmp_path / "passphrase"
    secret.write_text(TEST_PASSPHRASE + "\n")
    secret.chmod(0o644)
    by_file = {**typing, "METERFOX_PASSPHRASE": None, "METERFOX_PASSPHRASE_FILE": str(secret)}
    by_file = {k: v for k, v in by_file.items() if v is not None}
    loose = await run_installed("service", "install", "--port", str(port), env=by_file)
    assert loose.returncode == 2 and f"chmod 600 {secret}" in loose.stderr

    secret.chmod(0o600)
    done = await run_installed("service", "install", "--port", str(port), env=by_file)
    assert done.returncode == 0, done.stderr
    unit = unit_path(user_env).read_text()
    assert TEST_PASSPHRASE not in unit
    assert environment_of(unit) == {
        "METERFOX_HOME": str(home),
        "METERFOX_PASSPHRASE_FILE": str(secret),
        "PYTHON_KEYRING_BACKEND": NULL_KEYRING,
    }
    # The daemon as the unit runs it (its environment only: no passphrase variable) unlocks
    # the key file and forwards with the stored provider key.
    service_env = {k: v for k, v in user_env.items() if "PASSPHRASE" not in k}
    async with running(unit_argv(unit), {**service_env, **environment_of(unit)}):
        await healthy(port)
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/openai/v1/chat/completions"
            headers = {"Authorization": f"Bearer {proxy_key}"}
            async with session.post(
                url, json={"model": "o4-mini", "messages": []}, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
    assert fake.received[-1].headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert os.stat(secret).st_mode & 0o077 == 0
