"""A fast fake OpenAI-style upstream for benchmarks: chat completions as JSON or SSE.

`python -m bench.fake_upstream --port 9100 [--chunks 20] [--chunk-delay-ms 0]`
A request whose body has `"stream": true` gets an SSE stream of N content chunks (plus the
usage chunk when `include_usage` is asked); any other gets one JSON completion.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {"prompt_tokens": 42, "completion_tokens": 20, "total_tokens": 62}
COMPLETION = json.dumps(
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
        "usage": USAGE,
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
    usage_chunk = chunk({}, USAGE, choices=False)

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b'"stream":true' not in body.replace(b" ", b""):
            return web.Response(body=COMPLETION, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for part in content:
            if delay_s:
                await asyncio.sleep(delay_s)
            await response.write(part)
        if b'"include_usage":true' in body.replace(b" ", b""):
            await response.write(usage_chunk)
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
