"""The machine's service manager, for one per-user service: systemd's user manager on Linux,
launchd on macOS, or none. Writes and removes the unit or plist, enables, stops and asks about
it; the only module of MeterFox that runs `systemctl` or `launchctl`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.service.units import (
    LAUNCHD_LABEL,
    UNIT_NAME,
    ServiceSpec,
    launchd_plist,
    plist_argv,
    systemd_unit,
    unit_argv,
)

_TIMEOUT_S = 15


@dataclass(frozen=True, slots=True)
class Running:
    """What the manager says of the service: active or not, its PID, since when."""

    active: bool
    pid: int | None
    detail: str  # the manager's own words: "active (running)", "inactive (dead)", "running"…


class Manager(Protocol):
    name: str
    definition: Path  # the unit or plist file

    def render(self, spec: ServiceSpec) -> bytes: ...

    def installed_argv(self) -> list[str] | None:
        """The command the written definition runs; None when none is written."""
        ...

    def answers(self) -> bool:
        """A manager runs for this user and takes commands."""
        ...

    def enable(self) -> None:
        """Load the written definition and start it now and at every login (ManagerError)."""
        ...

    def disable(self) -> None:
        """Stop the service and keep it from starting at login (ManagerError)."""
        ...

    def forget(self) -> None:
        """After the definition is removed: let the manager drop it too."""
        ...

    def running(self) -> Running: ...

    def enable_line(self) -> str:
        """The command a person runs to enable it later, once the manager runs."""
        ...


class ManagerError(MeterFoxError):
    """A `systemctl` or `launchctl` command failed: its words."""


def manager_for(platform: str, environ: Mapping[str, str]) -> Manager | None:
    """systemd's user manager where `systemctl` is (Linux), launchd on macOS, else None."""
    home = Path(environ.get("HOME") or Path.home())
    if platform == "darwin" and shutil.which("launchctl", path=environ.get("PATH")):
        return Launchd(home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist")
    if platform.startswith("linux") and shutil.which("systemctl", path=environ.get("PATH")):
        config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        return SystemdUser(config / "systemd" / "user" / UNIT_NAME)
    return None


def this_machine() -> Manager | None:
    return manager_for(sys.platform, os.environ)


def write_definition(manager: Manager, spec: ServiceSpec) -> None:
    """Write the unit or plist (it holds no secret) and make the log file ready."""
    manager.definition.parent.mkdir(parents=True, exist_ok=True)
    manager.definition.write_bytes(manager.render(spec))
    prepare_log(spec.log_file)


def prepare_log(log_file: Path) -> None:
    """Create the log file owner-only before a manager or a shell opens it for appending
    (either would create it readable by others)."""
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(log_file, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ManagerError(f"`{' '.join(argv)}` failed: {exc}") from exc
    if check and done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()
        raise ManagerError(f"`{' '.join(argv)}` failed: {words[-1] if words else done.returncode}")
    return done


@dataclass(frozen=True, slots=True)
class SystemdUser:
    definition: Path
    name: str = "systemd"

    def render(self, spec: ServiceSpec) -> bytes:
        return systemd_unit(spec).encode()

    def installed_argv(self) -> list[str] | None:
        return unit_argv(self.definition.read_text()) if self.definition.exists() else None

    def answers(self) -> bool:
        try:
            return _run("systemctl", "--user", "show-environment", check=False).returncode == 0
        except ManagerError:
            return False

    def enable(self) -> None:
        _run("systemctl", "--user", "daemon-reload")
        _run("systemctl", "--user", "enable", UNIT_NAME)
        _run("systemctl", "--user", "restart", UNIT_NAME)  # a reinstall runs the new unit

    def disable(self) -> None:
        _run("systemctl", "--user", "disable", "--now", UNIT_NAME)

    def forget(self) -> None:
        _run("systemctl", "--user", "daemon-reload", check=False)

    def running(self) -> Running:
        shown = _run(
            "systemctl", "--user", "show", UNIT_NAME, "-p", "ActiveState,SubState,MainPID"
        ).stdout
        fields = dict(line.partition("=")[::2] for line in shown.splitlines())
        pid = int(fields.get("MainPID") or 0) or None
        state = fields.get("ActiveState", "unknown")
        return Running(state == "active", pid, f"{state} ({fields.get('SubState', '?')})")

    def enable_line(self) -> str:
        return f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}"


@dataclass(frozen=True, slots=True)
class Launchd:
    definition: Path
    name: str = "launchd"

    @property
    def _domain(self) -> str:
        return f"gui/{os.getuid()}"

    def render(self, spec: ServiceSpec) -> bytes:
        return launchd_plist(spec)

    def installed_argv(self) -> list[str] | None:
        return plist_argv(self.definition.read_bytes()) if self.definition.exists() else None

    def answers(self) -> bool:
        try:
            return _run("launchctl", "print", self._domain, check=False).returncode == 0
        except ManagerError:
            return False

    def enable(self) -> None:
        _run("launchctl", "bootout", f"{self._domain}/{LAUNCHD_LABEL}", check=False)
        _run("launchctl", "bootstrap", self._domain, str(self.definition))

    def disable(self) -> None:
        _run("launchctl", "bootout", f"{self._domain}/{LAUNCHD_LABEL}", check=False)

    def forget(self) -> None:
        return None

    def running(self) -> Running:
        shown = _run("launchctl", "print", f"{self._domain}/{LAUNCHD_LABEL}", check=False)
        if shown.returncode != 0:
            return Running(False, None, "not loaded")
        fields = {
            key.strip(): value.strip()
            for key, sep, value in (line.partition(" = ") for line in shown.stdout.splitlines())
            if sep
        }
        pid = fields.get("pid", "")
        state = fields.get("state", "unknown")
        return Running(state == "running", int(pid) if pid.isdigit() else None, state)

    def enable_line(self) -> str:
        return f"launchctl bootstrap gui/$(id -u) {self.definition}"
