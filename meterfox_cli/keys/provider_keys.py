"""Provider keys: in the OS keyring, or where there is none, in an encrypted file.

Where a key goes is decided once per process (`choose_store`), in keyring's own order:
1. `PYTHON_KEYRING_BACKEND`, then keyring's config file (`keyringrc.cfg`): an explicit choice
   is honoured, except a backend that stores nothing (`keyring.backends.null.Keyring`,
   `keyring.backends.fail.Keyring`) which selects the encrypted file. Setting
   `PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring` is therefore the way to choose the
   file on a machine that has a keyring.
2. Otherwise the best backend keyring detects, if keyring recommends it (priority >= 1) and it
   answers a probe. A backend keyring does not recommend (the `keyrings.alt` plaintext file, or
   none at all on headless Linux and CI) selects the encrypted file instead: an auto-detected
   plaintext file is not a place for a provider key.

The encrypted file (`provider-keys.enc` in the data dir, 0600) holds every provider key as one
AES-256-GCM message. Its key comes from scrypt (N=2**17, r=8, p=1, a random 16-byte salt) over
a passphrase from `METERFOX_PASSPHRASE`, the owner-only file `METERFOX_PASSPHRASE_FILE` names
(how a service started at login reads it: docs/service.md), or an interactive prompt. The header (format, KDF
parameters, salt) is authenticated as associated data, so it cannot be altered unnoticed; a
fresh 96-bit nonce is drawn for every write.

The database keeps an index of which providers have a key and where (never the key), so
`keys providers` needs neither the keyring nor the passphrase, and a running daemon sees a
change through the version counter that index bumps.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from meterfox_cli.errors import KeyError_, MeterFoxError
from meterfox_cli.proxy.auth import is_proxy_key
from meterfox_cli.store.db import transaction

SERVICE = "meterfox"
KEY_FILE_NAME = "provider-keys.enc"
PASSPHRASE_ENV = "METERFOX_PASSPHRASE"
PASSPHRASE_FILE_ENV = "METERFOX_PASSPHRASE_FILE"
KEYRING_ENV = "PYTHON_KEYRING_BACKEND"
FILE_STORE = "file"
KEYRING_STORE_PREFIX = "keyring:"
MIN_PASSPHRASE_CHARS = 8
_PROBE_USER = "__meterfox_probe__"
_FORMAT = "meterfox-provider-keys"
_SCRYPT_N = 2**17
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_NONCE_BYTES = 12
_NOTHING_STORED = ("keyring.backends.null.Keyring", "keyring.backends.fail.Keyring")

# Asked for the passphrase; `new` is True when it will create the file (a prompt confirms it).
PassphraseSource = Callable[[bool], str]


class SecretStore(Protocol):
    """Where provider keys are kept. `label` is what `doctor` and `keys set` show."""

    id: str  # recorded in the index: "file" or "keyring:<module.Class>"
    label: str

    def get(self, provider: str) -> str | None: ...

    def set(self, provider: str, secret: str) -> None: ...

    def delete(self, provider: str) -> None: ...


@dataclass(frozen=True)
class StoreChoice:
    """The store this process uses, and why (for `meterfox doctor`)."""

    store: SecretStore
    reason: str
    file_store: EncryptedFileStore  # where keys recorded as "file" are, whichever is in use
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An index row: a provider has a key, in that store, since then. Never the key."""

    provider: str
    store: str
    set_at: float


def env_passphrase(environ: Mapping[str, str] | None = None) -> PassphraseSource:
    """A passphrase source that reads METERFOX_PASSPHRASE, else the file METERFOX_PASSPHRASE_FILE
    names, and never prompts."""
    env = os.environ if environ is None else environ

    def source(new: bool) -> str:
        value = env.get(PASSPHRASE_ENV)
        if value:
            return value
        if env.get(PASSPHRASE_FILE_ENV):
            return read_passphrase_file(Path(env[PASSPHRASE_FILE_ENV]))
        raise KeyError_(
            f"the provider keys are in an encrypted file and no passphrase was given: "
            f"set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV} (or run the command in a terminal "
            "to be asked)"
        )

    return source


def has_env_passphrase(environ: Mapping[str, str]) -> bool:
    """Whether a passphrase is given without a prompt (METERFOX_PASSPHRASE or its file)."""
    return bool(environ.get(PASSPHRASE_ENV) or environ.get(PASSPHRASE_FILE_ENV))


