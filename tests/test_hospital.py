"""Where hospitals need it: FHIR R4 export, the ward board of who is due, protocol files."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fhirclient.models.bundle import Bundle
from typer.testing import CliRunner

from icans_cli import fhir, log
from icans_cli.cli import app
from icans_cli.history import due_board
from tests.helpers import T0, body

runner = CliRunner()


def make(path, *bodies):
    return [log.append(path, b)["id"] for b in bodies]


def records(path):
    return [r for _, r in log.iter_records(path)]


# --- FHIR -----------------------------------------------------------------------------------------

def export(path, *args):
    r = runner.invoke(app, ["export", "fhir", "--log-file", str(path), *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def grade_obs(bundle_json):
    return [e["resource"] for e in bundle_json["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and e["resource"]["code"]["coding"][0]["code"] == "icans-grade"]


def test_fhir_bundle_for_a_grade_2_record_carries_g92_02_and_parses_as_r4(tmp_path):
    path = tmp_path / "l.jsonl"
    make(path, body(ice=5))
    b = export(path)
    assert b["resourceType"] == "Bundle" and b["type"] == "collection"
    parsed = Bundle(b)  # the R4 (4.0.1) models: strict, raise on anything invalid
    (obs,) = grade_obs(b)
    codes = {(c["system"], c["code"]) for c in obs["valueCodeableConcept"]["coding"]}
    assert ("http://hl7.org/fhir/sid/icd-10-cm", "G92.02") in codes
    assert obs["effectiveDateTime"] == "2026-11-27T08:00:00+00:00"
    assert obs["subject"] == {"identifier": {"system": fhir.PSEUDONYM, "value": "PT-001"}}
    assert parsed.entry[0].resource.resource_type == "QuestionnaireResponse"


def test_fhir_grade_0_has_no_icd_code_and_g92_00_is_never_grade_0(tmp_path):
    path = tmp_path / "l.jsonl"
    make(path, body(ice=10))
    (obs,) = grade_obs(export(path))
    systems = [c["system"] for c in obs["valueCodeableConcept"]["coding"]]
    assert fhir.ICD10CM not in systems
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "grade-0"


@pytest.mark.parametrize("findings,icd", [
    (dict(ice=8), "G92.01"), (dict(ice=5), "G92.02"), (dict(ice=2), "G92.03"),
    (dict(ice=None, consciousness="unarousable"), "G92.04"),
    (dict(ice=None, sedated=True, seizure="self_limited"), "G92.00"),
    (dict(ice=None, sedated=True), None),
])
def test_fhir_icd_10_cm_code_by_grade(tmp_path, findings, icd):
    path = tmp_path / "l.jsonl"
    make(path, body(**findings))
    (obs,) = grade_obs(export(path))
    got = [c["code"] for c in obs["valueCodeableConcept"]["coding"]
           if c["system"] == fhir.ICD10CM]
    assert got == ([icd] if icd else [])


def test_fhir_questionnaire_response_holds_the_ice_items_or_capd_items(tmp_path):
    from icans_cli.core.scores import IceItems

    path = tmp_path / "l.jsonl"
    make(path, body(ice=None, ice_items=IceItems(3, 2, 1, 0, 1)),
         body(patient="PT-C", ice=None, age_years=4, capd_points=(1, 1, 1, 1, 0, 0, 1, 1)))
    b = export(path)
    qrs = [e["resource"] for e in b["entry"]
           if e["resource"]["resourceType"] == "QuestionnaireResponse"]
    ice = {i["linkId"]: i["answer"][0]["valueInteger"] for i in qrs[0]["item"]}
    assert ice == {"orientation": 3, "naming": 2, "commands": 1, "writing": 0, "attention": 1,
                   "ice-total": 7}
    capd = {i["linkId"]: i["answer"][0]["valueInteger"] for i in qrs[1]["item"]}
    assert capd["capd-total"] == 6 and len(capd) == 9
    Bundle(b)


def test_fhir_amendment_is_status_amended_and_names_the_record_it_replaces(tmp_path):
    path = tmp_path / "l.jsonl"
    (old,) = make(path, body(ice=3))
    make(path, body(ice=9, amends=old))
    b = export(path)
    Bundle(b)
    first, second = grade_obs(b)
    assert first["status"] == "final" and second["status"] == "amended"
    (prov,) = [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Provenance"]
    what = prov["entity"][0]["what"]
    assert prov["entity"][0]["role"] == "revision"
    assert what["identifier"]["value"] == f"{old}/grade"
    assert what["reference"] == next(e["fullUrl"] for e in b["entry"]
                                     if e["resource"] is first)


def test_fhir_round_trips_every_record_of_a_log(tmp_path):
    from icans_cli.core.scores import IceItems

    path = tmp_path / "l.jsonl"
    ids = make(path, body(ice=10), body(ice=5, hours=4), body(ice=None, hours=8,
                                                               consciousness="unarousable"),
               body(patient="PT-2", ice=None, ice_items=IceItems(4, 3, 1, 1, 0), hours=1),
               body(patient="PT-3", ice=None, sedated=True, seizure="self_limited", hours=2),
               body(patient="PT-4", ice=None, age_years=6, capd_score=12, hours=3))
    make(path, body(ice=6, hours=4, amends=ids[1]))
    b = export(path)
    parsed = Bundle(b)
    assert len(parsed.entry) == len(b["entry"])
    back = {}
    for e in parsed.entry:
        res = e.resource
        if res.resource_type != "Observation" or res.code.coding[0].code != "icans-grade":
            continue
        rid = res.identifier[0].value.split("/")[0]
        back[rid] = (res.subject.identifier.value, res.effectiveDateTime.isostring,
                     res.valueCodeableConcept.coding[0].code, res.status)
    recs = records(path)
    assert set(back) == {r["id"] for r in recs}
    for r in recs:
        res = r["result"]
        code = (f"grade-{res['icans_grade']}" if res["status"] == "graded"
                else "not-assessable")
        assert back[r["id"]] == (r["patient_id"], r["assessed_at"], code,
                                 "amended" if r["amends"] else "final")


def test_fhir_export_filters_by_patient_and_writes_a_file(tmp_path):
    path = tmp_path / "l.jsonl"
    make(path, body(ice=5), body(patient="PT-2", ice=8))
    out = tmp_path / "pt2.fhir.json"
    r = runner.invoke(app, ["export", "fhir", "--patient", "PT-2", "-o", str(out),
                            "--log-file", str(path)])
    assert r.exit_code == 0 and "1 assessment exported" in r.stderr
    b = json.loads(out.read_text())
    assert {o["subject"]["identifier"]["value"] for o in grade_obs(b)} == {"PT-2"}


def test_fhir_export_refuses_to_overwrite_the_log(tmp_path):
    path = tmp_path / "l.jsonl"
    make(path, body())
    r = runner.invoke(app, ["export", "fhir", "-o", str(path), "--log-file", str(path)])
    assert r.exit_code == 2 and log.verify(path).problems == []


# --- the ward board -------------------------------------------------------------------------------

def board(path, now, days=7):
    return due_board(log.iter_records(path), now, days)


def test_due_board_with_a_clock_passed_in_most_overdue_first(tmp_path):
    path = tmp_path / "l.jsonl"
    # PT-A: grade 0 (12-hourly) at 08:00; PT-B: grade 2 (8-hourly) at 10:00; PT-C: grade 3
    # (ICU, 4-hourly) at 12:00; PT-D last seen 9 days ago.
    make(path, body(patient="PT-A", ice=10, crs=0), body(patient="PT-B", ice=9, hours=1),
         body(patient="PT-B", ice=5, hours=2), body(patient="PT-C", ice=2, hours=4),
         body(patient="PT-D", ice=10, hours=-9 * 24, crs=0))
    now = T0 + timedelta(hours=11)  # 19:00
    rows = board(path, now)
    assert [d.patient_id for d in rows] == ["PT-C", "PT-B", "PT-A"]
    c, b, a = rows
    assert c.overdue and c.overdue_hours == pytest.approx(3.0)  # due 16:00 (4-hourly)
    assert b.overdue and b.overdue_hours == pytest.approx(1.0)  # due 18:00 (8-hourly)
    assert not a.overdue and a.overdue_hours == pytest.approx(-1.0)  # due 20:00 (12-hourly)
    assert b.trend == "ICE 9 → 5 (worse)" and a.trend == "first assessment"
    assert board(path, now, days=30)[0].patient_id == "PT-D"  # 9 days ago: the most overdue


def test_due_board_uses_the_correction_not_the_superseded_record(tmp_path):
    path = tmp_path / "l.jsonl"
    (old,) = make(path, body(patient="PT-A", ice=2))
    make(path, body(patient="PT-A", ice=10, amends=old))
    (row,) = board(path, T0 + timedelta(hours=1))
    assert row.last.score == 10 and row.previous is None


def test_due_cli_jsonl_gives_overdue_true_or_false(tmp_path):
    path = tmp_path / "l.jsonl"
    now = datetime.now(timezone.utc)
    b1 = body(patient="PT-LATE", ice=5)
    b1["assessed_at"] = (now - timedelta(hours=10)).isoformat(timespec="seconds")
    b2 = body(patient="PT-OK", ice=10)
    b2["assessed_at"] = (now - timedelta(hours=1)).isoformat(timespec="seconds")
    make(path, b1, b2)
    r = runner.invoke(app, ["due", "-f", "jsonl", "--log-file", str(path)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["patient_id"], x["overdue"]) for x in rows] == [("PT-LATE", True),
                                                                ("PT-OK", False)]
    t = runner.invoke(app, ["due", "-f", "table", "--log-file", str(path)],
                      env={"COLUMNS": "100"})
    assert "OVERDUE" in t.stdout and "2 patients assessed in the last 7 days; 1 overdue" in \
        t.stdout


def test_due_table_fits_80_columns_with_a_not_assessable_patient(tmp_path):
    path = tmp_path / "l.jsonl"
    now = datetime.now(timezone.utc)
    bodies = [body(patient="PT-SEDATED-01", ice=5), body(patient="PT-SEDATED-01", ice=None,
                                                         sedated=True, seizure="self_limited"),
              body(patient="PT-WELL-0042", ice=10), body(patient="PT-WELL-0042", ice=7)]
    for i, b in enumerate(bodies):
        b["assessed_at"] = (now - timedelta(hours=4 - i)).isoformat(timespec="seconds")
    make(path, *bodies)
    t = runner.invoke(app, ["due", "-f", "table", "--log-file", str(path)],
                      env={"COLUMNS": "80"})
    assert t.exit_code == 0, t.output
    lines = t.stdout.splitlines()
    assert all(len(x) <= 80 for x in lines)
    assert "PT-SEDATED-01" in t.stdout and "PT-WELL-0042" in t.stdout  # never "PT-3…"
    assert "…" not in t.stdout and "(in 1.0 h)" in t.stdout  # no cell cut short
    wide = runner.invoke(app, ["due", "-f", "table", "--log-file", str(path)],
                         env={"COLUMNS": "160"}).stdout
    assert "ICE 10 → 7, worse" in wide and "ICE not taken; was grade 2" in wide
    assert "≥3, not assessable" in wide and "grade None" not in wide


def test_due_with_nobody_assessed_says_so(tmp_path):
    path = tmp_path / "l.jsonl"
    make(path, body(patient="PT-OLD", ice=10, hours=-30 * 24))
    t = runner.invoke(app, ["due", "-f", "table", "--log-file", str(path)])
    assert t.exit_code == 0 and "No patient assessed in the last 7 days" in t.stdout


# --- protocols as files ---------------------------------------------------------------------------

def asco_json():
    r = runner.invoke(app, ["protocol", "show", "asco-2021"])
    assert r.exit_code == 0
    return json.loads(r.stdout)


def ward_copy():
    """A hospital's copy of the built-in protocol: its own id, as the checker asks."""
    data = asco_json()
    data["id"] = "asco-2021-ward7"
    return data


