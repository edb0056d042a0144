"""The ward log in PostgreSQL (spec section 7), on a real server (tests/pgserver.py).

Every test gets a fresh database of its own. What is shown here: the records are the file's
bytes; seq is contiguous under many writers on two workstations; the table refuses UPDATE,
DELETE and TRUNCATE to its owner; a row changed behind the trigger's back is named; unique
keys store once; a bedside save survives a server down and is sent once; db init, the writer
role, db status, log import; the faster reads give exactly what a whole read gives; the lock
is waited for, said, and given up; a password is never shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from icans_cli.store import LockTimeout, Store, Unavailable, keep
from icans_cli.store.chain import ALTERED, OK, Head, encode_record
from tests.helpers import T0, body
from tests.pgserver import (  # noqa: F401 - fixtures, until conftest lists tests.pgserver
    bulk_append, create_database, drop_database, pg_database_url, pg_restartable, pg_url,
)

import psycopg  # noqa: E402 - psycopg 3: the test extra carries it

from icans_cli.dbcmd import db_init, db_status, log_import  # noqa: E402
from icans_cli.store.postgres import TRIGGERS, PostgresStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ward(pg_database_url):
    """A ward log, set up (icans db init), and a store on it."""
    db_init(pg_database_url)
    with PostgresStore(pg_database_url) as store:
        yield store


def sql(url, query, params=None, fetch=True):
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if fetch and cur.description else None


def tamper(url, statement, params=None):
    """As a superuser: disable the triggers, change a row, enable them again."""
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE icans.assessments DISABLE TRIGGER USER")
        conn.execute(statement, params)
        for name in TRIGGERS:
            conn.execute(f"ALTER TABLE icans.assessments ENABLE ALWAYS TRIGGER {name}")


class WholeRead(Store):
    """The base class's answers: every read is a read of the whole table (no hints)."""

    def __init__(self, store):
        self.store = store

    def lines(self, patient_ids=None, after_seq=None):
        return self.store.lines()


# --- the record --------------------------------------------------------------------------------

def test_a_record_is_stored_as_the_very_bytes_the_file_store_writes(ward, tmp_path):
    from icans_cli.store.jsonl import JsonlStore

    b = body("PT-0042", ice=7)
    b["assessor"] = "Zoë Ångström"  # not ASCII: UTF-8 byte for byte
    stored = ward.append(b)
    (row,) = sql(ward.url, "SELECT seq, record, sha256, prev_sha256, id::text, patient_id "
                           "FROM icans.assessments")
    data = row[1].encode("utf-8")
    assert data == encode_record({k: v for k, v in stored.items() if k != "sha256"})
    assert row[0] == stored["seq"] == 1 and row[3] == stored["prev_sha256"] == ""
    assert row[2] == hashlib.sha256(data).hexdigest()
    assert row[4] == stored["id"] and row[5] == "PT-0042"
    assert data.endswith(f',"sha256":"{stored["sha256"]}"}}'.encode())
    assert stored["db_role"] == "postgres" and stored["assessor"] == "Zoë Ångström"
    # the file store, given the same record, writes the same line
    path = tmp_path / "assessments.jsonl"
    JsonlStore(path).append({k: v for k, v in stored.items() if k != "sha256"})
    assert path.read_bytes() == data + b"\n"
    # and reads give those bytes back, with the chain
    (raw,) = list(ward.lines())
    assert raw.data == data and raw.pos == 1
    (e,) = list(ward.entries())
    assert e.verdict == OK and e.record == json.loads(data)
    # any JSON string is kept, even one that PostgreSQL's json types cannot hold (a NUL)
    odd = ward.append(dict(body("PT-0042"), extra={"note": "a\x00b \\u0000 \U0001F600"}))
    assert [e.record.get("extra") for e in ward.entries()][1] == odd["extra"]
    assert ward.verify().problems == []


# --- many writers ---------------------------------------------------------------------------------

WRITER = """
import sys
from icans_cli.store import open_store
tag, n = sys.argv[1], int(sys.argv[2])
with open_store() as store:
    for i in range(n):
        store.append({"patient_id": "PT-" + tag, "assessed_at": "2026-11-27T08:00:00+00:00",
                      "assessor": "nurse-" + tag, "source": "batch", "n": i})
"""


