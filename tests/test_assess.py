"""Whole-flow tests of `icans assess`, keys fed through prompt_toolkit's pipe input."""

import json

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app

ENTER, DOWN, CTRL_C = "\r", "\x1b[B", "\x03"
runner = CliRunner()

# Answer fragments, in interview order.
NOT_DELAYED, NOT_SEDATED, SEDATED = "n", "n", "y"
ALERT = ENTER
ICE_10 = "a" + ENTER + "a" + ENTER + "yyy"
ICE_0 = ENTER + ENTER + "nnn"
NOTHING_ELSE = ENTER * 4  # seizure none, motor none, no ICP/edema, nothing excluded
CRS_0 = "1" + ENTER + "0" + ENTER  # "I know the grade", then the grade's own number
CRS_2 = "1" + ENTER + "2" + ENTER
CRS_UNKNOWN = "3" + ENTER
NO_PRODUCT = ENTER
ACCEPT = ENTER
SAVE = "y"


def run(keys, *args, log_file=None):
    if "--age" in args and "--weight" not in args:
        age = float(args[args.index("--age") + 1])
        args = (*args, "--weight", "70" if age >= 18 else "20")
    with create_pipe_input() as inp:
        inp.send_text(keys)
        inp.close()  # end of input after the keys: an unexpected prompt fails, never hangs
        with create_app_session(input=inp, output=DummyOutput()):
            extra = ["--log-file", str(log_file)] if log_file else []
            return runner.invoke(app, ["assess", "--assessor", "nurse-a", *extra, *args])


def records(path):
    return [r for _, r in log.iter_records(path)] if path.exists() else []


@pytest.fixture
def logf(tmp_path):
    return tmp_path / "assessments.jsonl"


