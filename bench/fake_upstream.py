"""A fast fake OpenAI-style upstream for benchmarks: chat completions as JSON or SSE.

`python -m bench.fake_upstream --port 9100 [--chunks 20] [--chunk-delay-ms 0]`
A request whose body has `"stream": true` gets an SSE stream of N content chunks (plus the
usage chunk when `include_usage` is asked); any other gets one JSON completion.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random

from aiohttp import web

MODEL = "gpt-4o-mini-2024-07-18"
VARIANTS = 997  # distinct usages, so no cache keyed on usage can flatter the benchmark


def usage(i: int) -> dict:
    rng = random.Random(i)
    prompt, completion = rng.randint(20, 4000), rng.randint(1, 800)
    cached = rng.choice([0, 0, prompt // 2])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def completion(i: int) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1764000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "word " * 20},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(i),
        }
    ).encode()


def chunk(delta: dict, usage: dict | None = None, choices: bool = True) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if choices else [],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def make_app(chunks: int, delay_s: float) -> web.Application:
    content = [chunk({"content": "word "}) for _ in range(chunks)]
    completions_json = [completion(i) for i in range(VARIANTS)]
    usage_chunks = [chunk({}, usage(i), choices=False) for i in range(VARIANTS)]
    served = itertools.count()

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        variant = next(served) % VARIANTS
        if b'"stream":true' not in body.replace(b" ", b""):
            return web.Response(body=completions_json[variant], content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for part in content:
            if delay_s:
                await asyncio.sleep(delay_s)
            await response.write(part)
        if b'"include_usage":true' in body.replace(b" ", b""):
            await response.write(usage_chunks[variant])
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    app = make_app(args.chunks, args.chunk_delay_ms / 1000)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