@pytest.mark.slow
def test_seq_is_contiguous_under_eight_writers_on_two_workstations(ward, tmp_path):
    writers, each = 8, 500
    procs = []
    for w in range(writers):
        station = tmp_path / f"workstation-{w % 2}"  # two data directories
        env = dict(os.environ, ICANS_DATABASE_URL=ward.url, ICANS_DATA_DIR=str(station),
                   PYTHONPATH=str(ROOT))
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(w), str(each)],
                                      env=env, stderr=subprocess.PIPE, text=True))
    errors = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    assert all(rc == 0 for rc, _ in errors), errors
    seqs = [s for (s,) in sql(ward.url, "SELECT seq FROM icans.assessments ORDER BY seq")]
    assert seqs == list(range(1, writers * each + 1))
    per = dict(sql(ward.url, "SELECT patient_id, count(*) FROM icans.assessments "
                             "GROUP BY patient_id"))
    assert per == {f"PT-{w}": each for w in range(writers)}
    checked = ward.verify()
    assert checked.problems == [] and checked.records == writers * each
    assert checked.head == ward.head() and checked.head.seq == writers * each


# --- append-only ----------------------------------------------------------------------------------

def test_update_delete_and_truncate_are_refused_for_the_owner(ward):
    ward.append(body("PT-1"))
    ward.append(body("PT-2"))
    owner = sql(ward.url, "SELECT tableowner::text, current_user::text FROM pg_tables "
                          "WHERE schemaname = 'icans' AND tablename = 'assessments'")
    assert owner[0][0] == owner[0][1]  # this connection is the owner (and a superuser)
    for statement in ("UPDATE icans.assessments SET patient_id = 'PT-9'",
                      "DELETE FROM icans.assessments WHERE seq = 1",
                      "TRUNCATE icans.assessments",
                      "DELETE FROM icans.schema_version"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            sql(ward.url, statement)
    # also when replication mode would skip ordinary triggers
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        with psycopg.connect(ward.url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute("DELETE FROM icans.assessments")
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(2,)]
    assert ward.verify().problems == []


def test_an_insert_that_does_not_continue_the_chain_is_refused(ward):
    first = ward.append(body("PT-1"))
    rec = dict(first, seq=2, prev_sha256="0" * 64, id="9d0b7b1e-0c55-4a4e-9d51-0d7d1f0e6a11")
    del rec["sha256"]
    line = encode_record(rec).decode()
    with pytest.raises(psycopg.errors.RaiseException, match="prev_sha256"):
        sql(ward.url, "INSERT INTO icans.assessments (seq, id, record, sha256, prev_sha256) "
                      "VALUES (2, %s, %s, %s, %s)",
            (rec["id"], line, hashlib.sha256(line.encode()).hexdigest(), "0" * 64))
    rec["db_role"] = "someone_else"  # a role the writer is not: refused too
    (last,) = sql(ward.url, "SELECT sha256 FROM icans.assessments")
    rec["prev_sha256"] = last[0]
    line = encode_record(rec).decode()
    with pytest.raises(psycopg.errors.RaiseException, match="db_role"):
        sql(ward.url, "INSERT INTO icans.assessments (seq, id, patient_id, record, sha256, "
                      "prev_sha256) VALUES (2, %s, %s, %s, %s, %s)",
            (rec["id"], rec["patient_id"], line, hashlib.sha256(line.encode()).hexdigest(),
             last[0]))


# --- behind the trigger's back ------------------------------------------------------------------

def _rehashed(url, seq, change):
    """The record of row `seq` edited and its own hash recomputed (a careful forger)."""
    (rec,) = sql(url, "SELECT record FROM icans.assessments WHERE seq = %s", (seq,))
    data = json.loads(rec[0])
    del data["sha256"]
    change(data)
    return encode_record(data).decode()


def as_file(store, path):
    """A JSON Lines file holding the very lines the store holds (the file store's view)."""
    from icans_cli.store.jsonl import JsonlStore

    path.write_bytes(b"".join(raw.data + b"\n" for raw in store.lines()))
    return JsonlStore(path)


def test_a_row_edited_behind_the_triggers_back_is_named_and_flagged(ward, tmp_path):
    for i in range(5):
        ward.append(body(f"PT-{i}", hours=i))
    assert ward.verify().problems == []
    # a plain edit of row 2: its own hash no longer matches
    tamper(ward.url, "UPDATE icans.assessments SET record = replace(record, "
                     "'\"assessor\":\"nurse-a\"', '\"assessor\":\"nurse-b\"') WHERE seq = 2")
    checked = ward.verify()
    assert (2, "edited") in [(p.line, p.kind) for p in checked.problems]
    assert checked.head is None
    verdicts = {e.line: e.verdict for e in ward.entries()}
    assert verdicts[2] == ALTERED and verdicts[1] == OK and verdicts[5] == OK
    assert [e.verdict for e in ward.entries(patient="pt 1")] == [ALTERED]
    assert [e.verdict for e in ward.entries(patient="pt 0")] == [OK]
    # exactly what a file holding the same lines says
    file = as_file(ward, tmp_path / "same.jsonl")
    assert [(p.line, p.kind) for p in checked.problems] == [
        (p.line, p.kind) for p in file.verify().problems]
    assert verdicts == {e.line: e.verdict for e in file.entries()}
    named = []
    list(ward.entries(on_problem=named.append))
    assert 2 in [p.line for p in named]


def test_a_rehashed_edit_breaks_the_next_link_and_an_edited_last_row_is_named(ward):
    for i in range(4):
        ward.append(body(f"PT-{i}", hours=i))
    # row 2 edited with its own hash recomputed: row 3 no longer follows it, whatever the
    # sha256 column says (the link is checked against the bytes)
    line = _rehashed(ward.url, 2, lambda d: d["result"].update(icans_grade=4))
    tamper(ward.url, "UPDATE icans.assessments SET record = %s WHERE seq = 2", (line,))
    for fix_column in (False, True):
        if fix_column:  # the forger fixes the sha256 column too: the same
            tamper(ward.url, "UPDATE icans.assessments SET sha256 = encode(sha256(convert_to("
                             "record, 'UTF8')), 'hex') WHERE seq = 2")
        assert [(p.line, p.kind) for p in ward.verify().problems] == [(3, "broken_chain")]
        verdicts = {e.line: e.verdict for e in ward.entries()}
        assert verdicts == {1: OK, 2: ALTERED, 3: ALTERED, 4: OK}
    # the last row, rehashed: no row after it, but its sha256 column names it
    line = _rehashed(ward.url, 4, lambda d: d.update(assessor="someone"))
    tamper(ward.url, "UPDATE icans.assessments SET record = %s WHERE seq = 4", (line,))
    assert (4, "broken_chain") in [(p.line, p.kind) for p in ward.verify().problems]
    assert {e.line: e.verdict for e in ward.entries()}[4] == ALTERED
    assert [e.verdict for e in ward.entries(patient="PT-3")] == [ALTERED]


def test_a_row_deleted_behind_the_triggers_back_is_named(ward):
    for i in range(4):
        ward.append(body(f"PT-{i}", hours=i))
    tamper(ward.url, "DELETE FROM icans.assessments WHERE seq = 2")
    problems = ward.verify().problems
    assert [(p.line, p.kind) for p in problems] == [(3, "missing")]
    verdicts = {e.line: e.verdict for e in ward.entries()}
    assert verdicts == {1: ALTERED, 3: ALTERED, 4: OK}


# --- the faster reads are the whole read ------------------------------------------------------

def test_the_faster_reads_give_exactly_what_a_whole_read_gives(ward):
    now = datetime.now(timezone.utc)
    pts = ["PT-0042", "pt 0042", "PT-7", "PT-8", "PT_0042"]
    for i in range(30):
        b = body(pts[i % len(pts)])
        b["assessed_at"] = (now - timedelta(days=30 - i)).isoformat(timespec="seconds")
        b["recorded_at"] = b["assessed_at"]
        if i == 12:
            b["assessed_at"] = "2026-11-27T08:00"  # no offset: local time
        ward.append(b)
    ward.append({"kind": "practice", "score": 3})  # not an assessment
    # damage: a plain edit (row 9), a rehashed edit (row 16), a deletion (row 23)
    tamper(ward.url, "UPDATE icans.assessments SET record = replace(record, 'nurse-a', "
                     "'nurse-x') WHERE seq = 9")
    line = _rehashed(ward.url, 16, lambda d: d.update(assessor="nurse-y"))
    tamper(ward.url, "UPDATE icans.assessments SET record = %s WHERE seq = 16", (line,))
    tamper(ward.url, "DELETE FROM icans.assessments WHERE seq = 23")
    whole = WholeRead(ward)

    def view(entries):
        return [(e.line, e.seq, e.verdict, e.note, e.sha256) for e in entries]

    assert ward.spellings("PT 0042") == whole.spellings("PT 0042") == [
        "PT-0042", "pt 0042", "PT_0042"]
    assert ward.spellings("nobody") == whole.spellings("nobody") == []
    everything = []
    list(whole.entries(on_problem=everything.append))
    # the plain edit, the link after the rehashed edit, the link over the deleted row
    assert {9, 17, 24} <= {p.line for p in everything}
    for p in ("pt0042", "PT-7", "pt-8"):
        assert view(ward.entries(patient=p)) == view(whole.entries(patient=p))
        named = []  # what a patient's read names is true of the whole table
        list(ward.entries(patient=p, on_problem=named.append))
        assert set(named) <= set(everything), (p, named)
        assert view(ward.entries(patient=p, after_seq=14)) == view(
            whole.entries(patient=p, after_seq=14))
    for after in (0, 8, 15, 22, 24, 40):
        assert view(ward.entries(after_seq=after)) == view(whole.entries(after_seq=after))
    for e in list(whole.entries())[::3]:
        if e.record is not None:
            for n in (1, 5, 8, 36):
                prefix = e.record["id"][:n]
                assert view(ward.find(prefix)) == view(whole.find(prefix))
    assert ward.find("zz") == whole.find("zz") == []
    assert ward.head() == whole.head()
    assert view([ward.last_saved()]) == view([whole.last_saved()])
    since = now - timedelta(days=7)

    def board(entries):  # what a board keeps: assessed or recorded since
        out = []
        for e in entries:
            t = datetime.fromisoformat(e.record["assessed_at"])
            t = t if t.tzinfo else t.astimezone()
            if t >= since or datetime.fromisoformat(e.record["recorded_at"]) >= since:
                out.append(e)
        return view(out)

    named = []
    recent = list(ward.recent(since, on_problem=named.append))
    assert board(recent) == board(whole.recent(since))
    assert set(named) <= set(everything)
    old = datetime(2000, 1, 1, tzinfo=timezone.utc)  # a window over all: every problem named
    named = []
    assert view(ward.recent(old, on_problem=named.append)) == view(whole.recent(old))
    assert set(named) == set(everything)
    assert len(recent) < len(list(whole.recent(since)))  # read by index: not every record
    assert any(e.verdict == ALTERED for e in ward.entries(patient="PT 0042"))


# --- unique keys ------------------------------------------------------------------------------

def test_the_same_unique_key_twice_stores_one_row(ward):
    first = ward.append(body("PT-1"), unique="rerun:PT-1:2026-11-27T08:00:00+00:00:abc")
    assert first is not None and first["dedup"].startswith("rerun:")
    assert ward.append(body("PT-1"), unique="rerun:PT-1:2026-11-27T08:00:00+00:00:abc") is None
    b = body("PT-2")
    b["id"] = "3b241101-e2bb-4255-8caf-4136c566a962"
    assert ward.append(b, unique=f"id:{b['id']}") is not None
    assert ward.append(b, unique=f"id:{b['id']}") is None
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(2,)]