def test_adult_ice_10_is_grade_0_and_saved(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-1", "--age", "45", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 0" in r.stdout
    assert "treating team decide" in r.stdout
    (rec,) = records(logf)
    assert rec["result"]["icans_grade"] == 0 and rec["result"]["ice_score"] == 10
    assert rec["findings"]["ice_items"] == {"orientation": 4, "naming": 3, "commands": 1,
                                            "writing": 1, "attention": 1}
    assert rec["source"] == "interactive" and rec["assessor"] == "nurse-a"


def test_ice_0_awake_is_grade_3(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_0 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-2", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 3" in r.stdout
    assert "grade 4 needs an unarousable patient" in r.stdout
    assert records(logf)[0]["result"]["icans_grade"] == 3


def test_unarousable_patient_asks_no_ice_and_is_grade_4(logf):
    unarousable = "4" + ENTER  # the key is the grade it gives
    keys = NOT_DELAYED + NOT_SEDATED + unarousable + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-3", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 4" in r.stdout
    assert "Methylprednisolone 1,000 mg/day" in r.stdout
    (rec,) = records(logf)
    assert rec["findings"]["ice_items"] is None and rec["result"]["ice_score"] is None
    assert rec["result"]["icans_grade"] == 4


def test_child_on_capd(logf):
    # 6-year-old: no developmental-delay question; eight CAPD items.
    capd = ("5" + ENTER) * 4 + ("3" + ENTER) * 4  # items 1-4 'always' (0), 5-8 'sometimes' (2)
    keys = NOT_SEDATED + ALERT + capd + NOTHING_ELSE + CRS_0 + NO_PRODUCT + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-4", "--age", "6", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "CAPD 8/32" in r.stdout and "ICANS GRADE 1" in r.stdout
    (rec,) = records(logf)
    assert rec["result"]["capd_score"] == 8 and rec["result"]["score_path"] == "capd"
    assert rec["findings"]["capd_items"] == [0, 0, 0, 0, 2, 2, 2, 2]


def test_sedated_patient_is_not_assessable_grade_at_least(logf):
    tactile, self_limited = "3" + ENTER, "2" + ENTER
    keys = NOT_DELAYED + SEDATED + tactile + self_limited + ENTER * 3 + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-5", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "NOT ASSESSABLE: ICANS grade at least 3" in r.stdout
    (rec,) = records(logf)
    assert rec["result"]["status"] == "not_assessable" and rec["result"]["grade_at_least"] == 3


def test_concurrent_crs_shows_tocilizumab(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_0 + NOTHING_ELSE + CRS_2 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-6", "--age", "60", log_file=logf)
    assert "tocilizumab 8 mg/kg → 560 mg at 70 kg" in r.stdout
    assert "YES, for the concurrent CRS" in r.stdout
    assert "[ASCO 2021 · protocol asco-2021]" in r.stdout


def test_isolated_icans_no_tocilizumab_and_steroids_explained(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_0 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-7", "--age", "60", log_file=logf)
    assert "tocilizumab 8 mg/kg" not in r.stdout
    assert "NO: there is no CRS" in r.stdout
    assert "Why corticosteroids" in r.stdout
    assert "Why not tocilizumab for ICANS without CRS" in r.stdout
    assert "Dexamethasone 10 mg IV every 6-12 h" in r.stdout


def test_crs_questions_exactly_6_l_min_is_low_flow(logf):
    crs_questions = "2" + ENTER + "y" + ENTER + ENTER + "2" + ENTER + "6" + ENTER
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + crs_questions \
        + NO_PRODUCT + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-8", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    (rec,) = records(logf)
    assert rec["findings"]["crs_grade"] == 2
    assert rec["findings"]["crs_detail"]["oxygen_flow_l_min"] == 6.0


def test_change_an_answer_on_the_review_screen(logf):
    # Review rows: Accept, Age, Weight, Delay, Sedated, Consciousness, Score, Seizure, ...
    to_seizure = DOWN * 7 + ENTER + "2" + ENTER
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + to_seizure + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-9", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 3" in r.stdout
    (rec,) = records(logf)
    assert rec["findings"]["seizure"] == "self_limited"
    assert rec["result"]["drivers"] == ["seizure"]


def test_ctrl_c_cancels_saves_nothing_exit_130(logf):
    logf.write_text("")
    r = run(NOT_DELAYED + NOT_SEDATED + CTRL_C, "--patient", "PT-10", "--age", "60",
            log_file=logf)
    assert r.exit_code == 130
    assert "cancelled: nothing was saved" in r.stderr
    assert logf.read_text() == ""


def test_end_of_input_cancels_like_ctrl_c(logf):
    r = run(NOT_DELAYED, "--patient", "PT-11", "--age", "60", log_file=logf)
    assert r.exit_code == 130
    assert records(logf) == []


def test_declining_to_save_saves_nothing(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + "n"
    r = run(keys, "--patient", "PT-12", "--age", "60", log_file=logf)
    assert r.exit_code == 0 and "Not saved" in r.stderr
    assert records(logf) == []


def test_no_save_option(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT + ACCEPT
    r = run(keys, "--patient", "PT-13", "--age", "60", "--no-save", log_file=logf)
    assert r.exit_code == 0 and "nothing was saved" in r.stderr
    assert records(logf) == []


def test_json_prints_saved_record_on_stdout(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-14", "--age", "60", "--json", log_file=logf)
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["patient_id"] == "PT-14" and rec["result"]["icans_grade"] == 0
    assert "ICANS GRADE 0" in r.stderr


def test_previous_assessment_shown_and_fall_flagged(logf):
    first = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    assert run(first, "--patient", "PT-15", "--age", "60", log_file=logf).exit_code == 0
    second = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_0 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(second, "--patient", "PT-15", "--age", "60", log_file=logf)
    assert "Last assessment:" in r.stderr and "ICE 10, grade 0" in r.stderr
    assert "ICE FELL 10 -> 0" in r.stdout and "GRADE ROSE 0 -> 3" in r.stdout


def test_amends_starts_from_record_and_saves_correction(logf):
    first = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_0 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    assert run(first, "--patient", "PT-16", "--age", "60", log_file=logf).exit_code == 0
    old = records(logf)[0]
    fix_score = DOWN * 6 + ENTER + ICE_10  # change the ICE answers
    r = run(fix_score + ACCEPT + SAVE, "--amends", old["id"][:8], log_file=logf)
    assert r.exit_code == 0, r.output
    new = records(logf)[1]
    assert new["amends"] == old["id"] and new["source"] == "amendment"
    assert new["patient_id"] == "PT-16" and new["result"]["icans_grade"] == 0


def test_patient_pseudonym_asked_and_validated(logf):
    keys = ("x" * 70) + ENTER + "\x7f" * 70 + "PT-17" + ENTER + "60" + ENTER + ENTER + NOT_DELAYED \
        + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT + ACCEPT + SAVE
    r = run(keys, log_file=logf)
    assert r.exit_code == 0, r.output
    assert records(logf)[0]["patient_id"] == "PT-17"


def test_refuses_without_a_terminal_and_points_to_grade(logf):
    r = runner.invoke(app, ["assess", "--patient", "PT-18", "--log-file", str(logf)])
    assert r.exit_code == 2
    assert "icans grade" in r.stderr


def test_output_without_terminal_has_no_escape_codes(logf):
    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_0 + NOTHING_ELSE + CRS_2 + NO_PRODUCT \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-19", "--age", "60", log_file=logf)
    assert r.exit_code == 0
    assert "\x1b[" not in r.stdout and "\x1b[" not in r.stderr


def test_log_file_mode_0600(logf):
    import stat

    keys = NOT_DELAYED + NOT_SEDATED + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + NO_PRODUCT \
        + ACCEPT + SAVE
    run(keys, "--patient", "PT-20", "--age", "60", log_file=logf)
    assert stat.S_IMODE(logf.stat().st_mode) == 0o600


def test_amending_a_batch_record_with_only_a_total_asks_the_items_again(logf):
    from icans_cli import log as _log
    from tests.helpers import body

    old = _log.append(logf, body(patient="PT-21", ice=4))
    keys = ICE_10 + ACCEPT + SAVE
    r = run(keys, "--amends", old["id"], log_file=logf)
    assert r.exit_code == 0, r.output
    new = records(logf)[1]
    assert new["amends"] == old["id"] and new["result"]["ice_score"] == 10
    assert "answer the items again" in r.stderr
