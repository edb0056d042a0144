"""Whole-flow tests of `icans assess`, keys fed through prompt_toolkit's pipe input."""

import json

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from tests.helpers import POSIX_ONLY  # noqa: E402

ENTER, DOWN, CTRL_C, CTRL_D = "\r", "\x1b[B", "\x03", "\x04"
runner = CliRunner()

# Answer fragments, in interview order (age and weight come from options here). Every
# question takes one key of its own; Enter alone answers nothing.
NOT_DELAYED, NOT_SEDATED, SEDATED = "n", "n", "y"
NO_PRODUCT = "n"  # "not recorded"
AXI_CEL = "a"
ALERT = "0"
ICE_10 = "c" + "a" + ENTER  # tick the tasks: "a" marks all ten, Enter is done
ICE_0_APHASIA = "t" + "0" + ENTER + "k"  # the total typed, then "global aphasia: keep"
NOTHING_ELSE = "0" + "0" + "n" + "n"  # no seizure, no motor, no ICP/edema, nothing excluded
CRS_0 = "k" + "0"  # "I know the grade", then the grade's own number
CRS_2 = "k" + "2" + "n" + ENTER  # ... and no tocilizumab given yet ("n": Enter alone is no answer)
CRS_UNKNOWN = "u"
ACCEPT = "a"
SAVE = "y"
SAME = "s"
ADULT = NOT_DELAYED + NO_PRODUCT + NOT_SEDATED  # the opening of an adult's first interview


def run(keys, *args, log_file=None):
    if "--age" in args and "--weight" not in args:
        age = float(args[args.index("--age") + 1])
        args = (*args, "--weight", "70" if age >= 18 else "20" if age >= 3 else "10")
    with create_pipe_input() as inp:
        inp.send_text(keys)
        inp.close()  # end of input after the keys: an unexpected prompt fails, never hangs
        with create_app_session(input=inp, output=DummyOutput()):
            extra = ["--log-file", str(log_file)] if log_file else []
            return runner.invoke(app, ["assess", "--assessor", "nurse-a", *extra, *args])


