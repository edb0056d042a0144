import errno
import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from icans_cli import log
from tests.helpers import body

from tests.helpers import POSIX_ONLY  # noqa: E402


def lines(path):
    return path.read_bytes().split(b"\n")


@POSIX_ONLY
def test_append_creates_file_mode_0600_even_under_umask_000(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    old = os.umask(0)
    try:
        log.append(path, body())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@POSIX_ONLY
def test_existing_world_readable_log_is_tightened_to_0600(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"")
    path.chmod(0o644)
    log.append(path, body())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_records_chain_and_verify(tmp_path):
    path = tmp_path / "log.jsonl"
    a = log.append(path, body())
    b = log.append(path, body(ice=7))
    assert (a["seq"], b["seq"]) == (1, 2)
    assert a["prev_sha256"] == ""
    first_line = lines(path)[0]
    import hashlib
    assert b["prev_sha256"] == hashlib.sha256(first_line).hexdigest()
    assert (log.verify(path).records, log.verify(path).problems) == (2, [])


def test_record_carries_spec_fields(tmp_path):
    path = tmp_path / "log.jsonl"
    rec = log.append(path, body())
    for key in ("schema", "id", "recorded_at", "assessed_at", "patient_id", "assessor", "source",
                "tool_version", "rules_version", "protocol", "findings", "result",
                "recommendation", "prev_sha256", "sha256", "seq", "amends"):
        assert key in rec, key
    stored = json.loads(lines(path)[0])
    assert stored == rec
    assert list(stored)[-1] == "sha256"


def test_symlinked_log_path_is_refused(tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_bytes(b"")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with pytest.raises(log.LogError, match="symbolic link"):
        log.append(link, body())
    assert target.read_bytes() == b""


def test_a_directory_as_the_log_is_called_a_directory(tmp_path):
    with pytest.raises(log.LogError, match="is a directory: give a file"):
        log.append(tmp_path, body())


def test_full_disk_gives_clear_error_and_keeps_earlier_records(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    log.append(path, body())
    before = path.read_bytes()

    real_write = os.write

    def full(fd, data):
        real_write(fd, data[: len(data) // 2])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(log.LogError, match="disk is full.*NOT saved.*intact"):
        log.append(path, body(patient="SECRET-ID"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert (log.verify(path).records, log.verify(path).problems) == (1, [])


def test_error_messages_never_carry_the_patient_id(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    monkeypatch.setattr(os, "write", lambda fd, d: (_ for _ in ()).throw(
        OSError(errno.EIO, "I/O error")))
    with pytest.raises(log.LogError) as e:
        log.append(path, body(patient="SECRET-ID"))
    assert "SECRET-ID" not in str(e.value)


def _writer(path, n, k):
    for i in range(n):
        log.append(path, body(patient=f"P{k}", ice=i % 11))


@POSIX_ONLY
@pytest.mark.slow
def test_8_processes_x_200_appends_give_1600_intact_records(tmp_path):
    path = tmp_path / "log.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 200, k)) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    _v = log.verify(path)
    count, problems = _v.records, _v.problems
    assert (count, problems) == (1600, [])
    recs = [r for _, r in log.iter_records(path)]
    assert sorted(r["seq"] for r in recs) == list(range(1, 1601))
    assert {r["patient_id"] for r in recs} == {f"P{k}" for k in range(8)}


KILLED_WRITER = r"""
import os, signal, sys
from icans_cli import log
path = sys.argv[1]
line = log.encode_record({"seq": 99, "patient_id": "x"}) + b"\n"
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
os.write(fd, line[: len(line) // 2])          # half a record reaches the disk...
os.kill(os.getpid(), signal.SIGKILL)           # ...and the writer dies mid-append
"""


@POSIX_ONLY
def test_writer_killed_mid_append_leaves_complete_records_and_reports_torn_tail(tmp_path):
    path = tmp_path / "log.jsonl"
    for i in range(3):
        log.append(path, body(ice=i))
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)])
    assert proc.returncode == -signal.SIGKILL
    problems = []
    recs = list(log.iter_records(path, problems.append))
    assert [r["seq"] for _, r in recs] == [1, 2, 3]
    assert [(p.line, p.kind) for p in problems] == [(4, "torn")]
    _v = log.verify(path)
    count, vproblems = _v.records, _v.problems
    assert [(p.line, p.kind) for p in vproblems] == [(4, "torn")]
    # the next append starts on a fresh line, never glued to the fragment
    rec = log.append(path, body(ice=9))
    assert rec["seq"] == 4
    problems.clear()
    recs = list(log.iter_records(path, problems.append))
    assert [r["seq"] for _, r in recs] == [1, 2, 3, 4]
    assert [(p.line, p.kind) for p in problems] == [(4, "unparseable")]
    _v = log.verify(path)
    _, vproblems = _v.records, _v.problems
    assert [p.line for p in vproblems] == [4]  # the fragment stays visible, nothing after it


@POSIX_ONLY
@pytest.mark.slow
def test_sigkill_during_a_stream_of_appends_never_loses_complete_records(tmp_path):
    path = tmp_path / "log.jsonl"
    code = ("import sys; from tests.helpers import body; from icans_cli import log\n"
            "while True: log.append(sys.argv[1], body())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)],
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.time() + 10
    while time.time() < deadline and (not path.exists() or path.stat().st_size < 20000):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    problems = []
    recs = [r for _, r in log.iter_records(path, problems.append)]
    assert len(recs) >= 5
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert all(p.kind == "torn" for p in problems)


def _make(path, n=6):
    for i in range(n):
        log.append(path, body(ice=i))
    return lines(path)[:-1]


def _write(path, ls):
    path.write_bytes(b"\n".join(ls) + b"\n")


def test_verify_catches_one_byte_edit_with_line_number(tmp_path):
    path = tmp_path / "log.jsonl"
    ls = _make(path)
    ls[2] = ls[2].replace(b'"ice_score":2', b'"ice_score":9', 1)
    _write(path, ls)
    _v = log.verify(path)
    _, problems = _v.records, _v.problems
    assert (problems[0].line, problems[0].kind) == (3, "edited")


def test_verify_catches_deleted_line(tmp_path):
    path = tmp_path / "log.jsonl"
    ls = _make(path)
    del ls[3]
    _write(path, ls)
    _v = log.verify(path)
    _, problems = _v.records, _v.problems
    assert (problems[0].line, problems[0].kind) == (4, "missing")
    assert "deleted" in problems[0].message


def test_verify_catches_two_swapped_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    ls = _make(path)
    ls[1], ls[2] = ls[2], ls[1]
    _write(path, ls)
    _v = log.verify(path)
    _, problems = _v.records, _v.problems
    assert problems[0].line == 2
    assert {p.kind for p in problems} >= {"out_of_order"}


def test_verify_catches_inserted_line(tmp_path):
    path = tmp_path / "log.jsonl"
    ls = _make(path)
    ls.insert(4, ls[1])  # a genuine record copied to another place
    _write(path, ls)
    _v = log.verify(path)
    _, problems = _v.records, _v.problems
    assert (problems[0].line, problems[0].kind) == (5, "out_of_order")
    assert "inserted" in problems[0].message


def test_verify_catches_forged_inserted_line(tmp_path):
    path = tmp_path / "log.jsonl"
    ls = _make(path)
    forged = log.encode_record({"seq": 4, "prev_sha256": "0" * 64, "patient_id": "PT-001"})
    ls.insert(3, forged)
    _write(path, ls)
    _v = log.verify(path)
    _, problems = _v.records, _v.problems
    assert problems[0].line == 4


def test_readers_skip_corrupt_middle_line_with_warning(tmp_path):
    path = tmp_path / "log.jsonl"
    ls = _make(path)
    ls[2] = b"{not json"
    _write(path, ls)
    problems = []
    recs = [r for _, r in log.iter_records(path, problems.append)]
    assert len(recs) == 5
    assert [(p.line, p.kind) for p in problems] == [(3, "unparseable")]


def test_resolve_path_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("ICANS_DATA_DIR", str(tmp_path / "d"))
    assert log.resolve_path() == tmp_path / "d" / "assessments.jsonl"
    assert log.resolve_path(tmp_path / "x.jsonl") == tmp_path / "x.jsonl"
    monkeypatch.delenv("ICANS_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert log.resolve_path() == tmp_path / "xdg" / "icans" / "assessments.jsonl"
