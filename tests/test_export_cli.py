"""Issue 20 on the command line: export fhir --transaction, --after-seq, --since by the time
recorded, --patient-system, the log head, data as UTF-8 with one line ending, completion."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from tests.helpers import body

runner = CliRunner()
ICANS_SCRIPT = [str(p) for p in (Path(sys.executable).parent / "icans",
                                 Path(sys.executable).parent / "icans.exe") if p.exists()]
ENV_CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("ICANS_")}


def export(logf, *args, env=None):
    return runner.invoke(app, ["export", "fhir", "--log-file", str(logf), *args], env=env)


@pytest.fixture
def logf(tmp_path):
    path = tmp_path / "l.jsonl"
    first = log.append(path, body("PT-1", ice=6))
    log.append(path, body("PT-2", ice=10, hours=1))
    log.append(path, body("PT-1", ice=8, amends=first["id"]))  # a correction of the first
    return path


def test_transaction_every_entry_is_a_request_and_ids_repeat_across_exports(logf):
    a, b = (json.loads(export(logf, "--transaction").stdout) for _ in range(2))
    assert a["type"] == "transaction"
    assert all("request" in e for e in a["entry"])
    assert [e["fullUrl"] for e in a["entry"]] == [e["fullUrl"] for e in b["entry"]]
    grades = [e["resource"] for e in a["entry"] if e["resource"]["resourceType"] ==
              "Observation" and "score" not in e["resource"]["id"]
              and e["resource"]["code"]["coding"][0]["code"] == "icans-grade"]
    assert len(grades) == 2  # one current grade per assessment: PT-1 (corrected) and PT-2


def test_after_seq_exports_what_was_saved_after_it_and_says_the_last_one(logf):
    r = export(logf, "--after-seq", "2")
    assert r.exit_code == 0
    assert "last sequence number exported: 3 (resume with --after-seq 3)" in r.stderr
    bundle = json.loads(r.stdout)
    qrs = [e for e in bundle["entry"] if e["resource"]["resourceType"] ==
           "QuestionnaireResponse"]
    assert len(qrs) == 1 and qrs[0]["resource"]["status"] == "amended"
    r = export(logf, "--after-seq", "3")
    assert "0 assessments exported" in r.stderr


def test_since_selects_by_the_time_recorded_so_a_late_correction_is_sent(tmp_path):
    path = tmp_path / "l.jsonl"
    old = body("PT-1", ice=6)
    old["recorded_at"] = "2026-01-01T08:00:00+00:00"
    first = log.append(path, old)
    fix = body("PT-1", ice=8, amends=first["id"])  # assessed long ago, recorded now
    log.append(path, fix)
    r = export(path, "--since", "1h")
    assert r.exit_code == 0 and "1 assessment exported" in r.stderr


def test_patient_system_from_the_option_or_the_environment_and_checked(logf):
    uri = "https://hospital.example.org/fhir/sid/car-t-pseudonym"
    for r in (export(logf, "--transaction", "--patient-system", uri),
              export(logf, "--transaction", env={"ICANS_PATIENT_SYSTEM": uri})):
        bundle = json.loads(r.stdout)
        patients = [e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Patient"]
        assert patients and all(p["identifier"][0]["system"] == uri for p in patients)
    r = export(logf, "--patient-system", "not a uri")
    assert r.exit_code == 2 and "absolute URI" in r.stderr


def test_the_bundle_names_the_log_head_it_was_made_from(logf):
    head = str(log.head(logf))
    bundle = json.loads(export(logf).stdout)
    assert head in [t["code"] for t in bundle["meta"]["tag"]]


def test_data_on_stdout_is_utf8_whatever_the_console_encoding(tmp_path):
    path = tmp_path / "l.jsonl"
    rec = body("PT-1", ice=6)
    rec["assessor"] = "Łukasz Wróbel"
    log.append(path, rec)
    for args in (["export", "fhir"], ["log", "show", "-f", "jsonl"],
                 ["log", "show", "-f", "csv"], ["history", "PT-1", "-f", "csv"]):
        r = subprocess.run([sys.executable, "-m", "icans_cli", *args, "--log-file", str(path)],
                           capture_output=True, timeout=60,
                           env=dict(ENV_CLEAN, PYTHONIOENCODING="cp1252",
                                    ICANS_DATA_DIR=str(tmp_path / "d")))
        assert r.returncode == 0, (args, r.stderr)
        assert "Łukasz Wróbel".encode() in r.stdout, args  # UTF-8, not '?ukasz'


def test_csv_rows_end_in_exactly_one_crlf(tmp_path):
    path = tmp_path / "l.jsonl"
    log.append(path, body("PT-1", ice=6))
    for args in (["log", "show", "-f", "csv"], ["due", "-f", "csv", "--days", "3650"],
                 ["history", "PT-1", "-f", "csv"]):
        r = subprocess.run([sys.executable, "-m", "icans_cli", *args, "--log-file", str(path)],
                           capture_output=True, timeout=60,
                           env=dict(ENV_CLEAN, ICANS_DATA_DIR=str(tmp_path / "d")))
        assert r.returncode == 0, r.stderr
        assert b"\r\r\n" not in r.stdout and r.stdout.count(b"\r\n") == \
            r.stdout.count(b"\n") >= 2, args


@pytest.mark.parametrize("words, expected", [
    ("icans explain gr", "grading"),
    ("icans grade x.csv --format js", "json"),
    ("icans log show --format cs", "csv"),
    ("icans grade x.csv --protocol ca", "cartox-2018"),
])
@pytest.mark.skipif(not ICANS_SCRIPT, reason="the icans script is not installed beside python")
def test_option_values_complete_in_the_shell(tmp_path, words, expected):
    env = dict(ENV_CLEAN, _ICANS_COMPLETE="complete_bash", COMP_WORDS=words,
               COMP_CWORD=str(len(words.split()) - 1), ICANS_DATA_DIR=str(tmp_path / "d"))
    r = subprocess.run(ICANS_SCRIPT[:1], env=env, capture_output=True, text=True, timeout=60)
    assert expected in r.stdout.split(), r.stdout


@pytest.mark.skipif(not ICANS_SCRIPT, reason="the icans script is not installed beside python")
def test_patients_and_record_ids_complete_from_the_log(tmp_path):
    data = tmp_path / "d"
    path = data / "assessments.jsonl"
    rec = log.append(path, body("PT-0042", ice=6))
    for words, expected in (("icans history PT-00", "PT-0042"),
                            (f"icans show {rec['id'][:3]}", rec["id"][:8])):
        env = dict(ENV_CLEAN, _ICANS_COMPLETE="complete_bash", COMP_WORDS=words,
                   COMP_CWORD=str(len(words.split()) - 1), ICANS_DATA_DIR=str(data))
        r = subprocess.run(ICANS_SCRIPT[:1], env=env, capture_output=True, text=True,
                           timeout=60)
        assert expected in r.stdout.split(), (words, r.stdout)


# --- a large output: written in large blocks, handed to the disk as it goes -----------------------

@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise is POSIX-only")
def test_o_file_is_handed_to_the_disk_as_it_is_written_and_the_bundle_is_whole(tmp_path,
                                                                              monkeypatch):
    from icans_cli import batchrun

    path = tmp_path / "l.jsonl"
    for i in range(40):
        log.append(path, body(f"PT-{i % 3}", ice=i % 11, hours=i))
    plain = export(path).stdout  # standard output: no temporary file
    advised = []
    real = os.posix_fadvise

    def fadvise(fd, offset, length, advice):
        advised.append((offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(batchrun._TempFile, "STEP", 4096)
    monkeypatch.setattr(batchrun.os, "posix_fadvise", fadvise)
    out = tmp_path / "bundle.json"
    r = export(path, "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    drop = {"timestamp"}  # the only value that differs between two exports
    assert {k: v for k, v in json.loads(text).items() if k not in drop} == \
        {k: v for k, v in json.loads(plain).items() if k not in drop}
    # the ranges handed on follow each other from the start, each at least a step long
    assert advised and advised[0][0] == 0
    assert all(a[0] + a[1] == b[0] for a, b in zip(advised, advised[1:]))
    assert all(length >= 4096 and advice == os.POSIX_FADV_DONTNEED
               for _, length, advice in advised)
    assert advised[-1][0] + advised[-1][1] <= len(text.encode("utf-8"))


# --- -o FILE and standard output; what the check read is what is exported ------------------------

def _bundle(text):
    b = json.loads(text)
    b.pop("timestamp")
    return b


def _edit_without_hash(path, n, change):
    ls = path.read_bytes().split(b"\n")
    rec = json.loads(ls[n - 1])
    old = rec.pop("sha256")
    change(rec)
    from icans_cli.store.chain import encode_record

    ls[n - 1] = encode_record(rec)[:-66] + old.encode() + b'"}'
    path.write_bytes(b"\n".join(ls))


@pytest.mark.parametrize("args", [[], ["--transaction"], ["--after-seq", "1"],
                                  ["--since", "2000-01-01T00:00:00+00:00"],
                                  ["--transaction", "--patient-system", "urn:oid:1.2.3"]])
def test_o_file_and_standard_output_give_the_same_bundle(logf, tmp_path, args):
    out = tmp_path / "b.json"
    r = export(logf, *args, "-o", str(out))
    assert r.exit_code == 0, r.output
    s = export(logf, *args)
    assert s.exit_code == 0, s.output
    assert _bundle(out.read_text(encoding="utf-8")) == _bundle(s.stdout)
    assert r.stderr.replace(f" to {out}", "") == s.stderr


def test_o_file_refuses_a_log_whose_last_record_was_edited_and_keeps_the_old_file(logf,
                                                                                 tmp_path):
    out = tmp_path / "b.json"
    out.write_text("the export of yesterday\n", encoding="utf-8")

    def grade_0(rec):
        rec["result"]["icans_grade"] = 0

    _edit_without_hash(logf, 3, grade_0)  # the last record: no record after it to vouch
    r = export(logf, "-o", str(out))
    assert r.exit_code == 1 and "fails its chain" in r.stderr and "line 3" in r.stderr
    assert out.read_text(encoding="utf-8") == "the export of yesterday\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "l.jsonl"]


def test_o_file_refuses_a_torn_tail_until_it_is_acknowledged(logf, tmp_path):
    out = tmp_path / "b.json"
    with open(logf, "ab") as fh:
        fh.write(b'{"assessed_at":"2026-11-2')  # a write cut short
    r = export(logf, "-o", str(out))
    assert r.exit_code == 1 and "torn" in r.stderr and not out.exists()
    log.append(logf, body("PT-3", ice=9, hours=3))  # starts on a new line
    assert runner.invoke(app, ["log", "acknowledge-tail", "--log-file", str(logf)]).exit_code \
        == 0
    r = export(logf, "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "4 assessments exported" in r.stderr and "--after-seq 4" in r.stderr


@pytest.mark.parametrize("args", [[], ["--transaction"]])
def test_a_record_appended_while_the_export_runs_is_left_for_the_next_export(logf, tmp_path,
                                                                            monkeypatch, args):
    # appended after the chain check read the log: never exported unchecked; the Bundle's
    # log head is the last record it holds, and the next export resumes after it
    from icans_cli import exporting

    real_plan = exporting.plan

    def plan_then_an_append(*a, **kw):
        p = real_plan(*a, **kw)
        log.append(logf, body("PT-9", ice=1, hours=9))  # seq 4, while the export runs
        return p

    monkeypatch.setattr(exporting, "plan", plan_then_an_append)
    out = tmp_path / "b.json"
    r = export(logf, *args, "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "--after-seq 3" in r.stderr
    text = out.read_text(encoding="utf-8")
    assert "PT-9" not in text
    tags = {t["system"].rsplit("/", 1)[-1]: t["code"] for t in json.loads(text)["meta"]["tag"]}
    assert tags["log-head"].startswith("3:")
    monkeypatch.setattr(exporting, "plan", real_plan)
    r = export(logf, *args, "--after-seq", "3")
    assert "PT-9" in r.stdout and "--after-seq 4" in r.stderr
