"""Time `meterfox report` / `chart` / `--help` as real processes over a large database.

    python bench/report_speed.py --rows 1000000            # seeds once, then times
    python bench/report_speed.py --rows 1000000 --before   # also without migration 002
    python bench/report_speed.py --rows 3000000 --home DIR --groupings --since 90d
        # every kind of --by grouping (tags and combinations included), each < 1 s
    python bench/report_speed.py --rows 3000000 --home DIR --since 90d --in-process
        # the same groupings' build_report CPU, sums alone and with the latency pass

Each command runs once to warm the page cache, then `--repeat` times, its output to /dev/null
(a pipe: tables are then written plain) or, with `--tty`, to a pseudo-terminal read and thrown
away (what a person at a terminal waits for: rich draws tables of up to 100 rows); the table
gives the median and the range of wall-clock times, and the machine's load average (other work on a
2-core machine shows up directly in these numbers). `--before` copies the database, drops what
migration 002_report_rollup added (the rollup table, its triggers, the latency index) and
times the report commands again: the same code then reads the requests table alone.

    python bench/report_speed.py --url postgresql://meterfox@127.0.0.1:5432/bench --repeat 5

times the report commands over a PostgreSQL ledger instead (METERFOX_DATABASE_URL; seed it
first with bench/seed_pg.py), in the 90-day window a team's report reads; with `--groupings`
(and `--since`), every grouping the SQLite table times. With the server on this machine and
/proc readable, the table gives the server's CPU per command too (its postmaster's and
backends' user + system time, before and after: run nothing else against the server meanwhile).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("meterfox --help", ["--help"], 0.3),
    ("meterfox report --help", ["report", "--help"], 0.3),
    ("meterfox report --by model --since all", ["report", "--by", "model", "--since", "all"], 1.0),
    ("meterfox report --by day --since all", ["report", "--by", "day", "--since", "all"], 1.0),
    ("meterfox report (this month, provider,model)", ["report"], None),
    (
        "meterfox report --by model --since all --format json",
        ["report", "--by", "model", "--since", "all", "--format", "json"],
        None,
    ),
    ("meterfox chart --days 30", ["chart", "--days", "30"], None),
    (
        "meterfox report --by tag:feature --since all",
        ["report", "--by", "tag:feature", "--since", "all"],
        None,
    ),
]


PG_COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("meterfox report --by model --since 90d", ["report", "--by", "model", "--since", "90d"], 1.0),
    ("meterfox report --by day --since 90d", ["report", "--by", "day", "--since", "90d"], 1.0),
    (
        "meterfox report --by provider,model --since 90d",
        ["report", "--by", "provider,model", "--since", "90d"],
        None,
    ),
    ("meterfox chart --days 30", ["chart", "--days", "30"], None),
    (
        "meterfox report --by tag:feature --since 90d",
        ["report", "--by", "tag:feature", "--since", "90d"],
        1.0,
    ),
    ("meterfox report --by host --since 90d", ["report", "--by", "host", "--since", "90d"], 1.0),
]


# `--groupings`: one of every kind of grouping `report --by` accepts, alone and combined,
# and a tag filter; each is timed with `--since` (target: under 1 s).
GROUPINGS: list[tuple[str, ...]] = [
    ("--by", "provider"),
    ("--by", "model"),
    ("--by", "key"),
    ("--by", "endpoint"),
    ("--by", "day"),
    ("--by", "week"),
    ("--by", "month"),
    ("--by", "provider,model"),
    ("--by", "model,day"),
    ("--by", "tag:feature"),
    ("--by", "tag:env"),
    ("--by", "tag:feature,model"),
    ("--by", "day,tag:feature"),
    ("--by", "tag:feature,tag:env"),
    ("--by", "model", "--tag", "env=prod"),
    ("--by", "host"),
]


def grouping_commands(since: str) -> list[tuple[str, list[str], float | None]]:
    return [
        (
            f"meterfox report {' '.join(args)} --since {since}",
            ["report", *args, "--since", since],
            1.0,
        )
        for args in GROUPINGS
    ]


def meterfox_argv() -> list[str]:
    script = Path(sys.executable).with_name("meterfox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "meterfox_cli"]


def row_count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def ensure_seeded(home: Path, rows: int, days: float = 45, *, given: bool = False) -> None:
    """Seed `home` with `rows` requests unless it holds exactly that many; a home the caller
    named (`--home`) holding another number is refused, never deleted."""
    db = home / "meterfox.db"
    have = row_count(db)
    if have == rows:
        print(f"using {db} ({rows:,} rows)", file=sys.stderr)
        return
    if db.exists() and given:
        raise SystemExit(f"{db} holds {have:,} requests, not --rows {rows:,}: left as it is")
    if db.exists():
        shutil.rmtree(home)
    env = {**os.environ, "METERFOX_HOME": str(home)}
    subprocess.run(
        [sys.executable, str(HERE / "seed_db.py"), "--rows", str(rows), "--days", str(days)],
        env=env,
        check=True,
    )


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system time of the process
    server_cpu: list[float] = field(default_factory=list)  # the database server's, if known


def time_command(
    argv: list[str],
    home: Path,
    repeat: int,
    url: str | None = None,
    *,
    tty: bool = False,
    server: int | None = None,
) -> Timing:
    """`argv` run `repeat` times after one warm-up; `server`: the database server's
    postmaster PID, whose CPU is taken too."""
    env = {**os.environ, "METERFOX_HOME": str(home), "COLUMNS": "120"}
    if url is not None:
        env["METERFOX_DATABASE_URL"] = url
    run = at_a_terminal if tty else piped
    timing = Timing()
    for attempt in range(repeat + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = server_cpu(server)
        started = time.perf_counter()
        code, errors = run(argv, env)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if code != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {errors}")
        if attempt:  # the first run only warms the page cache
            timing.wall.append(elapsed)
            timing.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if server is not None:
                time.sleep(0.2)  # the command's backend exits and its postmaster reaps it
                timing.server_cpu.append(server_cpu(server) - server_before)
    return timing


def server_cpu(postmaster: int | None) -> float:
    """Seconds of CPU the server has used: its postmaster's own and reaped children's, and its
    live processes' (backends, parallel workers, background workers); 0 without a PID."""
    if postmaster is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(_proc_stat(postmaster)[11:15])  # utime, stime, cutime, cstime
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile: then in cutime
            total += sum(_proc_stat(int(child))[11:13])
    return total / tick


