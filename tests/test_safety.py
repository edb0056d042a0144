"""What the tool writes and shows is safe (spec section 8): one regression test for each
problem found by trying it as an attacker and as an unlucky user. No test needs root: a FIFO
and a temporary "log" stand in for devices, and nothing is written outside tmp_path."""

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from tests.helpers import body

from tests.helpers import POSIX_ONLY  # noqa: E402

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
SMALL = "patient_id,age_years,ice_score,crs_grade\nPT-1,50,8,0\nPT-2,50,2,0\nPT-3,6,,\n"


def icans(*args, env=None, **kw):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "icans_cli", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def small(tmp_path):
    f = tmp_path / "small.csv"
    f.write_text(SMALL)
    return f


def leftovers(directory: Path):
    return [p.name for p in directory.iterdir() if p.name.startswith(".icans-")]


# --- -o never destroys the log, the input or a device -------------------------------------------

def test_o_onto_the_log_is_refused_and_the_log_is_intact(tmp_path, small):
    logf = tmp_path / "assessments.jsonl"
    log.append(logf, body())
    before = logf.read_bytes()
    r = runner.invoke(app, ["grade", str(small), "-o", str(logf), "--log-file", str(logf)])
    assert r.exit_code == 2 and "names an assessment or practice log" in r.stderr
    assert logf.read_bytes() == before
    # the default log (ICANS_DATA_DIR) is protected too, with no --log-file given
    default = Path(os.environ["ICANS_DATA_DIR"]) / "assessments.jsonl"
    log.append(default, body())
    r = runner.invoke(app, ["grade", str(small), "-o", str(default)])
    assert r.exit_code == 2 and log.verify(default).problems == []


def test_o_onto_the_input_is_refused(small):
    before = small.read_text()
    r = runner.invoke(app, ["grade", str(small), "-o", str(small)])
    assert r.exit_code == 2 and "names the input file" in r.stderr
    assert small.read_text() == before


def test_log_file_equal_to_the_input_is_refused(small):
    before = small.read_text()
    r = runner.invoke(app, ["grade", str(small), "--log", "--log-file", str(small)])
    assert r.exit_code == 2 and "--log-file names the input file" in r.stderr
    assert small.read_text() == before


@POSIX_ONLY
def test_o_onto_a_fifo_writes_into_it_and_never_renames_over_it(tmp_path, small):
    fifo = tmp_path / "device"
    os.mkfifo(fifo)
    got = {}

    def read():
        with open(fifo) as fh:
            got["text"] = fh.read()

    t = threading.Thread(target=read)
    t.start()
    r = icans("grade", str(small), "-f", "csv", "-o", str(fifo))
    t.join(10)
    assert r.returncode == 1, r.stderr  # one row is invalid on purpose
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not a regular file
    assert got["text"].startswith("patient_id,age_years,ice_score,crs_grade,")
    assert leftovers(tmp_path) == []


def test_o_to_a_directory_or_a_missing_directory_is_a_message_not_an_internal_error(
        tmp_path, small):
    r = runner.invoke(app, ["grade", str(small), "-o", str(tmp_path)])
    assert r.exit_code == 2 and "is a directory" in r.stderr
    r = runner.invoke(app, ["grade", str(small), "-o", str(tmp_path / "nope" / "out.csv")])
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = runner.invoke(app, ["grade", str(small), "-o", str(small) + "/out.csv"])
    assert r.exit_code == 2 and "Internal error" not in r.output


def test_closed_stdout_is_a_message_not_an_internal_error(small):
    r = subprocess.run([sys.executable, "-m", "icans_cli", "grade", str(small), "-f", "csv"],
                       cwd=ROOT, capture_output=False, stderr=subprocess.PIPE, text=True,
                       preexec_fn=lambda: os.close(1), timeout=30)
    assert r.returncode == 2 and "standard output is closed" in r.stderr


# --- the temporary file never outlives a failure ------------------------------------------------

