"""`meterfox tail`'s lines: one request per fixed-width line, with the running total so far."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from meterfox_cli.money import format_usd, human_usd
from meterfox_cli.pricing.quote import UNPRICED_SOURCE
from meterfox_cli.report.cells import count, duration
from meterfox_cli.store.rows import RequestLine


@dataclass
class RunningTotal:
    requests: int = 0
    cost_nanousd: int = 0
    unpriced: int = 0

    def add(self, line: RequestLine) -> RunningTotal:
        self.requests += 1
        self.cost_nanousd += line.cost_nanousd or 0
        self.unpriced += line.cost_source == UNPRICED_SOURCE
        return self


TAIL_HEADER = (
    f"{'time':<8}  {'key':<12} {'provider':<11} {'model':<28} {'tokens in → out':>17} "
    f"{'cost':>11} {'latency':>8}  {'status':<7} running total"
)


def tail_line(line: RequestLine, total: RunningTotal) -> str:
    """One request as a fixed-width line, with the running total so far."""
    clock = datetime.fromtimestamp(line.ts).strftime("%H:%M:%S")
    tokens = f"{count(line.input_tokens)} → {count(line.output_tokens)}"
    if line.cost_usd is not None:
        cost = human_usd(line.cost_usd)
    else:
        cost = "unpriced" if line.cost_source == UNPRICED_SOURCE else "—"
    status = str(line.status) + ("" if line.outcome == "ok" else f" {line.outcome}")
    running = f"{total.requests:,} req {format_usd(total.cost_nanousd)}"
    if total.unpriced:
        running += f" (+{total.unpriced:,} unpriced)"
    return (
        f"{clock:<8}  {_fit(line.key_name, 12)} {_fit(line.provider, 11)} "
        f"{_fit(line.model or '(unknown)', 28)} {tokens:>17} {cost:>11} "
        f"{duration(line.latency_ms):>8}  {status:<7} {running}"
    )


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
