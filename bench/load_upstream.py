"""An OpenAI-compatible upstream for benchmarks, run as its own process (loopback only).

Answers every POST with a chat completion: JSON, or (with `"stream": true`) an SSE stream of a
few content chunks, plus the usage-only chunk when `stream_options.include_usage` is asked for
(as OpenAI does), then `data: [DONE]`. Bodies are prebuilt: the fake costs as little as it can.

    python bench/load_upstream.py --port 9100
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26}
BASE = {"id": "chatcmpl-bench", "created": 1764000000, "model": MODEL}


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    event = {
        **BASE,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


JSON_BODY = json.dumps(
    {
        **BASE,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "one two three four five"},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
).encode()
STREAM_CHUNKS = [
    _chunk({"role": "assistant"}),
    *(_chunk({"content": word}) for word in ("one ", "two ", "three ", "four ", "five")),
    _chunk({}, "stop"),
]
USAGE_CHUNK = (
    b"data: "
    + json.dumps(
        {**BASE, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
    ).encode()
    + b"\n\n"
)
DONE = b"data: [DONE]\n\n"


async def handle(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.Response(body=JSON_BODY, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for chunk in STREAM_CHUNKS:
        await response.write(chunk)
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(USAGE_CHUNK)
    await response.write(DONE)
    await response.write_eof()
    return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
