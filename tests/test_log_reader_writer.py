"""Issue 18: one reader and one writer for the log. A regression test per line of the issue,
each named after it; every file is in the test's own temporary directory."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from icans_cli.store import ALTERED, OK, open_store
from icans_cli.store.chain import encode_record
from tests.helpers import body

runner = CliRunner()
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, flock and fork")
ICANS = [sys.executable, "-m", "icans_cli"]


def lines(path):
    return path.read_bytes().split(b"\n")


def rewrite(path, n, change, rehash=False):
    """Edit the n-th line (1-based) as an attacker would: without its hash (the line keeps the
    hash it had), or with its own hash recomputed."""
    ls = lines(path)
    rec = json.loads(ls[n - 1])
    old_hash = rec.pop("sha256")
    change(rec)
    line = encode_record(rec)
    if not rehash:
        line = line[:-66] + old_hash.encode() + b'"}'
    ls[n - 1] = line
    path.write_bytes(b"\n".join(ls))


def grade_3_to_0(rec):
    rec["result"]["icans_grade"] = 0
    rec["result"]["ice_score"] = 10


@pytest.fixture
def tampered(tmp_path):
    """PT-7: grade 0, then grade 3 edited to read 0 without its hash; PT-8 after it."""
    path = tmp_path / "assessments.jsonl"
    log.append(path, body("PT-7", ice=10, hours=0))
    log.append(path, body("PT-7", ice=2, hours=4))
    log.append(path, body("PT-8", ice=9, hours=5))
    rewrite(path, 2, grade_3_to_0)
    return path


def cli(*args, input=None, env=None):
    return runner.invoke(app, list(args), input=input, env=env)


# --- records that fail the chain --------------------------------------------------------------

def test_a_record_edited_without_its_hash_is_flagged_altered_by_every_reader(tampered):
    entries = list(open_store(tampered).entries())
    assert [e.verdict for e in entries] == [OK, ALTERED, OK]
    r = cli("history", "PT-7", "--log-file", str(tampered), "-f", "table",
            env={"COLUMNS": "120"})
    assert r.exit_code == 0 and "ALTERED" in r.stdout
    assert "1 assessment" in r.stdout.splitlines()[0]  # the altered one is not counted
    r = cli("log", "show", "--log-file", str(tampered), "-f", "csv")
    assert r.exit_code == 0
    verdicts = [row.rsplit(",", 1)[1].strip() for row in r.stdout.splitlines()[1:]]
    assert verdicts == ["ok", "altered", "ok"]
    r = cli("log", "show", "--log-file", str(tampered), "-f", "jsonl")
    assert [json.loads(x).get("verdict") for x in r.stdout.splitlines()] == \
        [None, "altered", None]


def test_show_refuses_the_summary_of_an_altered_record(tampered):
    rid = json.loads(lines(tampered)[1])["id"]
    r = cli("show", rid[:8], "--log-file", str(tampered))
    assert r.exit_code == 1 and "ALTERED" in r.stderr and "GRADE" not in r.stdout


def test_show_by_patient_never_shows_the_altered_record_as_the_latest(tampered):
    r = cli("show", "PT-7", "--log-file", str(tampered))
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 0" in r.stdout  # the intact first record, with its age from now
    assert "NOT THE LATEST" not in r.stdout


def test_due_never_takes_an_altered_record_as_the_patients_latest(tampered):
    r = cli("due", "--log-file", str(tampered), "--days", "3650", "-f", "jsonl")
    assert r.exit_code == 0
    rows = {d["patient_id"]: d for d in map(json.loads, r.stdout.splitlines())}
    first_id = json.loads(lines(tampered)[0])["id"]
    assert rows["PT-7"]["record"] == first_id
    assert "ALTERED" in r.stderr


def test_a_record_edited_with_its_own_hash_recomputed_flags_both_records_of_the_link(tmp_path):
    path = tmp_path / "l.jsonl"
    for h in range(3):
        log.append(path, body("PT-1", ice=2 if h == 1 else 10, hours=h))
    rewrite(path, 2, grade_3_to_0, rehash=True)
    verdicts = [e.verdict for e in open_store(path).entries()]
    # the edited record's own hash is right now, but the record after it no longer follows
    # it: which of the two was changed cannot be known, so both are flagged
    assert verdicts == [OK, ALTERED, ALTERED]


def test_export_refuses_a_log_that_fails_its_chain_and_writes_nothing(tampered, tmp_path):
    out = tmp_path / "b.json"
    r = cli("export", "fhir", "--log-file", str(tampered), "-o", str(out))
    assert r.exit_code == 1
    assert "fails its chain" in r.stderr and "--allow-broken" in r.stderr
    assert not out.exists()
    r = cli("export", "fhir", "--log-file", str(tampered))
    assert r.exit_code == 1 and r.stdout == ""


def test_export_allow_broken_leaves_the_altered_record_out_and_names_it(tampered, tmp_path):
    out = tmp_path / "b.json"
    r = cli("export", "fhir", "--log-file", str(tampered), "-o", str(out), "--allow-broken")
    assert r.exit_code == 0, r.output
    assert "left out: line 2" in r.stderr and "ALTERED" in r.stderr
    bundle = json.loads(out.read_text())
    altered_id = json.loads(lines(tampered)[1])["id"]
    assert altered_id not in out.read_text()
    grades = [e["resource"] for e in bundle["entry"]
              if e["resource"]["resourceType"] == "Observation"
              and "G92" in json.dumps(e["resource"].get("valueCodeableConcept", {}))]
    assert all(g["status"] == "final" for g in grades)
    # a broken log has no head to vouch for the export
    assert not any("log-head" in t["system"] for t in bundle["meta"]["tag"])


def test_an_intact_export_names_the_log_head_it_was_made_from(tmp_path):
    path = tmp_path / "l.jsonl"
    log.append(path, body("PT-1"))
    head = log.head(path)
    r = cli("export", "fhir", "--log-file", str(path))
    bundle = json.loads(r.stdout)
    assert {"system": "https://icans-cli.org/fhir/tag/log-head", "code": str(head),
            "display": "icans log head (SEQ:SHA-256) the export was made from"} in \
        bundle["meta"]["tag"]


# --- reruns by meaning ---------------------------------------------------------------------

def _csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def _grade_log(csv_path, logf, *extra):
    return cli("grade", str(csv_path), "--log", "--log-file", str(logf), "--assessor", "n",
               "-f", "jsonl", *extra)


def test_the_same_cells_under_swapped_headers_are_two_assessments_not_a_rerun(tmp_path):
    logf = tmp_path / "l.jsonl"
    a = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "crs_grade", "ice_score"],
             [["PT-1", "2026-11-30T08:00:00+00:00", "4", "2"]])
    b = _csv(tmp_path / "b.csv", ["patient_id", "assessed_at", "ice_score", "crs_grade"],
             [["PT-1", "2026-11-30T08:00:00+00:00", "4", "2"]])
    assert _grade_log(a, logf).exit_code == 0
    r = _grade_log(b, logf)
    assert r.exit_code == 0 and "already in the log" not in r.stderr
    recs = [rec for _, rec in log.iter_records(logf)]
    assert sorted((x["result"]["ice_score"], x["findings"]["crs_grade"]) for x in recs) == \
        [(2, 4), (4, 2)]


def test_a_row_without_assessed_at_is_graded_but_not_logged_unless_assessed_now(tmp_path):
    logf = tmp_path / "l.jsonl"
    f = _csv(tmp_path / "a.csv", ["patient_id", "ice_score"], [["PT-1", "3"]])
    r = _grade_log(f, logf)
    assert r.exit_code == 0 and "without assessed_at graded but not logged" in r.stderr
    assert json.loads(r.stdout)["icans_grade"] == 2
    assert not logf.exists() or logf.read_bytes() == b""
    r = _grade_log(f, logf, "--assessed-now")
    assert r.exit_code == 0 and len(list(log.iter_records(logf))) == 1
    r = _grade_log(f, logf, "--assessed-now")  # stamped now: another assessment, not a rerun
    assert len(list(log.iter_records(logf))) == 2


def test_two_identical_rows_in_one_file_are_one_assessment(tmp_path):
    logf = tmp_path / "l.jsonl"
    row = ["PT-1", "2026-11-30T08:00:00+00:00", "7"]
    f = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "ice_score"], [row, row])
    r = _grade_log(f, logf)
    assert r.exit_code == 0
    assert len(list(log.iter_records(logf))) == 1 and "1 already in the log" in r.stderr


def test_pass_through_columns_column_order_and_z_vs_offset_do_not_make_a_new_assessment(
        tmp_path):
    logf = tmp_path / "l.jsonl"
    variants = [
        (["patient_id", "assessed_at", "ice_score"], ["PT-1", "2026-11-30T08:00:00Z", "7"]),
        (["ice_score", "patient_id", "assessed_at"], ["7", "PT-1", "2026-11-30T08:00:00+00:00"]),
        (["patient_id", "assessed_at", "ice_score", "ward"],
         ["PT-1", "2026-11-30T09:00:00+01:00", "7", "7B"]),
        (["patient_id", "assessed_at", "ice_score"], ["pt 1", "2026-11-30T08:00:00Z", "7"]),
    ]
    for i, (header, row) in enumerate(variants):
        assert _grade_log(_csv(tmp_path / f"{i}.csv", header, [row]), logf).exit_code == 0
    assert len(list(log.iter_records(logf))) == 1


@pytest.mark.slow
@POSIX
def test_eight_concurrent_runs_of_one_file_log_each_assessment_once(tmp_path):
    logf = tmp_path / "l.jsonl"
    rows = [[f"PT-{i:03d}", f"2026-11-30T{8 + i % 10:02d}:{i % 60:02d}:00Z", str(i % 11)]
            for i in range(120)]
    f = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "ice_score"], rows)
    env = dict(os.environ, ICANS_DATA_DIR=str(tmp_path / "data"))
    procs = [subprocess.Popen([*ICANS, "grade", str(f), "--log", "--log-file", str(logf),
                               "--assessor", "n", "-o", str(tmp_path / f"out{k}.csv")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for k in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    recs = [r for _, r in log.iter_records(logf)]
    assert len(recs) == 120
    assert [r["seq"] for r in recs] == list(range(1, 121))
    assert not log.verify(logf).problems


# --- future times -----------------------------------------------------------------------------

def test_a_row_dated_in_the_future_is_refused_and_never_logged(tmp_path):
    logf = tmp_path / "l.jsonl"
    f = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "ice_score"],
             [["PT-1", "2062-01-01T08:00:00Z", "2"]])
    r = _grade_log(f, logf)
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["status"] == "invalid" and out["errors"][0]["column"] == "assessed_at"
    assert "future" in out["errors"][0]["message"]
    assert not logf.exists() or logf.read_bytes() == b""


def test_a_record_already_dated_in_the_future_never_hides_the_real_latest_on_the_board(
        tmp_path):
    logf = tmp_path / "l.jsonl"
    real = log.append(logf, body("PT-1", ice=2))  # grade 3, in the past
    future = body("PT-1", ice=10)
    future["assessed_at"] = "2062-01-01T08:00:00+00:00"
    log.append(logf, future)
    r = cli("due", "--log-file", str(logf), "--days", "3650", "-f", "jsonl")
    (row,) = map(json.loads, r.stdout.splitlines())
    assert row["record"] == real["id"] and row["overdue"] is True
    assert "dated in the future" in r.stderr


# --- the lock ---------------------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from icans_cli.store.jsonl import locked
    path = Path(sys.argv[1])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with locked(fd, path):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _stop(p):
    p.kill()
    p.wait()
    for stream in (p.stdout, p.stderr):
        if stream is not None:
            stream.close()


def _hold_lock(logf, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(logf), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.slow
@POSIX
def test_a_busy_lock_is_said_with_its_holder_and_given_up_after_the_timeout_exit_3(tmp_path):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-0"))
    f = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "ice_score"],
             [["PT-1", "2026-11-30T08:00:00Z", "7"]])
    holder = _hold_lock(logf, 30)
    try:
        t0 = time.monotonic()
        r = subprocess.run([*ICANS, "grade", str(f), "--log", "--log-file", str(logf),
                            "--assessor", "n", "-o", str(tmp_path / "o.csv")],
                           env=dict(os.environ, ICANS_LOCK_TIMEOUT="2",
                                    ICANS_DATA_DIR=str(tmp_path / "d")),
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
    finally:
        _stop(holder)
    assert r.returncode == 3, r.stderr
    assert f"locked by pid {holder.pid}" in r.stderr
    assert "not logged" in r.stderr and took < 20
    assert len(list(log.iter_records(logf))) == 1


@pytest.mark.slow
@POSIX
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT,
                                 getattr(signal, "SIGHUP", signal.SIGTERM)])
def test_a_writer_waiting_for_the_lock_honours_the_signal_and_appends_nothing(tmp_path, sig):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-0"))
    f = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "ice_score"],
             [["PT-1", "2026-11-30T08:00:00Z", "7"]])
    holder = _hold_lock(logf, 60)
    try:
        p = subprocess.Popen([*ICANS, "grade", str(f), "--log", "--log-file", str(logf),
                              "--assessor", "n", "-o", str(tmp_path / "o.csv")],
                             env=dict(os.environ, ICANS_DATA_DIR=str(tmp_path / "d")),
                             stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        said = ""
        while "waiting for the log" not in said and time.monotonic() < deadline:
            said += p.stderr.readline()
        p.send_signal(sig)
        code = p.wait(timeout=20)
        p.stderr.close()
    finally:
        _stop(holder)
    assert code != 0
    time.sleep(0.2)
    assert len(list(log.iter_records(logf))) == 1  # nothing appended after the wait


# --- the bedside save is never lost to the lock -------------------------------------------------

def _interview(keys, logf, *args, env=None):
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as inp:
        inp.send_text(keys)
        inp.close()
        with create_app_session(input=inp, output=DummyOutput()):
            return runner.invoke(app, ["assess", "--assessor", "nurse-a", "--log-file",
                                       str(logf), *args], env=env)


ADULT_ICE_10 = "n" + "n" + "n" + "0" + "ca\r" + "00nn" + "k0" + "a" + "y"


@pytest.mark.slow
@POSIX
def test_a_bedside_save_under_a_busy_lock_is_kept_and_sent_once_by_the_next_command(tmp_path):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-0"))
    holder = _hold_lock(logf, 30)
    try:
        r = _interview(ADULT_ICE_10, logf, "--patient", "PT-5", "--age", "50", "--weight",
                       "70", env={"ICANS_LOCK_TIMEOUT": "1.5"})
    finally:
        _stop(holder)
    assert r.exit_code == 0, r.output
    assert "SAVED ON THIS WORKSTATION, NOT YET ON THE LOG" in " ".join(r.stderr.split())
    assert len(list(log.iter_records(logf))) == 1
    kept = list((tmp_path / "icans-data" / "outbox").rglob("*.json"))
    assert len(kept) == 1 and (kept[0].stat().st_mode & 0o777) == 0o600
    r = cli("log", "show", "--log-file", str(logf), "-f", "jsonl")
    assert r.exit_code == 0 and "now saved to the log" in r.stderr
    assert [json.loads(x)["patient_id"] for x in r.stdout.splitlines()] == ["PT-0", "PT-5"]
    r = cli("log", "sync", "--log-file", str(logf))
    assert "Nothing kept" in r.stdout
    assert len(list(log.iter_records(logf))) == 2  # exactly once


def test_a_record_kept_for_one_log_is_never_sent_to_another(tmp_path):
    from icans_cli.store import keep, outbox_for

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    log.append(a, body("PT-0"))
    log.append(b, body("PT-0"))
    rec = dict(body("PT-9"), id="3d0c5a1e-0000-4000-8000-000000000001",
               recorded_at="2026-11-30T08:00:00+00:00")
    keep(outbox_for(open_store(a)), rec)
    cli("log", "show", "--log-file", str(b), "-f", "jsonl")
    assert len(list(log.iter_records(b))) == 1
    cli("log", "show", "--log-file", str(a), "-f", "jsonl")
    assert [r["patient_id"] for _, r in log.iter_records(a)] == ["PT-0", "PT-9"]


# --- tails ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", [b'{"amends":null,"asse', b"\x00" * 512])
def test_a_first_write_cut_short_is_still_a_log_the_next_save_continues(tmp_path, damage):
    logf = tmp_path / "l.jsonl"
    logf.write_bytes(damage)
    rec = log.append(logf, body("PT-1"))
    assert rec["seq"] == 1
    v = log.verify(logf)
    assert [p.line for p in v.problems] == [1]


def test_after_a_nul_tail_the_sequence_continues_and_head_is_the_last_record(tmp_path):
    logf = tmp_path / "l.jsonl"
    for h in range(3):
        log.append(logf, body("PT-1", hours=h))
    with open(logf, "ab") as fh:
        fh.write(b"\x00" * 4096)
    rec = log.append(logf, body("PT-1", hours=4))
    assert rec["seq"] == 4
    r = cli("log", "head", "--log-file", str(logf))
    assert r.stdout.startswith("4:")


@pytest.mark.slow
def test_the_first_append_after_a_64_mb_tail_takes_linear_time(tmp_path):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-1"))
    with open(logf, "ab") as fh:
        fh.write(b"\x00" * (64 << 20))
    t0 = time.perf_counter()
    rec = log.append(logf, body("PT-1", hours=1))
    took = time.perf_counter() - t0
    assert rec["seq"] == 2
    assert took < 8, f"{took:.1f} s"  # 16.8 s before (quadratic); about 0.2 s now


def test_a_torn_line_can_be_acknowledged_and_verify_then_passes(tmp_path):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-1"))
    with open(logf, "ab") as fh:
        fh.write(b'{"assessed_at":"2026-11-2')  # a write cut short
    r = cli("log", "verify", "--log-file", str(logf))
    assert r.exit_code == 1 and "torn" in r.stderr and "acknowledge-tail" in r.stderr
    log.append(logf, body("PT-1", hours=1))  # starts on a new line, seq 2
    r = cli("log", "acknowledge-tail", "--log-file", str(logf))
    assert r.exit_code == 0 and "Acknowledged: line 2" in r.stdout
    r = cli("log", "verify", "--log-file", str(logf))
    assert r.exit_code == 0, r.output
    assert "acknowledged: line 2" in r.stdout
    r = cli("log", "acknowledge-tail", "--log-file", str(logf))
    assert "Nothing to acknowledge" in r.stdout
    assert [x["seq"] for _, x in log.iter_records(logf)] == [1, 2, 3]


# --- lines that crashed readers ----------------------------------------------------------------

def test_a_line_of_5000_brackets_is_skipped_and_named_and_appending_goes_on(tmp_path):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-1"))
    with open(logf, "ab") as fh:
        fh.write(b"[" * 5000 + b"\n")
    assert log.append(logf, body("PT-1", hours=1))["seq"] == 2
    for args in (["log", "verify"], ["due", "--days", "3650"], ["history", "PT-1"],
                 ["log", "show"]):
        r = cli(*args, "--log-file", str(logf))
        assert "Internal error" not in r.output and "RecursionError" not in r.output
        assert "line 2" in r.stderr, args
    f = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "ice_score"],
             [["PT-2", "2026-11-30T08:00:00Z", "7"]])
    assert _grade_log(f, logf).exit_code == 0


@pytest.mark.parametrize("change", [
    lambda r: r["result"].update(ice_score=float("nan")),
    lambda r: r["result"].update(ice_score="seven"),
    lambda r: r.update(amends=["a", "b"]),
    lambda r: r["result"].update(icans_grade=True),
], ids=["nan", "text score", "list amends", "bool grade"])
def test_records_of_the_wrong_kind_never_crash_export_history_or_show(tmp_path, change):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-1"))
    ls = lines(logf)
    rec = json.loads(ls[0])
    rec.pop("sha256")
    change(rec)
    raw = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    ls[0] = raw.encode()
    logf.write_bytes(b"\n".join(ls))
    for args in (["export", "fhir", "--allow-broken"], ["history", "PT-1"], ["show", "PT-1"],
                 ["due"], ["log", "show"], ["log", "verify"]):
        r = cli(*args, "--log-file", str(logf))
        assert "Internal error" not in r.output, (args, r.output)
        assert r.exit_code in (0, 1), (args, r.output)


# --- silent or wrong ----------------------------------------------------------------------------

@POSIX
@pytest.mark.parametrize("command", [["export", "fhir"], ["log", "show", "-f", "jsonl"],
                                     ["log", "show", "-f", "csv"]])
def test_output_past_a_file_size_limit_exits_3_and_says_so(tmp_path, command):
    logf = tmp_path / "l.jsonl"
    for i in range(60):
        log.append(logf, body(f"PT-{i}", hours=i))
    out = tmp_path / "out.txt"
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
              "sys.argv = ['icans'] + sys.argv[1:]; "
              "from icans_cli.cli import main; main()")
    with open(out, "wb") as fh:
        r = subprocess.run([sys.executable, "-c", script, *command, "--log-file", str(logf)],
                           stdout=fh, stderr=subprocess.PIPE, text=True, timeout=60,
                           env=dict(os.environ, ICANS_DATA_DIR=str(tmp_path / "d")))
    assert r.returncode == 3, r.stderr
    assert "file-size limit" in r.stderr and "not written" in r.stderr
    assert "exported" not in r.stderr and "Internal error" not in r.stderr


@POSIX
def test_export_o_past_a_file_size_limit_exits_3_and_leaves_no_file(tmp_path):
    logf = tmp_path / "l.jsonl"
    for i in range(60):
        log.append(logf, body(f"PT-{i}", hours=i))
    out = tmp_path / "b.json"
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
              "sys.argv = ['icans'] + sys.argv[1:]; "
              "from icans_cli.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", script, "export", "fhir", "--log-file",
                        str(logf), "-o", str(out)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, ICANS_DATA_DIR=str(tmp_path / "d")))
    assert r.returncode == 3, r.stderr
    assert not out.exists() and not list(tmp_path.glob(".icans-*"))


@pytest.mark.parametrize("column, value", [("weight_kg", "84412397"),
                                           ("age_years", "19850312")])
def test_a_long_number_is_never_echoed_in_any_column(tmp_path, column, value):
    f = _csv(tmp_path / "a.csv", ["patient_id", "ice_score", column], [["PT-1", "7", value]])
    r = cli("grade", str(f), "-f", "jsonl")
    assert r.exit_code == 1
    assert value not in r.stdout and value not in r.stderr
    (row,) = map(json.loads, r.stdout.splitlines())
    assert row["errors"][0]["column"] == column


def test_log_file_naming_an_existing_csv_is_refused_and_left_untouched(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("patient_id,ice_score\nPT-1,7\n")
    os.chmod(other, 0o644)
    before = other.read_bytes()
    f = _csv(tmp_path / "a.csv", ["patient_id", "assessed_at", "ice_score"],
             [["PT-2", "2026-11-30T08:00:00Z", "7"]])
    r = _grade_log(f, other)
    assert r.exit_code == 3 and "not an icans log" in r.stderr
    assert other.read_bytes() == before
    if sys.platform != "win32":
        assert other.stat().st_mode & 0o777 == 0o644


@POSIX
def test_a_fifo_as_the_protocol_is_refused_and_never_hangs(tmp_path):
    fifo = tmp_path / "proto.json"
    os.mkfifo(fifo)
    f = _csv(tmp_path / "a.csv", ["patient_id", "ice_score"], [["PT-1", "7"]])
    for args in (["grade", str(f), "--protocol", str(fifo)], ["protocol", "check", str(fifo)]):
        r = subprocess.run([*ICANS, *args], capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, ICANS_DATA_DIR=str(tmp_path / "d")))
        assert r.returncode == 2 and "not a regular file" in r.stderr


@POSIX
def test_leftover_temporary_files_older_than_an_hour_are_swept_from_the_output_folder(
        tmp_path):
    old = tmp_path / ".icans-abc123"
    old.write_text("patient rows of a killed run")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".icans-def456"
    fresh.write_text("a run writing now")
    f = _csv(tmp_path / "a.csv", ["patient_id", "ice_score"], [["PT-1", "7"]])
    r = cli("grade", str(f), "-o", str(tmp_path / "out.csv"))
    assert r.exit_code == 0
    assert not old.exists() and fresh.exists()


@POSIX
def test_a_live_runs_temporary_file_is_never_swept_however_old(tmp_path, monkeypatch):
    """A run reading a slow standard input may write nothing for over an hour: its file is
    named with its process number, and a file whose process lives (and started before the
    file was written) is left alone. Swept: one whose process is gone; one whose number a
    process started since has taken (in a container every run is process 1); one of this
    very process (it sweeps before it makes its own). The hour is made 0 s here, so that
    live processes of this test are old enough."""
    from icans_cli import batchrun

    monkeypatch.setattr(batchrun, "LEFTOVER_AGE", 0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        writing = tmp_path / f".icans-{live.pid}-k3j2"  # written after its process started
        writing.write_text("a run still reading its input")
        taken = tmp_path / f".icans-{live.pid}-old1"  # written long before it started
        taken.write_text("patient rows of a killed run whose number came round again")
        os.utime(taken, (time.time() - 7200, time.time() - 7200))
        killed = tmp_path / f".icans-{dead.pid}-x9q1"
        killed.write_text("patient rows of a killed run")
        mine = tmp_path / f".icans-{os.getpid()}-m1n3"
        mine.write_text("an earlier run of this very process, killed")
        f = _csv(tmp_path / "a.csv", ["patient_id", "ice_score"], [["PT-1", "7"]])
        r = cli("grade", str(f), "-o", str(tmp_path / "out.csv"))
        assert r.exit_code == 0
        assert writing.exists()
        assert not taken.exists() and not killed.exists() and not mine.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("typed", ["PТ-1", "РT-1"])  # a Cyrillic Т, a Cyrillic Р
def test_a_pseudonym_mixing_scripts_is_refused_so_it_is_never_a_second_patient(tmp_path,
                                                                                 typed):
    f = tmp_path / "a.csv"
    f.write_text(f"patient_id,ice_score\n{typed},7\n", encoding="utf-8")
    r = cli("grade", str(f), "-f", "jsonl")
    assert r.exit_code == 1
    (row,) = map(json.loads, r.stdout.splitlines())
    assert row["errors"][0]["column"] == "patient_id" and "script" in \
        row["errors"][0]["message"]


def test_a_fullwidth_pseudonym_is_the_same_patient_after_nfkc(tmp_path):
    logf = tmp_path / "l.jsonl"
    f = tmp_path / "a.csv"
    f.write_text("patient_id,assessed_at,ice_score\nＰＴ－１,2026-11-30T08:00:00Z,7\n",
                 encoding="utf-8")
    assert _grade_log(f, logf).exit_code == 0
    (rec,) = [r for _, r in log.iter_records(logf)]
    assert rec["patient_id"] == "PT-1"


@pytest.mark.slow
@POSIX
def test_a_reader_beside_twelve_writers_never_calls_an_intact_line_torn(tmp_path):
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-0"))
    writer = textwrap.dedent("""
        import sys
        from icans_cli import log
        from tests.helpers import body
        for i in range(40):
            log.append(sys.argv[1], body("PT-%s" % sys.argv[2], hours=i))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(logf), str(k)],
                              cwd=Path(__file__).resolve().parent.parent)
             for k in range(12)]
    checks = 0
    while any(p.poll() is None for p in procs):
        v = log.verify(logf)
        assert not v.problems, v.problems[:3]
        checks += 1
    for p in procs:
        assert p.wait() == 0
    v = log.verify(logf)
    assert not v.problems and v.records == 1 + 12 * 40 and checks > 0


