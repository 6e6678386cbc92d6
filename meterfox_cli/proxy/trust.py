"""The system's CA store, read into the TLS contexts made while `serve` starts only once it
listens. aiohttp builds two client contexts when it is imported, each reading the whole store
(about a third of the CPU a passthrough `serve` spends to become healthy, issue 17). Contexts
made inside `trust_later()` get it from `load_trust()` (a thread `serve` starts once it
listens); one used before then (a handshake: `wrap_bio`, `wrap_socket`) first reads it itself,
or waits for the thread reading it, so no handshake ever runs without the store. The thread
holds the GIL while OpenSSL parses the store, as the import did, so a request waits for it at
most as long as it waited for the whole start before. A context that verifies nothing
(`CERT_NONE`: aiohttp's for `ssl=False`) never reads the store, which only verification
consults; if it is made to verify later, its next handshake reads it first."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator

_WAITING: list[_Waiting] = []  # the contexts whose store has not been read yet
_READ_STORE = ssl.SSLContext.set_default_verify_paths  # OpenSSL's, reading the store


class _Waiting:
    """One context without its CA store: its handshakes first make sure the store is read."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._read = False
        context.wrap_bio = self._first(ssl.SSLContext.wrap_bio)  # type: ignore[method-assign]
        context.wrap_socket = self._first(ssl.SSLContext.wrap_socket)  # type: ignore[method-assign]

    def _first(self, handshake):
        def wrapped(*args, **kwargs):
            self.read()
            return handshake(self.context, *args, **kwargs)

        return wrapped

    def read(self) -> None:
        if self.context.verify_mode == ssl.CERT_NONE:
            return  # it verifies nothing, so never consults the store (read if that changes)
        with self._lock:
            if self._read:
                return
            _READ_STORE(self.context)
            self._read = True
            del self.context.wrap_bio, self.context.wrap_socket  # the class's own again


@contextlib.contextmanager
def trust_later() -> Iterator[None]:
    """Contexts made in this block (in this thread: `serve` starts no other before it listens)
    read the system's CA store when `load_trust()` runs or at their first handshake."""
    ssl.SSLContext.set_default_verify_paths = _defer  # type: ignore[method-assign]
    try:
        yield
    finally:
        del ssl.SSLContext.set_default_verify_paths  # the C method again


def _defer(context: ssl.SSLContext) -> None:
    _WAITING.append(_Waiting(context))


def load_trust() -> None:
    """Read the CA store into every context still waiting for it (one that verifies nothing
    goes on without it)."""
    while _WAITING:
        _WAITING.pop(0).read()
