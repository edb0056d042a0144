"""Benchmark the ward log in PostgreSQL. Run: python benchmarks/bench_store.py [--records 100000]

Prints, in one run:
- append latency, p50 and p99, with 8 writers appending at once (each a process with its own
  connection, as 8 workstations), against 1 writer alone; and the appends per second;
- the ward board's query (the records of the last 7 days, as ``Store.recent()`` gives them,
  kept when assessed or recorded in those days) over 100,000 records in PostgreSQL against
  the very same records (byte for byte) in a JSON Lines file, both read through the store
  seam; and the ratio.

The server: ``--url`` (a libpq URL of a maintenance database), else ``ICANS_BENCH_PG_URL`` or
``ICANS_TEST_PG_URL``, else a throwaway server on a Unix socket in a temporary directory
(tests/pgserver.py; durability off there: fsync=off). A database ``icans_bench_<pid>`` is
created for the run and dropped after it. Times are medians of repeated runs. This is a
measurement, not a test: it never fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_log import bodies  # noqa: E402  (this folder: the same record bodies)
from icans_cli.store.chain import encode_record  # noqa: E402


def build(url: str, path: Path, n: int, patients: int, now: datetime) -> None:
    """The same n chained records into the table (COPY, every row through the insert
    trigger's checks) and into a JSON Lines file: two years of a ward, oldest first."""
    import psycopg

    from icans_cli.store.postgres import _ts

    templates = bodies()
    span = timedelta(days=730)
    with psycopg.connect(url) as conn:
        role = conn.execute("SELECT current_user::text").fetchone()[0]
        prev = ""
        with open(path, "wb") as fh, conn.cursor().copy(
                "COPY icans.assessments (seq, id, patient_id, assessed_at, recorded_at, record, "
                "sha256, prev_sha256, dedup) FROM STDIN") as copy:
            for i in range(n):
                b = dict(templates[i % 11])
                at = now - span + span * (i / n)
                b.update(patient_id=f"PT-{i % patients:05d}",
                         assessed_at=at.isoformat(timespec="seconds"),
                         recorded_at=(at + timedelta(minutes=3)).isoformat(timespec="seconds"),
                         id=str(uuid.UUID(int=i + 1, version=4)), schema=1, seq=i + 1,
                         prev_sha256=prev, db_role=role)
                line = encode_record(b)
                fh.write(line + b"\n")
                sha = hashlib.sha256(line).hexdigest()
                copy.write_row((i + 1, b["id"], b["patient_id"], _ts(b["assessed_at"]),
                                _ts(b["recorded_at"]), line.decode(), sha, prev, None))
                prev = sha
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE icans.assessments")


def board(store, since: datetime) -> int:
    """The ward board's records: what recent() gives, kept when assessed or recorded since."""
    from icans_cli.core.identifiers import parse_time

    kept = 0
    for e in store.recent(since):
        try:
            at = parse_time(e.record.get("assessed_at") or "")
        except Exception:
            at = None
        rec = parse_time(e.record["recorded_at"])
        if (at is not None and at >= since) or rec >= since:
            kept += 1
    return kept


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def writer(url: str, n: int, start_at: float) -> None:
    """One workstation: n appends, each timed; prints the latencies (s) as JSON."""
    from icans_cli.store.postgres import PostgresStore

    template = bodies()[7]
    with PostgresStore(url) as store:
        store.exists()  # connected before the start
        while time.time() < start_at:
            time.sleep(0.001)
        lat = []
        for i in range(n):
            b = dict(template, patient_id=f"PT-W{os.getpid()}",
                     assessed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            t = time.perf_counter()
            store.append(b)
            lat.append(time.perf_counter() - t)
    print(json.dumps(lat))


def appends(url: str, writers: int, each: int) -> tuple[list[float], float]:
    start_at = time.time() + 1.5  # every writer started and connected by then
    procs = [subprocess.Popen([sys.executable, __file__, "--writer", url, str(each),
                               str(start_at)], stdout=subprocess.PIPE, text=True)
             for _ in range(writers)]
    lat: list[float] = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        lat += json.loads(out)
    wall = max(0.0, time.time() - start_at)
    return sorted(lat), wall


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--patients", type=int, default=2_000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--appends", type=int, default=250, help="per writer")
    ap.add_argument("--url", default=os.environ.get("ICANS_BENCH_PG_URL")
                    or os.environ.get("ICANS_TEST_PG_URL"))
    ap.add_argument("--writer", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer:
        writer(args.writer[0], int(args.writer[1]), float(args.writer[2]))
        return

    from tests.pgserver import PgServer, create_database, drop_database, find_bindir

    from icans_cli.dbcmd import db_init
    from icans_cli.store.jsonl import JsonlStore
    from icans_cli.store.postgres import PostgresStore

    server = None
    admin = args.url
    if not admin:
        bindir = find_bindir()
        if bindir is None:
            sys.exit("no PostgreSQL: give --url, or install the server binaries (initdb)")
        server = PgServer(bindir).init().start()
        admin = server.url
    name = f"icans_bench_{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="icans-bench-"))
    try:
        import psycopg

        with psycopg.connect(admin) as conn:
            version = conn.info.parameter_status("server_version")
        print(f"PostgreSQL {version} ({'throwaway, fsync=off' if server else admin})")

        # --- appends: latency with 8 writers at once, against 1 alone ---
        url = create_database(admin, name)
        db_init(url)
        solo, solo_wall = appends(url, 1, args.appends)
        many, wall = appends(url, args.writers, args.appends)
        with PostgresStore(url) as s:
            checked = s.verify()
        print(f"append, 1 writer:  p50 {pct(solo, .5) * 1e3:6.2f} ms  p99 "
              f"{pct(solo, .99) * 1e3:6.2f} ms  ({len(solo) / solo_wall:,.0f}/s)")
        print(f"append, {args.writers} writers: p50 {pct(many, .5) * 1e3:6.2f} ms  p99 "
              f"{pct(many, .99) * 1e3:6.2f} ms  ({len(many) / wall:,.0f}/s; "
              f"{checked.records} records, seq contiguous and chain intact: "
              f"{not checked.problems})")
        drop_database(admin, name)

        # --- the ward board over 100,000 records: PostgreSQL against the same JSONL ---
        url = create_database(admin, name)
        db_init(url)
        now = datetime.now(timezone.utc)
        path = tmp / "assessments.jsonl"
        t = time.perf_counter()
        build(url, path, args.records, args.patients, now)
        print(f"built {args.records:,} records ({path.stat().st_size / 1e6:.0f} MB) in both "
              f"stores in {time.perf_counter() - t:.1f} s")
        since = now - timedelta(days=7)
        with PostgresStore(url) as pg:
            board(pg, since)  # warm
            t_pg, n_pg = timed(lambda: board(pg, since), 5)
        fs = JsonlStore(path)
        t_fs, n_fs = timed(lambda: board(fs, since), 3)
        print(f"ward board (last 7 days): PostgreSQL {t_pg * 1e3:8.1f} ms ({n_pg} records)")
        print(f"ward board (last 7 days): JSONL file {t_fs * 1e3:8.1f} ms ({n_fs} records)")
        print(f"ratio file / PostgreSQL: {t_fs / t_pg:.1f}x"
              + ("" if n_pg == n_fs else "  (the two boards differ!)"))
        drop_database(admin, name)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if server is not None:
            server.destroy()


if __name__ == "__main__":
    main()
