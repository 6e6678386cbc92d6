"""The Prometheus figures from records, read back with prometheus_client's own parser: the
label cap sends model names (and tag values) past it to `other` while the totals stay whole;
only configured tags become labels; budgets and the writer's queue are gauges."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meterfox_cli.config import MetricsConfig
from meterfox_cli.errors import ConfigError
from meterfox_cli.metrics.prometheus import KeyBudget, PrometheusMetrics
from meterfox_cli.pricing.quote import NO_USAGE, Price
from meterfox_cli.records import Outcome
from meterfox_cli.usage import Reading, Usage
from tests.fakes.records import usage_record


def parsed(metrics: PrometheusMetrics) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def chat(model: str, tokens: int = 10, tags=(), cost: int = 1_500_000_000):
    usage = Usage(input_tokens=tokens, output_tokens=tokens)
    record = usage_record(model=model, reading=Reading(model=model, usage=usage), tags=tags)
    return record, Price(cost, "computed")


def test_model_names_past_the_cap_count_under_other_and_the_totals_stay_whole():
    metrics = PrometheusMetrics(MetricsConfig(max_models=2))
    metrics.observe([chat("a"), chat("b"), chat("c"), chat("a"), chat("d", tokens=5)])
    found = parsed(metrics)
    requests = {s.labels["model"]: s.value for s in found["meterfox_requests_total"]}
    assert requests == {"a": 2, "b": 1, "other": 2}
    inputs = {
        s.labels["model"]: s.value
        for s in found["meterfox_tokens_total"]
        if s.labels["type"] == "input"
    }
    assert inputs == {"a": 20, "b": 10, "other": 15}
    assert sum(s.value for s in found["meterfox_cost_usd_total"]) == 7.5
    latency = {s.labels["model"] for s in found["meterfox_request_duration_seconds_count"]}
    assert latency == {"a", "b", "other"}
    # A model already seen keeps its own label after the cap is reached.
    metrics.observe([chat("b")])
    assert {s.labels["model"]: s.value for s in parsed(metrics)["meterfox_requests_total"]}[
        "b"
    ] == 2


def test_only_configured_tags_become_labels_and_their_values_are_capped_too():
    metrics = PrometheusMetrics(MetricsConfig(tag_labels=("team",), max_tag_values=1))
    metrics.observe(
        [
            chat("a", tags=(("team", "search"), ("user", "u-1"))),
            chat("a", tags=(("team", "ads"), ("user", "u-2"))),
            chat("a"),
        ]
    )
    samples = parsed(metrics)["meterfox_requests_total"]
    assert all(set(s.labels) == {"provider", "model", "key", "status", "tag_team"} for s in samples)
    assert {s.labels["tag_team"]: s.value for s in samples} == {"search": 1, "other": 1, "": 1}


def test_errors_are_counted_by_outcome_and_status_and_unpriced_records_add_no_cost():
    failed = usage_record(status=500, outcome=Outcome.UPSTREAM_ERROR, reading=Reading())
    cut = usage_record(status=200, outcome=Outcome.CLIENT_CLOSED, reading=Reading())
    metrics = PrometheusMetrics()
    metrics.observe([(failed, NO_USAGE), (cut, NO_USAGE), chat("gpt-4o", cost=1)])
    found = parsed(metrics)
    errors = {
        (s.labels["status"], s.labels["outcome"]): s.value for s in found["meterfox_errors_total"]
    }
    assert errors == {("500", "upstream_error"): 1, ("200", "client_closed"): 1}
    assert sum(s.value for s in found["meterfox_requests_total"]) == 3
    assert sum(s.value for s in found["meterfox_cost_usd_total"]) == 1e-9


def test_budgets_and_the_writer_queue_are_gauges_read_at_scrape_time():
    queue = [3]
    budgets = [KeyBudget("ci", "month", 25_000_000_000, 30_000_000_000)]
    metrics = PrometheusMetrics(queued=lambda: queue[0], budgets=lambda: budgets)
    found = parsed(metrics)
    assert found["meterfox_writer_queued_records"][0].value == 3
    [budget] = found["meterfox_key_budget_usd"]
    assert (budget.labels, budget.value) == ({"key": "ci", "period": "month"}, 25.0)
    assert found["meterfox_key_budget_spent_usd"][0].value == 30.0
    assert found["meterfox_key_budget_remaining_usd"][0].value == 0.0  # overspent: none left
    queue[0] = 0
    budgets[0] = KeyBudget("ci", "month", 25_000_000_000, 10_000_000_000)
    found = parsed(metrics)
    assert found["meterfox_writer_queued_records"][0].value == 0
    assert found["meterfox_key_budget_remaining_usd"][0].value == 15.0


def test_histogram_buckets_are_cumulative_and_a_bound_counts_itself():
    metrics = PrometheusMetrics()
    fast = usage_record(latency_ms=100.0, ttfb_ms=None)
    slow = usage_record(latency_ms=3000.0, ttfb_ms=None)
    metrics.observe([(fast, NO_USAGE), (slow, NO_USAGE)])
    found = parsed(metrics)
    buckets = {s.labels["le"]: s.value for s in found["meterfox_request_duration_seconds_bucket"]}
    assert (buckets["0.05"], buckets["0.1"], buckets["2.5"], buckets["5"]) == (0, 1, 1, 2)
    assert buckets["+Inf"] == 2
    assert found["meterfox_request_duration_seconds_sum"][0].value == 3.1
    assert "meterfox_time_to_first_byte_seconds_count" not in found  # no first byte: none


def test_two_tags_that_would_share_a_label_are_refused_at_start():
    with pytest.raises(ConfigError, match="tag_a_b"):
        PrometheusMetrics(MetricsConfig(tag_labels=("a-b", "a_b")))
