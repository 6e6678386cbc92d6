"""The daemon's log, with every credential redacted before it is written.

MeterFox's own messages never include a key, but libraries' do: aiohttp logs a request it
cannot parse with the offending header line (`Authorization: Bearer sk-…`), and an exception's
text may hold a URL with `?key=…`. So redaction happens on the final formatted text (message
and traceback) of every record, whoever logged it.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A credential header, in any casing, quoted or not: keep the name (and the scheme).
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-key|x-goog-api-key|api-key)"
            r"(['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic|token)\s+)?[^\s'\",\\]+"
        ),
        rf"\1\2\3{REDACTED}",
    ),
    # A key in a query string.
    (
        re.compile(r"(?i)([?&;](?:key|api[_-]?key|access_token|token)=)[^&\s'\"\\#]+"),
        rf"\1{REDACTED}",
    ),
    # Key formats seen on their own: OpenAI / Anthropic / MeterFox proxy keys (sk-, mf-),
    # Google API keys, Replicate, Groq and xAI tokens.
    (
        re.compile(r"\b(?:sk|mf|rk)-[A-Za-z0-9_\-]{8,}|\bAIza[A-Za-z0-9_\-]{20,}"),
        REDACTED,
    ),
    (re.compile(r"\b(?:r8|gsk)_[A-Za-z0-9]{16,}|\bxai-[A-Za-z0-9]{16,}"), REDACTED),
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, traceback, stack) has every credential redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr through the redacting formatter (the daemon's only log)."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