def test_protocol_list_and_show():
    r = runner.invoke(app, ["protocol", "list"])
    assert "asco-2021  version" in r.stdout and "(default)" in r.stdout
    assert asco_json()["id"] == "asco-2021"


def test_protocol_check_accepts_the_built_ins(tmp_path):
    f = tmp_path / "ours.json"
    f.write_text(json.dumps(ward_copy()))
    r = runner.invoke(app, ["protocol", "check", str(f)])
    assert r.exit_code == 0 and r.stdout.startswith("OK: asco-2021-ward7")


def test_protocol_check_accepts_the_built_in_file_itself_unchanged():
    from pathlib import Path

    import icans_cli.protocols as protocols

    path = Path(protocols.__file__).parent / "asco-2021.json"
    r = runner.invoke(app, ["protocol", "check", str(path)])
    assert r.exit_code == 0 and r.stdout.startswith("OK: asco-2021 ")


def test_protocol_file_under_a_built_in_id_is_refused(tmp_path):
    f = tmp_path / "ours.json"
    f.write_text(json.dumps(asco_json()))
    r = runner.invoke(app, ["protocol", "check", str(f)])
    assert r.exit_code == 2
    assert "id 'asco-2021' is a built-in protocol's" in r.stderr and "its own id" in r.stderr
    r = runner.invoke(app, ["grade", "--protocol", str(f), "-f", "jsonl", "-"],
                      input="patient_id,ice_score\nPT-1,8\n")
    assert r.exit_code == 2 and "built-in protocol's" in r.stderr


