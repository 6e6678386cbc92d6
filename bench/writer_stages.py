"""The CPU one record costs `serve`'s record writer, stage by stage, in-process: the proxy's side
(the feeder's encoding) and the writer process's (decoding, pricing, rows, INSERTs and rollups,
commit, the observers: Prometheus counting and the figures sent back to the proxy).

    python -m bench.writer_stages [--records 20000] [--batch 30] [--rounds 3] [--tagged]
                                  [--warm-up N]

Records are those `bench/cpu_per_request.py`'s JSON load makes (OpenAI, gpt-4o-mini, a usage
that varies, no key, no tags; `--tagged`: two tags each), in batches of `--batch` (under that
load a batch holds a few tens: the writer takes what 25 ms brought). Each stage is timed with
`time.process_time` (SQLite runs in this thread) over every batch, into a fresh SQLite file per
round; prints each stage's CPU per record, then the medians of the rounds.

Instructions a record, which a loaded machine does not disturb: run it under callgrind twice,
`--warm-up 300 --rounds 1 --records 2000`, then the same with `--baseline` (the same records
made, a round that stores none of them), and divide the difference of the two totals
(callgrind's "I refs") by 2,000 (docs/performance.md, "The writer's CPU per record"):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python -m bench.writer_stages --warm-up 300 --rounds 1 --records 2000 [--baseline]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meterfox_cli.metrics.prometheus import PrometheusMetrics
from meterfox_cli.pricing.book import DEFAULT_BOOK
from meterfox_cli.records import Outcome, UsageRecord, new_request_id
from meterfox_cli.store import writer_process as wire
from meterfox_cli.store.sqlite import SqliteLedger
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading, Usage

STAGES = ("encode", "decode", "price", "store", "observe")


def records(count: int, seed: int, tagged: bool) -> list[UsageRecord]:
    rng = random.Random(seed)
    now = time.time()
    tags = (("env", "prod"), ("feature", "chat")) if tagged else ()
    out = []
    for i in range(count):
        prompt = rng.randrange(8, 2000)
        usage = Usage(
            input_tokens=prompt,
            cached_tokens=rng.randrange(0, prompt // 2 + 1),
            output_tokens=rng.randrange(1, 500),
        )
        out.append(
            UsageRecord(
                id=new_request_id(),
                started_at=now - 60 + 60 * i / count,
                provider="openai",
                model="gpt-4o-mini",
                endpoint="/v1/chat/completions",
                method="POST",
                status=200,
                streamed=False,
                outcome=Outcome.OK,
                key_name="",
                ttfb_ms=None,
                latency_ms=round(rng.uniform(0.5, 5.0), 3),
                reading=Reading(model="gpt-4o-mini-2024-07-18", usage=usage),
                tags=tags,
            )
        )
    return out


class _Sink:
    """The proxy's end of the figures' pipe: bytes written are dropped."""

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def one_round(path: Path, batch_records: list[UsageRecord], batch: int) -> dict[str, float]:
    """Seconds of CPU per stage over all records."""
    ledger = SqliteLedger(path)
    ledger.migrate()
    writer = RecordWriter(ledger, pricer=DEFAULT_BOOK, host="bench")
    in_writer = PrometheusMetrics().in_writer()
    observers = [in_writer.build(*in_writer.args)]
    for observer in observers:
        writer.add_observer(observer)
    reporter = wire._Reporter(writer, observers, _Sink(), False)
    writer.start()  # opens the database; its thread finds nothing queued
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.process_time
    try:
        for offset in range(0, len(batch_records), batch):
            chunk = batch_records[offset : offset + batch]
            t0 = clock()
            data = wire._frame(wire._encode(chunk))
            t1 = clock()
            decoded = [wire.from_wire(f) for f in wire._decode(data[4:])]
            t2 = clock()
            priced = [(r, writer._price(r)) for r in decoded]
            t3 = clock()
            stored = writer._store(priced)
            t4 = clock()
            writer._observers.notify(stored)
            reporter.observe(stored)
            t5 = clock()
            for stage, took in zip(
                STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
            ):
                spent[stage] += took
    finally:
        writer.close(5)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tagged", action="store_true", help="two tags on every record")
    parser.add_argument(
        "--warm-up", type=int, default=0, help="records written first, unmeasured (callgrind)"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="make the records, write none of them (callgrind)"
    )
    args = parser.parse_args()
    import meterfox_cli

    print(f"meterfox_cli from {Path(meterfox_cli.__file__).parent}")
    DEFAULT_BOOK.warm()
    batch_records = records(args.records, args.seed, args.tagged)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="meterfox-writer-stages-") as home:
        if args.warm_up:  # every code path run once, unmeasured (caches, imports, the book)
            warm = records(args.warm_up, args.seed + 1, args.tagged)
            one_round(Path(home) / "warm-up.db", warm, args.batch)
        if args.baseline:  # all the above, and a round that stores nothing (callgrind)
            one_round(Path(home) / "baseline.db", [], args.batch)
            return
        for n in range(args.rounds):
            spent = one_round(Path(home) / f"round{n}.db", batch_records, args.batch)
            per = {stage: took / len(batch_records) * 1e6 for stage, took in spent.items()}
            rounds.append(per)
            print(f"round {n + 1}: " + _line(per), flush=True)
    medians = {stage: statistics.median(r[stage] for r in rounds) for stage in STAGES}
    print("median:  " + _line(medians))


def _line(per: dict[str, float]) -> str:
    total = sum(per.values())
    parts = "  ".join(f"{stage} {value:5.1f}" for stage, value in per.items())
    return f"{parts}  = {total:6.1f} µs CPU a record"


if __name__ == "__main__":
    main()
