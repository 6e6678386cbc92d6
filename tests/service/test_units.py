"""The systemd unit and launchd plist `meterfox service install` writes: checked by systemd's
own verifier, and their command lines run as written until the daemon is healthy."""

from __future__ import annotations

import os
import plistlib
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meterfox_cli import __version__
from meterfox_cli.service.units import (
    LAUNCHD_LABEL,
    launchd_plist,
    serve_spec,
    systemd_unit,
    this_meterfox,
    unit_argv,
)
from tests.cli.conftest import free_port
from tests.service.conftest import (
    INSTALLED,
    environment_of,
    healthy,
    run_installed,
    running,
    unit_path,
)


def verify(unit: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """systemd's own check of a user unit: fatal errors fail it, warnings are printed."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/test installs the systemd package"
    return subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_install_writes_a_unit_systemd_verifies_running_this_meterfox(user_env):
    port = free_port()
    done = await run_installed("service", "install", "--port", str(port), env=user_env)
    assert done.returncode == 0, done.stderr
    unit = unit_path(user_env)
    text = unit.read_text()
    checked = verify(unit, user_env)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    assert f"ExecStart={INSTALLED} serve --port {port}\n" in text
    assert "Restart=on-failure\n" in text and "WantedBy=default.target\n" in text
    assert environment_of(text) == {"METERFOX_HOME": user_env["METERFOX_HOME"]}
    # No user manager answers in the test's home: said, with the command for later and the
    # line that starts it by hand now.
    assert "No systemd manager answers for this user" in done.stdout
    assert "systemctl --user daemon-reload && systemctl --user enable --now" in done.stdout
    assert f"{INSTALLED} serve --port {port}" in done.stdout.splitlines()[-1]


async def test_the_units_exec_start_as_written_runs_a_healthy_daemon(user_env):
    port = free_port()
    assert (
        await run_installed("service", "install", "--port", str(port), env=user_env)
    ).returncode == 0
    unit = unit_path(user_env).read_text()
    argv = unit_argv(unit)
    assert argv[0] == str(INSTALLED) and Path(argv[0]).is_absolute()
    env = {**user_env, **environment_of(unit)}
    async with running(argv, env) as pid:
        health = await healthy(port)
        assert health["status"] == "ok" and health["version"] == __version__
        assert health["started_at"] > 0
    assert pid > 0


async def test_a_path_with_spaces_percent_and_dollar_survives_systemd_quoting(tmp_path, user_env):
    odd = tmp_path / "my tools" / "50% $HOME"
    odd.mkdir(parents=True)
    (odd / "meterfox").symlink_to(INSTALLED)
    home = tmp_path / "home of $mine"
    port = free_port()
    spec = serve_spec((str(odd / "meterfox"),), port, {"METERFOX_HOME": str(home)}, home / "x.log")
    unit = tmp_path / "meterfox.service"
    unit.write_text(systemd_unit(spec))
    checked = verify(unit, user_env)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    argv = unit_argv(unit.read_text())
    assert argv == [str(odd / "meterfox"), "serve", "--port", str(port)]
    assert environment_of(unit.read_text()) == {"METERFOX_HOME": str(home)}
    async with running(argv, {**user_env, "METERFOX_HOME": str(home)}):
        assert (await healthy(port))["status"] == "ok"
    assert (home / "meterfox.db").exists()


def test_systemd_verify_catches_a_broken_unit(tmp_path, user_env):
    """The verifier is not a rubber stamp: a relative ExecStart fails it."""
    spec = serve_spec(("meterfox",), None, {}, tmp_path / "x.log")
    unit = tmp_path / "meterfox.service"
    unit.write_text(systemd_unit(spec).replace("ExecStart=meterfox", "ExecStart=bin/meterfox"))
    assert verify(unit, user_env).returncode != 0


async def test_the_launchd_plist_is_valid_and_its_program_arguments_run(tmp_path, user_env):
    port = free_port()
    log = tmp_path / "meterfox.log"
    spec = serve_spec((str(INSTALLED),), port, user_env, log)
    plist = plistlib.loads(launchd_plist(spec))
    assert plist["Label"] == LAUNCHD_LABEL
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert plist["EnvironmentVariables"] == {"METERFOX_HOME": user_env["METERFOX_HOME"]}
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == str(log)
    env = {**user_env, **plist["EnvironmentVariables"]}
    async with running(plist["ProgramArguments"], env):
        health = await healthy(port)
        assert health["version"] == __version__


async def test_without_systemctl_install_prints_the_line_that_starts_it_by_hand(user_env):
    port = free_port()
    bare = {**user_env, "PATH": str(INSTALLED.parent)}  # no systemctl, no launchctl
    done = await run_installed("service", "install", "--port", str(port), env=bare)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Neither systemd's user manager nor launchd is here")
    assert not unit_path(user_env).exists()
    line = done.stdout.splitlines()[-1].strip()
    started = subprocess.run(
        ["/bin/sh", "-c", f"{line} echo $!"], env=user_env, capture_output=True, text=True
    )
    pid = int(started.stdout.strip())
    try:
        assert (await healthy(port))["version"] == __version__
    finally:
        os.kill(pid, signal.SIGTERM)
    log = Path(user_env["METERFOX_HOME"]) / "meterfox.log"
    assert f"MeterFox http://127.0.0.1:{port}" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # made by install, before the shell appends


async def test_uninstall_removes_the_unit_and_keeps_the_data(user_env):
    assert (await run_installed("service", "install", env=user_env)).returncode == 0
    assert unit_path(user_env).exists()
    done = await run_installed("service", "uninstall", env=user_env)
    assert done.returncode == 0 and "removed" in done.stdout
    assert not unit_path(user_env).exists()
    again = await run_installed("service", "uninstall", env=user_env)
    assert again.stdout.strip() == "No MeterFox service is installed here."


@pytest.mark.parametrize(
    ("argv0", "command"),
    [
        ("/opt/venv/bin/meterfox", ("/opt/venv/bin/meterfox",)),  # a venv's script, as called
        ("meterfox-not-on-any-path", (sys.executable, "-m", "meterfox_cli")),
        ("/x/meterfox_cli/__main__.py", (sys.executable, "-m", "meterfox_cli")),  # python -m
    ],
)
def test_the_service_runs_the_absolute_command_that_installed_it(argv0, command):
    assert this_meterfox(argv0) == command