def _broken(tmp_path, edit):
    data = ward_copy()
    edit(data)
    f = tmp_path / "broken.json"
    f.write_text(json.dumps(data))
    r = runner.invoke(app, ["protocol", "check", str(f)])
    assert r.exit_code == 2
    return r.stderr


def _line(data, text_start):
    return next(x for x in data["lines"] if x["text"].startswith(text_start))


def test_protocol_check_a_line_without_a_source(tmp_path):
    err = _broken(tmp_path, lambda d: _line(d, "No ICANS treatment").pop("source"))
    assert "lines[0].source: missing: every line names its source" in err


def test_protocol_check_a_dose_without_its_structure(tmp_path):
    def edit(d):
        _line(d, "No ICANS treatment")["text"] = "Dexamethasone 4 mg IV once."
    assert "states an amount as free text: a dose must be structured" in _broken(tmp_path, edit)


def test_protocol_check_an_unknown_section(tmp_path):
    def edit(d):
        _line(d, "No ICANS treatment")["section"] = "steroids"
    assert "lines[0].section: unknown section 'steroids'" in _broken(tmp_path, edit)


def test_protocol_check_a_grade_with_no_corticosteroid_line(tmp_path):
    def edit(d):
        d["lines"] = [x for x in d["lines"] if not (x["section"] == "corticosteroids"
                                                    and 0 in x["grades"])]
    assert "grade 0 has no corticosteroid line" in _broken(tmp_path, edit)


