"""A fake OpenTelemetry collector on 127.0.0.1: the OTLP/HTTP receiver (protobuf), which keeps
every export's raw body and decodes it with opentelemetry-proto's own messages."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue


class FakeCollector:
    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        return app

    async def _body(self, request: web.Request) -> bytes:
        assert request.content_type == "application/x-protobuf", request.content_type
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.raw.append(body)
        return body

    async def _traces(self, request: web.Request) -> web.Response:
        self.traces.append(ExportTraceServiceRequest.FromString(await self._body(request)))
        return _protobuf(ExportTraceServiceResponse())

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.append(ExportMetricsServiceRequest.FromString(await self._body(request)))
        return _protobuf(ExportMetricsServiceResponse())

    def spans(self) -> Iterator:
        for export in self.traces:
            for resource_spans in export.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    yield from scope_spans.spans

    def metric_points(self, name: str) -> list:
        """The data points of metric `name` in the last export that has it (cumulative)."""
        for export in reversed(self.metrics):
            points = [
                point
                for resource_metrics in export.resource_metrics
                for scope_metrics in resource_metrics.scope_metrics
                for metric in scope_metrics.metrics
                if metric.name == name
                for point in metric.histogram.data_points
            ]
            if points:
                return points
        return []


def attributes(pairs: list[KeyValue]) -> dict[str, object]:
    """OTLP key-values as a plain dict."""
    out: dict[str, object] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        out[pair.key] = getattr(pair.value, kind) if kind else None
    return out


def _protobuf(message) -> web.Response:
    return web.Response(body=message.SerializeToString(), content_type="application/x-protobuf")
