"""What `meterfox service install` writes, from one ServiceSpec: a systemd user unit, a launchd
agent plist, or, for a machine with neither, the one line that starts MeterFox by hand. Pure:
no file is written here."""

from __future__ import annotations

import itertools
import os
import plistlib
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "meterfox.service"
LAUNCHD_LABEL = "dev.meterfox.serve"
# What the daemon must see as the user does: where its state is, the passphrase file (a path,
# never a passphrase), and the keyring choice that decides where the provider keys are.
CARRIED_ENV = ("METERFOX_HOME", "METERFOX_PASSPHRASE_FILE", "PYTHON_KEYRING_BACKEND")
_PLAIN = re.compile(r"[\w@+=:,./-]+")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    argv: tuple[str, ...]  # the meterfox that ran `install`, absolute, then `serve [--port N]`
    environment: tuple[tuple[str, str], ...]
    log_file: Path


def this_meterfox(argv0: str | None = None) -> tuple[str, ...]:
    """The command of the meterfox running now, absolute: its script as it was called (a venv
    or pipx path; symlinks kept, so one that an upgrade replaces in place stays valid), or
    this Python with `-m meterfox_cli` when it was run that way."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if not argv0 or argv0.endswith(".py") or argv0 == "-m":
        return (sys.executable, "-m", "meterfox_cli")
    found = argv0 if os.sep in argv0 else shutil.which(argv0)
    if found is None:
        return (sys.executable, "-m", "meterfox_cli")
    return (os.path.abspath(found),)


def serve_spec(
    program: tuple[str, ...], port: int | None, environ: Mapping[str, str], log_file: Path
) -> ServiceSpec:
    """`program serve [--port N]` with the carried variables the user has set."""
    args = (*program, "serve", *(("--port", str(port)) if port is not None else ()))
    env = tuple((name, environ[name]) for name in CARRIED_ENV if environ.get(name))
    return ServiceSpec(args, env, log_file)


def systemd_unit(spec: ServiceSpec) -> str:
    """A user unit: started at login (default.target), restarted after a crash, its output
    appended to the log file `meterfox service logs` reads."""
    program, *args = spec.argv
    command = " ".join(
        [_systemd_word(program), *(_systemd_word(arg, dollars=True) for arg in args)]
    )
    environment = "".join(
        f"Environment={_systemd_word(f'{name}={value}')}\n" for name, value in spec.environment
    )
    log = _specifiers_escaped(str(spec.log_file))
    return (
        "# Written by `meterfox service install`; `meterfox service uninstall` removes it.\n"
        "[Unit]\n"
        "Description=MeterFox: a local proxy that records what every AI API call costs\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={command}\n"
        f"{environment}"
        "Restart=on-failure\n"
        "RestartSec=2\n"
        f"StandardOutput=append:{log}\n"
        f"StandardError=append:{log}\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def _specifiers_escaped(text: str) -> str:
    """`%` starts a specifier everywhere in a unit: doubled, it stands for itself."""
    return text.replace("%", "%%")


def _systemd_word(text: str, *, dollars: bool = False) -> str:
    """One word of a unit's command line or Environment= setting, quoted when it must be.
    `dollars`: an argument after the program, where `$NAME` is a variable and `$$` a `$`."""
    escaped = _specifiers_escaped(text)
    if dollars:
        escaped = escaped.replace("$", "$$")
    if _PLAIN.fullmatch(text):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launchd_plist(spec: ServiceSpec) -> bytes:
    """A launchd agent: loaded at login, restarted when it exits with a failure (KeepAlive),
    its output appended to the log file."""
    return plistlib.dumps(
        {
            "Label": LAUNCHD_LABEL,
            "ProgramArguments": list(spec.argv),
            "EnvironmentVariables": dict(spec.environment),
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "StandardOutPath": str(spec.log_file),
            "StandardErrorPath": str(spec.log_file),
        }
    )


def unit_argv(unit: str) -> list[str]:
    """The ExecStart command of a unit `systemd_unit` wrote, as words."""
    for line in unit.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line.removeprefix("ExecStart="))
            program, *args = (word.replace("%%", "%") for word in words)
            return [program, *(arg.replace("$$", "$") for arg in args)]
    return []


def plist_argv(plist: bytes) -> list[str]:
    """The ProgramArguments of a launchd plist."""
    return [str(word) for word in plistlib.loads(plist).get("ProgramArguments", [])]


def port_of(argv: list[str]) -> int | None:
    """The `--port N` a service command line gives; None when it takes the config's."""
    for flag, value in itertools.pairwise(argv):
        if flag == "--port" and value.isdigit():
            return int(value)
    return None


def by_hand(spec: ServiceSpec) -> str:
    """The one shell line that starts the daemon in the background, logging where the service
    would."""
    env = [f"{name}={value}" for name, value in spec.environment]
    command = shlex.join(["nohup", *(["env", *env] if env else []), *spec.argv])
    return f"{command} >> {shlex.quote(str(spec.log_file))} 2>&1 &"
