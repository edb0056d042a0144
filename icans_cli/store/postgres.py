"""The ward's shared log in PostgreSQL: the same records and the same chain as the file.

Imported only when ``ICANS_DATABASE_URL`` is set (psycopg 3 is an optional extra). The table
(``icans db init``, :func:`init_schema`)::

    icans.assessments (seq bigint primary key, id uuid unique, patient_id text,
                       assessed_at timestamptz, recorded_at timestamptz, record text,
                       sha256 text, prev_sha256 text, dedup text)

``record`` is the canonical JSON line byte for byte (``chain.encode_record``: exactly what the
file store writes), ``sha256`` the SHA-256 of that line, ``prev_sha256`` the previous row's
(``""`` for seq 1), ``dedup`` the record's rerun key (``"dedup"`` in its JSON, when it has
one). The other columns are copied from the record for the indexes; the record is the truth.

- **Appending**: one transaction; ``pg_advisory_xact_lock(LOCK_KEY)`` serialises the writers of
  every workstation, then the unique key is checked, ``seq`` is the last one plus one (no
  sequence object: contiguous, no gaps, a failed append leaves none) and the row is inserted.
  The database role that wrote it is in the record (``"db_role"``, beside the assessor); a
  BEFORE INSERT trigger checks it is ``current_user`` and that the row continues the chain,
  so no client, this one or psql, can append a row that does not.
- **Append-only**: triggers refuse UPDATE, DELETE and TRUNCATE for every role, the owner and a
  superuser included (``ENABLE ALWAYS``: also with ``session_replication_role = replica``).
  The owner or a superuser can still disable a trigger with DDL: the chain then names what was
  changed (see :meth:`PostgresStore.lines`).
- **Reading**: rows stream in seq order through a server-side cursor (memory flat). A read of
  some rows (a patient, a time window, an id prefix, after a seq) reads those rows by index
  together with the row before and the row after each, so that every record's verdict is
  exactly the one a read of the whole table gives.
- **Errors**: a server that cannot be reached (down, restarting, the network gone, the table
  not set up, a role without the right) is ``Unavailable`` (a bedside save is then kept in the
  outbox); a lock not taken in ``ICANS_LOCK_TIMEOUT`` seconds is ``LockTimeout``. Messages
  name the server (``where``: the URL without its password), never a password, never a value
  of a record.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict

from icans_cli.store import (  # noqa: F401 - redact: the name dbcmd and the tests use
    LOCK_TIMEOUT_ENV, LockTimeout, Store, StoreError, Unavailable, lock_timeout, redact,
)
from icans_cli.store.chain import (
    SCHEMA_VERSION, Entry, Head, Problem, RawLine, canonical, check_chain, encode_record,
    parse, utc_now,
)

DB_SCHEMA_VERSION = 1  # of the tables (icans.schema_version), not of the record JSON
LOCK_KEY = (0x1CA45 << 32) | 1  # the appenders' advisory lock (pg_locks: classid, objid 1)
INIT_LOCK_KEY = (0x1CA45 << 32) | 2  # db init's
CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise
ITERSIZE = 500  # rows fetched per round trip by a streaming read
LOCK_STEP = 0.25  # seconds: a waiting writer looks up (a signal, the time) this often
# The last row, when its sha256 column is not the hash of its record, was changed behind the
# trigger's back (no row after it can say so): its link is given as this, which no record's
# prev_sha256 equals, so it is flagged.
COLUMN_MISMATCH = "(the row's sha256 column is not the hash of its record)"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}")
_UUID_LOW = "00000000-0000-0000-0000-000000000000"
_UUID_HIGH = "ffffffff-ffff-ffff-ffff-ffffffffffff"
BOARD_MARGIN = timedelta(hours=26)  # a time without offset is local to the writer: any zone

# --- the schema ------------------------------------------------------------------------------

SCHEMA_DDL = f"""
CREATE SCHEMA IF NOT EXISTS icans;