# --- any interleaving of appends and damage -----------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DAMAGE = st.one_of(
    st.tuples(st.just("torn"), st.integers(1, 300)),  # a record's first bytes, no newline
    st.tuples(st.just("nul"), st.integers(1, 5000)),  # NULs (a crash on some file systems)
    st.tuples(st.just("garbage"), st.binary(min_size=0, max_size=40)),  # any bytes, a line
    st.tuples(st.just("blank"), st.sampled_from([b"\n", b"  \n", b"\t\n"])),
)
OPS = st.lists(st.one_of(st.just(("append", 0)), DAMAGE), min_size=1, max_size=14).map(
    lambda ops: [("append", 0), *ops])  # a log of ours first (damage alone is no log)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_interleaving_of_appends_and_damage_verify_names_exactly_the_damaged_lines(
        tmp_path, ops):
    logf = tmp_path / f"h{abs(hash(tuple(map(repr, ops))))}.jsonl"
    logf.unlink(missing_ok=True)  # hypothesis may run the same example again in this folder
    ours: set[bytes] = set()
    sample = encode_record(dict(body("PT-1"), seq=1, prev_sha256=""))
    for kind, arg in ops:
        if kind == "append":
            rec = log.append(logf, body("PT-1"))
            ours.add(encode_record({k: v for k, v in rec.items() if k != "sha256"}))
            continue
        with open(logf, "ab") as fh:
            fh.write(sample[:arg] if kind == "torn" else b"\x00" * arg if kind == "nul"
                     else arg.replace(b"\n", b" ") + b"\n" if kind == "garbage" else arg)
    if not logf.exists():
        return
    data = logf.read_bytes()
    parts = data.split(b"\n")
    complete, last = parts[:-1], parts[-1]
    damaged = [i + 1 for i, line in enumerate(complete) if line.strip() and line not in ours]
    if last:  # no newline at the end: torn, unless it is only whitespace
        damaged.append(len(parts))
    v = log.verify(logf)
    named = [p.line for p in v.problems]
    assert named == damaged, (named, damaged, [p.message for p in v.problems])
    # the complete records are numbered 1, 2, 3... however much damage lies between them
    seqs = [e.seq for e in open_store(logf).entries() if e.record is not None]
    assert seqs == list(range(1, len(seqs) + 1))
    assert all(e.verdict == OK for e in open_store(logf).entries() if e.record is not None)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hours=st.lists(st.integers(0, 30), min_size=1, max_size=12))