def flat(text):
    """The words of a wrapped screen, one space apart (to find a phrase across a wrap)."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


def records(path):
    return [r for _, r in log.iter_records(path)] if path.exists() else []


@pytest.fixture
def logf(tmp_path):
    return tmp_path / "assessments.jsonl"


def test_adult_ice_10_is_grade_0_and_saved(logf):
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-1", "--age", "45", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 0" in r.stdout
    assert "treating team decide" in r.stdout
    (rec,) = records(logf)
    assert rec["result"]["icans_grade"] == 0 and rec["result"]["ice_score"] == 10
    assert rec["findings"]["ice_items"] == {"orientation": 4, "naming": 3, "commands": 1,
                                            "writing": 1, "attention": 1}
    assert rec["findings"]["weight_kg"] == 70
    assert rec["source"] == "interactive" and rec["assessor"] == "nurse-a"


def test_ice_0_awake_is_grade_3_after_confirming_global_aphasia(logf):
    keys = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-2", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 3" in r.stdout
    assert records(logf)[0]["result"]["icans_grade"] == 3


def test_ice_0_awake_answers_not_entered_goes_back_to_the_ice(logf):
    not_entered = "t" + "0" + ENTER + "m" + ICE_10  # ICE 0 typed; "not what was seen: again"
    keys = ADULT + ALERT + not_entered + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-2b", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert records(logf)[0]["result"]["ice_score"] == 10


def test_unarousable_patient_asks_no_ice_and_is_grade_4(logf):
    unarousable = "4"  # the key is the grade it gives
    keys = ADULT + unarousable + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-3", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 4" in r.stdout
    assert "Steroids     START: methylprednisolone 1,000 mg/day" in r.stdout
    assert records(logf)[0]["result"]["ice_score"] is None  # not taken, never 0


def test_child_on_capd_with_lettered_answers(logf):
    # 6-year-old: no developmental-delay question; eight CAPD items answered by letter.
    capd = "a" * 4 + "s" * 4  # items 1-4 'always' (0), 5-8 'sometimes' (2)
    keys = NO_PRODUCT + NOT_SEDATED + ALERT + capd + "4" + ENTER + NOTHING_ELSE + CRS_0 \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-4", "--age", "6", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "CAPD 8/32" in r.stdout and "ICANS GRADE 1" in r.stdout
    (rec,) = records(logf)
    assert rec["result"]["capd_score"] == 8 and rec["result"]["score_path"] == "capd"
    assert rec["findings"]["capd_items"] == [0, 0, 0, 0, 2, 2, 2, 2]
    assert rec["findings"]["capd_baseline"] == 4 and rec["findings"]["weight_kg"] == 20


def test_toddler_sees_only_the_anchors_for_their_own_age_band(logf):
    capd = "a" * 4 + "n" * 4
    keys = NO_PRODUCT + NOT_SEDATED + ALERT + capd + ENTER + NOTHING_ELSE + CRS_0 + ACCEPT \
        + SAVE  # (Enter: no CAPD baseline documented)
    r = run(keys, "--patient", "PT-4b", "--age", "1.5", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "Usual at 1-2 years: holds gaze" in r.output
    assert "newborn-8 weeks" not in r.output and "around 28 weeks" not in r.output


def test_child_weight_is_required_and_the_message_is_beside_the_prompt(logf):
    keys = "6" + ENTER + ENTER + "20" + ENTER + NO_PRODUCT + NOT_SEDATED + "4" \
        + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-4c", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "Under 18 the weight is needed" in r.output
    assert records(logf)[0]["findings"]["weight_kg"] == 20


def test_sedated_patient_is_not_assessable_and_never_all_clear(logf):
    tactile, self_limited = "3", "3"
    keys = NOT_DELAYED + NO_PRODUCT + SEDATED + tactile + self_limited + "0" + "n" + "n" \
        + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-5", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "NOT ASSESSABLE: ICANS grade at least 3" in r.stdout
    assert 'Not "all clear"' in flat(r.stdout)
    (rec,) = records(logf)
    assert rec["result"]["status"] == "not_assessable" and rec["result"]["grade_at_least"] == 3


def test_not_assessable_shows_the_last_assessable_grade_from_the_log(logf):
    first = ADULT + "4" + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    assert run(first, "--patient", "PT-5b", "--age", "60", log_file=logf).exit_code == 0
    # reassess: details kept, now sedated (propofol), consciousness unarousable, the rest same
    second = SAME + SEDATED + "4" + SAME + ACCEPT + SAVE
    r = run(second, "--patient", "PT-5b", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "last assessable grade 4" in flat(r.stdout)
    assert "ICU neuro checks; by " in flat(r.stdout)


def test_intubation_is_not_offered_as_another_cause(logf):
    from icans_cli.interview import SEDATION_QUESTION

    assert "sedating drug or another illness" in SEDATION_QUESTION
    assert "intubat" not in SEDATION_QUESTION.lower()
    r = run(ADULT, "--patient", "PT-5c", "--age", "60", log_file=logf)
    assert "Intubation alone is not a cause" in r.output


def test_concurrent_crs_shows_tocilizumab_with_computed_dose(logf):
    keys = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + CRS_2 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-6", "--age", "60", log_file=logf)
    out = flat(r.stdout)
    assert "YES, for the CRS: tocilizumab 8 mg/kg → 560 mg, IV" in out
    assert "protocol asco-2021" in out and "[ASCO 2021]" in out


def test_isolated_icans_summary_says_no_tocilizumab_and_gives_the_steroid(logf):
    keys = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-7", "--age", "60", log_file=logf)
    assert "tocilizumab 8 mg/kg" not in r.stdout
    assert "NO: no CRS, and it does not treat ICANS" in r.stdout
    assert "START: dexamethasone 10 mg IV every 6-12 h" in flat(r.stdout)
    assert "Why corticosteroids" not in r.stdout  # the rationale is one key away


def test_details_one_key_away_then_the_summary_again(logf):
    keys = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + CRS_0 + ACCEPT + "d" + SAVE
    r = run(keys, "--patient", "PT-7b", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Why corticosteroids" in out and "Why not tocilizumab for ICANS without CRS" in out
    assert out.rindex("ICANS GRADE 3") > out.index("Why corticosteroids")  # summary re-shown
    assert len(records(logf)) == 1


def test_full_option_prints_the_details(logf):
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-7c", "--age", "60", "--full", log_file=logf)
    assert "Domains (ASTCT 2019)" in r.stdout and "Why this grade" in r.stdout


def test_crs_questions_exactly_6_l_min_is_low_flow(logf):
    crs_questions = "w" + "y" + "n" + "n" + "c" + "6" + ENTER  # fever; nothing given yet;
    # no hypotension; nasal cannula at 6 L/min
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + crs_questions + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-8", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    (rec,) = records(logf)
    assert rec["findings"]["crs_grade"] == 2
    assert rec["findings"]["crs_detail"]["oxygen_flow_l_min"] == 6.0


def test_crs_questions_treated_without_hypotension_or_hypoxia_is_controlled(logf):
    tocilizumab_given = "m" + " " + ENTER  # mark them: Space marks the first (tocilizumab)
    crs_questions = "w" + "n" + tocilizumab_given + "n" + "n" \
        + "u" + ENTER  # no hypotension, no oxygen; when: not known (u)
    keys = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + crs_questions + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-8b", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "CRS controlled after treatment" in r.stdout
    assert "NO: CRS controlled after treatment, and it does not treat ICANS" in flat(r.stdout)
    (rec,) = records(logf)
    assert rec["findings"]["crs_detail"]["controlled"] is True
    assert rec["recommendation"]["crs"] == "controlled"


def test_change_an_answer_on_the_review_screen_by_the_grade_key(logf):
    # Review lines: 1 Age, 2 Weight, 3 Delay, 4 Product, 5 Another cause, 6 Consciousness,
    # 7 ICE, 8 Seizure, ...
    to_seizure = "8" + "3"
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + to_seizure + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-9", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "ICANS GRADE 3" in r.stdout
    (rec,) = records(logf)
    assert rec["findings"]["seizure"] == "self_limited"
    assert rec["result"]["drivers"] == ["seizure"]


def test_ctrl_c_cancels_saves_nothing_exit_130(logf):
    logf.write_text("")
    r = run(NOT_DELAYED + NO_PRODUCT + CTRL_C, "--patient", "PT-10", "--age", "60",
            log_file=logf)
    assert r.exit_code == 130
    assert "cancelled: nothing was saved" in r.stderr
    assert logf.read_text() == ""


@pytest.mark.parametrize("where", ["select", "yes/no", "checklist", "text", "text typed in"])
def test_ctrl_d_exits_like_ctrl_c_at_every_kind_of_prompt(logf, where):
    keys = {"select": NOT_DELAYED + CTRL_D, "yes/no": CTRL_D,
            "checklist": ADULT + ALERT + "c" + CTRL_D, "text": CTRL_D,
            "text typed in": "6" + CTRL_D}[where]
    args = (("--patient", "PT-11") if where.startswith("text")
            else ("--patient", "PT-11", "--age", "60"))
    r = run(keys, *args, log_file=logf)
    assert r.exit_code == 130, r.output
    assert records(logf) == []


def test_ctrl_d_ends_a_text_prompt_even_with_text_typed_in():
    from icans_cli.interview import _text

    with create_pipe_input() as inp:
        inp.send_text("6" + CTRL_D + "x" + ENTER)  # without the binding: "6x"
        with create_app_session(input=inp, output=DummyOutput()):
            with pytest.raises(EOFError):
                _text("Age in years")


def test_end_of_input_cancels_like_ctrl_c(logf):
    r = run(NOT_DELAYED, "--patient", "PT-11b", "--age", "60", log_file=logf)
    assert r.exit_code == 130
    assert records(logf) == []


def test_declining_to_save_saves_nothing(logf):
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + "n"
    r = run(keys, "--patient", "PT-12", "--age", "60", log_file=logf)
    assert r.exit_code == 0 and "Not saved" in r.stderr
    assert records(logf) == []


def test_no_save_option_keeps_the_details_one_key_away(logf):
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + "d" + "q"
    r = run(keys, "--patient", "PT-13", "--age", "60", "--no-save", log_file=logf)
    assert r.exit_code == 0 and "nothing was saved" in r.stderr
    assert "Domains (ASTCT 2019)" in r.stdout  # d showed the details
    assert records(logf) == []


def test_json_prints_saved_record_on_stdout(logf):
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-14", "--age", "60", "--json", log_file=logf)
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["patient_id"] == "PT-14" and rec["result"]["icans_grade"] == 0
    assert "ICANS GRADE 0" in r.stderr


def test_known_patient_routine_reassessment_in_seven_keys(logf):
    first = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    assert run(first, "--patient", "PT-15", "--age", "60", log_file=logf).exit_code == 0
    # details the same, not sedated, alert, ICE the same as last time, the rest the same,
    # accept, save: each its own key
    again = SAME + NOT_SEDATED + ALERT + SAME + SAME + ACCEPT + SAVE
    assert len(again) == 7
    r = run(again, "--patient", "PT-15", log_file=logf)
    assert r.exit_code == 0, r.output
    assert "Age in years" not in r.output  # age, weight and product came from the log
    first_rec, second = records(logf)
    assert second["findings"]["age_years"] == 60 and second["findings"]["weight_kg"] == 70
    assert second["result"]["icans_grade"] == 0
    assert "no fall in score or rise in grade" in r.stdout


def test_previous_assessment_shown_and_fall_flagged(logf):
    first = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    assert run(first, "--patient", "PT-15b", "--age", "60", log_file=logf).exit_code == 0
    second = SAME + NOT_SEDATED + ALERT + ICE_0_APHASIA + SAME + ACCEPT + SAVE
    r = run(second, "--patient", "PT-15b", log_file=logf)
    assert "Last assessment:" in r.stderr and "ICE 10, grade 0" in r.stderr
    out = flat(r.stdout)
    assert "ICE 10 → ICE 0, grade 0 → 3 since" in out and ": WORSE" in out
    assert "* differs from the last assessment" in r.output


def test_known_patient_other_findings_can_be_changed(logf):
    first = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    assert run(first, "--patient", "PT-15c", "--age", "60", log_file=logf).exit_code == 0
    changed = "c" + "3" + "0" + "n" + "n" + CRS_0  # not the same: self-limited seizure
    again = SAME + NOT_SEDATED + ALERT + ICE_10 + changed + ACCEPT + SAVE
    r = run(again, "--patient", "PT-15c", log_file=logf)
    assert r.exit_code == 0, r.output
    assert records(logf)[1]["findings"]["seizure"] == "self_limited"


def test_amends_keeps_the_original_time_and_saves_a_correction(logf):
    first = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    assert run(first, "--patient", "PT-16", "--age", "60", log_file=logf).exit_code == 0
    old = records(logf)[0]
    # Review lines: 1 Assessed at, 2 Age, 3 Weight, 4 Delay, 5 Product, 6 Another cause,
    # 7 Consciousness, 8 ICE ...
    fix_score = "8" + ICE_10
    r = run(fix_score + ACCEPT + SAVE, "--amends", old["id"][:8], log_file=logf)
    assert r.exit_code == 0, r.output
    new = records(logf)[1]
    assert new["amends"] == old["id"] and new["source"] == "amendment"
    assert new["patient_id"] == "PT-16" and new["result"]["icans_grade"] == 0
    assert new["assessed_at"] == old["assessed_at"]
    assert "* differs from the record being corrected" in r.output


def test_amends_with_nothing_changed_says_so_before_saving(logf):
    first = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    assert run(first, "--patient", "PT-16b", "--age", "60", log_file=logf).exit_code == 0
    old = records(logf)[0]
    r = run(ACCEPT + "n", "--amends", old["id"], log_file=logf)
    assert r.exit_code == 0, r.output
    assert "Nothing changed from the record being corrected" in r.output
    assert len(records(logf)) == 1


def test_patient_pseudonym_asked_and_validated(logf):
    keys = ("x" * 70) + ENTER + "\x7f" * 70 + "PT-17" + ENTER + "60" + ENTER + ENTER \
        + ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, log_file=logf)
    assert r.exit_code == 0, r.output
    assert records(logf)[0]["patient_id"] == "PT-17"


@pytest.mark.parametrize("typed", ["John Smith", "12345678", "1970-01-02"])
def test_pseudonym_that_looks_identifying_is_warned_and_asked_again_blank(logf, typed):
    # asked again with a blank line: what looked like a name is not left on the screen
    keys = typed + ENTER + "PT-17b" + ENTER + "60" + ENTER + ENTER \
        + ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, log_file=logf)
    assert r.exit_code == 0, r.output
    assert "never a name, record number or birth date" in r.output
    assert records(logf)[0]["patient_id"] == "PT-17b"


def test_identifying_patient_option_is_refused_unless_allowed(logf):
    r = run("", "--patient", "John Smith", "--age", "60", log_file=logf)
    assert r.exit_code == 2 and "looks like a person's name" in r.stderr
    assert "John Smith" not in r.stderr
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    ok = run(keys, "--patient", "12345678", "--age", "60", "--allow-id", log_file=logf)
    assert ok.exit_code == 0, ok.output


def test_refuses_without_a_terminal_and_points_to_grade(logf):
    r = runner.invoke(app, ["assess", "--patient", "PT-18", "--log-file", str(logf)])
    assert r.exit_code == 2
    assert "icans grade" in r.stderr


def test_output_without_terminal_has_no_escape_codes(logf):
    keys = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + CRS_2 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-19", "--age", "60", log_file=logf)
    assert r.exit_code == 0
    assert "\x1b[" not in r.stdout and "\x1b[" not in r.stderr


@POSIX_ONLY
def test_log_file_mode_0600(logf):
    import stat

    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    run(keys, "--patient", "PT-20", "--age", "60", log_file=logf)
    assert stat.S_IMODE(logf.stat().st_mode) == 0o600


def test_amending_a_batch_record_with_only_a_total_starts_from_that_total(logf):
    from icans_cli import interview as iv
    from icans_cli import log as _log
    from tests.helpers import body

    old = _log.append(logf, body(patient="PT-21", ice=4))
    a = iv.Answers.from_record(old)
    a.assessed_at = old["assessed_at"]  # a correction shows its time first
    assert a.ice_total == 4 and iv.describe(a, "score") == "ICE 4/10 (the total)"
    rows = [k for k, _, _, applies in iv.QUESTIONS if applies(a)]
    to_ice = iv.REVIEW_KEYS[rows.index("score")]
    keys = to_ice + "t" + "10" + ENTER + ACCEPT + SAVE
    r = run(keys, "--amends", old["id"], log_file=logf)
    assert r.exit_code == 0, r.output
    new = records(logf)[1]
    assert new["amends"] == old["id"] and new["result"]["ice_score"] == 10


def test_capd_all_eight_the_same_answer_is_questioned_and_asked_again(logf):
    # Enter pressed through the eight items answers none of them (and says so); one answer
    # for all eight is questioned, and "m" answers the items again.
    through = ENTER * 8
    never = "n" * 8  # 'Never' throughout: items 1-4 score 4, 5-8 score 0
    capd = "a" * 4 + "n" * 4  # a well child: CAPD 0
    keys = NO_PRODUCT + NOT_SEDATED + ALERT + through + never + "m" + capd + ENTER \
        + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-4c", "--age", "6", log_file=logf)
    assert r.exit_code == 0, r.output
    (rec,) = records(logf)  # 16 had it not been asked again
    assert rec["result"]["capd_score"] == 0 and rec["result"]["icans_grade"] == 0


def test_capd_all_eight_the_same_can_be_kept(logf):
    capd = "s" * 8  # 'Sometimes' throughout: 2 points each
    keys = NO_PRODUCT + NOT_SEDATED + ALERT + capd + "k" + ENTER + NOTHING_ELSE \
        + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-4d", "--age", "6", log_file=logf)
    assert r.exit_code == 0, r.output
    (rec,) = records(logf)
    assert rec["result"]["capd_score"] == 16 and rec["result"]["icans_grade"] == 3


def test_capd_last_time_shown_only_for_a_logged_last_time(logf, monkeypatch):
    """Beside a question, "(last time: ...)" is the patient's answer at the last logged
    assessment: never for a new patient (the all-eight-the-same question showed "last time:
    Not what I saw" to one), never an answer given earlier in the same interview."""
    from icans_cli import interview

    shown = []
    real = interview._choose

    def choose(message, options, last=None, *args, **kwargs):
        shown.append((message, last))
        return real(message, options, last, *args, **kwargs)

    monkeypatch.setattr(interview, "_choose", choose)
    capd = "s" * 8
    keys = NO_PRODUCT + NOT_SEDATED + ALERT + capd + "m" + capd + "k" + ENTER + NOTHING_ELSE \
        + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-4e", "--age", "6", log_file=logf)
    assert r.exit_code == 0, r.output
    capd_questions = [(m, last) for m, last in shown if m.startswith(("CAPD item", "One answer"))]
    assert len(capd_questions) == 18  # eight, the question, eight again, the question again
    assert all(last is None for _, last in capd_questions), capd_questions


def test_assessed_at_records_a_late_entry_at_the_time_it_was_done(logf):
    from datetime import datetime, timedelta, timezone

    done = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(microsecond=0)
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-LATE", "--age", "60", "--assessed-at", done.isoformat(),
            log_file=logf)
    assert r.exit_code == 0, r.output
    assert "Entered later: assessed at" in r.output
    (rec,) = records(logf)
    assert datetime.fromisoformat(rec["assessed_at"]) == done
    assert datetime.fromisoformat(rec["recorded_at"]) > done + timedelta(hours=2)


