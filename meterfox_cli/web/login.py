"""The dashboard's login token for a daemon bound beyond loopback: chosen by `serve
--dashboard-login`, kept owner-only in the state directory, read by `meterfox dashboard --url`
to print a URL carrying it."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

LOGIN_FILE = "dashboard-login"


def issue_login(state_dir: Path) -> str:
    """A new login token, written owner-only (a previous one stops working)."""
    token = secrets.token_urlsafe(32)
    path = state_dir / LOGIN_FILE
    forget_login(state_dir)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def read_login(state_dir: Path) -> str | None:
    try:
        return (state_dir / LOGIN_FILE).read_text().strip() or None
    except OSError:
        return None


def forget_login(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / LOGIN_FILE).unlink()
