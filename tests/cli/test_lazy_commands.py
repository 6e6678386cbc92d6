"""`meterfox` loads a command's module only when that command runs: the table naming each
command's module is complete and right, and `serve` does not import the other commands."""

from __future__ import annotations

import subprocess
import sys
from importlib import import_module
from pathlib import Path

import meterfox_cli.cli as cli


def test_every_command_is_found_in_the_module_the_table_names():
    modules = sorted(
        path.stem
        for path in Path(cli.__file__).parent.glob("*.py")
        if "\nCOMMANDS = " in path.read_text()
    )
    defined = {
        command.name: module
        for module in modules
        for command in import_module(f"meterfox_cli.cli.{module}").COMMANDS
    }
    assert defined == cli.COMMAND_MODULES


def test_serve_imports_no_other_command():
    code = (
        "import sys\n"
        "from meterfox_cli.cli import main\n"
        "main(['serve', '--help'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith('meterfox_cli.cli.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "['meterfox_cli.cli.common', 'meterfox_cli.cli.serve_cmd']"
