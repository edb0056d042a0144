"""Issue 19: every command on the ward's PostgreSQL log, as on the file; nothing lost when the
server is away. A real server (tests/pgserver.py), never a mock."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from tests.helpers import body

psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")

from icans_cli.dbcmd import db_init  # noqa: E402
from icans_cli.store.postgres import PostgresStore  # noqa: E402
from tests.pgserver import create_database, drop_database  # noqa: E402

runner = CliRunner()
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="pty, signals, a local server")
CSV = ("patient_id,assessed_at,ice_score,crs_grade,seizure\n"
       "PT-1,2026-11-30T06:00:00Z,10,0,none\n"
       "PT-1,2026-11-30T14:00:00Z,6,1,none\n"
       "PT-2,2026-11-30T08:00:00Z,3,0,self_limited\n"
       "PT-3,2026-11-30T09:30:00Z,9,2,none\n"
       "PT-2,2026-11-30T16:00:00Z,1,0,none\n")


@pytest.fixture
def ward(pg_database_url):
    db_init(pg_database_url)
    return pg_database_url


def run(*args, url=None, data=None, **kw):
    env = {"ICANS_DATABASE_URL": url} if url else {}
    if data is not None:
        env["ICANS_DATA_DIR"] = str(data)
    return runner.invoke(app, list(args), env=env or None, **kw)


def flat(text):
    """The words of a message, one space apart (a long message is wrapped)."""
    return " ".join(text.split())


def _scrub(text, where):
    """What legitimately differs between the two logs' outputs: where they are."""
    return text.replace(where, "<LOG>")


