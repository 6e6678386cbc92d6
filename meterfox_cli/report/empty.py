"""What every read command says when nothing has been recorded yet: how to start."""

from __future__ import annotations


def getting_started(base_url: str) -> str:
    """What to say when nothing has been recorded yet."""
    return (
        "No requests recorded yet.\n\n"
        "1. Start the proxy:     meterfox serve\n"
        f"2. Point your SDK at it, e.g. OPENAI_BASE_URL={base_url}/openai/v1\n"
        '   (`meterfox providers` lists every base URL; `eval "$(meterfox env)"` sets them)\n'
        "3. Make a request, then run `meterfox report` again."
    )
