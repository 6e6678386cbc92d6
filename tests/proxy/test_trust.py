"""proxy/trust.py: TLS contexts made while `serve` starts read the system's CA store later, and
never handshake without it."""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading

from meterfox_cli.proxy import trust


def ca_certs(context: ssl.SSLContext) -> int:
    return context.cert_store_stats()["x509_ca"]


def test_contexts_made_inside_read_the_store_when_loaded():
    with trust.trust_later():
        verified = ssl.create_default_context()
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.set_default_verify_paths()
    assert ca_certs(verified) == 0 and ca_certs(unverified) == 0  # not read yet
    outside = ssl.create_default_context()
    assert ca_certs(outside) > 0  # the block is over: read at once, as always
    trust.load_trust()
    assert ca_certs(verified) == ca_certs(outside) == ca_certs(unverified)
    assert "wrap_bio" not in vars(verified)  # the class's own handshake again, nothing between


def test_a_handshake_before_the_load_reads_the_store_first():
    with trust.trust_later():
        context = ssl.create_default_context()
    assert ca_certs(context) == 0
    context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.com")
    assert ca_certs(context) > 0
    trust.load_trust()  # nothing left to read: no error, the count unchanged
    assert ca_certs(context) == ca_certs(ssl.create_default_context())


def test_a_handshake_during_the_load_waits_for_it():
    """The loading thread and a first handshake meet on one context: the store is read once,
    before the handshake goes on."""
    with trust.trust_later():
        contexts = [ssl.create_default_context() for _ in range(3)]
    loader = threading.Thread(target=trust.load_trust)
    loader.start()
    bios = [ssl.MemoryBIO(), ssl.MemoryBIO()]
    for context in reversed(contexts):
        context.wrap_bio(*bios, server_hostname="example.com")
        assert ca_certs(context) > 0
    loader.join()
    assert len({ca_certs(context) for context in contexts}) == 1


def test_a_context_that_verifies_nothing_never_reads_the_store():
    """aiohttp's unverified context (CERT_NONE) would hold a copy of the store it never
    consults: it goes on without it; made to verify, its next handshake reads it first."""
    with trust.trust_later():
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        unverified.set_default_verify_paths()
    trust.load_trust()
    unverified.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    assert ca_certs(unverified) == 0
    unverified.verify_mode = ssl.CERT_REQUIRED
    unverified.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    assert ca_certs(unverified) == ca_certs(ssl.create_default_context())


SERVE_IMPORT = """
import ssl
from meterfox_cli.proxy import trust
with trust.trust_later():
    from aiohttp import connector
trust.load_trust()
from meterfox_cli.proxy.upstream import default_context
shared = default_context()
print(shared is connector._SSL_CONTEXT_VERIFIED, shared.verify_mode == ssl.CERT_REQUIRED,
      shared.check_hostname, shared.cert_store_stats()["x509_ca"] > 0,
      connector._SSL_CONTEXT_UNVERIFIED.cert_store_stats()["x509_ca"])
"""


def test_serve_holds_the_store_once_and_verifies_as_before():
    """As `serve` does (aiohttp imported inside trust_later, then load_trust): the upstream
    client verifies with aiohttp's own verified context (certificates and host names, the store
    read), and aiohttp's unverified one holds no copy of the store."""
    done = subprocess.run(
        [sys.executable, "-c", SERVE_IMPORT], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "True", "True", "True", "0"]
