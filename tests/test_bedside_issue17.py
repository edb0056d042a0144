"""Issue 17: the bedside interview saves only what was measured. A test per line of the issue's
Build list, named after it (the pty tests that count keys and press Enter 30 times are in
test_assess_pty.py; the pager in test_pager.py; the palette in test_palette.py)."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from tests.helpers import body
from tests.test_assess import (
    ACCEPT, ADULT, ALERT, CRS_0, CRS_2, ICE_10, NOT_SEDATED, NOTHING_ELSE, SAME, SAVE, flat,
    records,
)

runner = CliRunner()


def interview(keys, logf, *args):
    with create_pipe_input() as inp:
        inp.send_text(keys)
        inp.close()
        with create_app_session(input=inp, output=DummyOutput()):
            return runner.invoke(app, ["assess", "--assessor", "nurse-a", "--log-file",
                                       str(logf), *args])


@pytest.fixture
def logf(tmp_path):
    return tmp_path / "assessments.jsonl"


# --- no default answer invents a finding --------------------------------------------------------

def test_enter_on_an_unanswered_ice_checklist_asks_again_and_is_never_a_score_of_0(logf):
    keys = ADULT + ALERT + "c" + "\r"  # tick mode, nothing ticked, Enter: asked again
    r = interview(keys, logf, "--patient", "PT-1", "--age", "50", "--weight", "70")
    assert r.exit_code == 130  # the keys ran out at the same question: nothing saved
    assert "that is not ICE 0" in " ".join(r.output.split())
    assert not logf.exists()


def test_a_first_assessment_is_saved_only_after_an_explicit_y(logf):
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + "\r" + "n"
    r = interview(keys, logf, "--patient", "PT-2", "--age", "50", "--weight", "70")
    assert r.exit_code == 0 and "Not saved" in r.stderr
    assert not logf.exists()


def test_keep_ice_0_is_never_a_default_of_a_reassessment(logf):
    keys = ADULT + ALERT + "t0\r" + "k" + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE  # ICE 0, grade 3
    assert interview(keys, logf, "--patient", "PT-3", "--age", "50", "--weight",
                     "70").exit_code == 0
    # the reassessment: Enter at the ICE question answers nothing (the keys run out there)
    r = interview(SAME + NOT_SEDATED + ALERT + "\r\r\r", logf, "--patient", "PT-3")
    assert r.exit_code == 130 and len(records(logf)) == 1  # Enter answered nothing


# --- carried-forward CRS ------------------------------------------------------------------------

def test_a_carried_forward_crs_asks_whether_tocilizumab_was_given_since_the_last_check(logf):
    first = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_2 + ACCEPT + SAVE
    r = interview(first, logf, "--patient", "PT-4", "--age", "50", "--weight", "80")
    assert r.exit_code == 0 and "Tocilizumab YES" in flat(r.stdout), r.stdout
    at = datetime.now().astimezone() - timedelta(hours=2)
    given, typed = at.strftime("%H:%M"), at.strftime("%Y-%m-%dT%H:%M")  # also past midnight
    again = SAME + NOT_SEDATED + ALERT + SAME + SAME + "y" + typed + "\r" + ACCEPT + SAVE
    r = interview(again, logf, "--patient", "PT-4")
    assert r.exit_code == 0, r.output
    assert "Tocilizumab given since the last check" in r.output
    out = flat(r.stdout)
    assert f"GIVEN at {given}" in out and "Tocilizumab YES" not in out
    second = records(logf)[-1]
    assert second["findings"]["crs_detail"]["tocilizumab_at"]


def test_the_last_tocilizumab_time_takes_n_for_none_and_enter_alone_answers_nothing(logf):
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + "k2" + "\r"  # Enter alone: asked again
    r = interview(keys, logf, "--patient", "PT-4b", "--age", "50", "--weight", "80")
    assert r.exit_code == 130 and not logf.exists()
    assert "Enter alone is not an answer: the time (HH:MM), n if none was given" in \
        " ".join(r.output.split())


# --- weight -------------------------------------------------------------------------------------

def test_a_weight_outside_the_growth_chart_range_for_the_age_must_be_confirmed(logf):
    keys = "150\r" + "c" + ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = interview(keys, logf, "--patient", "PT-5", "--age", "15")
    assert r.exit_code == 0, r.output
    assert "150 kg is outside the usual range for age 15" in " ".join(r.stderr.split())
    assert records(logf)[0]["findings"]["weight_kg"] == 150


def test_a_weight_in_pounds_is_converted_and_shown(logf):
    keys = "150\r" + "r" + "176 lb\r" + ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + \
        ACCEPT + SAVE
    r = interview(keys, logf, "--patient", "PT-6", "--age", "15")
    assert r.exit_code == 0, r.output
    assert "= 79.8 kg (176 lb)" in r.stderr
    assert records(logf)[0]["findings"]["weight_kg"] == 79.8


def test_a_refused_weight_is_cleared_from_the_field(logf):
    # "abc" is refused; if it stayed in the field, "70" would be typed after it and refused too
    keys = "abc\r" + "70\r" + ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = interview(keys, logf, "--patient", "PT-7", "--age", "15")
    assert r.exit_code == 0, r.output
    assert records(logf)[0]["findings"]["weight_kg"] == 70


def test_batch_weight_outside_the_range_for_the_age_is_invalid_unless_weight_confirmed(
        tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("patient_id,age_years,ice_score,weight_kg,weight_confirmed\n"
                 "PT-1,4,,35,\nPT-2,4,,35,yes\n".replace(",,", ",", 0))
    f.write_text("patient_id,age_years,capd_score,weight_kg,weight_confirmed\n"
                 "PT-1,4,3,35,\nPT-2,4,3,35,yes\n")
    r = runner.invoke(app, ["grade", str(f), "-f", "jsonl"])
    one, two = map(json.loads, r.stdout.splitlines())
    assert one["status"] == "invalid" and one["errors"][0]["column"] == "weight_kg"
    assert "weight_confirmed" in one["errors"][0]["message"]
    assert two["status"] == "graded"


# --- patient ids -------------------------------------------------------------------------------

def test_a_pseudonym_typed_another_way_is_offered_as_the_known_patient(logf):
    log.append(logf, body("PT-0042"))
    keys = "k" + SAME + NOT_SEDATED + ALERT + SAME + SAME + ACCEPT + SAVE
    r = interview(keys, logf, "--patient", "pt 0042")
    assert r.exit_code == 0, r.output
    assert "pt 0042 → PT-0042 (known)?" in r.output
    assert [x["patient_id"] for x in records(logf)] == ["PT-0042", "PT-0042"]


@pytest.mark.parametrize("pid", ["John Smith", "19650412", "1234567890"])
def test_batch_patient_ids_follow_the_interviews_rule(tmp_path, pid):
    f = tmp_path / "a.csv"
    f.write_text(f"patient_id,ice_score\n{pid},7\n")
    r = runner.invoke(app, ["grade", str(f), "-f", "jsonl"])
    (row,) = map(json.loads, r.stdout.splitlines())
    assert row["status"] == "invalid" and row["errors"][0]["column"] == "patient_id"
    assert pid not in r.stdout and pid not in r.stderr
    r = runner.invoke(app, ["grade", str(f), "-f", "jsonl", "--allow-id"])
    assert json.loads(r.stdout)["status"] == "graded"


# --- show -----------------------------------------------------------------------------------------

def test_show_patient_gives_the_patients_latest_with_its_age_and_overdue_from_now(logf):
    old = body("PT-8", ice=8)  # grade 1: next check within 8 h
    old["assessed_at"] = (datetime.now(timezone.utc) - timedelta(hours=11)).isoformat(
        timespec="seconds")
    log.append(logf, body("PT-8", ice=10))
    log.append(logf, old)
    r = runner.invoke(app, ["show", "PT-8", "--log-file", str(logf)],
                      env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    out = flat(r.stdout)
    assert "ICANS GRADE 1" in out and "(11.0 h ago)" in out
    assert "OVERDUE by 3.0 h" in out


def test_show_with_nothing_gives_the_last_record_saved_and_a_record_id_still_works(logf):
    first = log.append(logf, body("PT-9", ice=10))
    log.append(logf, body("PT-10", ice=2))
    r = runner.invoke(app, ["show", "--log-file", str(logf)])
    assert r.exit_code == 0 and "ICANS GRADE 3" in r.stdout
    r = runner.invoke(app, ["show", first["id"][:8], "--log-file", str(logf)])
    assert r.exit_code == 0 and "ICANS GRADE 0" in r.stdout
    assert "NOT THE LATEST" not in r.stdout  # PT-9 has nothing later


# --- messages -----------------------------------------------------------------------------------

def test_a_mistyped_command_is_named_back_with_the_suggestion():
    r = subprocess.run([sys.executable, "-m", "icans_cli", "histroy"], capture_output=True,
                       text=True, env=dict(os.environ))
    assert r.returncode == 2
    assert "Did you mean 'history'?" in r.stderr and "the value given" not in r.stderr
    assert "histroy" not in r.stderr  # what was typed is not repeated: it could be an id


def test_a_missing_argument_is_named_by_its_own_name():
    r = runner.invoke(app, ["history"])
    assert "Missing argument 'PATIENT'" in r.output and "the value given" not in r.output


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_no_word_is_broken_at_the_edge_of_an_80_column_screen(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    logf = tmp_path / "l.jsonl"
    log.append(logf, body("PT-1"))
    for args in (["log", "verify", "--log-file", str(logf)], ["histroy"]):
        child = pexpect.spawn(sys.executable, ["-m", "icans_cli", *args], dimensions=(24, 80),
                              env=dict(os.environ, COLUMNS="80", TERM="xterm"), timeout=30)
        child.expect(pexpect.EOF)
        child.close()
        lines = child.before.decode().replace("\r", "").split("\n")
        # a line longer than the screen is one unbreakable word (a long path) on its own
        assert all(len(line) <= 80 or len(line.split()) == 1 for line in lines), lines
        text = " ".join(lines)
        for word in ("record", "explain", "assessments.jsonl", "intact"):
            if word in " ".join(child.before.decode().split()):
                assert word in text.split() or any(word in w for w in text.split())
        assert "assessments.jso\n" not in child.before.decode().replace("\r", "")


# --- the Steroids verdict ------------------------------------------------------------------------

@pytest.mark.parametrize("ice, crs, verdict", [
    (10, 0, "NO"), (8, 0, "NO"), (5, 0, "CONSIDER"), (2, 0, "START"), (5, 1, "IF REFRACTORY"),
])
def test_the_steroids_line_leads_with_its_verdict(tmp_path, ice, crs, verdict):
    f = tmp_path / "a.csv"
    f.write_text(f"patient_id,age_years,weight_kg,ice_score,crs_grade\nPT-1,50,70,{ice},{crs}\n")
    r = runner.invoke(app, ["grade", str(f), "-f", "table"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    logf = tmp_path / "l.jsonl"
    rec = body("PT-1", ice=ice, crs=crs)
    rec["findings"]["age_years"], rec["findings"]["weight_kg"] = 50, 70
    log.append(logf, rec)
    r = runner.invoke(app, ["show", "PT-1", "--log-file", str(logf)], env={"COLUMNS": "100"})
    steroid = next(line for line in r.stdout.splitlines() if "Steroids" in line)
    assert steroid.split("Steroids", 1)[1].strip(" │┃").startswith(verdict), steroid
