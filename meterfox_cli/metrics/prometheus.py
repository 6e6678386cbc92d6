"""`/_meterfox/metrics`' figures: counters of requests, errors, tokens and cost, histograms of
latency and time to first byte, gauges of budgets and of the writer's queue (docs/observability.md).

Counts are kept as exact integers (cost in nano-USD) by the writer's thread, one dict update
per label set per record, and turned into Prometheus families only when scraped, so the
counters equal `meterfox report` over the daemon's lifetime to the last nano-dollar. The two
histograms are kept the same way (a bucket found by bisection), not with prometheus_client's
per-observation objects: a quarter of the cost on the writer's thread.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import add, attrgetter
from typing import TYPE_CHECKING

from meterfox_cli.config import MetricsConfig
from meterfox_cli.errors import ConfigError
from meterfox_cli.metrics.labels import OTHER, UNKNOWN_MODEL, Capped, tag_label
from meterfox_cli.money import from_nanousd
from meterfox_cli.records import Outcome
from meterfox_cli.store.observers import InWriter, Row

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import HistogramMetricFamily, Metric

# What the counting side hands the page's side after each batch (`report`, `adopt`): every
# label set's sums as plain tuples, then each histogram's timings.
Counts = tuple[
    dict[tuple[str, ...], tuple[int, dict[str, int], list[int], int]],
    dict[tuple[str, ...], tuple[list[int], float]],
    dict[tuple[str, ...], tuple[list[int], float]],
]

LABELS = ("provider", "model", "key", "status")
TIMED_LABELS = ("provider", "model", "key")
# (the `type` label, the Usage field): the normalised shape's parts (usage.py)
TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("cached_input", "cached_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("output", "output_tokens"),
    ("reasoning", "reasoning_tokens"),
)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 300)
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_token_counts = attrgetter(*(field for _, field in TOKEN_TYPES))  # a Usage's, in that order


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """A budgeted proxy key now: its budget and its spend this period (nano-USD)."""

    key: str
    period: str
    budget_nanousd: int
    spent_nanousd: int


class _Sums:
    __slots__ = ("cost_nanousd", "errors", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}  # by outcome
        self.tokens = [0] * len(TOKEN_TYPES)
        self.cost_nanousd = 0


class _Timing:
    """One histogram's figures for one label set: counts per bucket (the last one +Inf, not
    cumulative until scraped) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.total = 0.0


class _Histogram:
    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.buckets = name, documentation, buckets
        self.timings: dict[tuple[str, ...], _Timing] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        """Under the caller's lock."""
        timing = self.timings.get(labels)
        if timing is None:
            timing = self.timings[labels] = _Timing(len(self.buckets))
        timing.counts[bisect_left(self.buckets, seconds)] += 1  # le: a bound counts itself
        timing.total += seconds

    def report(self) -> dict[tuple[str, ...], tuple[list[int], float]]:
        """Under the caller's lock."""
        return {labels: (list(t.counts), t.total) for labels, t in self.timings.items()}

    def adopt(self, timings: dict[tuple[str, ...], tuple[list[int], float]]) -> None:
        """Under the caller's lock."""
        adopted = {}
        for labels, (counts, total) in timings.items():
            timing = adopted[labels] = _Timing(len(self.buckets))
            timing.counts, timing.total = counts, total
        self.timings = adopted

    def family(self) -> HistogramMetricFamily:
        """Under the caller's lock."""
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.documentation, labels=TIMED_LABELS)
        bounds = [*(f"{b:g}" for b in self.buckets), "+Inf"]
        for labels, timing in self.timings.items():
            running, cumulative = 0, []
            for bound, count in zip(bounds, timing.counts, strict=True):
                running += count
                cumulative.append((bound, running))
            family.add_metric(labels, cumulative, timing.total)
        return family


