"""Where MeterFox keeps its state: under METERFOX_HOME when set, else the per-user dirs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "meterfox"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    state_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def database(self) -> Path:
        return self.data_dir / "meterfox.db"

    @property
    def outbox(self) -> Path:
        """Where records wait for a PostgreSQL ledger (store/outbox.py)."""
        return self.data_dir / "outbox.sqlite"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "meterfox.log"

    def ensure(self) -> None:
        """Create the directories, readable by the owner only."""
        for directory in (self.config_dir, self.data_dir, self.state_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)


def resolve_paths(environ: os._Environ[str] | dict[str, str] | None = None) -> Paths:
    env = os.environ if environ is None else environ
    home = env.get("METERFOX_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(config_dir=root, data_dir=root, state_dir=root)
    import platformdirs

    return Paths(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
        state_dir=Path(platformdirs.user_state_dir(APP_NAME)),
    )