def test_history_is_in_time_assessed_order_whatever_order_the_records_were_saved_in(
        tmp_path, hours):
    """Late entries and corrections (which keep the original time) come out of order in the
    log; history streams them into time order, holding only those."""
    logf = tmp_path / f"o{abs(hash(tuple(hours)))}.jsonl"
    for h in hours:
        log.append(logf, body("PT-1", ice=10 - h % 11, hours=h))
    r = cli("history", "PT-1", "--log-file", str(logf), "-f", "jsonl")
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert [g["seq"] for g in got] == [
        seq for _, seq in sorted((h, i + 1) for i, h in enumerate(hours))]


def test_an_acknowledgement_across_a_read_block_boundary_is_found(tmp_path):
    # the acknowledgement scan searches the file's bytes in 1 MB blocks before reading lines
    from icans_cli.store.jsonl import JsonlStore

    needle = b'"tail_acknowledgement"'
    block = 1 << 20
    for start in range(block - len(needle) - 1, block + 2):
        path = tmp_path / f"l{start}.jsonl"
        path.write_bytes(b"x" * start + needle + b"y" * 10)
        assert JsonlStore(path)._holds(needle), start
    path.write_bytes(b"x" * (2 * block))
    assert not JsonlStore(path)._holds(needle)


def test_a_torn_brace_and_a_brace_after_it_is_one_damaged_line_not_a_record(tmp_path):
    """A torn write that left "{" and a fragment that closed it ("{}"): a damaged line, never
    counted as a record, so the intact record after it is not named (found by hypothesis)."""
    logf = tmp_path / "brace.jsonl"
    log.append(logf, body("PT-1"))
    log.append(logf, body("PT-1"))
    with open(logf, "ab") as fh:
        fh.write(b"{}\n")
    log.append(logf, body("PT-1"))
    v = log.verify(logf)
    assert [p.line for p in v.problems] == [3]
    assert [e.seq for e in open_store(logf).entries() if e.record is not None] == [1, 2, 3]