def test_protocol_check_a_fixed_adult_dose_a_child_could_see(tmp_path):
    def edit(d):
        line = next(x for x in d["lines"] if x.get("patient") == "adult" and x.get("doses"))
        line.pop("patient")
    assert "a fixed amount on a line that a child can see" in _broken(tmp_path, edit)


def test_protocol_check_a_file_that_is_not_json(tmp_path):
    f = tmp_path / "broken.json"
    f.write_text('{"id": "x",')
    r = runner.invoke(app, ["protocol", "check", str(f)])
    assert r.exit_code == 2 and "not valid JSON at line 1" in r.stderr


def test_a_protocol_file_edited_by_hand_changes_the_advice_of_grade(tmp_path):
    data = asco_json()
    line = next(x for x in data["lines"] if 3 in x["grades"] and x.get("crs") == "no"
                and x.get("first_line") == "dexamethasone")
    line["doses"]["dex"]["amount"] = 12
    data["id"], data["version"] = "ward-7", "2026.12"
    f = tmp_path / "ward7.json"
    f.write_text(json.dumps(data))
    rows = tmp_path / "in.csv"
    rows.write_text("patient_id,age_years,ice_score,crs_grade\nPT-1,50,2,0\n")
    r = runner.invoke(app, ["grade", str(rows), "-f", "jsonl", "--protocol", str(f)])
    assert r.exit_code == 0, r.output
    (o,) = [json.loads(x) for x in r.stdout.splitlines()]
    text = " ".join(x["text"] for x in o["recommendation"]["branches"][0]["lines"])
    assert "Dexamethasone 12 mg IV every 6-12 h" in text
    assert o["recommendation"]["protocol"] == "ward-7"


def test_icans_protocol_env_sets_the_default_and_the_log_records_id_version_sha(tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("ICANS_PROTOCOL", "cartox-2018")
    rows = tmp_path / "in.csv"
    rows.write_text("patient_id,ice_score\nPT-1,5\n")
    logf = tmp_path / "l.jsonl"
    r = runner.invoke(app, ["grade", str(rows), "-f", "jsonl", "--log", "--assessed-now",
                            "--log-file", str(logf), "--assessor", "s"])
    assert json.loads(r.stdout)["recommendation"]["protocol"] == "cartox-2018"
    (rec,) = records(logf)
    import hashlib

    from icans_cli.protocols import builtin_bytes

    assert rec["protocol"]["id"] == "cartox-2018" and rec["protocol"]["version"]
    assert rec["protocol"]["sha256"] == hashlib.sha256(builtin_bytes("cartox-2018")).hexdigest()


def test_a_broken_protocol_file_is_refused_by_grade_with_its_problems(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"id": "x", "version": "1", "title": "t", "sources": {},
                             "cadence": [], "lines": []}))
    rows = tmp_path / "in.csv"
    rows.write_text("patient_id,ice_score\nPT-1,5\n")
    r = runner.invoke(app, ["grade", str(rows), "--protocol", str(f)])
    assert r.exit_code == 2 and "cannot be used" in r.stderr


# --- Windows: no POSIX-only import at the top; lock and append without fcntl ----------------------

