"""OpenTelemetry from a real `meterfox serve`: with `[otel] endpoint` at a fake collector on
loopback, each proxied request arrives as one CLIENT span whose GenAI attributes equal its
stored record, and the GenAI histograms add up to the same records; nothing of a prompt, a
response or a key leaves."""

from __future__ import annotations

import sqlite3

import pytest

from meterfox_cli.paths import resolve_paths
from tests.cli.conftest import launch_serve
from tests.cli.test_serve_metrics import drive, reply_for, write_config, written
from tests.fakes.otlp import attributes


def stored_records() -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(resolve_paths().database)
    conn.row_factory = sqlite3.Row
    try:
        return {row["id"]: row for row in conn.execute("SELECT * FROM requests")}
    finally:
        conn.close()


async def test_each_request_is_one_client_span_equal_to_its_record(upstream_server, collector):
    fake, server = upstream_server
    fake.reply = reply_for
    otel, receiver = collector
    endpoint = str(receiver.make_url("")).rstrip("/")
    write_config(f'[otel]\nendpoint = "{endpoint}"\nexport_every = "1s"\n')
    async with launch_serve(upstreams={"openai": server, "anthropic": server}) as served:
        sent = await drive(served.url)
        await written(served, sent)
    # serve has stopped: its shutdown flushed the batched spans and the last metrics.
    records = stored_records()
    spans = {attributes(span.attributes)["meterfox.request.id"]: span for span in otel.spans()}
    assert len(records) == sent
    assert len(list(otel.spans())) == sent
    assert spans.keys() == records.keys()
    for request_id, row in records.items():
        span = spans[request_id]
        attrs = attributes(span.attributes)
        assert span.kind == span.SPAN_KIND_CLIENT
        assert span.name == f"{attrs['gen_ai.operation.name']} {row['model']}"
        assert span.start_time_unix_nano == int(row["ts"] * 1e9)
        duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        assert duration_ms == pytest.approx(row["latency_ms"], abs=0.001)
        assert attrs["gen_ai.provider.name"] == row["provider"]  # openai, anthropic: as named
        assert attrs["gen_ai.request.model"] == row["model"]
        assert attrs["http.response.status_code"] == row["status"]
        assert attrs["meterfox.key.name"] == row["key_name"]
        if row["usage_known"]:
            assert attrs["gen_ai.response.model"] == row["model"]
            assert attrs["gen_ai.usage.input_tokens"] == row["input_tokens"]
            assert attrs["gen_ai.usage.cache_read.input_tokens"] == row["cached_tokens"]
            assert attrs["gen_ai.usage.cache_creation.input_tokens"] == row["cache_write_tokens"]
            assert attrs["gen_ai.usage.output_tokens"] == row["output_tokens"]
            assert attrs["gen_ai.usage.reasoning.output_tokens"] == row["reasoning_tokens"]
            assert attrs["meterfox.cost.usd"] == pytest.approx(row["cost_nanousd"] / 1e9)
            assert attrs["gen_ai.operation.name"] == "chat"
            assert "error.type" not in attrs
        else:
            assert row["status"] == 500
            assert attrs["error.type"] == "500"
            assert span.status.code == span.status.STATUS_CODE_ERROR
            assert not any(name.startswith("gen_ai.usage.") for name in attrs)
    anthropic_row = next(r for r in records.values() if r["provider"] == "anthropic")
    assert anthropic_row["cache_write_tokens"] == 1500  # every usage attribute was exercised

    tokens = otel.metric_points("gen_ai.client.token.usage")
    by_type = {}
    for point in tokens:
        kind = attributes(point.attributes)["gen_ai.token.type"]
        by_type[kind] = by_type.get(kind, 0) + point.sum
    assert by_type == {
        "input": sum(r["input_tokens"] for r in records.values()),
        "output": sum(r["output_tokens"] for r in records.values()),
    }
    durations = otel.metric_points("gen_ai.client.operation.duration")
    assert sum(point.count for point in durations) == sent
    [errored] = [p for p in durations if "error.type" in attributes(p.attributes)]
    assert attributes(errored.attributes)["error.type"] == "500"
    assert list(durations[0].explicit_bounds)[:3] == [0.01, 0.02, 0.04]

    exported = b"".join(otel.raw)
    for secret in (b"Hello there", b"sk-TESTONLY", b"sk-ant-TESTONLY", b'"hi"', b"Hel"):
        assert secret not in exported, secret