CREATE TABLE IF NOT EXISTS icans.schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS icans.assessments (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    id uuid NOT NULL UNIQUE,
    patient_id text,
    assessed_at timestamptz,
    recorded_at timestamptz,
    record text NOT NULL,
    sha256 text NOT NULL,
    prev_sha256 text NOT NULL,
    dedup text
);

CREATE INDEX IF NOT EXISTS assessments_patient_assessed
    ON icans.assessments (patient_id, assessed_at);
CREATE INDEX IF NOT EXISTS assessments_assessed ON icans.assessments (assessed_at);
CREATE INDEX IF NOT EXISTS assessments_recorded ON icans.assessments (recorded_at);
CREATE INDEX IF NOT EXISTS assessments_dedup ON icans.assessments (dedup)
    WHERE dedup IS NOT NULL;

CREATE OR REPLACE FUNCTION icans.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'icans: % on %.% refused: the ward log is append-only (a correction is a '
                    'new record that amends the old one)', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME;
END
$fn$;

CREATE OR REPLACE FUNCTION icans.check_append() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    last_seq bigint;
    last_sha text;
    body jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});
    SELECT a.seq, a.sha256 INTO last_seq, last_sha
        FROM icans.assessments a ORDER BY a.seq DESC LIMIT 1;
    IF NEW.seq IS DISTINCT FROM coalesce(last_seq, 0) + 1 THEN
        RAISE EXCEPTION 'icans: row % refused: the next seq is %', NEW.seq,
            coalesce(last_seq, 0) + 1;
    END IF;
    IF NEW.prev_sha256 IS DISTINCT FROM coalesce(last_sha, '') THEN
        RAISE EXCEPTION 'icans: row % refused: its prev_sha256 is not the last row''s sha256',
            NEW.seq;
    END IF;
    IF NEW.sha256 IS DISTINCT FROM encode(sha256(convert_to(NEW.record, 'UTF8')), 'hex') THEN
        RAISE EXCEPTION 'icans: row % refused: its sha256 is not the hash of its record',
            NEW.seq;
    END IF;
    -- (a \\u0000 escape, which a JSON string may hold, cannot be read into jsonb: the
    -- columns checked here never hold one)
    body := replace(NEW.record, E'\\\\u0000', E'\\\\u2400')::jsonb;
    IF jsonb_typeof(body) IS DISTINCT FROM 'object'
       OR body->>'seq' IS DISTINCT FROM NEW.seq::text
       OR body->>'prev_sha256' IS DISTINCT FROM NEW.prev_sha256
       OR jsonb_typeof(body->'id') IS DISTINCT FROM 'string'
       OR (body->>'id')::uuid IS DISTINCT FROM NEW.id
       OR NEW.patient_id IS DISTINCT FROM (CASE WHEN jsonb_typeof(body->'patient_id') = 'string'
                                          THEN body->>'patient_id' END)
       OR NEW.dedup IS DISTINCT FROM (CASE WHEN jsonb_typeof(body->'dedup') = 'string'
                                     THEN body->>'dedup' END)
    THEN
        RAISE EXCEPTION 'icans: row % refused: its columns do not match its record', NEW.seq;
    END IF;
    IF body->>'db_role' IS DISTINCT FROM current_user::text THEN
        RAISE EXCEPTION 'icans: row % refused: its db_role is not the role writing it', NEW.seq;
    END IF;
    RETURN NEW;
END
$fn$;

DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('icans.assessments', 'assessments_append_check',
         'BEFORE INSERT', 'ROW', 'icans.check_append'),
        ('icans.assessments', 'assessments_no_update_delete',
         'BEFORE UPDATE OR DELETE', 'ROW', 'icans.refuse_change'),
        ('icans.assessments', 'assessments_no_truncate',
         'BEFORE TRUNCATE', 'STATEMENT', 'icans.refuse_change'),
        ('icans.schema_version', 'schema_version_no_update_delete',
         'BEFORE UPDATE OR DELETE', 'ROW', 'icans.refuse_change'),
        ('icans.schema_version', 'schema_version_no_truncate',
         'BEFORE TRUNCATE', 'STATEMENT', 'icans.refuse_change')
    ) AS v(tbl, name, timing, level, fn)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                       WHERE tgrelid = t.tbl::regclass AND tgname = t.name) THEN
            EXECUTE format('CREATE TRIGGER %I %s ON %s FOR EACH %s EXECUTE FUNCTION %s()',
                           t.name, t.timing, t.tbl, t.level, t.fn);
        END IF;
        -- fires for every role, also with session_replication_role = replica
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.tbl, t.name);
    END LOOP;