def read_passphrase_file(path: Path) -> str:
    """The passphrase in `path` (its first line), which only its owner may read."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise KeyError_(
                f"{PASSPHRASE_FILE_ENV}: {path} is readable by others (mode {mode & 0o777:o}): "
                f"chmod 600 {path}"
            )
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise KeyError_(f"{PASSPHRASE_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
    if not lines or not lines[0]:
        raise KeyError_(f"{PASSPHRASE_FILE_ENV}: {path} is empty: put the passphrase in it")
    return lines[0]


# --- the OS keyring -------------------------------------------------------------------------


class KeyringStore:
    """A keyring backend instance (never keyring's process-global one, which caches the first
    choice forever)."""

    def __init__(self, backend) -> None:
        self._backend = backend
        cls = type(backend)
        self.id = f"{KEYRING_STORE_PREFIX}{cls.__module__}.{cls.__name__}"
        self.label = f"OS keyring ({cls.__module__}.{cls.__name__})"

    def get(self, provider: str) -> str | None:
        from keyring.errors import KeyringError

        try:
            return self._backend.get_password(SERVICE, provider)
        except KeyringError as exc:
            raise KeyError_(
                f"the {self.label} would not give the {provider} key ({exc}): unlock it, or "
                f"run `meterfox doctor` to see which store is in use"
            ) from exc

    def set(self, provider: str, secret: str) -> None:
        from keyring.errors import KeyringError

        try:
            self._backend.set_password(SERVICE, provider, secret)
        except KeyringError as exc:
            raise KeyError_(
                f"the {self.label} refused the {provider} key ({exc}): unlock it, or set "
                f"{KEYRING_ENV}=keyring.backends.null.Keyring to use the encrypted file"
            ) from exc

    def delete(self, provider: str) -> None:
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            self._backend.delete_password(SERVICE, provider)
        except PasswordDeleteError:
            return  # already gone
        except KeyringError as exc:
            raise KeyError_(
                f"the {self.label} would not delete the {provider} key ({exc}): unlock it and "
                f"run `meterfox keys unset {provider}` again"
            ) from exc


# --- the encrypted file ---------------------------------------------------------------------


class EncryptedFileStore:
    """All provider keys in one AES-256-GCM message, keyed by scrypt over a passphrase.

    The passphrase is asked for at most once per process and kept in memory (a daemon needs it
    to read keys that `keys set` changes while it runs); derived keys are cached per salt, and
    derived one at a time (a read while a derivation is under way waits for it).
    """

    id = FILE_STORE

    def __init__(self, path: Path, passphrase: PassphraseSource, *, scrypt_n: int = _SCRYPT_N):
        self.path = path
        self.label = f"encrypted file {path}"
        self._source = passphrase
        self._passphrase: str | None = None
        self._scrypt_n = scrypt_n
        self._derived: dict[tuple[bytes, int, int, int], bytes] = {}
        self._deriving = threading.Lock()

    def get(self, provider: str) -> str | None:
        return self._read().get(provider)

    def set(self, provider: str, secret: str) -> None:
        with self._locked():
            entries, header = self._read_with_header()
            entries[provider] = secret
            self._write(entries, header)

    def delete(self, provider: str) -> None:
        with self._locked():
            entries, header = self._read_with_header()
            if entries.pop(provider, None) is not None:
                self._write(entries, header)

    def providers(self) -> list[str]:
        return sorted(self._read())

    def unlock(self, source: PassphraseSource | None = None) -> None:
        """Get the passphrase now, from `source` if given, and check it opens the file."""
        if source is not None and self._passphrase is None:
            self._passphrase = source(False)
        self._read()

    def unlock_soon(self, source: PassphraseSource) -> Future[None]:
        """`unlock`, the passphrase asked for now (a prompt comes before this returns) and the
        file opened in a thread: scrypt (N=2**17: half a second on purpose) releases the GIL,
        so the caller's own work goes on beside it. The future ends when the file is open, or
        holds the error `unlock` would raise."""
        opened: Future[None] = Future()
        try:
            if self._passphrase is None:
                self._passphrase = source(False)
        except MeterFoxError as exc:
            opened.set_exception(exc)
            return opened

        def run() -> None:
            try:
                self._read()
            except BaseException as exc:
                opened.set_exception(exc)
            else:
                opened.set_result(None)

        threading.Thread(target=run, name="meterfox-unlock", daemon=True).start()
        return opened

    def _read(self) -> dict[str, str]:
        return self._read_with_header()[0]

    def _read_with_header(self) -> tuple[dict[str, str], dict[str, object] | None]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise KeyError_(
                f"cannot read {self.path} ({exc.strerror}): check it belongs to you"
            ) from exc
        header, nonce, ciphertext = self._parse(raw)
        key = self._key_for(header, new=False)
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            plain = AESGCM(key).decrypt(nonce, ciphertext, _aad(header))
        except InvalidTag as exc:
            self._passphrase = None
            raise KeyError_(
                f"the passphrase does not open {self.path}: check {PASSPHRASE_ENV}, or move "
                f"the file aside and set the keys again"
            ) from exc
        entries = json.loads(plain)
        return {str(k): str(v) for k, v in entries.items()}, header

    def _parse(self, raw: bytes) -> tuple[dict[str, object], bytes, bytes]:
        try:
            data = json.loads(raw)
            header = data["header"]
            if header["format"] != _FORMAT or header["version"] != 1:
                raise ValueError("unknown format")
            kdf = header["kdf"]
            if kdf["name"] != "scrypt" or header["cipher"] != "AES-256-GCM":
                raise ValueError("unknown algorithm")
            return header, _b64d(data["nonce"]), _b64d(data["ciphertext"])
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyError_(
                f"{self.path} is not a MeterFox key file or is damaged: move it aside and set "
                f"the keys again with `meterfox keys set`"
            ) from exc

    def _write(self, entries: dict[str, str], header: dict[str, object] | None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        new = header is None
        if header is None:
            header = {
                "format": _FORMAT,
                "version": 1,
                "cipher": "AES-256-GCM",
                "kdf": {
                    "name": "scrypt",
                    "n": self._scrypt_n,
                    "r": _SCRYPT_R,
                    "p": _SCRYPT_P,
                    "salt": _b64e(secrets.token_bytes(_SALT_BYTES)),
                },
            }
        key = self._key_for(header, new=new)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = json.dumps(entries, sort_keys=True).encode()
        ciphertext = AESGCM(key).encrypt(nonce, plain, _aad(header))
        document = {"header": header, "nonce": _b64e(nonce), "ciphertext": _b64e(ciphertext)}
        write_owner_only(self.path, json.dumps(document, indent=1).encode())

    def _key_for(self, header: dict[str, object], new: bool) -> bytes:
        kdf = header["kdf"]
        assert isinstance(kdf, dict)
        salt = _b64d(kdf["salt"])
        params = (salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
        with self._deriving:
            if params in self._derived:
                return self._derived[params]
            passphrase = self._get_passphrase(new)
            from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

            key = Scrypt(salt=salt, length=32, n=params[1], r=params[2], p=params[3]).derive(
                passphrase.encode()
            )
            self._derived[params] = key
            return key

    def _get_passphrase(self, new: bool) -> str:
        if self._passphrase is None:
            passphrase = self._source(new)
            if new and len(passphrase) < MIN_PASSPHRASE_CHARS:
                raise KeyError_(
                    f"the passphrase for a new key file must have at least "
                    f"{MIN_PASSPHRASE_CHARS} characters: choose a longer one"
                )
            self._passphrase = passphrase
        return self._passphrase

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (two `keys set` at once lose no key)."""
        ensure_owner_only_dir(self.path.parent)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory locks
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _aad(header: dict[str, object]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64d(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


def ensure_owner_only_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def write_owner_only(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a 0600 file holding `data`."""
    ensure_owner_only_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --- choosing a store -----------------------------------------------------------------------


def choose_store(
    data_dir: Path,
    passphrase: PassphraseSource,
    environ: Mapping[str, str] | None = None,
    *,
    file_store: EncryptedFileStore | None = None,
) -> StoreChoice:
    """The store this process uses, following keyring's own order (see the module doc);
    `file_store`: the encrypted file's, if the caller made it already (`serve` opens it first)."""
    import keyring.backend
    import keyring.core
    from keyring.util import platform_

    env = os.environ if environ is None else environ
    if file_store is None:
        file_store = EncryptedFileStore(data_dir / KEY_FILE_NAME, passphrase)
    explicit = env.get(KEYRING_ENV)
    if explicit:
        try:
            backend = keyring.core.load_keyring(explicit)
        except Exception as exc:
            raise KeyError_(
                f"{KEYRING_ENV}={explicit} cannot be loaded ({type(exc).__name__}: {exc}): "
                f"fix the class name or unset it"
            ) from exc
        return _explicit(backend, f"{KEYRING_ENV}={explicit}", file_store)
    config_file = platform_.config_root() / "keyringrc.cfg"
    try:
        configured = keyring.core.load_config()
    except Exception as exc:
        raise KeyError_(
            f"keyring's config file {config_file} names a backend that cannot be loaded "
            f"({exc}): fix or remove its default-keyring line"
        ) from exc
    if configured is not None:
        return _explicit(configured, f"keyring's config file {config_file}", file_store)
    return _detected(keyring.backend.get_all_keyring(), file_store)


def _explicit(backend, source: str, file_store: EncryptedFileStore) -> StoreChoice:
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if name in _NOTHING_STORED:
        return StoreChoice(
            file_store,
            f"{source} selects a keyring that stores nothing, so the encrypted file",
            file_store,
        )
    store = KeyringStore(backend)
    warning = None
    if "plaintext" in name.lower():
        warning = f"{name} keeps keys in clear text on disk; unset {KEYRING_ENV} to encrypt them"
    elif type(backend).priority < 1:
        warning = f"keyring does not recommend {name}; check how it protects keys at rest"
    return StoreChoice(store, f"chosen by {source}", file_store, warning)


def _detected(backends: list, file_store: EncryptedFileStore) -> StoreChoice:
    import keyring.backend

    best = max(backends, key=keyring.backend.by_priority, default=None)
    if best is None or best.priority < 1:
        found = "no OS keyring was found (headless Linux or CI?)"
        if best is not None:
            name = f"{type(best).__module__}.{type(best).__name__}"
            found = (
                f"no recommended OS keyring was found (only {name}, which keyring does not "
                f"recommend)"
            )
        return StoreChoice(file_store, f"{found}, so the encrypted file", file_store)
    store = KeyringStore(best)
    try:
        best.get_password(SERVICE, _PROBE_USER)
    except Exception as exc:
        return StoreChoice(
            file_store,
            f"the OS keyring ({store.label}) did not answer ({type(exc).__name__}: {exc}), "
            f"so the encrypted file",
            file_store,
        )
    return StoreChoice(store, "the best OS keyring keyring detected", file_store)


def store_by_id(store_id: str, choice: StoreChoice) -> SecretStore:
    """The store a key was recorded in: this process's own, or the keyring class named."""
    if store_id == choice.store.id:
        return choice.store
    if store_id == FILE_STORE:
        return choice.file_store
    if store_id.startswith(KEYRING_STORE_PREFIX):
        import keyring.core

        name = store_id[len(KEYRING_STORE_PREFIX) :]
        try:
            return KeyringStore(keyring.core.load_keyring(name))
        except Exception as exc:
            raise KeyError_(
                f"the key was stored in {name}, which cannot be loaded here ({exc}): run with "
                f"the same {KEYRING_ENV} as `meterfox keys set`, or set the key again"
            ) from exc
    raise KeyError_(f"unknown key store {store_id!r}: set the key again with `meterfox keys set`")


# --- the facade the CLI and the daemon use --------------------------------------------------


class ProviderKeys:
    """Provider keys: the secret in the chosen store, the fact of it in the database index."""

    def __init__(self, conn: sqlite3.Connection, choice: StoreChoice) -> None:
        self._conn = conn
        self.choice = choice

    def set(self, provider: str, secret: str) -> SecretStore:
        """Store the key, then index it (the index bump is what a daemon reacts to)."""
        secret = check_provider_secret(provider, secret)
        previous = self.stored_in(provider)
        store = self.choice.store
        store.set(provider, secret)
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO provider_keys (provider, store, set_at) VALUES (?, ?, ?) "
                "ON CONFLICT (provider) DO UPDATE SET store = excluded.store, "
                "set_at = excluded.set_at",
                (provider, store.id, time.time()),
            )
        if previous is not None and previous.store != store.id:
            with contextlib.suppress(KeyError_):
                store_by_id(previous.store, self.choice).delete(provider)
        return store

    def unset(self, provider: str) -> bool:
        """Forget the key: unindex it first (a daemon stops using it), then delete it."""
        previous = self.stored_in(provider)
        if previous is None:
            return False
        with transaction(self._conn):
            self._conn.execute("DELETE FROM provider_keys WHERE provider = ?", (provider,))
        store_by_id(previous.store, self.choice).delete(provider)
        return True

    def read(self, stored: StoredKey) -> str | None:
        """The key itself (blocking: the keyring, or scrypt + a file read)."""
        return store_by_id(stored.store, self.choice).get(stored.provider)

    def stored(self) -> list[StoredKey]:
        return stored_keys(self._conn)

    def stored_in(self, provider: str) -> StoredKey | None:
        return next((s for s in self.stored() if s.provider == provider), None)


def stored_keys(conn: sqlite3.Connection) -> list[StoredKey]:
    rows = conn.execute("SELECT provider, store, set_at FROM provider_keys ORDER BY provider")
    return [StoredKey(*row) for row in rows.fetchall()]


def check_provider_secret(provider: str, secret: str) -> str:
    """A pasted key, stripped; refused when empty, multi-line or a MeterFox proxy key."""
    secret = secret.strip()
    if not secret:
        raise KeyError_(
            f"no key given for {provider}: paste it at the prompt or pipe it in "
            f'(echo "$KEY" | meterfox keys set {provider})'
        )
    if any(ch.isspace() for ch in secret):
        raise KeyError_(
            f"the {provider} key contains whitespace or several lines: give the key alone"
        )
    if is_proxy_key(secret):
        raise KeyError_(
            f"that is a MeterFox proxy key, not a {provider} key: give the key the provider "
            f"issued you"
        )
    return secret
