"""The daemon's log formatter redacts credentials from messages and tracebacks alike."""

from __future__ import annotations

import logging

import pytest

from meterfox_cli.logs import REDACTED, RedactingFormatter, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("b'Authorization: Bearer sk-live-abc123\\rX: y'", "sk-live-abc123"),
        ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("{'X-Api-Key': 'ant-key-0001'}", "ant-key-0001"),
        ("x-goog-api-key=goog-key-0002", "goog-key-0002"),
        ("api-key: azure-key-0003", "azure-key-0003"),
        (
            "POST /gemini/v1beta/models/g:generateContent?alt=sse&key=plain0004 HTTP/1.1",
            "plain0004",
        ),
        ("url='https://h/x?api_key=plain0005#frag'", "plain0005"),
        ("a bare sk-proj-0123456789abcdef in a message", "sk-proj-0123456789abcdef"),
        ("proxy key mf-0123456789abcdef leaked?", "mf-0123456789abcdef"),
        ("AIzaSyA0123456789abcdefghijklmnop", "AIzaSyA0123456789abcdefghijklmnop"),
        ("token r8_0123456789abcdefghij", "r8_0123456789abcdefghij"),
        ("gsk_0123456789abcdefghij and xai-0123456789abcdefghij", "0123456789abcdefghij"),
    ],
)
def test_every_credential_shape_is_redacted(text, secret):
    out = redact(text)
    assert secret not in out and REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "upstream openai is unreachable (ClientConnectorError)",
        "cannot write records (database is locked); 5 waiting, forwarding continues, retrying",
        "the provider key for openai has a control character in it",
        "record 0190abc dropped: prompt_tokens=12 risk-assessment task-queue",
    ],
)
def test_ordinary_messages_are_left_alone(text):
    assert redact(text) == text


def test_tracebacks_are_redacted_too():
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ValueError("bad header: Authorization: Bearer sk-secret-0123456789")
    except ValueError:
        record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error", (), None)
        import sys

        record.exc_info = sys.exc_info()
    out = formatter.format(record)
    assert "Traceback" in out and "sk-secret-0123456789" not in out