@POSIX_ONLY
def test_file_size_limit_during_o_leaves_no_temporary_file_and_says_so(tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("patient_id,ice_score\n" + "".join(f"PT-{i},8\n" for i in range(50_000)))
    out = tmp_path / "out.csv"

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    r = subprocess.run([sys.executable, "-m", "icans_cli", "grade", str(big), "-f", "csv",
                        "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                       preexec_fn=limit, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "file-size limit" in r.stderr and "disk is full" not in r.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_disk_full_during_o_leaves_no_temporary_file(tmp_path, small, monkeypatch):
    import errno

    import icans_cli.batchrun as br

    real_write = br._TempFile.write

    def full_disk(self, b):  # the temporary file's bytes, as the buffer hands them on
        if self.tell() + len(b) > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, b)

    monkeypatch.setattr(br._TempFile, "write", full_disk)
    out = tmp_path / "out.csv"
    r = runner.invoke(app, ["grade", str(small), "-f", "csv", "-o", str(out)])
    assert r.exit_code == 3 and "the disk is full" in r.stderr
    assert r.stderr.count("was not written") == 1, r.stderr  # said once
    assert not out.exists() and leftovers(tmp_path) == []


@POSIX_ONLY
@pytest.mark.parametrize("sig", [signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)])
def test_sigterm_and_sighup_during_o_leave_no_temporary_file(tmp_path, sig):
    out = tmp_path / "out.csv"
    p = subprocess.Popen([sys.executable, "-m", "icans_cli", "grade", "-", "-f", "csv", "-o",
                          str(out)], cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    p.stdin.write("patient_id,ice_score\n" + "PT-1,8\n" * 100)
    p.stdin.flush()
    deadline = time.time() + 20
    while not leftovers(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    assert leftovers(tmp_path), "the run never started writing"
    p.send_signal(sig)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 128 + sig, err
    assert "Stopped" in err and "was not written" in err
    assert not out.exists() and leftovers(tmp_path) == []



STOP_AT_MKSTEMP = """
import os, signal, sys, tempfile, threading
real, sig = tempfile.mkstemp, getattr(signal, sys.argv.pop(1))
if sys.argv.pop(1) == "thread":  # another thread, as a progress bar's: it may take the signal
    threading.Thread(target=threading.Event().wait, daemon=True).start()
def mkstemp(*a, **k):
    made = real(*a, **k)
    os.kill(os.getpid(), sig)  # the moment the file exists
    return made
tempfile.mkstemp = mkstemp
from icans_cli.cli import main
main()
"""


@POSIX_ONLY
@pytest.mark.parametrize("threads", ["one", "thread"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_the_moment_the_temporary_file_is_made_is_a_clean_stop(tmp_path, name, threads):
    """The window that made the test above fail once in CI: the run's signal handlers were
    installed only after -o's temporary file was made, so a signal in between killed the run
    by default and left the file. With another thread running (a progress bar), the signal
    may be given to it, and its handler then runs in the main thread mid-mkstemp."""
    src = tmp_path / "in.csv"
    src.write_text("patient_id,ice_score\nPT-1,8\n")
    out = tmp_path / "out.csv"
    p = subprocess.run([sys.executable, "-c", STOP_AT_MKSTEMP, name, threads, "grade", str(src), "-f",
                        "csv", "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    sig = getattr(signal, name)
    want = 130 if name == "SIGINT" else 128 + sig
    assert p.returncode == want, p.stderr
    assert "Stopped" in p.stderr and "was not written" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists() and leftovers(tmp_path) == [], leftovers(tmp_path)


@POSIX_ONLY
@pytest.mark.parametrize("threads", ["one", "thread"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_during_an_fhir_export_to_o_leaves_no_temporary_file(tmp_path, name, threads):
    """The export writes -o through the same temporary file as grade, under the same signal
    handlers: a SIGTERM or SIGHUP (not only Ctrl-C) removes the half-written Bundle."""
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-1"))
    out = tmp_path / "bundle.json"
    p = subprocess.run([sys.executable, "-c", STOP_AT_MKSTEMP, name, threads, "export", "fhir",
                        "--log-file", str(logf), "-o", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    sig = getattr(signal, name)
    assert p.returncode == (130 if name == "SIGINT" else 128 + sig), p.stderr
    assert "nothing more was done" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert "is not written" in p.stderr
    assert not out.exists() and leftovers(tmp_path) == [], leftovers(tmp_path)



STOP_AFTER_RENAME = STOP_AT_MKSTEMP.replace("tempfile.mkstemp", "os.replace").replace(
    "def mkstemp(", "def replace(").replace("= mkstemp", "= replace").replace(
    "the moment the file exists", "the moment the output is in place")


@POSIX_ONLY
@pytest.mark.parametrize("command", ["grade", "export"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_once_the_output_is_in_place_is_not_said_as_not_written(tmp_path, name,
                                                                         command):
    """A signal that arrives as -o's file is renamed into place: the output is whole, and
    the run says it is done (it said "was not written", exit 143, of a written file)."""
    assert "os.replace = replace" in STOP_AFTER_RENAME
    out = tmp_path / "out.json"
    if command == "grade":
        src = tmp_path / "in.csv"
        src.write_text("patient_id,ice_score\nPT-1,8\n")
        args = ["grade", str(src), "-f", "csv", "-o", str(out)]
    else:
        logf = tmp_path / "l.jsonl"
        log.append(logf, body("PT-1"))
        args = ["export", "fhir", "--log-file", str(logf), "-o", str(out)]
    p = subprocess.run([sys.executable, "-c", STOP_AFTER_RENAME, name, "one", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "not written" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert out.exists() and out.stat().st_size > 0 and leftovers(tmp_path) == []


# --- input and log text are shown literally ------------------------------------------------------

MARKUP_IDS = ["[/]PT-1", "[bold red]PT-2", "[link=https://evil.example]PT-3[/link]"]


def test_patient_ids_that_look_like_markup_are_shown_literally_in_grade_table(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("patient_id,ice_score\n" + "".join(f'"{p}",8\n' for p in MARKUP_IDS))
    r = runner.invoke(app, ["grade", str(f), "-f", "table"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for pid in MARKUP_IDS:
        assert pid in r.stdout


def test_logged_markup_ids_do_not_break_log_show_or_history(tmp_path):
    path = tmp_path / "l.jsonl"
    for pid in MARKUP_IDS:
        log.append(path, body(patient=pid))
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "-f", "table"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert all(pid in r.stdout for pid in MARKUP_IDS)
    r = runner.invoke(app, ["history", MARKUP_IDS[0], "--log-file", str(path), "-f", "table"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0 and MARKUP_IDS[0] in r.stdout


@pytest.mark.parametrize("assessor", ["\x1b]0;owned\x07nurse", "nurse\x1b[2J", "a" * 65])
def test_assessor_with_terminal_escapes_or_too_long_is_refused(tmp_path, small, assessor):
    r = runner.invoke(app, ["grade", str(small), "--log", "--log-file",
                            str(tmp_path / "l.jsonl"), "--assessor", assessor])
    assert r.exit_code == 2 and "assessor" in r.stderr.lower()
    assert "\x1b" not in r.stderr
    assert not (tmp_path / "l.jsonl").exists()


def test_escape_sequences_already_in_the_log_are_not_printed_raw(tmp_path):
    path = tmp_path / "l.jsonl"
    b = body()
    b["assessor"] = "\x1b]0;owned\x07nurse\x1b[2J"
    log.append(path, b)
    for args in (["log", "show", "-f", "table"], ["history", "PT-001", "-f", "table"]):
        r = runner.invoke(app, [*args, "--log-file", str(path)], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.stdout and "?nurse" in r.stdout


# --- the fast path agrees with the plain parse ---------------------------------------------------

def _grade_both(text):
    out = {}
    for fmt in ("csv", "jsonl"):
        r = runner.invoke(app, ["grade", "-", "-f", fmt], input=text.encode("utf-8"))
        assert r.exit_code in (0, 1, 2), r.output
        out[fmt] = r
    return out


def _statuses(out):
    csv_rows = list(csv.DictReader(io.StringIO(out["csv"].stdout)))
    js = [json.loads(x) for x in out["jsonl"].stdout.splitlines()]
    return ([(r["status"], r["icans_grade"]) for r in csv_rows],
            [(o["status"], "" if o["icans_grade"] is None else str(o["icans_grade"]))
             for o in js])


def test_fast_path_and_plain_parse_agree_on_a_trailing_unit_separator():
    text = "patient_id,age_years,capd_score\nPT-B,5,5\x1f\nPT-C,5,5\nPT-B,5,5\x1f\n"
    a, b = _statuses(_grade_both(text))
    assert a == b
    assert a[0][0] == "invalid" and a[1][0] == "graded"  # "5\x1f" is not 5


def test_non_ascii_digits_are_not_scores():
    out = _grade_both("patient_id,ice_score\nPT-1,\u0663\n")
    (o,) = [json.loads(x) for x in out["jsonl"].stdout.splitlines()]
    assert o["status"] == "invalid" and o["errors"][0]["column"] == "ice_score"


cell = st.one_of(
    st.sampled_from(["", "0", "5", "8", "10", "12", " 9 ", "\t7", "5\x1f", "\x1f5", "\u0663",
                     "\u00a07", "yes", "no", "alert", "voice", "unarousable", "prolonged",
                     "none", "axi-cel", "1e1", "+3", "3.0"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters='",\r\n'), max_size=4))
COLS = ["patient_id", "age_years", "ice_score", "capd_score", "consciousness", "seizure",
        "sedated", "crs_grade", "product", "weight_kg"]


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cell, min_size=len(COLS), max_size=len(COLS)), min_size=1,
                max_size=8))
def test_property_csv_and_jsonl_agree_on_every_rows_status_and_grade(rows):
    for r in rows:
        r[0] = "PT-" + r[0].strip() if r[0].strip().isprintable() else "PT-X"
    text = ",".join(COLS) + "\n" + "".join(",".join(r) + "\n" for r in rows * 2)
    a, b = _statuses(_grade_both(text))
    assert a == b


def test_grading_the_tools_own_csv_output_gives_the_same_output(tmp_path):
    from tests.test_batch import GOLDEN

    # every golden row, the ragged one included (refused for its shape, it stays refused)
    whole = GOLDEN.read_text()
    first = runner.invoke(app, ["grade", "-", "-f", "csv"], input=whole).stdout
    again = runner.invoke(app, ["grade", "-", "-f", "csv"], input=first).stdout
    assert again == first
    header = next(csv.reader(io.StringIO(first)))
    assert header.count("ice_score") == 1 and header.count("capd_score") == 1


# --- logging a batch: interrupted, repeated ------------------------------------------------------

def _big(tmp_path, n=20_000):
    f = tmp_path / "big.csv"
    f.write_text("patient_id,ice_score,assessed_at\n" + "".join(
        f"PT-{i},{i % 11},2026-11-27T08:{i % 60:02d}:00Z\n" for i in range(n)))
    return f


@pytest.mark.slow  # about 2,000 records logged, each made durable: 10 s (the main run has it)
def test_batch_cut_off_by_head_says_how_many_rows_were_logged(tmp_path):
    big, logf = _big(tmp_path), tmp_path / "l.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "icans_cli", "grade", str(big), "-f", "csv",
                          "--log", "--log-file", str(logf), "--assessor", "script"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.readline()
    p.stdout.close()  # like | head -1
    err = p.stderr.read()
    p.stderr.close()
    p.wait(timeout=60)
    logged = len(logf.read_text().splitlines())
    assert p.returncode == 141, err
    assert f"{logged:,} appended to the log (the last was row {logged:,})" in err
    assert 0 < logged < 20_000


def test_batch_interrupted_by_ctrl_c_while_logging_says_how_many_rows_were_logged(tmp_path):
    logf = tmp_path / "l.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "icans_cli", "grade", "-", "-f", "csv", "--log",
                          "--assessed-now", "--log-file", str(logf), "--assessor", "script"],
                         cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    p.stdin.write("patient_id,ice_score\n" + "".join(f"PT-{i},9\n" for i in range(3)))
    p.stdin.flush()
    deadline = time.time() + 20
    while (not logf.exists() or len(logf.read_text().splitlines()) < 3) \
            and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 130, err
    assert "3 appended to the log (the last was row 3)" in err
    assert "nothing was saved" not in err


def test_logging_the_same_file_twice_does_not_duplicate_records(tmp_path):
    logf = tmp_path / "l.jsonl"
    timed = tmp_path / "timed.csv"
    timed.write_text("patient_id,age_years,ice_score,crs_grade,assessed_at\n"
                     "PT-1,50,8,0,2026-11-27T08:00Z\nPT-2,50,2,0,2026-11-27T08:00Z\n"
                     "PT-3,6,,,2026-11-27T08:00Z\n")
    args = ["grade", str(timed), "-f", "csv", "--log", "--log-file", str(logf),
            "--assessor", "script"]
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    recs = [r for _, r in log.iter_records(logf)]
    assert len(recs) == 2  # two graded rows; the third (age 6 without CAPD) is invalid
    assert "2 appended to the log" in first.stderr
    assert "0 appended to the log, 2 already in the log skipped" in second.stderr
    assert all(len(r["extra"]["source_row_sha256"]) == 64 for r in recs)
    assert [r["extra"]["input_row"] for r in recs] == [1, 2]


def test_log_write_failure_exits_3_not_1_like_invalid_rows(tmp_path, small):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = runner.invoke(app, ["grade", str(small), "--log", "--assessed-now", "--log-file",
                            str(blocker / "l.jsonl"), "--assessor", "script"])
    assert r.exit_code == 3 and "the log" in r.stderr


@pytest.mark.slow
def test_broken_pipe_exits_the_same_for_grade_and_log_show(tmp_path):
    # each output well past a pipe's 64 kB buffer: grade writes its first 2,000 rows at once
    # (about 100 kB), and 300 logged records are about 400 kB of JSON Lines
    big, logf = _big(tmp_path, 2_500), tmp_path / "l.jsonl"
    (tmp_path / "few").mkdir()
    few = _big(tmp_path / "few", 300)
    runner.invoke(app, ["grade", str(few), "--log", "--log-file", str(logf), "--assessor", "s"])
    assert len(logf.read_bytes().splitlines()) == 300 and logf.stat().st_size > 200_000
    codes = []
    for args in (["grade", str(big), "-f", "csv"], ["log", "show", "-f", "jsonl", "--log-file",
                                                   str(logf)]):
        p = subprocess.Popen([sys.executable, "-m", "icans_cli", *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.readline()
        p.stdout.close()
        p.stderr.read()
        p.stderr.close()
        codes.append(p.wait(timeout=60))
    assert codes == [141, 141]


# --- log verify claims only what it proves -------------------------------------------------------

def _log_of(tmp_path, n=6):
    path = tmp_path / "l.jsonl"
    for i in range(n):
        log.append(path, body(hours=i))
    return path


def test_verify_says_what_a_chain_proves_and_what_it_cannot(tmp_path):
    path = _log_of(tmp_path)
    r = runner.invoke(app, ["log", "verify", "--log-file", str(path)])
    assert r.exit_code == 0
    assert "the chain is intact up to record #6" in r.stdout
    assert "cannot show that records were cut off the end" in r.stdout
    assert "chain intact (" not in r.stdout  # no claim about the whole file


def test_verify_with_a_kept_head_catches_the_last_three_lines_deleted(tmp_path):
    path = _log_of(tmp_path)
    head = runner.invoke(app, ["log", "head", "--log-file", str(path)]).stdout.strip()
    assert head.startswith("6:") and len(head.split(":")[1]) == 64
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]))
    assert runner.invoke(app, ["log", "verify", "--log-file", str(path)]).exit_code == 0
    r = runner.invoke(app, ["log", "verify", "--head", head, "--log-file", str(path)])
    assert r.exit_code == 1 and "record #6 (the head you kept) is not in the log" in r.stderr


def test_verify_with_a_kept_head_catches_a_forged_rewrite_of_that_record(tmp_path):
    path = _log_of(tmp_path, 3)
    head = runner.invoke(app, ["log", "head", "--log-file", str(path)]).stdout.strip()
    lines = path.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[-1])
    for k in ("sha256",):
        rec.pop(k)
    rec["result"]["icans_grade"] = 3  # forged, with its own hash recomputed
    lines[-1] = log.encode_record(rec) + b"\n"
    path.write_bytes(b"".join(lines))
    assert runner.invoke(app, ["log", "verify", "--log-file", str(path)]).exit_code == 0
    r = runner.invoke(app, ["log", "verify", "--head", head, "--log-file", str(path)])
    assert r.exit_code == 1 and "not the one whose hash you kept" in r.stderr


def test_verify_with_a_kept_head_accepts_records_appended_after_it(tmp_path):
    path = _log_of(tmp_path, 3)
    head = runner.invoke(app, ["log", "head", "--log-file", str(path)]).stdout.strip()
    log.append(path, body(hours=9))
    r = runner.invoke(app, ["log", "verify", "--head", head, "--log-file", str(path)])
    assert r.exit_code == 0 and "record #3 is the one whose hash you kept" in r.stdout
    # what a kept head cannot cover is said: a record appended after it (forged or not)
    text = " ".join(r.stdout.split())
    assert "the 1 record after it is chained to it but not covered by the kept head" in text


def test_a_bad_format_is_named_without_echoing_what_was_typed(tmp_path):
    for args in (["grade", "-", "-f", "PT-SECRET4"], ["log", "show", "-f", "PT-SECRET4"]):
        r = runner.invoke(app, [*args, "--log-file", str(tmp_path / "l.jsonl")],
                          input="patient_id,ice_score\nPT-1,9\n")
        assert r.exit_code == 2 and "--format must be one of" in r.stderr
        assert "PT-SECRET4" not in r.output


def test_verify_of_an_emptied_log_says_it_is_empty(tmp_path):
    path = _log_of(tmp_path, 2)
    head = runner.invoke(app, ["log", "head", "--log-file", str(path)]).stdout.strip()
    path.write_bytes(b"")
    r = runner.invoke(app, ["log", "verify", "--log-file", str(path)])
    assert "EMPTY" in r.stdout and "OK" not in r.stdout
    assert runner.invoke(app, ["log", "verify", "--head", head, "--log-file",
                               str(path)]).exit_code == 1


# --- no patient id in a message ------------------------------------------------------------------

def test_a_file_without_a_header_row_does_not_list_its_first_row(tmp_path):
    f = tmp_path / "noheader.csv"
    f.write_text("pt-secret-7,8\npt-secret-8,9\n")
    r = runner.invoke(app, ["grade", str(f)])
    assert r.exit_code == 2 and "pt-secret" not in r.output
    assert "first row must be a header" in r.stderr


def test_unexpected_extra_arguments_are_not_echoed():
    r = icans("grade", "x.csv", "PT-SECRET-2")
    assert r.returncode == 2 and "PT-SECRET-2" not in r.stderr
    assert "unexpected extra argument" in r.stderr


def test_shifted_cells_do_not_echo_the_id_in_errors(tmp_path):
    f = tmp_path / "shifted.csv"
    f.write_text("patient_id,consciousness,seizure,product\nPT-SECRET-9,PT-SECRET-9,"
                 "PT-SECRET-9,PT-SECRET-9\n")
    r = runner.invoke(app, ["grade", str(f), "-f", "jsonl"])
    (o,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert o["status"] == "invalid" and len(o["errors"]) == 3
    assert all("PT-SECRET" not in e["message"] for e in o["errors"])
    assert "PT-SECRET" not in r.stderr


# --- readers: bounded, regular files, streaming --------------------------------------------------

def test_an_endless_line_is_refused_with_a_clear_error_not_filled_into_memory(tmp_path):
    f = tmp_path / "zeros"
    f.write_bytes(b"patient_id,ice_score\n" + b"\0" * 1_200_000)
    r = runner.invoke(app, ["grade", str(f), "-f", "csv"])
    assert r.exit_code == 2 and "longer than 1,000,000 characters" in r.stderr


@POSIX_ONLY
@pytest.mark.parametrize("args", [["log", "verify"], ["log", "show", "-f", "jsonl"],
                                  ["history", "PT-1", "-f", "jsonl"], ["log", "head"]])
def test_a_fifo_as_the_log_is_refused_and_never_hangs(tmp_path, args):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    r = icans(*args, "--log-file", str(fifo))
    assert r.returncode == 2 and "not a regular file" in r.stderr


# --- smaller ------------------------------------------------------------------------------------

def test_utf16_input_is_named_as_such():
    r = runner.invoke(app, ["grade", "-"], input="patient_id,ice_score\nPT-1,8\n".encode("utf-16"))
    assert r.exit_code == 2 and "UTF-16, not UTF-8" in r.stderr


def test_a_header_with_no_data_rows_is_zero_rows_exit_0_header_alone(tmp_path):
    f = tmp_path / "empty-ward.csv"
    f.write_text("patient_id,ice_score\n")
    r = runner.invoke(app, ["grade", str(f), "-f", "csv"])
    assert r.exit_code == 0 and "0 rows" in r.stderr
    assert r.stdout.splitlines() == ["patient_id,ice_score,capd_score,icans_grade,grade_at_least,"
                                     "status,drivers,recommendation,errors"]
    assert runner.invoke(app, ["grade", str(f), "-f", "json"]).stdout == "[]\n"


@POSIX_ONLY
def test_permissive_modes_on_the_log_and_its_directory_are_warned(tmp_path):
    path = tmp_path / "data" / "l.jsonl"
    log.append(path, body())
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644)
    r = runner.invoke(app, ["log", "verify", "--log-file", str(path)])
    assert "the data directory" in r.stderr and "mode 0755" in r.stderr
    assert "the log" in r.stderr and "mode 0644" in r.stderr


def test_a_long_number_in_a_score_column_is_not_repeated(tmp_path):
    """A shifted row can put a record number into ice_score: the message must not carry it."""
    src = tmp_path / "in.csv"
    src.write_text("patient_id,ice_score\nPT-1,12345678\nPT-2,11\n")
    r = CliRunner().invoke(app, ["grade", str(src), "-f", "jsonl"])
    assert r.exit_code == 1
    assert "12345678" not in r.stderr and "12345678" not in r.stdout
    assert "\"message\": \"is outside 0-10\"" in r.stdout
    assert "\"message\": \"11 is outside 0-10\"" in r.stdout  # a short number helps the fix


# --- a third attacker's read -----------------------------------------------------------------------

@pytest.mark.parametrize("when", ["9999-12-31T20:00:00Z", "0001-01-01T00:00:00Z",
                                  "1999-12-31T23:00:00Z", "2101-01-01T00:00:00Z"])
def test_a_date_near_the_calendars_ends_is_refused_so_it_can_never_poison_the_log(tmp_path,
                                                                                  when):
    logf = tmp_path / "assessments.jsonl"
    r = runner.invoke(app, ["grade", "-", "--log", "--log-file", str(logf), "-f", "jsonl"],
                      input=f"patient_id,assessed_at,ice_score\nPT-3,{when},8\n")
    assert r.exit_code == 1 and "a date from 2000 to 2100" in r.stdout
    assert not logf.exists() or logf.read_text() == ""


def test_a_log_already_holding_a_far_future_date_still_reads(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    b = body(patient="PT-3", ice=8)
    b["assessed_at"] = "9999-12-31T20:00:00+00:00"  # written by an older version
    rid = log.append(logf, b)["id"]
    for args in (["due", "-f", "table"], ["log", "show", "-f", "table"],
                 ["history", "PT-3", "-f", "table"], ["show", rid[:8]],
                 ["export", "fhir"], ["log", "verify"]):
        r = runner.invoke(app, [*args, "--log-file", str(logf)], env={"COLUMNS": "100"})
        assert r.exit_code == 0, (args, r.output)
        assert "Internal error" not in r.output


@pytest.mark.parametrize("args, message", [
    (["due", "--days", "inf"], "--days"), (["due", "--days", "nan"], "--days"),
    (["due", "--days", "1e308"], "--days"),
    (["log", "show", "--since", "99999999h"], "more than 100 years"),
    (["export", "fhir", "--since", "99999999h"], "more than 100 years"),
])
def test_out_of_range_spans_are_usage_errors_not_internal_errors(tmp_path, args, message):
    r = runner.invoke(app, [*args, "--log-file", str(tmp_path / "l.jsonl")])
    assert r.exit_code == 2 and message in r.output and "Internal error" not in r.output


@pytest.mark.parametrize("cell, message", [("-5", "age_years: is negative"),
                                           ("0.0001", "weight_kg: 0.0001 is out of range")])
def test_negative_age_and_a_weight_below_1_kg_are_named(cell, message):
    col = "age_years" if "age" in message else "weight_kg"
    r = runner.invoke(app, ["grade", "-", "-f", "jsonl"],
                      input=f"patient_id,age_years,{col if col != 'age_years' else 'x'},"
                            f"ice_score\nPT-1,{cell if col == 'age_years' else 50},"
                            f"{cell if col != 'age_years' else ''},8\n")
    (row,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert row["status"] == "invalid"
    assert any(f"{e['column']}: {e['message']}".startswith(message) for e in row["errors"])


class _ClosedPipe(io.StringIO):
    def write(self, s):
        raise BrokenPipeError


@pytest.mark.parametrize("args", [["log", "show", "-f", "table"], ["history", "PT-1", "-f",
                                                                     "table"],
                                  ["due", "-f", "table"], ["grade", "IN", "-f", "table"]])
def test_a_closed_pipe_under_a_table_exits_141_like_grade(tmp_path, monkeypatch, args):
    import icans_cli.term as term

    logf = tmp_path / "l.jsonl"
    log.append(logf, body(patient="PT-1", ice=8))
    real_out = term.out

    def closed():
        c = real_out()
        c.file = _ClosedPipe()
        return c

    monkeypatch.setattr(term, "out", closed)
    monkeypatch.setattr("icans_cli.batchrun._silence_stdout", lambda: None)
    src = tmp_path / "in.csv"
    src.write_text(SMALL)
    args = [str(src) if a == "IN" else a for a in args]
    r = runner.invoke(app, [*args, "--log-file", str(logf)])
    assert r.exit_code == 141, r.output


ESC_CELLS = "patient_id,ice_score,ward\nPT-1,8,\x1b]0;pwn\x07\x1b[2J\x9b31m\n"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_control_characters_in_data_are_shown_not_obeyed_on_a_terminal(tmp_path, monkeypatch,
                                                                       fmt):
    import icans_cli.term as term

    logf = tmp_path / "l.jsonl"
    src = tmp_path / "esc.csv"
    src.write_text(ESC_CELLS, encoding="utf-8")
    assert runner.invoke(app, ["grade", str(src), "--log", "--assessed-now", "--log-file",
                               str(logf), "-f", "jsonl"]).exit_code == 0
    monkeypatch.setattr(term, "is_terminal", lambda stream=None: True)
    for args in (["grade", str(src), "-f", fmt], ["log", "show", "-f", fmt],
                 ["history", "PT-1", "-f", fmt], ["due", "-f", fmt]):
        r = runner.invoke(app, [*args, "--log-file", str(logf)])
        assert r.exit_code == 0, (args, r.output)
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\x9b" not in r.stdout
    r = runner.invoke(app, ["grade", str(src), "-f", fmt])
    assert "\\x1b]0;pwn\\x07" in r.stdout or "\\u001b]0;pwn\\u0007" in r.stdout


def test_control_characters_in_data_pass_through_into_a_file(tmp_path):
    src = tmp_path / "esc.csv"
    src.write_text(ESC_CELLS, encoding="utf-8")
    out = tmp_path / "out.csv"
    assert runner.invoke(app, ["grade", str(src), "-f", "csv", "-o", str(out)]).exit_code == 0
    assert "\x1b]0;pwn\x07" in out.read_text(encoding="utf-8")  # data stays data


@POSIX_ONLY
@pytest.mark.parametrize("args", [["grade", "IN", "--log", "-f", "jsonl"], ["history", "PT-1"],
                                  ["due"], ["show", "ID"], ["export", "fhir"], ["log", "head"],
                                  ["log", "show"], ["log", "verify"]])
def test_a_log_readable_by_others_is_warned_by_every_command_that_touches_it(tmp_path, args):
    logf = tmp_path / "l.jsonl"
    rid = log.append(logf, body(patient="PT-1", ice=8))["id"]
    os.chmod(logf, 0o644)
    src = tmp_path / "in.csv"
    src.write_text("patient_id,ice_score\nPT-9,9\n")
    args = [str(src) if a == "IN" else rid[:8] if a == "ID" else a for a in args]
    r = runner.invoke(app, [*args, "--log-file", str(logf)])
    assert r.exit_code == 0, r.output
    assert r.stderr.count("is readable by others (mode 0644)") == 1, r.stderr


def test_o_onto_the_file_given_on_standard_input_is_refused(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(SMALL)
    with open(src) as fh:
        r = icans("grade", "-", "-o", str(src), stdin=fh,
                  env={"ICANS_DATA_DIR": str(tmp_path / "data")})
    assert r.returncode == 2 and "standard input" in r.stderr
    assert src.read_text() == SMALL


def test_o_onto_the_practice_log_or_any_icans_log_is_refused(tmp_path):
    data = tmp_path / "data"
    elsewhere = tmp_path / "ward7.jsonl"
    log.append(elsewhere, body(patient="PT-1", ice=8))
    before = elsewhere.read_bytes()
    practice = data / "practice.jsonl"
    data.mkdir(mode=0o700)
    practice.write_text("{}\n")
    src = tmp_path / "in.csv"
    src.write_text(SMALL)
    for target in (practice, elsewhere):
        r = runner.invoke(app, ["grade", str(src), "-o", str(target)],
                          env={"ICANS_DATA_DIR": str(data)})
        assert r.exit_code == 2 and "refusing to overwrite it" in r.stderr
    assert elsewhere.read_bytes() == before and practice.read_text() == "{}\n"


def test_o_onto_a_symlink_writes_the_file_it_points_to_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    src = tmp_path / "in.csv"
    src.write_text("patient_id,ice_score\nPT-1,9\n")
    r = runner.invoke(app, ["grade", str(src), "-f", "csv", "-o", str(link)])
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and "PT-1" in target.read_text()


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_a_row_is_logged_is_counted_in_what_was_logged(tmp_path, monkeypatch,
                                                                      sig, code):
    logf = tmp_path / "l.jsonl"
    from icans_cli.store.jsonl import JsonlStore

    real = JsonlStore.append
    calls = []

    def append_then_signal(self, body, unique=None, on_wait=None):
        rec = real(self, body, unique, on_wait)
        calls.append(1)
        if len(calls) == 2:  # the signal lands after the second record is written
            os.kill(os.getpid(), sig)
        return rec

    monkeypatch.setattr(JsonlStore, "append", append_then_signal)
    src = tmp_path / "in.csv"
    src.write_text("patient_id,ice_score\nPT-1,9\nPT-2,8\nPT-3,7\nPT-4,6\n")
    r = runner.invoke(app, ["grade", str(src), "--log", "--assessed-now", "--log-file",
                            str(logf), "-f", "csv", "-o", str(tmp_path / "out.csv")])
    assert r.exit_code == code, r.output
    written = len(logf.read_text().splitlines())
    assert written == 2
    assert "2 appended to the log (the last was row 2)" in r.stderr


def test_a_row_refused_for_its_shape_stays_refused_when_the_output_is_graded_again():
    # an extra cell (a shifted row): refused; its output row is cut to the header, and must not
    # be graded from cells that may sit in the wrong columns
    text = ("patient_id,age_years,ice_score,crs_grade\n"
            "PT-1,50,8,0\n"
            "PT-21,50,,8,0,SECRETQ\n")
    first = runner.invoke(app, ["grade", "-", "-f", "csv"], input=text).stdout
    again = runner.invoke(app, ["grade", "-", "-f", "csv"], input=first).stdout
    assert again == first
    rows = list(csv.DictReader(io.StringIO(again)))
    assert [r["status"] for r in rows] == ["graded", "invalid"]
    jsonl = runner.invoke(app, ["grade", "-", "-f", "jsonl"], input=first).stdout
    assert [json.loads(x)["status"] for x in jsonl.splitlines()] == ["graded", "invalid"]


# --- two processes: stopped, nothing is left behind ---------------------------------------------

def _processes_naming(text: str) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as fh:
                    if text.encode() in fh.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


@POSIX_ONLY
@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_two_process_grade_stopped_leaves_no_process_no_file_and_no_output(
        tmp_path, signum, code):
    src = tmp_path / "big-ward.csv"
    row = ",2026-11-29T08:00:00Z,{age},,,,,,{ice},,voice,,,,,,1,axi-cel,7A\n"
    with open(src, "w") as fh:
        fh.write("patient_id,assessed_at,age_years,developmental_delay,ice_orientation,"
                 "ice_naming,ice_commands,ice_writing,ice_attention,ice_score,capd_score,"
                 "consciousness,seizure,motor,icp_edema,excluded,sedated,crs_grade,product,"
                 "ward\n")
        # large enough (about 16 MB, several seconds to grade) that the run is still going when
        # the signal comes on a machine many times faster than this one; it is stopped early
        for i in range(250_000):
            fh.write(f"PT-{i % 500:04d}" + row.format(age=20 + i % 60, ice=i % 11))
    assert src.stat().st_size > 4_000_000
    out = tmp_path / "graded.csv"
    env = {k: v for k, v in os.environ.items() if k != "ICANS_LOG"}
    p = subprocess.Popen([sys.executable, "-m", "icans_cli", "grade", str(src), "-f", "csv",
                          "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    time.sleep(0.3)
    deadline = time.time() + 10
    while len(_processes_naming(str(src))) < 2 and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)  # the second process has started
    from icans_cli.batchsplit import processors

    assert len(_processes_naming(str(src))) == (2 if processors() > 1 else 1)
    assert p.poll() is None, "the run ended before it could be stopped"
    p.send_signal(signum)
    _, err = p.communicate(timeout=30)
    assert p.returncode == code, err
    assert not out.exists()
    assert [x.name for x in tmp_path.iterdir()] == ["big-ward.csv"]  # no temporary file
    time.sleep(0.2)
    assert _processes_naming(str(src)) == []  # the second process is gone too


def test_a_first_row_of_data_is_refused_without_repeating_its_cells(tmp_path):
    """A file with no header row whose first row repeats a value (an MRN twice): refused for
    having no patient_id column, before the duplicate-column check could quote the value."""
    f = tmp_path / "no-header.csv"
    f.write_text("MRN-99812,MRN-99812,7\nMRN-99813,MRN-99813,8\n")
    r = runner.invoke(app, ["grade", str(f), "-f", "csv"])
    assert r.exit_code == 2 and "no patient_id column" in r.stderr
    assert "99812" not in r.stderr and "99812" not in r.stdout


@POSIX_ONLY
def test_o_dev_stdout_on_a_pipe_is_written_into(tmp_path):
    f = tmp_path / "one.csv"
    f.write_text("patient_id,ice_score\nPT-1,8\n")
    r = icans("grade", str(f), "-f", "csv", "-o", "/dev/stdout")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("PT-1,8,,1,,graded")