def test_concurrent_reruns_store_each_key_once(ward):
    keys = [f"rerun:{k}" for k in range(25)]
    stored = []

    def run():
        with PostgresStore(ward.url) as s:
            for k in keys:
                if s.append(body("PT-1"), unique=k) is not None:
                    stored.append(k)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(stored) == sorted(keys)
    assert sql(ward.url, "SELECT count(*), count(DISTINCT dedup) FROM icans.assessments"
               ) == [(25, 25)]


# --- the outbox -----------------------------------------------------------------------------------

def test_a_bedside_save_is_kept_while_the_server_is_down_and_sent_once(pg_restartable,
                                                                       tmp_path):
    server = pg_restartable
    name = f"icans_outbox_{os.getpid()}"
    url = create_database(server.url, name)
    outbox = tmp_path / "outbox"
    try:
        db_init(url)
        with PostgresStore(url) as store:
            assert store.save_or_keep(body("PT-1"), outbox).on_log
            server.stop("immediate")
            saved = store.save_or_keep(body("PT-2"), outbox)
            assert not saved.on_log and "cannot be reached" in saved.why
            (kept_file,) = outbox.glob("*.json")
            assert stat.S_IMODE(kept_file.stat().st_mode) == 0o600
            assert json.loads(kept_file.read_text())["id"] == saved.record["id"]
            server.start()
            assert store.send_outbox(outbox) == (1, [])
            # a connection the restart closed is noticed, not used: the next call just works
            list(store.lines())
            server.stop("fast")
            server.start()
            assert len(list(store.lines())) == 2 and store.exists()
            assert store.send_outbox(outbox) == (0, [])
            # the answer to a commit lost on the way back: the record is on the log and kept
            keep(outbox, saved.record)
            assert store.send_outbox(outbox) == (1, [])
            rows = sql(url, "SELECT id::text, patient_id FROM icans.assessments ORDER BY seq")
            assert [r[1] for r in rows] == ["PT-1", "PT-2"]
            assert rows[1][0] == saved.record["id"]
            assert list(outbox.glob("*.json")) == []
            assert store.verify().problems == []
    finally:
        if not server.running:
            server.start()
        drop_database(server.url, name)