def _proc_stat(pid: int) -> list[int]:
    """The numeric fields of /proc/PID/stat after the command name (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return [
        int(part) if part.lstrip("-").isdigit() else 0 for part in text.rsplit(")", 1)[1].split()
    ]


def piped(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    return done.returncode, done.stderr.decode()


def at_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `argv` with its output on a pseudo-terminal, read until it closes (bounded: 300 s)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=slave, stderr=slave)
    os.close(slave)
    shown, deadline = [], time.monotonic() + 300
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([master], [], [], left)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown.append(chunk)
    finally:
        os.close(master)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
    code = proc.wait(timeout=60)
    return code, b"".join(shown)[-2000:].decode(errors="replace")


def without_rollup(home: Path) -> Path:
    """A copy of the database as it would be without migration 002."""
    before = home.with_name(home.name + "-before")
    if before.exists():
        shutil.rmtree(before)
    before.mkdir(mode=0o700)
    shutil.copy2(home / "meterfox.db", before / "meterfox.db")
    conn = sqlite3.connect(before / "meterfox.db")
    for name in ("request_rollup_insert", "request_rollup_delete", "request_rollup_update"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute("DROP TABLE IF EXISTS request_rollup")
    conn.execute("DROP INDEX IF EXISTS requests_latency")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    return before


def table(results: list[tuple[str, Timing, float | None]]) -> str:
    served = any(timing.server_cpu for _, timing, _ in results)
    server = " server CPU median |" if served else ""
    lines = [
        f"| command | wall median | wall min – max | CPU median |{server} target |",
        "| --- | ---: | ---: | ---: |" + (" ---: |" if served else "") + " ---: |",
    ]
    for label, timing, target in results:
        wall = statistics.median(timing.wall)
        verdict = "" if target is None else f"< {target:g} s " + ("✔" if wall < target else "✘")
        server_cell = f" {statistics.median(timing.server_cpu):.3f} s |" if served else ""
        lines.append(
            f"| `{label}` | {wall:.3f} s | {min(timing.wall):.3f} – {max(timing.wall):.3f} s "
            f"| {statistics.median(timing.cpu):.3f} s |{server_cell} {verdict} |"
        )
    return "\n".join(lines)


def in_process(home: Path, since: str, repeat: int) -> str:
    """`build_report` over one open read-only connection, for each `--groupings` entry: the
    CPU time of the sums alone and of the sums with the latency pass (medians of `repeat`,
    after a warm-up), and the rows and groups read — what a report's cost is made of, without
    starting Python, importing click or drawing the table."""
    sys.path.insert(0, str(HERE.parent))
    from meterfox_cli.store.db import connect
    from meterfox_cli.store.dimensions import parse_dimensions
    from meterfox_cli.store.queries import build_report
    from meterfox_cli.store.select import parse_filters
    from meterfox_cli.timewindow import resolve_window

    conn = connect(home / "meterfox.db", readonly=True)
    window = resolve_window(since, None)
    lines = [
        "| grouping | groups | sums CPU | sums + latency CPU |",
        "| --- | ---: | ---: | ---: |",
    ]
    try:
        for args in GROUPINGS:
            named = dict(zip(args[::2], args[1::2], strict=True))
            dims = parse_dimensions(named["--by"])
            filters = parse_filters((), (), (), [named["--tag"]] if "--tag" in named else [])
            cpu = {}
            for latency in (False, True):
                taken = []
                for _ in range(repeat + 1):
                    started = time.process_time()
                    report = build_report(conn, dims, window, filters, latency=latency)
                    taken.append(time.process_time() - started)
                cpu[latency] = statistics.median(taken[1:])
            label = " ".join(args)
            lines.append(
                f"| `{label}` | {len(report.rows):,} | {cpu[False]:.3f} s | {cpu[True]:.3f} s |"
            )
    finally:
        conn.close()
    return "\n".join(lines)


def accuracy(home: Path) -> str:
    """How far the sampled latency percentiles are from exact ones, over every group."""
    sys.path.insert(0, str(HERE.parent))
    from meterfox_cli.store import latency
    from meterfox_cli.store.db import connect
    from meterfox_cli.store.dimensions import parse_dimensions
    from meterfox_cli.store.queries import build_report
    from meterfox_cli.store.select import TimeRange

    conn = connect(home / "meterfox.db", readonly=True)
    fields = ("latency_p50_ms", "latency_p95_ms", "ttfb_p50_ms")
    lines = [
        "| --by | groups | sampled groups | worst error p50 / p95 / ttfb p50 | median error |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    try:
        for by in ("model", "day", "provider,model", "key"):
            dims = parse_dimensions(by)
            sampled = build_report(conn, dims, TimeRange())
            limit = latency.LATENCY_SAMPLE_MAX
            latency.LATENCY_SAMPLE_MAX = 10**12
            try:
                exact = {r.dims: r for r in build_report(conn, dims, TimeRange()).rows}
            finally:
                latency.LATENCY_SAMPLE_MAX = limit
            errors: dict[str, list[float]] = {name: [] for name in fields}
            for row in sampled.rows:
                for name in fields:
                    got, want = getattr(row, name), getattr(exact[row.dims], name)
                    if got is not None and want:
                        errors[name].append(abs(got - want) / want)
            worst = " / ".join(f"{max(errors[n], default=0) * 100:.1f}%" for n in fields)
            every = [e for n in fields for e in errors[n]]
            thin = sum(1 for row in sampled.rows if row.latency_sample_every > 1)
            lines.append(
                f"| {by} | {len(sampled.rows)} | {thin} (1 in {sampled.sample_every}) | {worst} "
                f"| {statistics.median(every) * 100 if every else 0:.1f}% |"
            )
    finally:
        conn.close()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=None, help="METERFOX_HOME to seed and use")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", action="store_true", help="also time without 002's rollup")
    parser.add_argument(
        "--accuracy", action="store_true", help="compare sampled latency percentiles with exact"
    )
    parser.add_argument("--url", default=None, help="time a PostgreSQL ledger (seed_pg.py)")
    parser.add_argument("--days", type=float, default=45, help="span of a seeded database")
    parser.add_argument(
        "--groupings", action="store_true", help="time every kind of --by grouping instead"
    )
    parser.add_argument("--since", default="all", help="the window of --groupings")
    parser.add_argument(
        "--tty", action="store_true", help="output to a pseudo-terminal, not /dev/null"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="time build_report for each --groupings entry in this process instead",
    )
    args = parser.parse_args(argv)
    if args.url is not None:
        commands = grouping_commands(args.since) if args.groupings else PG_COMMANDS
        time_ledger(args.url, args.repeat, commands)
        return
    home = args.home or Path(f"/tmp/meterfox-bench-{args.rows}")
    ensure_seeded(home, args.rows, args.days, given=args.home is not None)
    if args.in_process:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"{args.rows:,} requests, --since {args.since}, median of {args.repeat}; load {load}\n"
        )
        print(in_process(home, args.since, args.repeat))
        return
    commands = grouping_commands(args.since) if args.groupings else COMMANDS
    base = meterfox_argv()
    runs = [("after", home)] + ([("before", without_rollup(home))] if args.before else [])
    size = (home / "meterfox.db").stat().st_size / 1e6
    print(f"{args.rows:,} requests, database {size:.0f} MB, {os.cpu_count()} CPUs")
    for name, where in runs:
        results = []
        for label, command, target in commands:
            if name == "before" and "help" in label:
                continue
            timing = time_command([*base, *command], where, args.repeat, tty=args.tty)
            results.append((label, timing, target))
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        heading = "with migration 002" if name == "after" else "without migration 002 (before)"
        output = "a pseudo-terminal" if args.tty else "/dev/null"
        print(f"\n{heading} — median of {args.repeat} runs, output to {output}; load {load}\n")
        print(table(results))
    if args.accuracy:
        print("\nlatency percentiles, sampled vs exact\n")
        print(accuracy(home))


def time_ledger(url: str, repeat: int, commands: list[tuple[str, list[str], float | None]]) -> None:
    """`commands` over the PostgreSQL ledger at `url`, as real processes."""
    sys.path.insert(0, str(HERE.parent))
    from meterfox_cli.store.postgres import PostgresLedger

    conn = PostgresLedger(url).connect()
    try:
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        rollup = conn.execute("SELECT count(*) FROM request_rollup").fetchone()[0]
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    finally:
        conn.close()
    server = local_postmaster(backend)
    home = Path(f"/tmp/meterfox-bench-pg-home-{os.getpid()}")
    base = meterfox_argv()
    results = [
        (label, time_command([*base, *command], home, repeat, url, server=server), target)
        for label, command, target in commands
    ]
    shutil.rmtree(home, ignore_errors=True)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"PostgreSQL ledger: {rows:,} requests, {rollup:,} rollup rows, database "
        f"{size / 1e9:.1f} GB, {os.cpu_count()} CPUs — median of {repeat} runs; load {load}\n"
    )
    print(table(results))


def local_postmaster(backend: int) -> int | None:
    """The postmaster PID of the server whose backend has PID `backend`, if it runs on this
    machine (its /proc entry names a postgres process); else None."""
    try:
        if "postgres" not in Path(f"/proc/{backend}/cmdline").read_text():
            return None
        return _proc_stat(backend)[1]  # the parent: the postmaster
    except OSError:
        return None


if __name__ == "__main__":
    main()
