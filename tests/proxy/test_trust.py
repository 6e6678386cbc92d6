"""proxy/trust.py: TLS contexts made while `serve` starts read the system's CA store later, and
never handshake without it."""

from __future__ import annotations

import ssl
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