# --- a connection lost as a record commits ---------------------------------------------------

def lose_the_reply_after_commit(conn):
    """The server commits, then the connection is lost before its reply arrives (a server
    stopped at that instant): what the client sees is an OperationalError."""
    from contextlib import contextmanager

    real = conn.transaction

    @contextmanager
    def transaction(*args, **kwargs):
        with real(*args, **kwargs):
            yield
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    conn.transaction = transaction


def test_a_connection_lost_as_a_record_commits_is_in_doubt_and_stored_once(ward):
    from icans_cli.store import InDoubt

    first = ward.append(body("PT-1"), "rerun-key-1")
    assert first is not None
    lose_the_reply_after_commit(ward._writer())
    with pytest.raises(InDoubt) as said:
        ward.append(body("PT-2"), "rerun-key-2")
    assert "may be stored" in str(said.value)
    assert ward.append(body("PT-2"), "rerun-key-2") is None  # it was: the rerun skips it
    rows = sql(ward.url, "SELECT seq, dedup FROM icans.assessments ORDER BY seq")
    assert rows == [(1, "rerun-key-1"), (2, "rerun-key-2")]


def test_an_error_the_server_answers_at_commit_is_not_in_doubt(ward):
    """A rollback the server reports (a serialization failure: SQLSTATE 40001) means the
    record was not stored: Unavailable or StoreError, never InDoubt."""
    from contextlib import contextmanager

    from icans_cli.store import InDoubt, StoreError

    conn = ward._writer()
    real = conn.transaction

    @contextmanager
    def transaction(*args, **kwargs):
        with real(*args, **kwargs):
            yield
            raise psycopg.errors.SerializationFailure("could not serialize access")

    conn.transaction = transaction
    with pytest.raises(StoreError) as said:
        ward.append(body("PT-4"), "rerun-key-4")
    assert not isinstance(said.value, InDoubt)
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(0,)]


