"""The layering rule of docs/architecture.md: no module imports from a layer above its own.

Every import counts, the lazy ones inside functions too: a CLI module that defers an import to
keep `--help` fast still depends on what it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meterfox_cli

PACKAGE_ROOT = Path(meterfox_cli.__file__).parent

# Lowest first. A module may import from its own layer and any layer below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "meterfox_cli",
            "meterfox_cli.errors",
            "meterfox_cli.paths",
            "meterfox_cli.usage",
            "meterfox_cli.records",
            "meterfox_cli.money",
            "meterfox_cli.logs",
            "meterfox_cli.config",
            "meterfox_cli.replicate_prices",
            "meterfox_cli.cache_storage_prices",
            "meterfox_cli.frozen",
        ),
    ),
    ("pricing", ("meterfox_cli.pricing",)),
    ("providers", ("meterfox_cli.providers",)),
    ("store", ("meterfox_cli.store",)),
    ("proxy", ("meterfox_cli.proxy",)),
    ("keys", ("meterfox_cli.keys",)),
    ("sync", ("meterfox_cli.sync",)),
    ("metrics", ("meterfox_cli.metrics",)),
    ("alerts", ("meterfox_cli.alerts",)),
    ("report", ("meterfox_cli.report", "meterfox_cli.timewindow", "meterfox_cli.doctor")),
    ("web", ("meterfox_cli.web",)),
    ("service", ("meterfox_cli.service",)),
    ("cli", ("meterfox_cli.cli", "meterfox_cli.__main__")),
)


def layer_of(module: str) -> int:
    """The rank of the layer that owns `module` (the longest matching prefix wins; the bare
    package name matches only the package's own `__init__`)."""
    matches = [
        (len(prefix), rank)
        for rank, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or (prefix != "meterfox_cli" and module.startswith(prefix + "."))
    ]
    if not matches:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")
    return max(matches)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every `meterfox_cli` module `path` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "meterfox_cli"}


def known_module(name: str) -> str:
    """`meterfox_cli.store.db.connect` → `meterfox_cli.store.db`: the longest prefix that is a
    module or package of ours."""
    parts = name.split(".")
    while len(parts) > 1:
        candidate = PACKAGE_ROOT.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return "meterfox_cli"


SOURCES = sorted(PACKAGE_ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_from_a_layer_above_its_own(path: Path):
    importer = module_name(path)
    rank = layer_of(importer)
    upward = sorted(
        {target for target in map(known_module, imported_modules(path)) if layer_of(target) > rank}
    )
    assert upward == [], f"{importer} ({LAYERS[rank][0]}) imports from a higher layer: {upward}"


def test_every_module_belongs_to_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


def test_the_rule_catches_an_upward_import(tmp_path: Path):
    """The check itself can fail: an import of the CLI from the store is seen as upward."""
    tree = "from meterfox_cli.cli.common import load_config\n"
    fake = tmp_path / "x.py"
    fake.write_text(tree)
    targets = {known_module(name) for name in imported_modules(fake)}
    assert any(layer_of(t) > layer_of("meterfox_cli.store.db") for t in targets)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_every_module_opens_with_what_it_owns(path: Path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 4, f"{module_name(path)} has no docstring"


# The PostgreSQL driver stays inside its backend: the writer, reports and everything above
# them depend on store/backend.Ledger, never on a driver.
DRIVER_HOME = PACKAGE_ROOT / "store" / "postgres.py"


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_postgresql_backend_imports_psycopg():
    importers = [module_name(p) for p in SOURCES if "psycopg" in third_party_imports(p)]
    assert importers == [module_name(DRIVER_HOME)]
