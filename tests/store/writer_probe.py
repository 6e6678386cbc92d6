"""An observer for tests to run in the writer's process that imports nothing else there (the
child imports an observer's module to unpickle it; a test module would bring its own imports):
its report says which heavy modules that process has loaded."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# What the writer's process has no use for: the proxy's web server and CLI, the Prometheus
# page (the proxy serves it), hashlib/OpenSSL, genai-prices and pydantic (the compact table).
HEAVY = ("aiohttp", "click", "rich", "prometheus_client", "hashlib", "genai_prices", "pydantic")


class ModulesLoaded:
    def observe(self, rows: Sequence[object]) -> None:
        return None

    def report(self) -> list[str]:
        return sorted(name for name in HEAVY if name in sys.modules)

    def close(self) -> None:
        return None