def test_a_bedside_save_in_doubt_is_kept_said_maybe_and_sent_once(ward, tmp_path):
    outbox = tmp_path / "outbox"
    lose_the_reply_after_commit(ward._writer())
    saved = ward.save_or_keep(body("PT-5"), outbox)
    assert not saved.on_log and saved.in_doubt and len(list(outbox.glob("*.json"))) == 1
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(1,)]  # it was stored
    assert ward.send_outbox(outbox) == (1, [])  # sent: found there by its id, not stored again
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(1,)]
    assert list(outbox.glob("*.json")) == []


def test_a_connection_lost_before_the_insert_is_not_in_doubt(ward):
    from icans_cli.store import InDoubt

    conn = ward._writer()
    conn.close()  # lost before anything was sent: nothing can be stored
    ward._alive = lambda c: True  # the store is not told: it finds out by trying
    with pytest.raises(Unavailable) as said:
        ward.append(body("PT-3"), "rerun-key-3")
    assert not isinstance(said.value, InDoubt)
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(0,)]


# --- the lock ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_busy_lock_is_said_after_a_second_and_given_up_after_the_timeout(ward, tmp_path,
                                                                          monkeypatch):
    from icans_cli.store.postgres import LOCK_KEY

    monkeypatch.setenv("ICANS_LOCK_TIMEOUT", "1.3")
    said = []
    with psycopg.connect(ward.url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        start = time.monotonic()
        with pytest.raises(LockTimeout, match="ICANS_LOCK_TIMEOUT"):
            ward.append(body("PT-1"), on_wait=said.append)
        waited = time.monotonic() - start
        assert 1.2 <= waited < 4
        assert len(said) == 1 and "role postgres" in said[0]
        kept_save = ward.save_or_keep(body("PT-2"), tmp_path / "outbox")
        assert not kept_save.on_log and len(list((tmp_path / "outbox").glob("*.json"))) == 1
        holder.rollback()
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(0,)]
    assert ward.send_outbox(tmp_path / "outbox") == (1, [])


