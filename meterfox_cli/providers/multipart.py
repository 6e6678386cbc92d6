"""The form fields at the head of a `multipart/form-data` body (RFC 7578), read as it streams.

An upload's small fields (`model`, `stream`, `response_format`) come before its file in what
the SDKs send (httpx writes `data` fields, then `files`). `FormScan` is fed the body's first
chunks and says when it is done: at the first file part, at the end of the body, or once
MAX_SCAN_BYTES have passed. It only reads; the caller forwards every byte it fed. No I/O.
"""

from __future__ import annotations

import contextlib
import re

MAX_SCAN_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024  # a field longer than this is no model name: left out
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb"\bfilename\*?=", re.IGNORECASE)


def form_boundary(content_type: str) -> str | None:
    """The boundary of a multipart/form-data content type, or None for any other type."""
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip():
            return value.strip().strip('"')
    return None


class FormScan:
    def __init__(self, boundary: str) -> None:
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._held = b""
        self.fields: dict[str, str] = {}
        self.done = False

    def feed(self, chunk: bytes) -> bool:
        """Read one more chunk; True once nothing more will be learned."""
        if self.done:
            return True
        self._held += chunk
        if len(self._held) > MAX_SCAN_BYTES:
            self.done = True
            return True
        self._parse()
        return self.done

    def _parse(self) -> None:
        parts = self._held.split(self._delimiter)
        # parts[0] is the preamble; the last part may be incomplete: parse only closed ones.
        for part in parts[1:-1]:
            if not self._part(part):
                self.done = True
                return
        last = parts[-1] if len(parts) > 1 else b""
        head, sep, _ = last.partition(b"\r\n\r\n")
        if last.startswith(b"--") or (sep and _FILENAME.search(head)):  # the end, or a file
            self.done = True

    def _part(self, part: bytes) -> bool:
        """Note one complete part; False at a file part (where the scan stops)."""
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            return True
        if _FILENAME.search(head):
            return False
        found = _NAME.search(head)
        value = value.removesuffix(b"\r\n")
        if found and len(value) <= MAX_FIELD_BYTES:
            with contextlib.suppress(UnicodeDecodeError):
                self.fields[found.group(1).decode()] = value.decode()
        return True
