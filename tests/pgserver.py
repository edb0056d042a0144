"""A real PostgreSQL for the tests (never a mock): a pytest plugin.

- ``pg_url`` (session): a libpq URL of a server's maintenance database. ``ICANS_TEST_PG_URL``
  when set (CI may start one server, ``.ci/postgres.sh start DIR``); else a throwaway server
  started here on a Unix socket in a temporary directory (no TCP port), stopped at the end;
  else, only when no server binaries (``initdb``, ``pg_ctl``) exist on this machine, the tests
  that need it are skipped, saying so.
- ``pg_database_url`` (function): a fresh, empty database of its own for each test (created
  from ``template0``, UTF8; dropped after the test), so tests are independent.
- ``pg_restartable`` (function): a server this test may stop and start (the throwaway one;
  with ``ICANS_TEST_PG_URL`` a private one is started, since CI's is not ours to stop).

``initdb`` refuses root: as root, the server runs as the ``postgres`` user (``runuser``) in a
directory it owns. ``PgServer`` is usable outside pytest too (the benchmarks use it).

Register with ``pytest_plugins = ["tests.pgserver"]`` in the root conftest.py; a test module
may also import the fixtures by name (the server is one per process either way).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

TEST_URL_ENV = "ICANS_TEST_PG_URL"
_SERVER_OPTIONS = (
    # a throwaway server: no fsync (a crash of the machine is not what is tested), but every
    # commit reaches the OS before it is answered, so a stop -m immediate loses nothing
    "-c listen_addresses='' -c fsync=off -c full_page_writes=off "
    "-c max_connections=60 -c shared_buffers=64MB -c log_min_messages=warning"
)


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else the newest /usr/lib/postgresql/N/bin."""
    for name in ("pg_ctl", "initdb"):
        found = shutil.which(name)
        if found:
            d = Path(os.path.realpath(found)).parent
            if (d / "initdb").exists() and (d / "pg_ctl").exists():
                return d
    cands = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/local/pgsql/bin")

    def version(p: str) -> int:
        part = Path(p).parent.name
        return int(part) if part.isdigit() else 0

    for d in sorted(cands, key=version, reverse=True):
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            return Path(d)
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    if _root():  # initdb refuses root: run as postgres
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def url_for(socket_dir: str | Path, dbname: str = "postgres", user: str | None = None) -> str:
    user = user or ("postgres" if _root() else _me())
    return f"postgresql:///{quote(dbname)}?host={quote(str(socket_dir))}&user={quote(user)}"


def _root() -> bool:
    return getattr(os, "geteuid", lambda: -1)() == 0


def _me() -> str:
    import getpass

    return getpass.getuser()


def with_dbname(url: str, dbname: str) -> str:
    """The same server, another database (a URL or a keyword connection string)."""
    if "://" in url:
        p = urlsplit(url)  # (urlunsplit would drop the "//" of an empty host)
        return (f"{p.scheme}://{p.netloc}/{quote(dbname)}" + (f"?{p.query}" if p.query else "")
                + (f"#{p.fragment}" if p.fragment else ""))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=dbname)


class PgServer:
    """A throwaway PostgreSQL cluster on a Unix socket in its own temporary directory."""

    def __init__(self, bindir: Path, base: Path | None = None) -> None:
        self.bindir = Path(bindir)
        self.base = Path(base or tempfile.mkdtemp(prefix="icans-pg-"))
        self.data = self.base / "data"
        self.logfile = self.base / "server.log"
        self.running = False

    @property
    def url(self) -> str:
        return url_for(self.base)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = _as_server_user([str(self.bindir / args[0]), *args[1:]])
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=120, cwd=self.base)

    def init(self) -> "PgServer":
        self.base.mkdir(parents=True, exist_ok=True)
        if _root():
            shutil.chown(self.base, "postgres", "postgres")
        os.chmod(self.base, 0o700)
        user = "postgres" if _root() else _me()
        r = self._run("initdb", "-D", str(self.data), "-U", user, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
        if r.returncode:
            raise RuntimeError(f"initdb failed:\n{r.stdout}")
        return self

    def start(self) -> "PgServer":
        opts = f"{_SERVER_OPTIONS} -c unix_socket_directories='{self.base}'"
        r = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60",
                      "-o", opts, "start")
        if r.returncode:
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{r.stdout}\n{log[-2000:]}")
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")
        self.running = False

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


