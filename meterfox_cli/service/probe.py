"""Asking a daemon how it is: its health endpoint (`/_meterfox/health`) on a base URL, read with
a short timeout; nothing answering is an answer too."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

HEALTH_PATH = "/_meterfox/health"


@dataclass(frozen=True, slots=True)
class Health:
    base_url: str
    status: str  # "ok", or "degraded" while the ledger fails
    version: str
    started_at: float | None  # Unix time; None from a daemon older than this field
    uptime_s: float
    records_written: int  # since it started


def probe(base_url: str, timeout_s: float = 2.0) -> Health | None:
    """The health of the MeterFox daemon at `base_url`; None when no MeterFox answers there."""
    try:
        with urllib.request.urlopen(base_url + HEALTH_PATH, timeout=timeout_s) as response:
            body = json.loads(response.read())
        return Health(
            base_url,
            str(body["status"]),
            str(body["version"]),
            float(body["started_at"]) if body.get("started_at") is not None else None,
            float(body["uptime_s"]),
            int(body["records_written"]),
        )
    except (OSError, ValueError, KeyError, TypeError):  # URLError is an OSError
        return None