def test_a_writer_waiting_for_the_lock_stops_when_a_signal_asks(ward, monkeypatch):
    import icans_cli.store as seam
    from icans_cli.store.postgres import LOCK_KEY

    asked = []
    monkeypatch.setattr(seam, "stop_requested", lambda: bool(asked))
    with psycopg.connect(ward.url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        timer = threading.Timer(0.3, asked.append, (1,))
        timer.start()
        start = time.monotonic()
        with pytest.raises(seam.Interrupted, match="nothing was appended"):
            ward.append(body("PT-1"))
        assert time.monotonic() - start < 1.5
        timer.join()
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(0,)]


# --- db init, the writer role, db status --------------------------------------------------------

def test_db_init_is_idempotent(pg_database_url):
    first = db_init(pg_database_url)
    assert "created" in first
    with PostgresStore(pg_database_url) as s:
        s.append(body("PT-1"))
    ddl = sql(pg_database_url, "SELECT count(*) FROM pg_trigger WHERE tgrelid = "
                               "'icans.assessments'::regclass AND NOT tgisinternal")
    again = db_init(pg_database_url)
    assert "already set up" in again and "1 records" in again
    assert sql(pg_database_url, "SELECT count(*) FROM pg_trigger WHERE tgrelid = "
                                "'icans.assessments'::regclass AND NOT tgisinternal") == ddl
    assert sql(pg_database_url, "SELECT version FROM icans.schema_version") == [(1,)]
    # init re-arms a trigger someone disabled
    sql(pg_database_url, "ALTER TABLE icans.assessments DISABLE TRIGGER USER", fetch=False)
    assert db_status(pg_database_url, None)["append_only"] is False
    db_init(pg_database_url)
    assert db_status(pg_database_url, None)["append_only"] is True