class PrometheusMetrics:
    """A RecordObserver that keeps the daemon's Prometheus figures; `render()` is the page."""

    def __init__(
        self,
        config: MetricsConfig | None = None,
        *,
        queued: Callable[[], int] = lambda: 0,
        dropped: Callable[[], int] = lambda: 0,
        budgets: Callable[[], Iterable[KeyBudget]] = tuple,
    ) -> None:
        config = config or MetricsConfig()
        self._config = config
        self._models = Capped(config.max_models)
        self._tags = tuple((tag, Capped(config.max_tag_values)) for tag in config.tag_labels)
        self.labels = LABELS + tuple(tag_label(tag) for tag, _ in self._tags)
        if len(set(self.labels)) < len(self.labels):
            raise ConfigError(
                f"[metrics] tag_labels {list(config.tag_labels)}: two tags would share the "
                f"label {self._shared()!r}"
            )
        self._queued, self._dropped, self._budgets = queued, dropped, budgets
        self._lock = threading.Lock()
        self._sums: dict[tuple[str, ...], _Sums] = {}
        self._latency = _Histogram(
            "meterfox_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            LATENCY_BUCKETS,
        )
        self._ttfb = _Histogram(
            "meterfox_time_to_first_byte_seconds",
            "Time from a request's arrival to the first byte of the upstream's response.",
            TTFB_BUCKETS,
        )

    @cached_property
    def registry(self) -> CollectorRegistry:
        """The page's registry, made at the first scrape: prometheus_client (66 modules, about
        4.6 MB) is imported only where the page is served, never in the writer's process, where
        the counting half runs."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        registry.register(_Families(self))
        return registry

    def _shared(self) -> str:
        return next(label for label in self.labels if self.labels.count(label) > 1)

    def observe(self, rows: Sequence[Row]) -> None:
        models, tag_values = self._models, self._tag_values
        latency, ttfb = self._latency.observe, self._ttfb.observe
        with self._lock:  # once a batch: a scrape waits for a few tens of records at most
            all_sums = self._sums
            for record, price in rows:
                model = models(record.reading.model or record.model or UNKNOWN_MODEL)
                timed = (record.provider, model, record.key_name)
                labels = (*timed, str(record.status), *tag_values(record.tags))
                usage = record.reading.usage
                sums = all_sums.get(labels)
                if sums is None:
                    sums = all_sums[labels] = _Sums()
                sums.requests += 1
                if record.status >= 400 or record.outcome is not Outcome.OK:
                    sums.errors[record.outcome] = sums.errors.get(record.outcome, 0) + 1
                if usage is not None:
                    sums.tokens = list(map(add, sums.tokens, _token_counts(usage)))
                if price.cost_nanousd is not None:
                    sums.cost_nanousd += price.cost_nanousd
                latency(timed, record.latency_ms / 1000)
                if record.ttfb_ms is not None:
                    ttfb(timed, record.ttfb_ms / 1000)

    def close(self) -> None:
        """Nothing to flush: a scrape reads the figures as they are."""

    def in_writer(self) -> InWriter:
        """The counting half, to run where the writer runs (in its own process under `serve`):
        it counts each committed batch and its `report()` comes back to `adopt` here, where the
        page and the gauges (queue, budgets) are served."""
        return InWriter(PrometheusMetrics, (self._config,), self.adopt)

    def report(self) -> Counts:
        """Every count so far, as plain values (a few hundred bytes per label set)."""
        with self._lock:
            return (
                {
                    labels: (s.requests, dict(s.errors), list(s.tokens), s.cost_nanousd)
                    for labels, s in self._sums.items()
                },
                self._latency.report(),
                self._ttfb.report(),
            )

    def adopt(self, counts: Counts) -> None:
        """Take the counting half's figures as this page's (they only ever grow)."""
        sums, latency, ttfb = counts
        adopted: dict[tuple[str, ...], _Sums] = {}
        for labels, (requests, errors, tokens, cost) in sums.items():
            entry = adopted[labels] = _Sums()
            entry.requests, entry.errors, entry.tokens, entry.cost_nanousd = (
                requests,
                errors,
                tokens,
                cost,
            )
        with self._lock:
            self._sums = adopted
            self._latency.adopt(latency)
            self._ttfb.adopt(ttfb)

    def resume(self, counts: Counts) -> None:
        """Count on from `counts` (a new writer's process after a rest, given the last one's
        report): the page's counters never go back. Their label values are admitted to the caps
        first, so the caps hold across processes."""
        self.adopt(counts)
        for labels in counts[0]:
            self._admit(self._models, labels[1])
            for (_, capped), value in zip(self._tags, labels[len(LABELS) :], strict=True):
                self._admit(capped, value)

    @staticmethod
    def _admit(capped: Capped, value: str) -> None:
        if value and value != OTHER:  # "": the record had no such tag
            capped(value)

    def render(self) -> bytes:
        """The Prometheus text exposition (blocking for a moment: call it off the loop)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def _tag_values(self, tags: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
        if not self._tags:
            return ()
        given = dict(tags)
        return tuple(capped(given[tag]) if tag in given else "" for tag, capped in self._tags)

    def families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            sums = [
                (labels, s.requests, dict(s.errors), list(s.tokens), s.cost_nanousd)
                for labels, s in self._sums.items()
            ]
            histograms = [self._latency.family(), self._ttfb.family()]
        requests = CounterMetricFamily(
            "meterfox_requests", "Proxied requests, as recorded.", labels=self.labels
        )
        errors = CounterMetricFamily(
            "meterfox_errors",
            "Requests that failed: an HTTP status of 400 or more, or an outcome other than ok.",
            labels=(*self.labels, "outcome"),
        )
        tokens = CounterMetricFamily(
            "meterfox_tokens",
            "Tokens billed, by type: input (cache reads and writes included), cached_input, "
            "cache_write, output (reasoning included), reasoning.",
            labels=(*self.labels, "type"),
        )
        cost = CounterMetricFamily(
            "meterfox_cost_usd",
            "Cost in USD, as recorded (unpriced requests add 0).",
            labels=self.labels,
        )
        for labels, count, by_outcome, counts, nanousd in sums:
            requests.add_metric(labels, count)
            for outcome, n in by_outcome.items():
                errors.add_metric((*labels, str(outcome)), n)
            for (kind, _), n in zip(TOKEN_TYPES, counts, strict=True):
                tokens.add_metric((*labels, kind), n)
            cost.add_metric(labels, _usd(nanousd))
        yield from (requests, errors, tokens, cost, *histograms)
        yield from self._budget_families()
        queued = GaugeMetricFamily(
            "meterfox_writer_queued_records", "Records accepted but not yet committed."
        )
        queued.add_metric((), self._queued())
        yield queued
        dropped = CounterMetricFamily(
            "meterfox_writer_dropped_records", "Records lost: the queue was full or refused."
        )
        dropped.add_metric((), self._dropped())
        yield dropped

    def _budget_families(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        budget = GaugeMetricFamily(
            "meterfox_key_budget_usd",
            "Each budgeted proxy key's budget per period.",
            labels=("key", "period"),
        )
        spent = GaugeMetricFamily(
            "meterfox_key_budget_spent_usd",
            "Each budgeted key's spend this period, requests in flight reserved.",
            labels=("key", "period"),
        )
        remaining = GaugeMetricFamily(
            "meterfox_key_budget_remaining_usd",
            "What each budgeted key may still spend this period (0 when spent).",
            labels=("key", "period"),
        )
        for entry in self._budgets():
            labels = (entry.key, entry.period)
            budget.add_metric(labels, _usd(entry.budget_nanousd))
            spent.add_metric(labels, _usd(entry.spent_nanousd))
            left = max(entry.budget_nanousd - entry.spent_nanousd, 0)
            remaining.add_metric(labels, _usd(left))
        yield from (budget, spent, remaining)


def _usd(nanousd: int) -> float:
    return float(from_nanousd(nanousd))


class _Families:
    """The custom collector that hands the registry the counters and gauges at scrape time."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()