def test_assessed_at_compares_with_the_assessment_before_it_not_a_later_one(logf):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc).replace(microsecond=0)
    first = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    assert run(first, "--patient", "PT-LATE2", "--age", "60", "--assessed-at",
               (now - timedelta(hours=6)).isoformat(), log_file=logf).exit_code == 0
    again = SAME + NOT_SEDATED + ALERT + ICE_10 + SAME + ACCEPT + SAVE
    assert run(again, "--patient", "PT-LATE2", log_file=logf).exit_code == 0  # now: later
    # entered late, done 3 h ago: the "last assessment" is the one of 6 h ago
    r = run(again, "--patient", "PT-LATE2", "--assessed-at", (now - timedelta(hours=3)).isoformat(), log_file=logf)
    assert r.exit_code == 0, r.output
    when = (now - timedelta(hours=6)).astimezone().strftime("%Y-%m-%d %H:%M")
    assert f"Last assessment: {when}" in r.output


@pytest.mark.parametrize("value, message", [
    ("23:99", "is not a time of day"),
    ("2099-01-01T00:00", "is in the future"),
    ("2020-01-01T00:00", "more than 24 hours ago"),
])
def test_assessed_at_that_cannot_be_used_is_refused_before_the_interview(logf, value, message):
    r = run("", "--patient", "PT-LATE3", "--age", "60", "--assessed-at", value, log_file=logf)
    assert r.exit_code == 2 and message in r.stderr
    assert "Traceback" not in r.output