def test_the_writer_role_may_insert_and_select_but_not_update_or_delete(pg_database_url):
    role = f"icans_writer_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    sql(pg_database_url, f'CREATE ROLE "{role}" LOGIN', fetch=False)
    try:
        report = db_init(pg_database_url, writer_role=role)
        assert f"role {role}: SELECT and INSERT only" in report
        url = psycopg.conninfo.make_conninfo(pg_database_url, user=role)
        with PostgresStore(url) as writer:
            stored = writer.append(body("PT-1"))
            assert stored["db_role"] == role and stored["assessor"] == "nurse-a"
            assert [e.verdict for e in writer.entries()] == [OK]
        for statement in ("UPDATE icans.assessments SET patient_id = 'x'",
                          "DELETE FROM icans.assessments", "TRUNCATE icans.assessments",
                          "ALTER TABLE icans.assessments DISABLE TRIGGER USER",
                          "INSERT INTO icans.schema_version VALUES (2)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                sql(url, statement)
        privileges = sql(pg_database_url, "SELECT privilege_type FROM "
                         "information_schema.role_table_grants WHERE grantee = %s AND "
                         "table_name = 'assessments' ORDER BY 1", (role,))
        assert privileges == [("INSERT",), ("SELECT",)]
    finally:
        sql(pg_database_url, f'DROP OWNED BY "{role}"', fetch=False)
        sql(pg_database_url, f'DROP ROLE "{role}"', fetch=False)


def test_db_status_says_what_the_ward_log_holds_and_what_waits_here(ward, tmp_path):
    for i in range(3):
        ward.append(body(f"PT-{i}"))
    outbox = tmp_path / "outbox"
    keep(outbox, {"id": "3b241101-e2bb-4255-8caf-4136c566a962", "patient_id": "PT-9"})
    keep(outbox, {"id": "4b241101-e2bb-4255-8caf-4136c566a962", "patient_id": "PT-9"})
    st = db_status(ward.url, outbox)
    assert st["reachable"] is True and st["error"] is None
    assert st["server_version"].split(".")[0].isdigit()
    assert (st["schema_version"], st["rows"], st["outbox"]) == (1, 3, 2)
    assert st["head"] == str(ward.head()) and st["append_only"] is True


def test_an_unreachable_server_never_shows_its_password(tmp_path):
    for url in (f"postgresql://nurse:s3cr3t-pw@/icans?host={tmp_path}/nowhere",
                f"host={tmp_path}/nowhere dbname=icans user=nurse password=s3cr3t-pw",
                f"postgresql:///icans?host={tmp_path}/nowhere&password=s3cr3t-pw"):
        st = db_status(url, tmp_path / "outbox")
        assert st["reachable"] is False and "cannot be reached" in st["error"]
        assert "s3cr3t" not in repr(st)
        with PostgresStore(url) as store:
            assert "s3cr3t" not in store.where and "nowhere" in store.where
            assert ("nurse" in store.where) == ("nurse" in url)
            with pytest.raises(Unavailable) as exc:
                store.append(body("PT-1"))
            assert "s3cr3t" not in str(exc.value) and store.where in str(exc.value)
            saved = store.save_or_keep(body("PT-1"), tmp_path / "outbox")
            assert not saved.on_log and "s3cr3t" not in saved.why


def test_a_store_on_a_database_without_the_table_says_to_run_db_init(pg_database_url,
                                                                     tmp_path):
    with PostgresStore(pg_database_url) as store:
        assert store.exists() is False
        with pytest.raises(Unavailable, match="icans db init"):
            store.append(body("PT-1"))
        assert not store.save_or_keep(body("PT-1"), tmp_path / "outbox").on_log


# --- log import --------------------------------------------------------------------------------

def test_log_import_copies_each_record_once_and_names_what_it_skipped(ward, tmp_path):
    path = tmp_path / "assessments.jsonl"
    lines, prev = [], ""
    for i in range(5):
        rec = dict(body(f"PT-{i}", hours=i), seq=i + 1, prev_sha256=prev, schema=1,
                   id=f"00000000-0000-4000-8000-00000000000{i}",
                   recorded_at=(T0 + timedelta(hours=i)).isoformat())
        line = encode_record(rec)
        lines.append(line)
        prev = hashlib.sha256(line).hexdigest()
    lines[3] = lines[3].replace(b'"nurse-a"', b'"nurse-z"')  # edited in the file
    path.write_bytes(b"\n".join(lines[:4]) + b"\n{not json\n" + lines[4] + b"\n")
    ward.append(body("PT-ward"))  # the ward log has a record of its own first
    result = log_import(ward, path)
    imported, skipped = result
    assert imported == 3 and result.already == 0
    assert any(s.startswith("line 4: ALTERED") for s in skipped)
    assert any(s.startswith("line 5: not a valid record") for s in skipped)
    rows = sql(ward.url, "SELECT seq, id::text, record FROM icans.assessments ORDER BY seq")
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    for (seq, rid, record), src in zip(rows[1:], (lines[0], lines[1], lines[2])):
        mine, theirs = json.loads(record), json.loads(src)
        assert rid == theirs["id"] and mine["seq"] == seq
        for k in ("assessed_at", "recorded_at", "patient_id", "result", "findings"):
            assert mine[k] == theirs[k]
    assert ward.verify().problems == []
    again = log_import(ward, path)
    assert tuple(again)[0] == 0 and again.already == 3
    assert sql(ward.url, "SELECT count(*) FROM icans.assessments") == [(4,)]


# --- streaming ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_whole_read_streams_with_flat_memory(ward):
    pad = "x" * 4000
    n = 6000
    bulk_append(ward.url, ({"patient_id": f"PT-{i % 50}", "note": pad, "n": i}
                           for i in range(n)))
    total = n * len(pad)
    tracemalloc.start()
    try:
        count = 0
        for raw in ward.lines():
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < total / 4, (peak, total)  # what one fetch holds, not the table
    assert ward.verify().problems == [] and ward.head().seq == n


def test_head_is_the_last_record_and_proves_what_was_kept(ward):
    assert ward.head() is None
    for i in range(3):
        ward.append(body(f"PT-{i}"))
    head = ward.head()
    assert isinstance(head, Head) and head.seq == 3
    assert ward.verify(head).problems == []
    assert ward.verify(Head(3, "0" * 64)).problems[0].kind == "head"
