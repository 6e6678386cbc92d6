"""Which price data genai-prices uses: the data bundled with the pinned version, or a local
`data.json` loaded in its place (offline refresh); which version is installed (read without
importing it); and the lookups to forget when the data changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import TypeVar

Lookup = TypeVar("Lookup", bound=Callable)


@cache
def genai_version() -> str:
    """The installed genai-prices' version (its `__version__`), without importing it: the
    name of the `genai_prices-<version>.dist-info` beside the package, else its metadata."""
    spec = find_spec("genai_prices")
    if spec is not None and spec.origin is not None:
        found = list(Path(spec.origin).parent.parent.glob("genai_prices-*.dist-info"))
        if len(found) == 1:
            return found[0].name.removeprefix("genai_prices-").removesuffix(".dist-info")
    from importlib.metadata import version

    return version("genai_prices")


def bundled_data_in_use() -> bool:
    """Whether genai-prices prices from its bundled data (no prices file loaded)."""
    return not _loaded_file


def data_label() -> str:
    """Which price data genai-prices is using: its bundled module or a loaded prices file."""
    return _loaded_file[0] if _loaded_file else "(bundled data)"


_loaded_file: list[str] = []


def load_prices_file(path: str) -> int:
    """Use a local copy of genai-prices' `data.json` instead of the bundled data (offline
    refresh). Returns the number of providers loaded. The same as an `UpdatePrices.fetch()`
    override reading a file, without the background thread."""
    from genai_prices import data_snapshot
    from genai_prices.types import _providers_from_raw
    from genai_prices.units import _get_registry

    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON array of providers (genai-prices data.json)")
    providers = _providers_from_raw(raw, _get_registry())
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers, from_auto_update=True))
    _loaded_file[:] = [f"(prices file {path})"]
    _forget_lookups()
    return len(providers)


def use_bundled_prices() -> None:
    """Back to the data bundled with the pinned genai-prices."""
    from genai_prices import data_snapshot

    data_snapshot.set_custom_snapshot(None)
    _loaded_file.clear()
    _forget_lookups()


_lookups: list[Callable[[], None]] = []


def cleared_when_data_changes(lookup: Lookup) -> Lookup:
    """Mark a cached lookup over the price data (a functools cache): forgotten on every change
    of data, so no answer from the old data outlives it."""
    _lookups.append(lookup.cache_clear)  # type: ignore[attr-defined]
    return lookup


def _forget_lookups() -> None:
    for forget in _lookups:
        forget()