END
$do$;

REVOKE ALL ON icans.assessments, icans.schema_version FROM PUBLIC;
"""

TRIGGERS = ("assessments_append_check", "assessments_no_update_delete",
            "assessments_no_truncate")


def init_schema(conn: "psycopg.Connection", writer_role: str | None = None) -> dict[str, Any]:
    """Create (idempotently) the schema, the tables, the indexes, the triggers and the schema
    version; with `writer_role`, grant it USAGE on the schema and SELECT, INSERT only. One
    transaction, under an advisory lock (two inits at once are one after the other)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INIT_LOCK_KEY,))
        existed = conn.execute("SELECT to_regclass('icans.assessments') IS NOT NULL"
                               ).fetchone()[0]
        if existed:
            have = conn.execute("SELECT max(version) FROM icans.schema_version").fetchone()[0]
            if have is not None and have > DB_SCHEMA_VERSION:
                raise StoreError(f"the ward log's schema is version {have}, newer than this "
                                 f"icans knows ({DB_SCHEMA_VERSION}): upgrade icans")
        conn.execute(SCHEMA_DDL)
        conn.execute("INSERT INTO icans.schema_version (version) VALUES (%s) "
                     "ON CONFLICT (version) DO NOTHING", (DB_SCHEMA_VERSION,))
        if writer_role:
            found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                 (writer_role,)).fetchone()
            if not found:
                raise StoreError(f"the role {writer_role!r} does not exist: create it first "
                                 f"(CREATE ROLE ... LOGIN), then run db init --writer-role "
                                 "again")
            role = pg_sql.Identifier(writer_role)
            for stmt in (
                "REVOKE ALL ON icans.assessments, icans.schema_version FROM {role}",
                "GRANT USAGE ON SCHEMA icans TO {role}",
                "GRANT SELECT, INSERT ON icans.assessments TO {role}",
                "GRANT SELECT ON icans.schema_version TO {role}",
            ):
                conn.execute(pg_sql.SQL(stmt).format(role=role))
        rows = conn.execute("SELECT count(*) FROM icans.assessments").fetchone()[0]
    return {"created": not existed, "rows": rows, "schema_version": DB_SCHEMA_VERSION}


# --- the URL: shown without its password -----------------------------------------------------

def _ts(value: Any) -> datetime | None:
    """A record's time for its column (the index): aware; a time without offset is local, as
    the tool reads it. None when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
        return t if t.tzinfo is not None else t.astimezone()
    except (ValueError, OverflowError, OSError):
        return None


def _uuid_range(prefix: str) -> tuple[str, str] | None:
    """The uuids a lowercased id prefix spans, or None when no canonical id starts so."""
    p = prefix.lower()
    if len(p) > 36:
        return None
    for i, c in enumerate(p):
        if (c != "-") if i in (8, 13, 18, 23) else (c not in "0123456789abcdef"):
            return None
    return p + _UUID_LOW[len(p):], p + _UUID_HIGH[len(p):]


# --- the store ---------------------------------------------------------------------------------

_CONTEXT_SQL = """
WITH m AS MATERIALIZED (
    SELECT a.seq FROM icans.assessments a WHERE {cond}
), s AS MATERIALIZED (
    SELECT seq FROM m
    UNION
    SELECT (SELECT p.seq FROM icans.assessments p WHERE p.seq < m.seq AND p.record <> ''
            ORDER BY p.seq DESC LIMIT 1) FROM m
    UNION
    SELECT (SELECT p.seq FROM icans.assessments p WHERE p.seq > m.seq AND p.record <> ''
            ORDER BY p.seq LIMIT 1) FROM m
)
SELECT t.seq, t.record, t.sha256, t.seq IN (SELECT seq FROM m) AS matched,
       (SELECT p.seq FROM icans.assessments p WHERE p.seq < t.seq AND p.record <> ''
        ORDER BY p.seq DESC LIMIT 1) AS prev_seq,
       NOT EXISTS (SELECT 1 FROM icans.assessments p WHERE p.seq > t.seq AND p.record <> '')
        AS last
