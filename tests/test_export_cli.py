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