_server: PgServer | None = None  # this process's throwaway server (one, however registered)
_counter = itertools.count(1)


def throwaway_server() -> PgServer | None:
    """This process's throwaway server, started on first use; None without binaries."""
    global _server
    if _server is None:
        bindir = find_bindir()
        if bindir is None:
            return None
        server = PgServer(bindir)
        try:
            server.init().start()
        except Exception:
            server.destroy()
            raise
        _server = server
        import atexit

        atexit.register(server.destroy)  # also when the session ends otherwise
    elif not _server.running:
        _server.start()
    return _server


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg 3 is not installed: pip install 'psycopg[binary]>=3.1' (the test "
                    "extra carries it)", pytrace=False)


NO_SERVER = (f"no PostgreSQL: the server binaries (initdb, pg_ctl) are not on this machine "
             f"and {TEST_URL_ENV} is not set")


@pytest.fixture(scope="session")
def pg_url():
    """A libpq URL of a running server's maintenance database."""
    _require_psycopg()
    env = os.environ.get(TEST_URL_ENV)
    if env:
        yield env
        return
    if find_bindir() is None:
        pytest.skip(NO_SERVER)
    server = throwaway_server()
    yield server.url  # type: ignore[union-attr]
    global _server
    if _server is not None:
        _server.destroy()
        _server = None


def create_database(admin_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        # FILE_COPY (PostgreSQL 15+) is the quicker for a small database
        strategy = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' "
                             "LC_COLLATE 'C' LC_CTYPE 'C'" + strategy)
                     .format(sql.Identifier(name)))
    return with_dbname(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                     .format(sql.Identifier(name)))


@pytest.fixture
def pg_database_url(pg_url):
    """A fresh, empty database of this test's own (dropped after it)."""
    name = f"icans_test_{os.getpid()}_{next(_counter)}"
    url = create_database(pg_url, name)
    yield url
    try:
        drop_database(pg_url, name)
    except Exception:  # the server was stopped by the test and not restarted: nothing to drop
        if os.environ.get(TEST_URL_ENV):
            raise


@pytest.fixture
def pg_restartable(pg_url):
    """A PgServer this test may stop and start; running again after the test."""
    if not os.environ.get(TEST_URL_ENV) and _server is not None:
        server = _server
        yield server
        if not server.running:
            server.start()
        return
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(f"stopping a server needs the server binaries (initdb, pg_ctl): "
                    f"{TEST_URL_ENV}'s server is not ours to stop")
    server = PgServer(bindir).init().start()
    try:
        yield server
    finally:
        server.destroy()


def bulk_append(url: str, bodies) -> int:
    """Append many records fast (tests, benchmarks): the same records, chain and checks as
    PostgresStore.append (the insert trigger checks every row), in one COPY under the
    appenders' lock instead of a transaction each. Returns how many."""
    import hashlib
    import uuid

    import psycopg

    from icans_cli.store.chain import SCHEMA_VERSION, encode_record, utc_now
    from icans_cli.store.postgres import LOCK_KEY, _ts

    n = 0
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        role, last_seq, last_sha = conn.execute(
            "SELECT current_user::text, (SELECT max(seq) FROM icans.assessments), "
            "(SELECT sha256 FROM icans.assessments ORDER BY seq DESC LIMIT 1)").fetchone()
        seq, prev = last_seq or 0, last_sha or ""
        with conn.cursor().copy(
                "COPY icans.assessments (seq, id, patient_id, assessed_at, recorded_at, record, "
                "sha256, prev_sha256, dedup) FROM STDIN") as copy:
            for body in bodies:
                seq += 1
                rec = dict(body)
                rec.setdefault("schema", SCHEMA_VERSION)
                rec.setdefault("id", str(uuid.uuid4()))
                rec.setdefault("recorded_at", utc_now().isoformat(timespec="seconds"))
                rec.update(seq=seq, prev_sha256=prev, db_role=role)
                line = encode_record(rec)
                sha = hashlib.sha256(line).hexdigest()
                pid = rec.get("patient_id")
                dedup = rec.get("dedup")
                copy.write_row((seq, rec["id"], pid if isinstance(pid, str) else None,
                                _ts(rec.get("assessed_at")), _ts(rec.get("recorded_at")),
                                line.decode(), sha, prev,
                                dedup if isinstance(dedup, str) else None))
                prev = sha
                n += 1
        conn.commit()
    return n
