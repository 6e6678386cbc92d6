"""The PostgreSQL ledger a team shares: connecting (libpq's rules: the password from the URL,
PGPASSWORD or ~/.pgpass), its migrations (pg_migrations.py) and the schema check, a
connection shaped like sqlite3's so the write, report and keys paths run unchanged, and the
LISTEN connection that tells daemons a proxy key changed. The only module that imports
psycopg."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from meterfox_cli.config import masked_url
from meterfox_cli.errors import StoreError
from meterfox_cli.store.backend import LedgerUnreachable, schema_problem
from meterfox_cli.store.dialect import POSTGRES, Dialect
from meterfox_cli.store.pg_migrations import KEYS_CHANNEL, PG_MIGRATIONS

try:
    import psycopg
    from psycopg.pq import PipelineStatus, TransactionStatus
except ImportError:  # the `postgres` extra is not installed
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger("meterfox.store")

CONNECT_TIMEOUT_S = 5
LISTEN_RETRY_S = 1.0  # a lost LISTEN connection is opened again this often (polling meanwhile)
NOTIFIES_WAIT_S = 0.5  # how long one wait for notifications lasts: how soon `close` returns
MIGRATIONS_LOCK = 0x6D66_6C65  # pg_advisory_xact_lock key: one migrating process at a time
_CREATE_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS _migrations "
    "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)


def _translated(sql: str) -> str:
    """The ledger's SQL (`?` placeholders) in psycopg's style (`%s`; a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection in autocommit mode, with the part of sqlite3.Connection's API the
    write and report paths use (store/dialect.LedgerConnection)."""

    dialect: ClassVar[Dialect] = POSTGRES

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor:
        if not parameters:  # no placeholders: psycopg takes the text as it is
            return self.raw.execute(sql)
        return self.raw.execute(_translated(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(_translated(sql), list(parameters))

    def executemany_returning(
        self, sql: str, parameters: Iterable[Sequence[Any]], /
    ) -> list[tuple[Any, ...]]:
        """executemany of a statement with RETURNING: the rows it returned, all statements'."""
        rows: list[tuple[Any, ...]] = []
        parameters = list(parameters)
        if not parameters:
            return rows
        with self.raw.cursor() as cursor:
            cursor.executemany(_translated(sql), parameters, returning=True)
            while True:
                rows.extend(cursor.fetchall())
                if not cursor.nextset():
                    return rows

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> _Streamed:
        """A server-side cursor over `sql` in a read-only snapshot (store/dialect.streamed)."""
        return _Streamed(self.raw, _translated(sql) if parameters else sql, parameters)

    def close(self) -> None:
        self.raw.close()


class _Streamed:
    """A server-side cursor in its own read-only transaction: rows cross the wire as they are
    fetched. Closing it ends the transaction."""

    def __init__(self, raw: psycopg.Connection, sql: str, parameters: Sequence[Any]) -> None:
        self._raw = raw
        raw.execute(POSTGRES.begin_snapshot_sql)
        try:
            self._cursor = raw.cursor(name="meterfox_stream")
            self._cursor.execute(sql, parameters or None)
        except BaseException:
            raw.execute("ROLLBACK")
            raise

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        return self._cursor.fetchmany(size)

    def close(self) -> None:
        if self._raw.closed:
            return
        self._cursor.close()
        self._raw.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class PostgresLedger:
    url: str
    dialect: ClassVar[Dialect] = POSTGRES

    def describe(self) -> str:
        return masked_url(self.url)

    def connect(self) -> PgConnection:
        """A connection; LedgerUnreachable (the URL masked) when the server cannot be reached."""
        if psycopg is None:
            raise StoreError(
                "a PostgreSQL ledger needs the driver: pip install 'meterfox-cli[postgres]'"
            )
        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise LedgerUnreachable(
                f"cannot connect to the ledger {self.describe()}: {exc}"
            ) from exc
        return PgConnection(raw)

    def open_writer(self, busy_timeout_ms: int = 0) -> PgConnection:
        conn = self.connect()
        try:
            problem = schema_problem(self.describe(), *_pending(conn))
        except BaseException:
            conn.close()
            raise
        if problem is not None:
            conn.close()
            raise StoreError(problem)
        return conn

    def open_reader(self) -> PgConnection | None:
        conn = self.connect()
        try:
            missing, _ = _pending(conn)
            if missing and len(missing) == len(PG_MIGRATIONS):  # never migrated: nothing yet
                conn.close()
                return None
            if conn.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is None:
                conn.close()
                return None
        except BaseException:
            conn.close()
            raise
        return conn

    def read_connection(self) -> PgConnection | None:
        conn = self.connect()
        try:
            missing, _ = _pending(conn)
        except BaseException:
            conn.close()
            raise
        if missing and len(missing) == len(PG_MIGRATIONS):  # never migrated: no ledger yet
            conn.close()
            return None
        return conn

    def transaction(self, conn: PgConnection) -> AbstractContextManager[None]:
        return _transaction(conn)

    def is_passing(self, exc: BaseException) -> bool:
        return isinstance(exc, StoreError) or (
            psycopg is not None and isinstance(exc, psycopg.OperationalError)
        )

    def is_lost(self, conn: PgConnection) -> bool:
        raw = conn.raw  # or stuck in a pipeline the server hung up on in the middle
        return raw.closed or raw.broken or raw.pgconn.pipeline_status != PipelineStatus.OFF

    def migrate(self) -> list[str]:
        conn = self.connect()
        try:
            return _migrate(conn)
        finally:
            conn.close()

    def check(self) -> None:
        self.open_writer().close()

    def pending(self) -> tuple[list[str], list[str]]:
        conn = self.connect()
        try:
            return _pending(conn)
        finally:
            conn.close()

    def watch_keys(self, changed: Callable[[], None]) -> KeyListener:
        listener = KeyListener(self, changed)
        listener.start()
        return listener


class KeyListener:
    """A thread holding one connection that LISTENs on the keys channel and calls `changed`
    for each NOTIFY (pg_migrations' trigger sends one per committed key change). When the
    connection is lost it opens another every LISTEN_RETRY_S, calling `changed` once it is
    back (changes made meanwhile were not pushed); the daemon's polling covers the gap."""

    def __init__(self, ledger: PostgresLedger, changed: Callable[[], None]) -> None:
        self._ledger = ledger
        self._changed = changed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterfox-listen", daemon=True)
        self._listening = threading.Event()
        self.connections = 0  # LISTEN connections opened so far

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(NOTIFIES_WAIT_S + CONNECT_TIMEOUT_S + 1)

    def _run(self) -> None:
        lost = False
        while not self._stop.is_set():
            try:
                self._listen()
            except (StoreError, psycopg.Error) as exc:
                if not lost:
                    log.warning("key changes are not pushed (%s): polling until it is back", exc)
                lost = True
            finally:
                self._listening.clear()
            self._stop.wait(LISTEN_RETRY_S)

    def _listen(self) -> None:
        conn = self._ledger.connect()
        try:
            conn.raw.execute(f"LISTEN {KEYS_CHANNEL}")
            self.connections += 1
            self._listening.set()
            self._changed()  # whatever changed while nobody listened
            while not self._stop.is_set():
                for _ in conn.raw.notifies(timeout=NOTIFIES_WAIT_S):
                    self._changed()
                if conn.raw.broken or conn.raw.closed:
                    raise StoreError("the LISTEN connection was lost")
        finally:
            conn.close()


@contextmanager
def _transaction(conn: PgConnection) -> Iterator[None]:
    with conn.raw.transaction():
        yield


def _applied(conn: PgConnection) -> list[str]:
    if conn.execute("SELECT to_regclass('_migrations')").fetchone()[0] is None:
        return []
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY name")]


def _pending(conn: PgConnection) -> tuple[list[str], list[str]]:
    applied = _applied(conn)
    known = [name for name, _ in PG_MIGRATIONS]
    return [n for n in known if n not in applied], [n for n in applied if n not in known]


def _migrate(conn: PgConnection) -> list[str]:
    """Apply every migration not yet recorded, all in one transaction under an advisory lock
    (two daemons migrating at once: one waits, then finds nothing to do)."""
    with conn.raw.transaction():
        conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
        conn.raw.execute(_CREATE_MIGRATIONS)
        done = set(_applied(conn))
        applied = []
        for name, script in PG_MIGRATIONS:
            if name in done:
                continue
            conn.raw.execute(script)
            conn.raw.execute("INSERT INTO _migrations VALUES (%s, %s)", (name, time.time()))
            applied.append(name)
    return applied
