"""`meterfox dashboard` as a real process: it opens the URL in the browser `BROWSER` names (a
script that writes down what it was asked to open), prints it with `--url` (with the login
token when serve chose one), and says how to start the daemon when none answers."""

from __future__ import annotations

import stat
from pathlib import Path

from meterfox_cli.paths import resolve_paths
from meterfox_cli.web.login import issue_login
from tests.cli.conftest import free_port, launch_serve, run_meterfox


def fake_browser(tmp_path: Path) -> tuple[str, Path]:
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"{script} %s", opened


async def test_it_opens_the_running_daemons_dashboard(tmp_path: Path):
    browser, opened = fake_browser(tmp_path)
    async with launch_serve() as served:
        done = await run_meterfox(
            "dashboard", "--port", str(served.port), env={"BROWSER": browser, "DISPLAY": ":0"}
        )
    assert done.returncode == 0, done.stderr
    assert opened.read_text().strip() == f"{served.url}/_meterfox/"


async def test_without_a_daemon_it_says_how_to_start_one(tmp_path: Path):
    browser, opened = fake_browser(tmp_path)
    port = free_port()
    done = await run_meterfox("dashboard", "--port", str(port), env={"BROWSER": browser})
    assert done.returncode == 1
    assert f"not running at http://127.0.0.1:{port}" in done.stderr
    assert "meterfox serve" in done.stderr
    assert not opened.exists()


async def test_url_prints_it_with_the_login_token_when_there_is_one():
    done = await run_meterfox("dashboard", "--url")
    assert done.stdout.strip() == "http://127.0.0.1:8787/_meterfox/"
    paths = resolve_paths()
    paths.ensure()
    token = issue_login(paths.state_dir)
    assert (paths.state_dir / "dashboard-login").stat().st_mode & 0o077 == 0
    done = await run_meterfox("dashboard", "--url")
    assert done.stdout.strip() == f"http://127.0.0.1:8787/_meterfox/?login={token}"