def test_assessed_at_with_amends_is_refused(logf):
    r = run("", "--amends", "abcd1234", "--assessed-at", "00:00", log_file=logf)
    assert r.exit_code == 2 and "a correction keeps the original time" in r.stderr


def test_enter_after_details_does_not_save_unseen(logf):
    # "d" then Enter out of habit: the Enter is ignored once the details are shown; n answers
    keys = ADULT + ALERT + ICE_10 + NOTHING_ELSE + CRS_0 + ACCEPT + "d" + ENTER + "n"
    r = run(keys, "--patient", "PT-D1", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    assert records(logf) == [] and "Not saved." in r.output


def test_y_then_enter_at_a_yes_no_question_never_answers_the_next_question(logf):
    # sedation: "y" + Enter is one answer; the next question (consciousness) is still asked
    keys = NOT_DELAYED + NO_PRODUCT + "y" + ENTER + "2" + NOTHING_ELSE + CRS_0 \
        + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-D2", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    (rec,) = records(logf)
    assert rec["findings"]["sedated"] is True and rec["findings"]["consciousness"] == "voice"


def test_tocilizumab_given_3_h_ago_is_not_offered_again_now(logf):
    from datetime import datetime, timedelta, timezone

    given = (datetime.now(timezone.utc) - timedelta(hours=3)).astimezone()
    crs = "k" + "2" + given.strftime("%H:%M") + ENTER
    if given.date() != datetime.now().astimezone().date():  # just after midnight
        crs = "k" + "2" + given.strftime("%Y-%m-%dT%H:%M") + ENTER
    keys = ADULT + ALERT + ICE_0_APHASIA + NOTHING_ELSE + crs + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-TZ", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    out = flat(r.stdout)
    due = (given + timedelta(hours=8)).strftime("%H:%M")
    assert f"Tocilizumab GIVEN at {given:%H:%M}" in out
    assert f"repeat only if no improvement, from {due}: tocilizumab 8 mg/kg → 560 mg" in out
    assert "YES, for the CRS" not in out
    (rec,) = records(logf)
    assert rec["findings"]["crs_detail"]["tocilizumab_at"].startswith(
        given.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M"))


def test_the_ice_tasks_marked_are_kept_so_a_correction_starts_from_the_same_marks(logf):
    from icans_cli.interview import Answers

    city_and_hospital = "c" + DOWN + DOWN + " " + DOWN + " " + ENTER  # ICE 2
    keys = ADULT + ALERT + city_and_hospital + NOTHING_ELSE + CRS_0 + ACCEPT + SAVE
    r = run(keys, "--patient", "PT-IT", "--age", "60", log_file=logf)
    assert r.exit_code == 0, r.output
    (rec,) = records(logf)
    assert rec["findings"]["ice_tasks"] == ["orientation: City", "orientation: Hospital"]
    assert rec["result"]["ice_score"] == 2
    assert Answers.from_record(rec).ice == [2, 3]  # not Year and Month, as counts alone gave
    rec["findings"]["ice_tasks"] = ["naming: Names object 1 (e.g. clock)"]  # counts disagree
    assert Answers.from_record(rec).ice == [0, 1]
