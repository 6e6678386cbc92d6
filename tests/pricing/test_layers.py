"""Pricing takes what it needs from its callers: it imports nothing from the provider registry,
and config, below it, imports nothing from pricing."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import meterfox_cli

PACKAGE = Path(meterfox_cli.__file__).parent


def imported(path: Path) -> Iterator[str]:
    """Every module a file imports, at any depth (`from a import b` yields `a` and `a.b`)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_pricing_imports_nothing_from_the_providers():
    modules = sorted((PACKAGE / "pricing").glob("*.py"))
    assert len(modules) >= 7
    for path in modules:
        upward = [m for m in imported(path) if within(m, "meterfox_cli.providers")]
        assert upward == [], path.name


def test_config_imports_nothing_from_pricing():
    upward = [m for m in imported(PACKAGE / "config.py") if within(m, "meterfox_cli.pricing")]
    assert upward == []
