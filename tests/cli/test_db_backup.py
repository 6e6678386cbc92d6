"""`meterfox db backup PATH`: a consistent copy while `serve` is under load, owner-only, never
over a file unless --force; `doctor` says when the last backup was; a PostgreSQL ledger is
pointed at pg_dump."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from pathlib import Path

import aiohttp

from meterfox_cli.store.backup import Backup, record_backup
from tests.cli.conftest import launch_serve, run_meterfox
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES

LOAD_MAX_REQUESTS = 3000
LOAD_MAX_S = 60.0
CONCURRENCY = 4


def committed_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM requests")}
    finally:
        conn.close()


async def test_backup_while_serve_is_under_load_holds_every_committed_record(
    upstream_server, meterfox_home, tmp_path
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    db = meterfox_home / "meterfox.db"
    copy = tmp_path / "backups" / "meterfox-copy.db"
    copy.parent.mkdir()
    sent = 0
    stop = asyncio.Event()

    async with launch_serve(upstreams={"openai": server}) as served:
        url = f"{served.url}/openai/v1/chat/completions"
        body = {"model": "o4-mini", "messages": [{"role": "user", "content": "hi"}]}
        deadline = time.monotonic() + LOAD_MAX_S

        async def load(session: aiohttp.ClientSession) -> None:
            nonlocal sent
            while not stop.is_set() and sent < LOAD_MAX_REQUESTS and time.monotonic() < deadline:
                sent += 1
                async with session.post(url, json=body) as response:
                    assert response.status == 200
                    await response.read()

        async with aiohttp.ClientSession() as session:
            workers = [asyncio.create_task(load(session)) for _ in range(CONCURRENCY)]
            while len(committed_ids(db)) < 100:  # the writer commits as the load goes on
                assert time.monotonic() < deadline and not any(w.done() for w in workers)
                await asyncio.sleep(0.05)
            before = committed_ids(db)
            sent_before = sent
            done = await run_meterfox("db", "backup", str(copy))
            sent_during = sent - sent_before
            stop.set()
            await asyncio.gather(*workers)

    assert done.returncode == 0, done.stderr
    assert sent_during > 0, "the load had stopped before the backup ran"
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        in_copy = {row[0] for row in conn.execute("SELECT id FROM requests")}
        rollup = conn.execute("SELECT SUM(requests) FROM request_rollup").fetchone()[0]
    finally:
        conn.close()
    assert before <= in_copy
    assert rollup == len(in_copy)  # the copy is one snapshot: rows and rollup agree
    assert in_copy <= committed_ids(db) and len(committed_ids(db)) == sent
    assert done.stdout.startswith(f"backed up {len(in_copy):,} records to {copy} (")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no partial left

    doctor = await run_meterfox("doctor")
    line = next(line for line in doctor.stdout.splitlines() if " backup " in line)
    assert line.startswith("ok ") and f"{len(in_copy):,} records to {copy}" in line


async def test_backup_never_replaces_a_file_unless_forced(conn, meterfox_home, tmp_path):
    target = tmp_path / "copy.db"
    target.write_text("something of mine")
    refused = await run_meterfox("db", "backup", str(target))
    assert refused.returncode == 2
    assert refused.stderr == f"meterfox: {target} exists: pass --force to replace it\n"
    assert target.read_text() == "something of mine"
    forced = await run_meterfox("db", "backup", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    check = sqlite3.connect(target)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    itself = await run_meterfox("db", "backup", str(meterfox_home / "meterfox.db"), "--force")
    assert itself.returncode == 2 and "is the database itself" in itself.stderr


async def test_backup_of_a_postgresql_ledger_points_at_pg_dump(meterfox_home, tmp_path):
    url = "postgresql://team:s3cret@127.0.0.1:1/ledger"
    done = await run_meterfox(
        "db", "backup", str(tmp_path / "x.db"), env={"METERFOX_DATABASE_URL": url}
    )
    assert done.returncode == 2
    assert done.stderr == (
        "meterfox: the ledger is the PostgreSQL database postgresql://team:***@127.0.0.1:1/ledger:"
        " back it up with pg_dump\n"
    )


async def test_doctor_warns_when_never_backed_up_or_a_week_ago(conn, meterfox_home):
    never = await run_meterfox("doctor")
    assert "WARN backup         the database was never backed up" in never.stdout
    assert "→ meterfox db backup PATH" in never.stdout
    old = time.time() - 8 * 86400
    record_backup(meterfox_home, Backup(str(meterfox_home / "old.db"), old, 12, 4096))
    stale = await run_meterfox("doctor")
    line = next(line for line in stale.stdout.splitlines() if " backup " in line)
    assert line.startswith("WARN") and "(8 days ago): 12 records" in line
