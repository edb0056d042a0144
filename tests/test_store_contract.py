"""One contract, every store: the JSON Lines file and the ward's PostgreSQL log behave the same
through the seam (icans_cli.store.Store). Each test runs once per store kind."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager

import pytest

from icans_cli.store import keep
from icans_cli.store.chain import OK, encode_record
from tests.helpers import body
from tests.pgserver import pg_database_url, pg_url  # noqa: F401 - fixtures


@pytest.fixture(params=["file", "postgres"])
def store(request, tmp_path):
    """An empty store of each kind, with `busy()`: a context in which its lock is held by
    someone else."""
    if request.param == "file":
        try:
            from icans_cli.store.jsonl import JsonlStore
        except ImportError:
            pytest.skip("file store not built yet")
        path = tmp_path / "assessments.jsonl"
        s = JsonlStore(path)

        @contextmanager
        def busy():
            fcntl = pytest.importorskip("fcntl")  # POSIX: the file store's lock is flock
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)
    else:
        import psycopg

        from icans_cli.dbcmd import db_init
        from icans_cli.store.postgres import LOCK_KEY, PostgresStore

        url = request.getfixturevalue("pg_database_url")
        db_init(url)
        s = PostgresStore(url)

        @contextmanager
        def busy():
            with psycopg.connect(url) as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                yield
    s.busy = busy
    yield s
    s.close()


def lines_of(store):
    return [raw.data for raw in store.lines()]


def test_appends_are_numbered_1_2_3_and_each_names_the_one_before(store):
    stored = [store.append(body(f"PT-{i}", hours=i)) for i in range(3)]
    assert [r["seq"] for r in stored] == [1, 2, 3]
    data = lines_of(store)
    assert len(data) == 3
    assert stored[0]["prev_sha256"] == ""
    for i in (1, 2):
        assert stored[i]["prev_sha256"] == hashlib.sha256(data[i - 1]).hexdigest()
    for rec, line in zip(stored, data):
        assert line == encode_record({k: v for k, v in rec.items() if k != "sha256"})
        assert json.loads(line)["sha256"] == rec["sha256"]


def test_entries_come_with_the_verdict_ok(store):
    for i in range(3):
        store.append(body(f"PT-{i}"))
    entries = list(store.entries())
    assert [(e.line, e.seq, e.verdict) for e in entries] == [(1, 1, OK), (2, 2, OK), (3, 3, OK)]
    assert [e.record["patient_id"] for e in entries] == ["PT-0", "PT-1", "PT-2"]


def test_a_patient_is_found_whatever_the_case_and_separators(store):
    for pid in ("PT-0042", "PT-7", "pt 0042", "PT_0042", "PT-70"):
        store.append(body(pid))
    assert store.spellings("Pt.0042") == ["PT-0042", "pt 0042", "PT_0042"]
    assert [e.seq for e in store.entries(patient="pt0042")] == [1, 3, 4]
    assert [e.seq for e in store.entries(patient="PT 7")] == [2]
    assert list(store.entries(patient="PT-8")) == []
    assert store.known_spelling("pt-0042") == "PT_0042"
    assert store.known_spelling("PT-0042") == "PT-0042"
    assert store.known_spelling("PT-8") is None


def test_a_record_is_found_by_a_prefix_of_its_id(store):
    stored = [store.append(body(f"PT-{i}")) for i in range(3)]
    target = stored[1]
    (found,) = store.find(target["id"][:8])
    assert found.record["id"] == target["id"] and found.verdict == OK and found.seq == 2
    assert len(store.find("")) == 3
    assert store.find("not-an-id") == []


def test_head_is_the_last_record_and_verify_is_clean(store):
    assert store.head() is None
    for i in range(3):
        store.append(body(f"PT-{i}"))
    head = store.head()
    assert head.seq == 3 and head.sha256 == hashlib.sha256(lines_of(store)[-1]).hexdigest()
    checked = store.verify(head)
    assert checked.problems == [] and checked.records == 3 and checked.head == head
    assert store.last_saved().seq == 3


def test_a_unique_key_is_stored_once(store):
    assert store.append(body("PT-1"), unique="rerun:PT-1:abc") is not None
    assert store.append(body("PT-1"), unique="rerun:PT-1:abc") is None
    rec = dict(body("PT-2"), id="3b241101-e2bb-4255-8caf-4136c566a962")
    assert store.append(rec, unique=f"id:{rec['id']}")["seq"] == 2
    assert store.append(rec, unique=f"id:{rec['id']}") is None
    assert len(lines_of(store)) == 2


def test_a_bedside_save_kept_while_the_log_is_busy_is_sent_exactly_once(store, tmp_path,
                                                                         monkeypatch):
    outbox = tmp_path / "outbox"
    assert store.save_or_keep(body("PT-1"), outbox).on_log
    monkeypatch.setenv("ICANS_LOCK_TIMEOUT", "0.2")
    with store.busy():
        saved = store.save_or_keep(body("PT-2"), outbox)
    assert not saved.on_log and saved.why
    assert len(list(outbox.glob("*.json"))) == 1
    assert store.send_outbox(outbox) == (1, [])
    assert store.send_outbox(outbox) == (0, [])
    keep(outbox, saved.record)  # sent, but kept again (an answer lost on the way back)
    assert store.send_outbox(outbox) == (1, [])
    ids = [json.loads(d)["id"] for d in lines_of(store)]
    assert len(ids) == 2 and ids[1] == saved.record["id"]
    assert store.verify().problems == []
