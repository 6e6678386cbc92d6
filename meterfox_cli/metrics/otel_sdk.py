"""The OpenTelemetry SDK side of the export (the `[otel]` extra): one CLIENT span per finished
request and the GenAI client histograms, sent over OTLP/HTTP by the official SDK's batching
exporters on their own threads. The names are in semconv.py.

It runs in the export process (otel_worker.py), never in the daemon: the SDK's per-span work
would take the proxy's GIL. A span starts at the request's arrival and lasts its latency, as
recorded. Never any prompt or response text.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from meterfox_cli import __version__
from meterfox_cli.config import OtelConfig
from meterfox_cli.errors import ConfigError
from meterfox_cli.metrics import semconv
from meterfox_cli.store.observers import Row

INSTALL_HINT = "pip install 'meterfox-cli[otel]'"


def check_installed() -> None:
    """The SDK and its OTLP/HTTP exporter can be imported, or a ConfigError saying how."""
    for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ConfigError(
                f"[otel] endpoint is set but the OpenTelemetry SDK is missing ({name}): "
                f"{INSTALL_HINT}"
            )


class OtelExporter:
    """Exports spans and metrics of records to `config.endpoint` (a RecordObserver in shape)."""

    def __init__(self, config: OtelConfig, tags: Sequence[str] = ()) -> None:
        if config.endpoint is None:
            raise ConfigError("[otel] endpoint is not set")
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
        except ImportError as exc:
            raise ConfigError(
                f"[otel] endpoint is set but the OpenTelemetry SDK is missing ({exc.name}): "
                f"{INSTALL_HINT}"
            ) from exc
        self._kind, self._error = SpanKind.CLIENT, Status(StatusCode.ERROR)
        self._tags = frozenset(tags)
        resource = Resource.create(
            {"service.name": config.service_name, "service.version": __version__}
        )
        headers = dict(config.headers)
        self._traces = TracerProvider(resource=resource)
        self._traces.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{config.endpoint}/v1/traces", headers=headers)
            )
        )
        self._tracer = self._traces.get_tracer("meterfox", __version__)
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{config.endpoint}/v1/metrics", headers=headers),
            export_interval_millis=config.export_every_s * 1000,
        )
        views = [
            View(
                instrument_name=semconv.TOKEN_USAGE,
                aggregation=ExplicitBucketHistogramAggregation(semconv.TOKEN_BUCKETS),
            ),
            View(
                instrument_name=semconv.OPERATION_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(semconv.DURATION_BUCKETS),
            ),
        ]
        self._meters = MeterProvider(resource=resource, metric_readers=[reader], views=views)
        meter = self._meters.get_meter("meterfox", __version__)
        self._tokens = meter.create_histogram(
            semconv.TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
        )
        self._duration = meter.create_histogram(
            semconv.OPERATION_DURATION, unit="s", description="GenAI operation duration."
        )

    def observe(self, rows: Sequence[Row]) -> None:
        for record, price in rows:
            start_ns = int(record.started_at * 1e9)
            span = self._tracer.start_span(
                semconv.span_name(record),
                kind=self._kind,
                start_time=start_ns,
                attributes=semconv.span_attributes(record, price, self._tags),
            )
            if semconv.is_error(record):
                span.set_status(self._error)
            span.end(end_time=start_ns + int(record.latency_ms * 1e6))
            common = semconv.common_attributes(record)
            self._duration.record(record.latency_ms / 1000, common)
            usage = record.reading.usage
            if usage is not None:
                self._tokens.record(usage.input_tokens, {**common, "gen_ai.token.type": "input"})
                self._tokens.record(usage.output_tokens, {**common, "gen_ai.token.type": "output"})

    def close(self) -> None:
        """Export what is batched, then stop the exporters' threads (blocks: off the loop)."""
        self._traces.shutdown()
        self._meters.shutdown()
