"""The proxy's key check, without HTTP: every outcome, how fast changes land, and no I/O."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time

import pytest

from meterfox_cli.keys.authorizer import UNKNOWN_KEY_NAME, KeyAuthorizer
from meterfox_cli.keys.budget import Budget, Period
from meterfox_cli.keys.estimate import estimate
from meterfox_cli.keys.provider_keys import ProviderKeys, choose_store, env_passphrase
from meterfox_cli.keys.proxy_keys import KeySpec, create_key, revoke_key, set_budget
from meterfox_cli.paths import resolve_paths
from meterfox_cli.pricing.book import DEFAULT_BOOK
from meterfox_cli.pricing.quote import Price
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.proxy.auth import LOOK_UP, PASSTHROUGH, Credential
from meterfox_cli.store.db import connect
from meterfox_cli.store.rows import insert_records
from meterfox_cli.usage import Reading, Usage
from tests.conftest import opened_during
from tests.fakes.records import usage_record
from tests.keys.support import add_request

OPENAI_KEY = "sk-proj-TESTONLY-authorizer"
DOLLAR = 1_000_000_000


def bearer(secret: str) -> Credential:
    return Credential("authorization", "Bearer ", secret)


@pytest.fixture
def setup(plaintext_keyring):
    paths = resolve_paths()
    paths.ensure()
    conn = connect(paths.database)
    choice = choose_store(paths.data_dir, env_passphrase())
    ProviderKeys(conn, choice).set("openai", OPENAI_KEY)
    authorizers: list[KeyAuthorizer] = []

    def start(**kwargs) -> KeyAuthorizer:
        authorizer = KeyAuthorizer(paths.database, choice, **kwargs)
        authorizer.start()
        authorizers.append(authorizer)
        return authorizer

    yield conn, start, choice
    for authorizer in authorizers:
        authorizer.close()
    conn.close()


def wait_until(predicate, timeout: float = 1.0) -> float:
    """Seconds until `predicate()` held; fails the test past `timeout`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "not within the deadline"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_valid_key_gets_the_provider_key_its_name_and_tags(setup):
    conn, start, _ = setup
    new = create_key(conn, KeySpec("app", tags=(("team", "search"),)))
    decision = start().decide("openai", bearer(new.secret))
    assert not decision.refused
    assert (decision.key_name, decision.replacement) == ("app", OPENAI_KEY)
    assert decision.tags == (("team", "search"),)


def test_other_credentials_pass_through_unless_proxy_keys_are_required(setup):
    _, start, _ = setup
    open_door = start()
    assert open_door.decide("openai", bearer("sk-callers-own")) is PASSTHROUGH
    assert open_door.decide("openai", None) is PASSTHROUGH
    closed = start(require_proxy_key=True)
    for credential in (bearer("sk-callers-own"), None):
        decision = closed.decide("openai", credential)
        assert decision.status == 401 and decision.error_kind == "proxy_key_required"
        assert decision.key_name == "passthrough"


async def test_an_unknown_proxy_key_is_refused_and_never_named(setup):
    _, start, _ = setup
    authorizer = start()
    assert authorizer.decide("openai", bearer("mf-not-a-key-we-minted")) is LOOK_UP
    decision = await authorizer.look_up("openai", bearer("mf-not-a-key-we-minted"))
    assert decision.status == 401 and decision.key_name == UNKNOWN_KEY_NAME
    assert "mf-not" not in (decision.message or "")


def test_revoked_expired_and_out_of_scope_keys_are_refused(setup):
    conn, start, _ = setup
    now = time.time()
    revoked = create_key(conn, KeySpec("gone"))
    revoke_key(conn, "gone")
    expired = create_key(conn, KeySpec("old", expires_in_s=60), now=now - 120)
    scoped = create_key(conn, KeySpec("groq-only", providers=("groq",)))
    authorizer = start()
    cases = [
        (revoked, "proxy_key_revoked", "revoked"),
        (expired, "proxy_key_expired", "expired"),
        (scoped, "proxy_key_not_allowed", "may not call openai"),
    ]
    for new, kind, words in cases:
        decision = authorizer.decide("openai", bearer(new.secret))
        assert (decision.status, decision.error_kind) == (401, kind)
        assert decision.key_name == new.key.name and words in (decision.message or "")
        assert decision.replacement is None


def test_a_provider_without_a_stored_key_says_how_to_add_one(setup):
    conn, start, _ = setup
    new = create_key(conn, KeySpec("app"))
    decision = start().decide("groq", bearer(new.secret))
    assert decision.status == 401 and "meterfox keys set groq" in (decision.message or "")


