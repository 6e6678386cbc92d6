"""`meterfox export`'s rows: each request as a CSV row or a JSON line, written as it is read,
with the exact cost."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from meterfox_cli.money import decimal_text
from meterfox_cli.store.rows import RequestLine

EXPORT_FIELDS = (
    "id",
    "time",
    "ts",
    "day",
    "provider",
    "model",
    "endpoint",
    "method",
    "status",
    "outcome",
    "streamed",
    "key",
    "ttfb_ms",
    "latency_ms",
    "usage_known",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_nanousd",
    "cost_source",
    "tags",
)


def export_values(line: RequestLine) -> tuple[object, ...]:
    """One request's values, in EXPORT_FIELDS order."""
    return (
        line.id,
        datetime.fromtimestamp(line.ts, UTC).isoformat(timespec="milliseconds"),
        line.ts,
        line.day,
        line.provider,
        line.model,
        line.endpoint,
        line.method,
        line.status,
        line.outcome,
        line.streamed,
        line.key_name,
        line.ttfb_ms,
        line.latency_ms,
        line.usage_known,
        line.input_tokens,
        line.cached_tokens,
        line.cache_write_tokens,
        line.output_tokens,
        line.reasoning_tokens,
        line.cost_usd,
        line.cost_nanousd,
        line.cost_source,
        line.tags,
    )


def write_export(lines: Iterable[RequestLine], out: TextIO, fmt: str) -> int:
    """Write each request as it comes (CSV with a header, or one JSON object per line);
    return how many were written."""
    written = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_FIELDS)
        for line in lines:  # the csv module writes None as an empty field
            values = list(export_values(line))
            values[10], values[14] = int(line.streamed), int(line.usage_known)
            values[20] = None if line.cost_usd is None else decimal_text(line.cost_usd)
            writer.writerow(values)
            written += 1
        return written
    leading = EXPORT_FIELDS[:20]  # up to cost_usd, which json.dumps cannot write exactly
    for line in lines:
        values = export_values(line)
        head = json.dumps(dict(zip(leading, values[:20], strict=True)))[:-1]
        cost = "null" if line.cost_usd is None else decimal_text(line.cost_usd)
        out.write(
            f'{head}, "cost_usd": {cost}, "cost_nanousd": {json.dumps(line.cost_nanousd)}, '
            f'"cost_source": {json.dumps(line.cost_source)}, "tags": {line.tags}}}\n'
        )
        written += 1
    return written
