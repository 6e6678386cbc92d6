"""store/writer_process.py: a record survives the wire unchanged, and a ProcessWriter (a real
child process, a real SQLite file) commits what it is given and reports it as RecordWriter does."""

from __future__ import annotations

import time
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from meterfox_cli.metrics.prometheus import PrometheusMetrics
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.store.observers import InWriter
from meterfox_cli.store.sqlite import SqliteLedger
from meterfox_cli.store.writer_process import ProcessWriter, _decode, _encode, from_wire, to_wire
from meterfox_cli.usage import Reading, Usage
from tests.conftest import read_records
from tests.fakes.records import SlowToArrive, usage_record
from tests.store.writer_probe import ModulesLoaded

FULL = usage_record(
    model=None,
    streamed=True,
    outcome=Outcome.CLIENT_CLOSED,
    ttfb_ms=None,
    tags=(("feature", "chat"), ("team", "a")),
    reading=Reading(
        model="gpt-4o-2024",
        usage=Usage(3, 1, 1, 0, 5, 2, (("web_search", 1.0),)),
        reported_cost_usd=Decimal("0.000123"),
        price_context=(("tier", "batch"),),
        dedupe_key="pred-1",
    ),
)


def test_a_record_crosses_the_wire_unchanged():
    bare = usage_record(reading=Reading())
    for record in (FULL, bare):
        assert from_wire(to_wire(record)) == record
    assert [from_wire(f) for f in _decode(_encode([FULL, bare]))] == [FULL, bare]
    assert _encode([FULL])[:1] == b"m"  # marshal, not the pickle fallback


# Odd values in every field: huge and negative ints, floats of every size (NaN aside: it equals
# nothing, itself included), unicode and control characters, and None wherever a field takes it.
INTS = st.integers() | st.integers(-(2**200), 2**200)
FLOATS = st.floats(allow_nan=False)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
PAIRS = st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple)
USAGES = st.builds(
    Usage,
    INTS,
    INTS,
    INTS,
    INTS,
    INTS,
    INTS,
    st.lists(st.tuples(TEXT, FLOATS), max_size=3).map(tuple),
)
READINGS = st.builds(
    Reading,
    st.none() | TEXT,
    st.none() | USAGES,
    st.none() | st.decimals(allow_nan=False, allow_infinity=False),
    PAIRS,
    st.none() | TEXT,
)
RECORDS = st.builds(
    UsageRecord,
    TEXT,
    FLOATS,
    TEXT,
    st.none() | TEXT,
    TEXT,
    TEXT,
    INTS,
    st.booleans(),
    st.sampled_from(Outcome),
    TEXT,
    st.none() | FLOATS,
    FLOATS,
    READINGS,
    PAIRS,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORDS, max_size=4))
def test_any_batch_of_records_crosses_the_wire_unchanged(records):
    crossed = [from_wire(fields) for fields in _decode(_encode(records))]
    assert crossed == records
    for before, after in zip(records, crossed, strict=True):
        assert type(after.outcome) is Outcome and after.outcome is before.outcome
        assert repr(after) == repr(before)  # -0.0 stays -0.0; a Decimal keeps its exponent


def test_the_process_writer_commits_everything_by_close_and_reports_it(tmp_path):
    db = tmp_path / "meterfox.db"
    metrics = PrometheusMetrics()
    writer = ProcessWriter(db)
    writer.add_observer(metrics)
    writer.start()
    assert writer.alive and writer.healthy
    records = [
        usage_record(reading=Reading(model="gpt-4o", usage=Usage(7, 0, 0, 0, 8))) for _ in range(50)
    ]
    for record in records:
        writer.submit(record)
    writer.close()
    writer.close_observers()
    assert not writer.alive
    assert {r["id"] for r in read_records(db)} == {r.id for r in records}
    assert (writer.written, writer.queued, writer.dropped) == (50, 0, 0)
    assert writer.healthy and writer.last_error is None and 1 <= writer.max_batch <= 50
    page = metrics.render().decode()
    assert (
        'meterfox_requests_total{key="passthrough",model="gpt-4o",provider="openai",status="200"} 50.0'
        in page
    )


def test_start_does_not_wait_for_the_child_and_counts_what_waits_for_it_as_queued(tmp_path):
    """`serve` listens without waiting for its writer's process (start-up, docs/performance.md):
    records submitted before the child has opened the database wait in its pipe, health counts
    them as queued (not written), and close() still commits every one."""
    db = tmp_path / "meterfox.db"
    SqliteLedger(db).check()  # as `serve` does first: created and migrated
    writer = ProcessWriter(db, pricer=SlowToArrive(1.5))
    began = time.monotonic()
    writer.start()
    assert time.monotonic() - began < 1.0
    records = [usage_record() for _ in range(20)]
    for record in records:
        writer.submit(record)
    time.sleep(0.2)  # the feeder has sent them down the pipe; the child is still unpickling
    assert (writer.written, writer.queued, writer.dropped) == (0, 20, 0) and writer.healthy
    writer.close()
    assert {r["id"] for r in read_records(db)} == {r.id for r in records}
    assert (writer.written, writer.queued) == (20, 0)


def test_the_writer_process_imports_no_web_server_cli_prometheus_or_openssl(tmp_path):
    """Its idle memory (docs/performance.md, "Start-up and idle memory"): the child builds the
    observers `serve` gives it (Prometheus' counting half among them) and prices a record, yet
    loads none of the proxy's web server, the CLI, the Prometheus page's library or hashlib."""
    loaded: list[list[str]] = []
    writer = ProcessWriter(tmp_path / "meterfox.db")
    writer.add_observer(PrometheusMetrics())
    writer.add_observer(InWriter(ModulesLoaded, (), loaded.append))
    writer.start()
    writer.submit(usage_record(reading=Reading(model="gpt-4o", usage=Usage(7, 0, 0, 0, 8))))
    writer.close()
    assert writer.written == 1 and loaded, "the child sent no report"
    assert loaded[-1] == []