def test_every_command_gives_the_same_answer_on_the_ward_log_as_on_the_file(ward, tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text(CSV)
    logf = tmp_path / "l.jsonl"
    r = run("grade", str(csv), "--log", "--log-file", str(logf), "--assessor", "n", "-f",
            "jsonl")
    assert r.exit_code == 0, r.output
    # the same records (ids, times) on the ward log: imported once
    r = run("log", "import", str(logf), url=ward)
    assert r.exit_code == 0 and "5 records imported" in r.stdout, r.output
    where = PostgresStore(ward).where
    for args in (["log", "show", "-f", "csv"], ["history", "PT-2", "-f", "csv"],
                 ["history", "PT-1", "-f", "table"], ["log", "show", "--patient", "pt 2",
                                                      "-f", "table"],
                 ["show", "PT-2"], ["show", "PT-3", "--full"], ["due", "-f", "jsonl"],
                 ["due", "-f", "table"]):
        on_file = run(*args, "--log-file", str(logf))
        on_ward = run(*args, url=ward)
        assert on_file.exit_code == on_ward.exit_code == 0, (args, on_ward.output)
        assert _scrub(on_ward.stdout, where) == _scrub(on_file.stdout, str(logf)), args
    # the export: the same entries (the log head differs: each log's own chain)
    a = json.loads(run("export", "fhir", "--transaction", "--log-file", str(logf)).stdout)
    b = json.loads(run("export", "fhir", "--transaction", url=ward).stdout)
    assert a["entry"] == b["entry"]
    assert run("log", "verify", url=ward).exit_code == 0
    assert re.fullmatch(r"5:[0-9a-f]{64}\n", run("log", "head", url=ward).stdout)


def test_grade_log_on_the_ward_records_the_database_role_beside_the_assessor(ward, tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text(CSV)
    r = run("grade", str(csv), "--log", "--assessor", "nurse-b", "-f", "jsonl", url=ward)
    assert r.exit_code == 0, r.output
    r = run("log", "show", "-f", "jsonl", url=ward)
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(recs) == 5 and {x["assessor"] for x in recs} == {"nurse-b"}
    with psycopg.connect(ward) as conn:
        role = conn.execute("SELECT current_user").fetchone()[0]
    assert {x["db_role"] for x in recs} == {role}
    r = run("grade", str(csv), "--log", "--assessor", "nurse-b", "-f", "jsonl", url=ward)
    assert "5 already in the log skipped" in r.stderr  # a rerun logs nothing twice


def test_db_init_and_status_on_the_command_line(pg_database_url):
    r = run("db", "status", url=pg_database_url)
    assert r.exit_code == 1 and "not set up: run icans db init" in r.stderr
    r = run("db", "init", url=pg_database_url)
    assert r.exit_code == 0 and "created" in r.stdout, r.output
    r = run("db", "init", url=pg_database_url)
    assert r.exit_code == 0 and "already set up" in r.stdout
    r = run("db", "status", url=pg_database_url)
    assert r.exit_code == 0, r.output
    assert re.search(r"reachable:\s+yes", r.stdout)
    assert re.search(r"append-only triggers:\s+on", r.stdout)
    assert "kept on this workstation: 0" in r.stdout


def test_db_commands_without_a_url_say_what_to_set():
    r = run("db", "status")
    assert r.exit_code == 2 and "ICANS_DATABASE_URL is not set" in r.stderr


def test_a_password_in_the_url_is_never_printed(ward):
    with_password = ward.replace("postgresql://", "postgresql://nobody:s3cr3tpw@", 1) \
        if "@" not in ward else ward
    for args in (["log", "path"], ["db", "status"], ["due"]):
        r = run(*args, url=with_password + ("&" if "?" in with_password else "?")
                + "password=s3cr3tpw")
        assert "s3cr3tpw" not in r.output, args


def test_log_import_copies_once_and_names_what_it_could_not(ward, tmp_path):
    logf = tmp_path / "l.jsonl"
    for h in range(3):
        log.append(logf, body("PT-1", hours=h))
    with open(logf, "ab") as fh:
        fh.write(b"not a record\n")
    r = run("log", "import", str(logf), url=ward)
    assert r.exit_code == 1  # something was not copied: said, and the exit says so
    assert "3 records imported" in r.stdout and "line 4" in r.stderr
    r = run("log", "import", str(logf), url=ward)
    assert "0 records imported" in r.stdout and "3 already there" in r.stdout


# --- nothing lost when the server is away ------------------------------------------------------

@pytest.fixture
def restartable_ward(pg_restartable):
    server = pg_restartable
    name = f"icans_ward_cli_{os.getpid()}_{time.monotonic_ns()}"
    url = create_database(server.url, name)
    db_init(url)
    yield server, url
    if not _running(server):
        server.start()
    drop_database(server.url, name)


def _running(server):
    try:
        psycopg.connect(server.url, connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


ADULT_ICE_10 = "n" + "n" + "n" + "0" + "ca\r" + "00nn" + "k0" + "a" + "y"


def _interview(keys, url, *args):
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as inp:
        inp.send_text(keys)
        inp.close()
        with create_app_session(input=inp, output=DummyOutput()):
            return runner.invoke(app, ["assess", "--assessor", "nurse-a", *args],
                                 env={"ICANS_DATABASE_URL": url})


def test_a_bedside_save_with_the_server_down_is_kept_and_sent_once_by_the_next_command(
        restartable_ward):
    server, url = restartable_ward
    server.stop("immediate")
    r = _interview(ADULT_ICE_10, url, "--patient", "PT-5", "--age", "50", "--weight", "70")
    assert r.exit_code == 0, r.output
    said = " ".join(r.stderr.split())
    assert "The log cannot be read now" in said  # no earlier assessment could be shown
    assert "SAVED ON THIS WORKSTATION, NOT YET ON THE WARD LOG" in said
    server.start()
    r = run("due", "-f", "jsonl", url=url)
    assert r.exit_code == 0 and "now saved to the log" in r.stderr, r.output
    assert [json.loads(x)["patient_id"] for x in r.stdout.splitlines()] == ["PT-5"]
    r = run("log", "sync", url=url)
    assert "Nothing kept" in r.stdout
    assert len(run("log", "show", "-f", "jsonl", url=url).stdout.splitlines()) == 1


@pytest.mark.slow
@POSIX
def test_server_stopped_mid_batch_says_which_rows_reached_it_and_a_rerun_logs_the_rest_once(
        restartable_ward, tmp_path):
    server, url = restartable_ward
    rows = ["patient_id,assessed_at,ice_score"]
    rows += [f"PT-{i:04d},2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z,{i % 11}"
             for i in range(5000)]
    csv = tmp_path / "big.csv"
    csv.write_text("\n".join(rows) + "\n")
    env = dict(os.environ, ICANS_DATABASE_URL=url, ICANS_DATA_DIR=str(tmp_path / "d"))
    p = subprocess.Popen([sys.executable, "-m", "icans_cli", "grade", str(csv), "--log",
                          "--assessor", "n", "-o", str(tmp_path / "out.csv")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with psycopg.connect(url, autocommit=True) as conn:  # wait until rows are arriving
        deadline = time.monotonic() + 60
        while conn.execute("SELECT count(*) FROM icans.assessments").fetchone()[0] < 50:
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
    server.stop("immediate")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    m = re.search(r"([\d,]+) appended to the log \(the last was row ([\d,]+)\)", err)
    assert m, err
    appended, last_row = (int(g.replace(",", "")) for g in m.groups())
    assert "cannot be reached" in err and "were not logged" in err
    server.start()
    with psycopg.connect(url, autocommit=True) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM icans.assessments ORDER BY seq")]
        logged_rows = {json.loads(r[0])["extra"]["input_row"] for r in conn.execute(
            "SELECT record FROM icans.assessments")}
    # exactly the rows said; or one more when the server stopped after committing a row but
    # before its reply arrived, which is then said to be in doubt
    in_doubt = "may or may not be in the log" in err
    assert len(seqs) in ((appended, appended + 1) if in_doubt else (appended,)), err
    assert seqs == list(range(1, len(seqs) + 1))
    assert logged_rows == set(range(1, len(seqs) + 1))
    if len(seqs) == appended:
        assert last_row == appended
    appended = len(seqs)
    r = subprocess.run([sys.executable, "-m", "icans_cli", "grade", str(csv), "--log",
                        "--assessor", "n", "-o", str(tmp_path / "out2.csv")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{appended:,} already in the log skipped" in r.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT dedup) FROM icans.assessments"
                            ).fetchone() == (5000, 5000)
    assert run("log", "verify", url=url).exit_code == 0


def test_a_batch_whose_connection_is_lost_as_a_row_commits_says_that_row_is_in_doubt(
        ward, tmp_path, monkeypatch):
    from tests.test_store_postgres import lose_the_reply_after_commit

    f = tmp_path / "ward.csv"
    f.write_text(CSV)
    writers = []
    real = PostgresStore._writer

    def writer(self):
        conn = real(self)
        writers.append(conn)
        if len(writers) == 3:  # the third row's commit: its reply lost
            lose_the_reply_after_commit(conn)
        return conn

    monkeypatch.setattr(PostgresStore, "_writer", writer)
    r = run("grade", str(f), "--log", "--assessor", "n", "-o", str(tmp_path / "o.csv"), url=ward)
    assert r.exit_code == 3, r.output
    assert "2 appended to the log (the last was row 2)" in r.stderr
    assert "row 3 may or may not be in the log" in r.stderr
    assert "logs it once either way" in r.stderr
    r = run("grade", str(f), "--log", "--assessor", "n", "-o", str(tmp_path / "o2.csv"),
            url=ward)
    assert r.exit_code == 0, r.stderr
    assert "2 appended to the log" in r.stderr and "3 already in the log skipped" in r.stderr
    assert run("log", "verify", url=ward).exit_code == 0


def test_a_row_in_doubt_stamped_assessed_now_is_never_promised_to_be_logged_once(
        ward, tmp_path, monkeypatch):
    """A row without a time of its own, stamped --assessed-now, cannot be known again by a
    rerun: the message says so, instead of promising it is logged once either way."""
    from tests.test_store_postgres import lose_the_reply_after_commit

    f = tmp_path / "untimed.csv"
    f.write_text("patient_id,ice_score\nPT-1,10\nPT-2,8\nPT-3,6\n")
    writers = []
    real = PostgresStore._writer

    def writer(self):
        conn = real(self)
        writers.append(conn)
        if len(writers) == 3:
            lose_the_reply_after_commit(conn)
        return conn

    monkeypatch.setattr(PostgresStore, "_writer", writer)
    r = run("grade", str(f), "--log", "--assessed-now", "--assessor", "n", "-o",
            str(tmp_path / "o.csv"), url=ward)
    assert r.exit_code == 3, r.output
    said = flat(r.stderr)
    assert "row 3 may or may not be in the log (it was stamped with the time of this run, " \
           "so running the file again logs it again" in said
    assert "logs it once either way" not in said and "logs each assessment once" not in said
    assert "2 stamped with the time of this run (--assessed-now): running the same file " \
           "again logs those again" in said


def test_an_import_stopped_midway_says_how_far_it_got_and_a_rerun_copies_the_rest_once(
        ward, tmp_path, monkeypatch):
    local = tmp_path / "workstation.jsonl"
    for i in range(20):
        log.append(local, body(f"PT-{i}", hours=i))
    real, calls = PostgresStore.append, []

    def append(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt  # Ctrl-C as the eighth record is sent
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PostgresStore, "append", append)
    r = run("log", "import", str(local), url=ward)
    assert r.exit_code == 130, r.output
    said = " ".join(r.stderr.split())
    assert "stopped after 7 records imported and 0 found already there; importing the same " \
           "file again copies the rest, each once" in said
    assert "Interrupted: nothing more was done" in said
    r = run("log", "import", str(local), url=ward)
    assert r.exit_code == 0, r.output
    assert "13 records imported" in r.stdout and "7 already there" in r.stdout


@pytest.mark.slow
@POSIX
def test_the_bedside_save_in_a_real_terminal_survives_the_server_stopping(restartable_ward,
                                                                        tmp_path):
    pexpect = pytest.importorskip("pexpect")
    server, url = restartable_ward
    env = dict(os.environ, ICANS_DATABASE_URL=url, ICANS_DATA_DIR=str(tmp_path / "d"),
               PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="80", LINES="24", TERM="xterm")
    child = pexpect.spawn(sys.executable, ["-m", "icans_cli", "assess", "--assessor", "n",
                                           "--patient", "PT-9", "--age", "40", "--weight",
                                           "70"], env=env, dimensions=(24, 80), timeout=30)
    try:
        child.expect("developmental delay")
        for key in ("n", "n", "n", "0", "c", "a", "\r", "0", "0", "n", "n", "k", "0", "a"):
            child.send(key)
            time.sleep(0.05)
        child.expect("Save to the log")
        server.stop("immediate")  # the server goes away while the summary is read
        child.send("y")
        child.expect("NOT YET ON THE WARD LOG")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    server.start()
    r = run("log", "sync", url=url, data=tmp_path / "d")
    assert r.exit_code == 0 and "1 assessment sent" in r.stdout, r.output
    r = run("history", "PT-9", "-f", "jsonl", url=url, data=tmp_path / "d")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1, r.output
    assert run("log", "verify", url=url).exit_code == 0


def test_help_and_the_first_prompt_import_nothing_of_psycopg(tmp_path):
    env = dict(os.environ, ICANS_DATABASE_URL="postgresql:///nowhere?host=/nonexistent",
               ICANS_DATA_DIR=str(tmp_path / "d"))
    for args in (["--help"], ["assess", "--help"], ["due", "--help"]):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "icans_cli", *args],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0
        assert "psycopg" not in r.stderr, args
    code = ("import sys; from icans_cli.store import open_store; s = open_store(None); "
            "print(s.where); print('psycopg' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.stdout.split() == ["postgresql:///nowhere?host=/nonexistent", "False"]