_WINDOWS_RUN = r'''
import os, sys, types
sys.modules["fcntl"] = None          # "import fcntl" now raises ImportError, as on Windows
del os.pread                         # Windows has no pread
from icans_cli import log
import icans_cli.cli, icans_cli.batchrun, icans_cli.history, icans_cli.fhir  # all import

# msvcrt only after the imports (the standard library takes its presence to mean Windows)
calls = []
msvcrt = types.ModuleType("msvcrt")
msvcrt.LK_NBLCK, msvcrt.LK_UNLCK, msvcrt.LK_LOCK = 2, 0, 1
def locking(fd, mode, nbytes):
    calls.append((os.readlink(f"/proc/self/fd/{fd}"), mode, nbytes))
msvcrt.locking = locking
sys.modules["msvcrt"] = msvcrt
log.WINDOWS = True
import icans_cli.store.jsonl as jsonl
jsonl.WINDOWS = True
from pathlib import Path
from tests.helpers import body
p = Path(sys.argv[1])
first = log.append(p, body(patient="PT-1"))
second = log.append(p, body(patient="PT-2", hours=4))
v = log.verify(p)
print(first["seq"], second["seq"], v.records, len(v.problems))
for path, mode, n in calls:
    print(os.path.basename(path), mode, n)
sys.argv = ["icans", "log", "verify", "--log-file", str(p)]
try:
    icans_cli.cli.main()
except SystemExit as exc:
    print("exit", exc.code)
'''


def test_windows_log_imports_and_appends_without_fcntl(tmp_path):
    """With fcntl gone and msvcrt in its place, the whole CLI imports, two records append and
    chain, and the lock is taken on the sibling .lock file, never on the log (a mandatory
    Windows lock on the log would make our own read of its last line fail)."""
    import subprocess
    import sys

    p = tmp_path / "assessments.jsonl"
    out = subprocess.run([sys.executable, "-c", _WINDOWS_RUN, str(p)], capture_output=True,
                         text=True, cwd=Path(__file__).parent.parent, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1 2 2 0"
    assert lines[1:5] == ["assessments.jsonl.lock 2 1", "assessments.jsonl.lock 0 1"] * 2
    assert lines[-1] == "exit 0"
    assert "fcntl" not in out.stderr


# --- the command line: -h, order, completion, help examples ---------------------------------------

def _icans(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "icans_cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_dash_h_is_help_and_exits_0():
    for args in (["-h"], ["grade", "-h"], ["protocol", "check", "-h"]):
        r = _icans(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert "Usage:" in r.stdout


def test_help_lists_commands_in_the_order_a_user_needs_them():
    r = _icans("--help")
    names = ["assess", "show", "due", "history", "grade", "export", "log", "protocol",
             "practice", "explain"]
    found = [n for n in names if f" {n} " in r.stdout]
    assert found == names
    positions = [r.stdout.index(f" {n} ") for n in names]
    assert positions == sorted(positions)


@pytest.mark.parametrize("group", [(), ("log",), ("protocol",), ("export",)])
def test_help_never_cuts_a_command_description_at_80_columns(group):
    r = runner.invoke(app, [*group, "-h"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    commands = r.stdout.split("Commands:")[1]
    assert "..." not in commands and "…" not in commands


def test_an_unknown_command_is_named_as_such_without_echoing_it():
    r = _icans("PT-SECRET-9")
    assert r.returncode == 2
    assert "No such command" in r.stderr and "Commands: assess, show" in r.stderr
    assert "PT-SECRET-9" not in r.stderr + r.stdout and "the value given" not in r.stderr


def test_completion_is_on():
    r = _icans("--help")
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout


def test_help_examples_stand_on_their_own_lines():
    r = _icans("explain", "--help")
    example_lines = [ln.strip() for ln in r.stdout.splitlines() if "icans explain " in ln]
    assert len(example_lines) >= 2
    assert all(ln.count("icans explain") == 1 for ln in example_lines)


def test_a_non_utf8_stdout_gets_question_marks_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONIOENCODING="ascii", ICANS_DATA_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "icans_cli", "explain", "ice"], env=env,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr


# --- packaging: the sdist carries what its tests need --------------------------------------------

@pytest.mark.slow
def test_the_sdist_holds_the_tests_their_data_and_the_licence(tmp_path):
    import subprocess
    import sys
    import tarfile

    root = Path(__file__).parent.parent
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
                        str(tmp_path), str(root)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "License classifiers are deprecated" not in r.stderr
    assert "`project.license` as a TOML table is deprecated" not in r.stderr
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("LICENSE", "README.md", "CHANGELOG.md", "tests/conftest.py",
                   "tests/helpers.py", "tests/core/__init__.py", "tests/data/batch_golden.csv",
                   "icans_cli/protocols/asco-2021.json", "benchmarks/bench_log.py"):
        assert needed in names, needed
