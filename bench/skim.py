"""How long reading usage from a large JSON response holds the event loop: skim vs full parse.

    python -m bench.skim [--inputs 100]

Builds an OpenAI embeddings response for N inputs of 1,536 floats (about 32 KB per input),
feeds it through the OpenAI adapter's tap in 64 KB chunks as the proxy does, and times
`reading()` (the skim) against `json.loads` of the same bytes (what a full parse would cost).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from meterfox_cli.providers.openai import OpenAIFormat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(1)
    data = [
        {"object": "embedding", "index": i, "embedding": [rng.uniform(-1, 1) for _ in range(1536)]}
        for i in range(args.inputs)
    ]
    usage = {"prompt_tokens": 8 * args.inputs, "total_tokens": 8 * args.inputs}
    body = json.dumps(
        {"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage}
    ).encode()
    wire = OpenAIFormat()
    plan = wire.plan("/v1/embeddings", {}, b'{"model": "text-embedding-3-small"}')
    skims, parses = [], []
    for _ in range(args.repeat):
        tap = wire.body_tap(plan, "/v1/embeddings", "application/json", method="POST")
        for at in range(0, len(body), 65536):
            tap.feed(body[at : at + 65536])
        started = time.perf_counter()
        reading = tap.reading()
        skims.append(time.perf_counter() - started)
        assert reading.usage is not None and reading.usage.input_tokens == usage["prompt_tokens"]
        started = time.perf_counter()
        json.loads(body)
        parses.append(time.perf_counter() - started)
    print(
        f"{len(body) / 1e6:.1f} MB response: skim {statistics.median(skims) * 1000:.1f} ms, "
        f"full parse {statistics.median(parses) * 1000:.1f} ms (medians of {args.repeat})"
    )


if __name__ == "__main__":
    main()