def test_over_budget_is_429_naming_the_key_and_budget(setup):
    conn, start, _ = setup
    new = create_key(conn, KeySpec("app", budget=Budget(DOLLAR, Period.DAY)))
    authorizer = start()
    add_request(conn, "app", DOLLAR // 2, time.time())
    wait_until(lambda: authorizer.snapshot.spend.get("app") == DOLLAR // 2)
    assert not authorizer.decide("openai", bearer(new.secret)).refused
    add_request(conn, "app", DOLLAR // 2, time.time())
    wait_until(lambda: authorizer.decide("openai", bearer(new.secret)).refused)
    decision = authorizer.decide("openai", bearer(new.secret))
    assert decision.status == 429 and decision.error_kind == "budget_exceeded"
    assert "'app'" in decision.message and "$1.00/day" in decision.message
    set_budget(conn, "app", Budget(2 * DOLLAR, Period.DAY))
    wait_until(lambda: not authorizer.decide("openai", bearer(new.secret)).refused)


def test_revocation_lands_within_a_second_without_restart(setup):
    conn, start, _ = setup
    new = create_key(conn, KeySpec("app"))
    authorizer = start()
    assert not authorizer.decide("openai", bearer(new.secret)).refused
    other = connect(resolve_paths().database)  # as another process would
    revoke_key(other, "app")
    other.close()
    elapsed = wait_until(lambda: authorizer.decide("openai", bearer(new.secret)).refused)
    assert elapsed < 1.0


def test_a_new_or_changed_provider_key_lands_without_restart(setup):
    conn, start, choice = setup
    new = create_key(conn, KeySpec("app"))
    authorizer = start()
    assert authorizer.decide("groq", bearer(new.secret)).refused
    other = connect(resolve_paths().database)
    ProviderKeys(other, choice).set("groq", "gsk_TESTONLY")
    ProviderKeys(other, choice).set("openai", OPENAI_KEY + "-v2")
    other.close()
    wait_until(lambda: authorizer.decide("groq", bearer(new.secret)).replacement == "gsk_TESTONLY")
    assert authorizer.decide("openai", bearer(new.secret)).replacement == OPENAI_KEY + "-v2"
    ProviderKeys(conn, choice).unset("groq")
    wait_until(lambda: authorizer.decide("groq", bearer(new.secret)).refused)


BLOCKING_MODULES = ("sqlite3", "_sqlite3", "keyring", "keyrings", "cryptography", "socket")


def blocking_call(event: str, frame, arg) -> str | None:
    """The name of a call that may block (SQLite, keyring, crypto, files, sockets), if any."""
    if event == "call":
        module = frame.f_globals.get("__name__", "")
        return module if module.startswith(BLOCKING_MODULES) else None
    if event == "c_call":
        owner = getattr(arg, "__self__", None)
        module = type(owner).__module__ if owner is not None else arg.__module__ or ""
        if module.startswith(BLOCKING_MODULES) or module in ("posix", "_io", "_socket", "select"):
            return f"{module}.{arg.__name__}"
    return None


def test_decide_does_no_io(setup):
    """decide runs on the event loop: no file, socket, SQLite, keyring or crypto call while it
    runs. A profiler sees every Python and C call; audit hooks see opens from anywhere."""
    conn, start, _ = setup
    live = create_key(conn, KeySpec("app", budget=Budget(DOLLAR, Period.MONTH)))
    create_key(conn, KeySpec("gone"))
    gone = revoke_key(conn, "gone")
    authorizer = start()
    seen: list[str] = []
    me = threading.get_ident()
    recording = threading.Event()

    def audit(event: str, args: tuple) -> None:
        if (
            recording.is_set()
            and threading.get_ident() == me
            and event.split(".")[0] in ("open", "os", "socket", "sqlite3", "subprocess", "shutil")
        ):
            seen.append(event)

    def profile(frame, event, arg) -> None:
        name = blocking_call(event, frame, arg)
        if name:
            seen.append(name)

    sys.addaudithook(audit)  # cannot be removed: it records only while `recording` is set
    calls = [
        ("openai", bearer(live.secret)),
        ("openai", bearer("mf-unknown")),
        ("openai", bearer(gone.prefix + "x")),
        ("groq", bearer(live.secret)),
        ("openai", bearer("sk-passthrough")),
        ("openai", None),
    ]
    # A budgeted key's admission and settlement run on the loop too: a worst-case estimate
    # and the real cost, priced from memory.
    body = b'{"model": "gpt-4o-mini", "max_tokens": 100, "messages": []}'
    plan = OpenAIFormat().plan("/v1/chat/completions", {}, body)
    usage = Usage(input_tokens=10, output_tokens=100)
    done = usage_record(key_name="app", reading=Reading(model="gpt-4o-mini", usage=usage))

    def admit_and_settle() -> None:
        decision = authorizer.decide("openai", bearer(live.secret))
        admission = authorizer.admit(decision, "openai", plan, body)
        assert admission.refusal is None
        admission.settle(done)

    admit_and_settle()  # the model's first price lookup (CPU only) happens here
    recording.set()
    sys.setprofile(profile)
    try:
        for _ in range(100):
            for slug, credential in calls:
                authorizer.decide(slug, credential)
            admit_and_settle()
    finally:
        sys.setprofile(None)
        recording.clear()
    assert seen == []


def test_the_io_detector_sees_sqlite_and_files(setup):
    """The detector above can fail: a query and a file read are caught."""
    conn, _, _ = setup
    seen: list[str] = []

    def profile(frame, event, arg) -> None:
        name = blocking_call(event, frame, arg)
        if name:
            seen.append(name)

    sys.setprofile(profile)
    try:
        conn.execute("SELECT 1").fetchone()
        with open(__file__, "rb") as handle:
            handle.read(1)
    finally:
        sys.setprofile(None)
    assert any("sqlite3" in name for name in seen) and any("_io" in name for name in seen)


def test_an_admin_key_stored_for_sync_never_reaches_the_proxy(setup):
    """`keys set openai-admin` shares the provider-key store; the proxy must not hold it, so no
    request can carry it upstream under any provider name."""
    conn, start, choice = setup
    ProviderKeys(conn, choice).set("openai-admin", "sk-admin-TESTONLY")
    new = create_key(conn, KeySpec("app"))
    authorizer = start()
    decision = authorizer.decide("openai-admin", bearer(new.secret))
    assert decision.refused and decision.replacement is None
    assert authorizer.decide("openai", bearer(new.secret)).replacement == OPENAI_KEY


async def test_two_authorizers_on_one_ledger_admit_against_the_reservations_of_both(setup):
    """As two workers (or daemons) on one ledger: what one reserved, the other sees at once,
    before any record; the record's insert frees it; a request cancelled while its reservation
    is being taken gives it back."""
    conn, start, _ = setup
    body = b'{"model": "gpt-4o-mini", "max_tokens": 500, "messages": []}'
    plan = OpenAIFormat().plan("/v1/chat/completions", {}, body)
    worst = estimate("openai", plan, body, DEFAULT_BOOK, time.time()).nanousd
    assert worst
    new = create_key(conn, KeySpec("app", budget=Budget(worst * 3 // 2, Period.DAY)))
    first, second = start(), start()
    decision = first.decide("openai", bearer(new.secret))

    async def admit(authorizer: KeyAuthorizer, request_id: str):
        admission = authorizer.admit(decision, "openai", plan, body, request_id)
        assert admission.pending is not None
        return await admission.pending

    def reserved() -> list[str]:
        return [row[0] for row in conn.execute("SELECT request_id FROM key_reservations")]

    assert (await admit(first, "r1")).refusal is None
    assert reserved() == ["r1"]
    refused = (await admit(second, "r2")).refusal  # its own memory holds nothing for "app"
    assert refused is not None and refused.error_kind == "budget_exceeded"
    assert second.ledger.spent("app") == 0  # its own reservation given back
    insert_records(conn, [(usage_record(id="r1", key_name="app"), Price(worst // 10, "computed"))])
    assert reserved() == []
    pending = asyncio.ensure_future(admit(second, "r3"))
    await asyncio.sleep(0)
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    wait_until(lambda: reserved() == [], timeout=5)
    assert second.ledger.spent("app") == 0
    assert (await admit(second, "r4")).refusal is None


async def test_a_ledger_that_cannot_reserve_leaves_this_processs_answer_for_a_while(setup, caplog):
    """The proxy keeps forwarding when the ledger fails (here its table is gone): the request
    is admitted on this process's own reservation, logged once, and the ledger is not asked
    again for SHARED_RETRY_S (an outage costs one timeout, not one per request)."""
    conn, start, _ = setup
    new = create_key(conn, KeySpec("app", budget=Budget(DOLLAR, Period.DAY)))
    authorizer = start()
    decision = authorizer.decide("openai", bearer(new.secret))
    body = b'{"model": "gpt-4o-mini", "max_tokens": 5, "messages": []}'
    plan = OpenAIFormat().plan("/v1/chat/completions", {}, body)
    conn.execute("DROP TABLE key_reservations")
    admission = authorizer.admit(decision, "openai", plan, body, "r1")
    assert admission.pending is not None
    assert (await admission.pending).refusal is None
    assert "cannot reserve in the ledger" in caplog.text
    again = authorizer.admit(decision, "openai", plan, body, "r2")
    assert again.pending is None and again.refusal is None
    assert authorizer.ledger.stats()["reserved_requests"] == 2


def test_keys_in_this_machines_file_are_read_over_one_connection_and_still_seen(setup):
    """The default key ledger is the SQLite file the provider keys are in: the watcher opens
    one connection to it, not two (each open reads the whole schema, twice, before serve
    listens), and a key minted later is still found (issue 17, start-up round five)."""
    conn, start, _ = setup
    with opened_during() as opened:
        authorizer = start()
    writable = [uri for uri in opened if "mode=ro" not in uri]
    assert writable == [f"file:{resolve_paths().database}"]
    new = create_key(conn, KeySpec("late"))
    decision = asyncio.run(authorizer.look_up("openai", bearer(new.secret)))
    assert (decision.key_name, decision.replacement) == ("late", OPENAI_KEY)