FROM icans.assessments t
WHERE t.seq = ANY (ARRAY(SELECT seq FROM s WHERE seq IS NOT NULL))  -- by the primary key
ORDER BY t.seq
"""

_LAST_SQL = """
SELECT current_user::text, l.seq, l.sha256, {exists}
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT seq, sha256 FROM icans.assessments ORDER BY seq DESC LIMIT 1) l
    ON true
"""

_INSERT_SQL = """
INSERT INTO icans.assessments
    (seq, id, patient_id, assessed_at, recorded_at, record, sha256, prev_sha256, dedup)
VALUES (%(seq)s, %(id)s, %(patient_id)s, %(assessed_at)s, %(recorded_at)s, %(record)s,
        %(sha256)s, %(prev_sha256)s, %(dedup)s)
"""

_HOLDER_SQL = """
SELECT a.usename::text, a.application_name, a.client_addr::text,
       extract(epoch FROM now() - a.xact_start)::float
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
  AND l.objsubid = 1
LIMIT 1
"""


class PostgresStore(Store):
    """The ward's log in PostgreSQL (``ICANS_DATABASE_URL``): the seam's primitives, and the
    faster paths an index allows (each gives exactly what the base class would)."""

    kind = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            raise StoreError(f"ICANS_DATABASE_URL is not a libpq connection URL that can be "
                             f"read ({self.where})") from None
        self._password = str(params.get("password") or "")
        self._extra: dict[str, Any] = {"client_encoding": "UTF8"}
        if "connect_timeout" not in params:
            self._extra["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in params:
            self._extra["application_name"] = (f"icans {socket.gethostname()} "
                                               f"pid {os.getpid()}")[:63]
        self._conn: psycopg.Connection | None = None  # appends and short queries
        self._idle: list[psycopg.Connection] = []  # readers' connections, between reads
        self._lock_ms: tuple[int, int] | None = None  # the writer's lock_timeout, as set

    # --- connections and errors ---------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _reason(self, exc: BaseException) -> str:
        """What went wrong, in the server's or libpq's first line (never a DETAIL, which may
        quote a value), without the password."""
        diag = getattr(exc, "diag", None)
        text = (getattr(diag, "message_primary", None) or "") if diag is not None else ""
        if not text:
            lines = str(exc).strip().splitlines()
            text = lines[0] if lines else type(exc).__name__
        return self._scrub(text.strip())

    def _connect(self) -> "psycopg.Connection":
        try:
            return psycopg.connect(self.url, autocommit=True, **self._extra)
        except psycopg.Error as exc:
            raise Unavailable(f"the ward log at {self.where} cannot be reached "
                              f"({self._reason(exc)})") from None

    @staticmethod
    def _alive(conn: "psycopg.Connection") -> bool:
        """Whether an idle connection is still usable: one the server has closed since (a
        restart, an administrator) has its goodbye waiting on the socket, so a command after
        a server restart reconnects instead of failing."""
        if conn.closed or conn.broken:
            return False
        try:
            import select

            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return False
        return not readable

    def _writer(self) -> "psycopg.Connection":
        conn = self._conn
        if conn is None or not self._alive(conn):
            if conn is not None:
                self._drop(conn)
            self._conn = conn = self._connect()
            self._lock_ms = None
        return conn

    def _drop(self, conn: "psycopg.Connection | None") -> None:
        if conn is None:
            return
        try:
            conn.close()
        except Exception:
            pass
        if conn is self._conn:
            self._conn = None

    @contextmanager
    def _errors(self, doing: str, conn: "psycopg.Connection | None" = None) -> Iterator[None]:
        """psycopg's errors as the seam's: Unavailable, LockTimeout or StoreError."""
        try:
            yield
        except pg_errors.LockNotAvailable:
            raise LockTimeout(f"the ward log at {self.where} stayed locked for "
                              f"{lock_timeout():g} s ({LOCK_TIMEOUT_ENV}): nothing was "
                              "appended") from None
        except (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName):
            raise Unavailable(f"the ward log at {self.where} is not set up (no table "
                              "icans.assessments): run icans db init") from None
        except pg_errors.InsufficientPrivilege as exc:
            raise Unavailable(f"the ward log at {self.where} refused to {doing} "
                              f"({self._reason(exc)}): the role needs icans db init "
                              "--writer-role") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._drop(conn if conn is not None else self._conn)
            raise Unavailable(f"the ward log at {self.where} cannot be reached "
                              f"({self._reason(exc)})") from None
        except psycopg.Error as exc:
            raise StoreError(f"the ward log at {self.where} refused to {doing} "
                             f"({self._reason(exc)})") from None

    def close(self) -> None:
        for conn in [self._conn, *self._idle]:
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
        self._conn, self._idle = None, []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def exists(self) -> bool:
        with self._errors("read it"):
            conn = self._writer()
            return bool(conn.execute("SELECT to_regclass('icans.assessments') IS NOT NULL"
                                     ).fetchone()[0])

    # --- reading ---------------------------------------------------------------------------

    def _rows(self, query: Any, params: Any = None) -> Iterator[tuple]:
        """Rows of a query, streamed through a server-side cursor in a read-only transaction
        on a reader connection of its own (an append during a read is its own transaction)."""
        conn = self._idle.pop() if self._idle else None
        if conn is not None and not self._alive(conn):
            conn.close()
            conn = None
        if conn is None:
            conn = self._connect()
            conn.read_only = True
        reusable = False
        try:
            with self._errors("read it", conn):
                with conn.transaction():
                    with conn.cursor(name=f"icans_{uuid.uuid4().hex[:12]}") as cur:
                        cur.itersize = ITERSIZE
                        cur.execute(query, params)
                        for row in cur:
                            yield row
            reusable = True
        except GeneratorExit:  # the reader stopped early: the transaction was rolled back
            reusable = True
            raise
        finally:
            if reusable and not conn.closed and not conn.broken and len(self._idle) < 2 \
                    and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                self._idle.append(conn)
            else:
                try:
                    conn.close()
                except Exception:
                    pass

    @staticmethod
    def _raw(seq: int, record: str, sha: str, prev: str | None, neutral: bool,
             last: bool) -> RawLine:
        data = record.encode("utf-8")
        if neutral:
            # the first row of a stretch, read only as the row before a wanted one: its own
            # link is not checked here (the row before it was not read), only its content
            rec = parse(data)
            claimed = rec.get("prev_sha256") if rec is not None else None
            return RawLine(seq, data, True, claimed if isinstance(claimed, str) else "")
        if last and hashlib.sha256(data).hexdigest() != sha:
            prev = COLUMN_MISMATCH  # no row after it checks it: its own column does
        return RawLine(seq, data, True, prev)

    def lines(self, patient_ids: Iterable[str] | None = None,
              after_seq: int | None = None) -> Iterator[RawLine]:
        """Rows in seq order, as a file's lines: `prev` is None within a stretch of
        consecutive rows, so the chain check links each row to the bytes of the row before
        it (a record edited with the trigger disabled breaks the link of the row after it,
        even when its own hash was recomputed, whatever the sha256 column says). The last row
        of the table, which no row after it checks, is checked against its sha256 column
        (COLUMN_MISMATCH). With `patient_ids` or `after_seq`, only those rows are read (by
        index), each with the row before and after it; the first row of a stretch read only
        as the row before a wanted one is given the link it claims (it is context: its own
        link is another stretch's business)."""
        if patient_ids is not None:
            ids = list(patient_ids)
            if not ids:
                return
            cond, params = "a.patient_id = ANY(%(ids)s)", {"ids": ids}
            if after_seq is not None:
                cond += " AND a.seq > %(after)s"
                params["after"] = after_seq
            for raw, _ in self._context(cond, params):
                yield raw
            return
        if after_seq is not None:
            query = ("SELECT seq, record, sha256 FROM icans.assessments WHERE seq >= coalesce("
                     "(SELECT max(seq) FROM icans.assessments WHERE seq <= %(after)s AND "
                     "record <> ''), 0) ORDER BY seq")
            params = {"after": after_seq}
        else:
            query, params = "SELECT seq, record, sha256 FROM icans.assessments ORDER BY seq", None
        held = None  # one row held back: whether a row is the last is known at the next
        first = True
        for seq, record, sha in self._rows(query, params):
            if not record:
                continue  # an emptied row: the chain check skips it (as an empty line)
            if held is not None:
                yield self._raw(*held, last=False)
            held = (seq, record, sha, None, first and after_seq is not None
                    and seq <= after_seq)
            first = False
        if held is not None:
            yield self._raw(*held, last=True)

    def _context(self, cond: str, params: dict[str, Any]) -> Iterator[tuple[RawLine, bool]]:
        """The rows matching `cond` (True) with the row before and after each (False), in
        seq order, so that check_chain gives each matching row the verdict it has in a read
        of the whole table."""
        previous: int | None = None
        for seq, record, sha, matched, prev_seq, last in self._rows(
                pg_sql.SQL(_CONTEXT_SQL.format(cond=cond)), params):
            if not record:
                continue
            if prev_seq is not None and prev_seq == previous:
                raw = self._raw(seq, record, sha, None, False, last)
            elif prev_seq is None:
                raw = self._raw(seq, record, sha, "", False, last)  # the table's first row
            else:
                raw = self._raw(seq, record, sha, None, not matched, last)
            previous = seq
            yield raw, bool(matched)

    def _matching(self, cond: str, params: dict[str, Any],
                  on_problem: Callable[[Problem], None] | None = None) -> Iterator[Entry]:
        """The entries of the rows matching `cond`, with their verdicts."""
        wanted: set[int] = set()

        def lines() -> Iterator[RawLine]:
            for raw, matched in self._context(cond, params):
                if matched:
                    wanted.add(raw.pos)
                yield raw

        for e in check_chain(lines(), on_problem):
            if e.line in wanted:
                yield e

    # --- the faster paths (each exactly what the base class gives) ------------------------

    def spellings(self, typed: str) -> list[str]:
        """The base class's answer (each spelling as the bytes of its first record give it,
        in the order of first appearance), reading only the rows whose patient_id column
        matches: the distinct values come from the index."""
        from icans_cli.core.identifiers import patient_key
        from icans_cli.store import spellings_in

        want = patient_key(typed)
        with self._errors("read it"):
            distinct = self._writer().execute(
                "SELECT DISTINCT patient_id FROM icans.assessments "
                "WHERE patient_id IS NOT NULL").fetchall()
        candidates = [pid for (pid,) in distinct if patient_key(pid) == want]
        if not candidates:
            return []
        rows = self._rows("SELECT record FROM icans.assessments WHERE patient_id = ANY(%s) "
                          "ORDER BY seq", (candidates,))
        return spellings_in((record.encode("utf-8") for (record,) in rows), typed,
                            most=len(candidates))

    def find(self, prefix: str) -> list[Entry]:
        if not prefix:
            return super().find(prefix)
        span = _uuid_range(prefix)
        if span is None:
            return []  # every stored id is a canonical UUID: none starts so
        return [e for e in self._matching("a.id BETWEEN %(lo)s::uuid AND %(hi)s::uuid",
                                          {"lo": span[0], "hi": span[1]})
                if e.record is not None and str(e.record.get("id", "")).startswith(prefix)]

    def _last_where(self, want: Callable[[dict[str, Any]], bool]) -> tuple[int, bytes] | None:
        for seq, record in self._rows("SELECT seq, record FROM icans.assessments "
                                      "ORDER BY seq DESC"):
            if not record:
                continue
            data = record.encode("utf-8")
            rec = parse(data)
            if rec is not None and want(rec):
                return seq, data
        return None

    def head(self) -> Head | None:
        found = self._last_where(lambda rec: isinstance(rec.get("seq"), int))
        if found is None:
            return None
        seq, data = found
        return Head(parse(data)["seq"], hashlib.sha256(data).hexdigest())  # type: ignore[index]

    def last_saved(self) -> Entry | None:
        found = self._last_where(lambda rec: not rec.get("kind"))
        if found is None:
            return None
        for e in self._matching("a.seq = %(seq)s", {"seq": found[0]}):
            return e
        return None

    def recent(self, since: datetime,
               on_problem: Callable[[Problem], None] | None = None) -> Iterator[Entry]:
        """The assessments assessed or recorded since `since` (and a margin of a day, for
        times written without an offset in another zone), read by index, with the verdicts
        a read of the whole table gives."""
        if since.tzinfo is None:
            since = since.astimezone()
        lo = since - BOARD_MARGIN
        for e in self._matching("a.assessed_at >= %(lo)s OR a.recorded_at >= %(lo)s OR "
                                "a.recorded_at IS NULL", {"lo": lo}, on_problem):
            if e.record is not None and not e.record.get("kind"):
                yield e

    # --- writing -----------------------------------------------------------------------------

    def _holder(self, conn: "psycopg.Connection") -> str:
        try:
            with conn.transaction():
                row = conn.execute(_HOLDER_SQL, (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF)
                                   ).fetchone()
        except psycopg.Error:
            row = None
        if not row or not row[0]:
            return "another workstation"
        who, app, addr, secs = row
        where = f" from {addr}" if addr else ""
        app = f", {app}" if app else ""
        held = f", for {secs:.0f} s" if secs is not None else ""
        return f"the role {who}{where}{app}{held}"

    def _set_lock_timeout(self, conn: "psycopg.Connection", seconds: float) -> None:
        """The session's lock_timeout (outside a transaction: a SET in one is undone by its
        rollback); sent only when it changes, so an append that waits for nobody pays
        nothing for it."""
        ms = max(1, int(seconds * 1000))
        if self._lock_ms != (id(conn), ms):
            conn.execute(f"SET lock_timeout = {ms}")
            self._lock_ms = (id(conn), ms)

    def append(self, body: dict[str, Any], unique: str | None = None,
               on_wait: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        """Append one record (one transaction, under the appenders' advisory lock); return it
        as stored (with seq, hashes and db_role), or None when `unique` is stored already
        (``"id:<uuid>"``: a record with that id; else a record with that rerun key).

        The lock is waited for in the server's queue (first come, first served) in steps of
        a quarter second: between them a stop requested by a signal is honoured
        (Interrupted, nothing appended), the wait is said once after a second (`on_wait`,
        naming who holds the lock), and it is given up after ICANS_LOCK_TIMEOUT seconds
        (LockTimeout)."""
        import icans_cli.store as seam

        record = dict(body)
        if "sha256" in record:
            raise StoreError("a record to append must not carry its own hash")
        if unique is not None and not unique.startswith("id:"):
            record["dedup"] = unique
        record.setdefault("schema", SCHEMA_VERSION)
        record.setdefault("id", str(uuid.uuid4()))
        record.setdefault("recorded_at", utc_now().isoformat(timespec="seconds"))
        if not isinstance(record["id"], str) or not _UUID.fullmatch(record["id"]):
            raise StoreError("the record's id is not a UUID: the ward log keeps only records "
                             "with one")
        if unique is not None and unique.startswith("id:"):
            if not _UUID.fullmatch(unique[3:]):
                raise StoreError("the unique key names a record id that is not a UUID")
            exists, key = ("EXISTS (SELECT 1 FROM icans.assessments WHERE id = %(key)s::uuid)",
                           unique[3:])
        elif unique is not None:
            exists, key = "EXISTS (SELECT 1 FROM icans.assessments WHERE dedup = %(key)s)", unique
        else:
            exists, key = "false", None
        try:
            canonical(record)
        except (TypeError, ValueError):
            raise StoreError("the record cannot be written as JSON (a value that is not "
                             "text, a number, true/false/null, a list or an object)") from None
        dedup = record.get("dedup")
        row = {
            "id": record["id"],
            "patient_id": record.get("patient_id") if isinstance(record.get("patient_id"),
                                                                 str) else None,
            "assessed_at": _ts(record.get("assessed_at")),
            "recorded_at": _ts(record.get("recorded_at")),
            "dedup": dedup if isinstance(dedup, str) else None,
        }
        limit = lock_timeout()
        start = time.monotonic()
        said = False
        with self._errors("append to it"):
            conn = self._writer()
            while True:
                waited = time.monotonic() - start
                step = min(LOCK_STEP, limit - waited)
                if not said and on_wait is not None and waited < 1.0:
                    step = min(step, 1.0 - waited)  # wake at the second, to say the wait
                if limit > 0:
                    self._set_lock_timeout(conn, step)
                locked = committing = False
                try:
                    with conn.transaction():
                        if limit > 0:
                            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                        elif not conn.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                              (LOCK_KEY,)).fetchone()[0]:
                            raise LockTimeout(f"the ward log at {self.where} is locked "
                                              f"({LOCK_TIMEOUT_ENV}=0): nothing was appended")
                        locked = True
                        role, last_seq, last_sha, stored = conn.execute(
                            _LAST_SQL.format(exists=exists), {"key": key}).fetchone()
                        if stored:
                            return None
                        record["seq"] = (last_seq or 0) + 1
                        record["prev_sha256"] = last_sha or ""
                        record["db_role"] = role
                        line = encode_record(record)
                        conn.execute(_INSERT_SQL, {
                            **row, "seq": record["seq"], "record": line.decode("utf-8"),
                            "sha256": hashlib.sha256(line).hexdigest(),
                            "prev_sha256": record["prev_sha256"]})
                        committing = True  # from here a lost connection leaves it in doubt
                    break
                except pg_errors.LockNotAvailable:
                    if locked:
                        raise  # another lock (a table's) was not had in time: LockTimeout
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    # in doubt only when the connection itself was lost (no answer from the
                    # server, or its connection or shutdown errors): an error the server
                    # answered with at the commit (a rollback) means it was not stored
                    state = getattr(exc, "sqlstate", None) or ""
                    if not committing or (state and not state.startswith(("08", "57P"))):
                        raise
                    self._drop(conn)
                    raise seam.InDoubt(
                        f"the ward log at {self.where} cannot be reached "
                        f"({self._reason(exc)}); the connection was lost as the record was "
                        "committed, so it may be stored") from None
                if seam.stop_requested():
                    raise seam.Interrupted("stopped while waiting for the ward log's lock: "
                                           "nothing was appended")
                waited = time.monotonic() - start
                if waited >= limit - 0.0005:
                    raise LockTimeout(f"the ward log at {self.where} stayed locked for "
                                      f"{waited:.0f} s ({LOCK_TIMEOUT_ENV}={limit:g}): nothing "
                                      "was appended")
                if not said and waited >= 0.999 and on_wait is not None:
                    on_wait(f"waiting for the ward log: {self._holder(conn)} is appending "
                            f"(Ctrl-C stops; gives up after {limit:g} s)")
                    said = True
        record["sha256"] = line[-66:-2].decode()
        return record


def server_info(conn: "psycopg.Connection") -> dict[str, Any]:
    """The server's version, the ward log's schema version, rows, and whether its
    append-only triggers are on."""
    version = conn.info.parameter_status("server_version") or ""
    exists = conn.execute("SELECT to_regclass('icans.assessments') IS NOT NULL").fetchone()[0]
    out: dict[str, Any] = {"server_version": version, "schema_version": None, "rows": None,
                           "append_only": None}
    if not exists:
        return out
    out["schema_version"] = conn.execute("SELECT max(version) FROM icans.schema_version"
                                         ).fetchone()[0]
    out["rows"] = conn.execute("SELECT count(*) FROM icans.assessments").fetchone()[0]
    enabled = dict(conn.execute(
        "SELECT tgname::text, tgenabled::text FROM pg_trigger "
        "WHERE tgrelid = 'icans.assessments'::regclass AND NOT tgisinternal").fetchall())
    out["append_only"] = all(enabled.get(t) == "A" for t in TRIGGERS)
    return out
