import json
import re
from collections import Counter

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from typer.testing import CliRunner

from icans_cli.cli import app
from icans_cli.core.agreement import confusion_matrix, linear_weighted_kappa
from icans_cli.practice import load_cases
from icans_cli.practice.quiz import pick_cases
from icans_cli.protocols import load

ENTER = "\r"
runner = CliRunner()


@pytest.fixture(scope="module")
def keyed():
    p = load()
    return [(c, c.key(p)) for c in load_cases()]


def test_every_case_grades_without_error(keyed):
    assert len(keyed) >= 40
    assert len({c.id for c, _ in keyed}) == len(keyed)


def test_coverage_each_grade_at_least_5_times(keyed):
    grades = Counter(k.grade for _, k in keyed if k.grade is not None)
    assert all(grades[g] >= 5 for g in range(5)), grades


def test_coverage_each_domain_sole_driver_at_least_twice(keyed):
    sole = Counter(k.drivers[0] for _, k in keyed if len(k.drivers) == 1)
    for domain in ("ice", "capd", "consciousness", "seizure", "motor", "icp_edema"):
        assert sole[domain] >= 2, (domain, sole)


def test_coverage_children_on_capd(keyed):
    kids = [c for c, k in keyed if k.score_path == "capd" and c.age is not None and c.age < 18]
    assert len(kids) >= 8
    assert sum(1 for c in kids if c.age <= 2) >= 2


def test_coverage_sedated_excluded_and_crs_branches(keyed):
    assert sum(1 for c, _ in keyed if c.findings.sedated) >= 3
    assert sum(1 for c, _ in keyed if c.findings.excluded) >= 3
    assert sum(1 for _, k in keyed if k.tocilizumab) >= 4
    isolated = [k for _, k in keyed if k.crs_grade == 0 and k.result.effective_grade >= 1]
    assert len(isolated) >= 4 and not any(k.tocilizumab for k in isolated)


def test_every_peer_bug_is_a_trap(keyed):
    traps = {c.trap for c, _ in keyed if c.trap}
    assert traps >= {"ICE 10 graded 1", "ICE 0 always graded 4", "focal edema graded 4",
                     "tremor counted", "exactly 6 L/min called high-flow"}
    by_trap = {c.trap: k for c, k in keyed if c.trap}
    assert by_trap["ICE 10 graded 1"].grade == 0
    assert by_trap["ICE 0 always graded 4"].grade == 3
    assert by_trap["focal edema graded 4"].grade == 3
    assert by_trap["tremor counted"].grade == 0
    assert by_trap["exactly 6 L/min called high-flow"].crs_grade == 2


def test_teaching_point_agrees_with_the_computed_grade(keyed):
    for c, k in keyed:
        if k.grade is None:
            assert "not assessable" in c.teaching, c.id
            assert f"grade {k.grade_at_least}" in c.teaching, c.id
        else:
            assert re.search(rf"grade {k.grade}\b", c.teaching), (c.id, k.grade)


def test_weighted_kappa_hand_computed_example():
    # key    : 0 1 2 3 4 ; answers: 0 1 3 3 4 -> one cell off by one.
    # n=5, linear weights w = 1 - |i-j|/4. po = (4*1 + 0.75)/5 = 0.95.
    # marginals: key 0.2 each; answers 0.2,0.2,0,0.4,0.2.
    # pe = sum_i sum_j w_ij * 0.2 * col_j = 0.2 * sum_j col_j * (sum_i w_ij)
    #   sum_i w_ij for j=0..4: 2.5, 3.25, 3.5, 3.25, 2.5
    #   pe = 0.2 * (0.2*2.5 + 0.2*3.25 + 0 + 0.4*3.25 + 0.2*2.5) = 0.2 * 2.95 = 0.59
    # kappa = (0.95 - 0.59) / (1 - 0.59) = 0.36 / 0.41 = 0.878...
    k = linear_weighted_kappa([0, 1, 2, 3, 4], [0, 1, 3, 3, 4], 5)
    assert k == pytest.approx(0.36 / 0.41)


def test_kappa_perfect_and_undefined():
    assert linear_weighted_kappa([0, 2, 4], [0, 2, 4], 5) == pytest.approx(1.0)
    assert linear_weighted_kappa([2, 2], [2, 2], 5) is None
    assert linear_weighted_kappa([], [], 5) is None


def test_confusion_matrix_rows_key_columns_answer():
    m = confusion_matrix([0, 1, 1], [0, 2, 1], 3)
    assert m == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]


def practice(keys, *args):
    with create_pipe_input() as inp:
        inp.send_text(keys)
        inp.close()
        with create_app_session(input=inp, output=DummyOutput()):
            return runner.invoke(app, ["practice", "--trainee", "res-1", *args])


# A15: ICE 0 awake -> grade 3, dexamethasone, no tocilizumab. Letters pick choices; a number
# is always the grade.
A15_RIGHT = "i" + ENTER + "0" + ENTER + "3" + ENTER + "d" + ENTER + "n" + ENTER
# A17 answered with the peer bug: focal edema called grade 4 and treated as grade 4.
A17_WRONG = "i" + ENTER + "9" + ENTER + "4" + ENTER + "m" + ENTER + "n" + ENTER


def test_practice_session_right_and_wrong_answers_summary_and_saved(_isolated_data_dir):
    r = practice(A15_RIGHT + A17_WRONG, "--case", "A15", "--case", "A17", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert "Right: ICE 0" in r.stderr and "Right: grade 3" in r.stderr
    assert "Not quite: the answer is grade 3" in r.stderr
    assert "Focal or local edema on imaging is grade 3" in r.stderr
    assert "Grade 3, driven by the raised ICP / cerebral edema (focal/local edema" in r.stderr
    assert "ICANS grade" in r.stdout and "kappa" in r.stdout
    flat_out = " ".join(r.stdout.split())
    assert "(on 2 cases: too few to mean much" in flat_out or "undefined" in flat_out
    saved = [json.loads(x) for x in (_isolated_data_dir / "practice.jsonl").read_text()
             .splitlines()]
    (s,) = saved
    assert s["kind"] == "practice_session" and s["trainee"] == "res-1"
    assert s["accuracy"] == {"score": 1.0, "grade": 0.5, "steroid": 0.5, "tocilizumab": 1.0}
    assert s["grade_confusion"]["matrix"][3] == [0, 0, 0, 1, 1, 0]
    assert not (_isolated_data_dir / "assessments.jsonl").exists()  # never mixed in


def test_practice_history_shows_sessions(_isolated_data_dir):
    practice(A15_RIGHT, "--case", "A15")
    r = runner.invoke(app, ["practice", "--history"])
    assert r.exit_code == 0
    assert "1 practice session " in r.stdout and "100%" in r.stdout


def test_practice_seed_is_repeatable():
    from icans_cli.practice.quiz import pick_cases

    a = [c.id for c in pick_cases(5, 42, None)]
    assert a == [c.id for c in pick_cases(5, 42, None)]
    assert all("pediatric" in c.topics for c in pick_cases(5, 1, "pediatric"))


def test_practice_ctrl_c_saves_nothing(_isolated_data_dir):
    r = practice("i" + ENTER + "\x03", "--case", "A15")
    assert r.exit_code == 130
    assert not (_isolated_data_dir / "practice.jsonl").exists()


def test_practice_bad_topic_and_case():
    assert runner.invoke(app, ["practice", "--topic", "cardio"]).exit_code == 2
    r = practice("", "--case", "Z99")
    assert r.exit_code == 2 and "Z99" in r.stderr


# --- explain ------------------------------------------------------------------------------------

def test_explain_lists_topics():
    r = runner.invoke(app, ["explain"])
    for key in ("ice", "steroids", "tocilizumab", "tradeoff", "bbb", "qalb", "il1", "circuits",
                "isolated", "capd", "grading"):
        assert key in r.stdout


@pytest.mark.parametrize("key", ["ice", "grading", "steroids", "tocilizumab", "tradeoff", "bbb",
                                 "qalb", "il1", "circuits", "isolated", "capd"])
def test_each_explain_topic_renders_and_names_a_source(key):
    r = runner.invoke(app, ["explain", key])
    assert r.exit_code == 0
    assert "Sources" in r.stdout
    assert re.search(r"(19|20)\d\d|label|Thesaurus|neuroanatomy|formula", r.stdout)


def test_explain_never_states_unverified_claims_as_fact():
    from icans_cli.explain import TOPICS

    text = " ".join(p for t in TOPICS for p in t.paragraphs)
    assert "Ang-2/Ang-1 ratio detail was recalled" in text
    assert "UNVERIFIED" in text
    assert "148 kDa" not in text


def test_explain_unknown_topic_exit_2():
    r = runner.invoke(app, ["explain", "astrology"])
    assert r.exit_code == 2 and "capd" in r.stderr


@pytest.mark.parametrize("csf,serum,age,above", [
    (400, 40, 50, False),    # 10.0 = limit at 50 (50/25 + 8): not above
    (404, 40, 50, True),     # 10.1 > 10.0
    (396, 40, 50, False),    # 9.9
    (300, 40, 25, False),    # 7.5 < 9.0
])
def test_qalb_at_and_around_the_hegen_limit(csf, serum, age, above):
    from icans_cli.core.qalb import qalb

    q = qalb(csf, serum, age)
    assert q.limit_e3 == pytest.approx(age / 25 + 8)
    assert q.qalb_e3 == pytest.approx(csf / serum)
    assert q.above is above


def test_qalb_cli_says_context_not_grading():
    r = runner.invoke(app, ["explain", "qalb", "--csf-albumin", "404", "--serum-albumin", "40",
                            "--age", "50"])
    assert "10.10 x10^-3" in r.stdout and "10.00 x10^-3" in r.stdout
    assert "ABOVE" in r.stdout and "not part of ASTCT" in r.stdout
    assert "Hegen" in r.stdout


def test_qalb_cli_needs_all_three_and_positive_values():
    assert runner.invoke(app, ["explain", "qalb", "--age", "50"]).exit_code == 2
    r = runner.invoke(app, ["explain", "qalb", "--csf-albumin", "0", "--serum-albumin", "40",
                            "--age", "50"])
    assert r.exit_code == 2 and "positive" in r.stderr


def test_key_icans_3_with_crs_grade_3_is_dexamethasone_from_the_crs_table():
    (case,) = pick_cases(1, 0, None, ["A19"])
    k = case.key(load())
    assert k.crs_grade == 3 and k.steroid == "dexamethasone" and k.tocilizumab
    assert "CRS table" in case.teaching


def test_key_treated_crs_without_hypotension_or_hypoxia_is_controlled_no_tocilizumab():
    (case,) = pick_cases(1, 0, None, ["A05"])
    k = case.key(load())
    assert k.recommendation.crs == "controlled" and not k.tocilizumab
    assert "controlled after treatment" in case.teaching


def test_explain_qalb_refuses_ages_under_18_because_the_hegen_limit_is_adult():
    r = runner.invoke(app, ["explain", "qalb", "--csf-albumin", "200", "--serum-albumin", "40",
                            "--age", "9"])
    assert r.exit_code == 2 and "derived in adults" in r.stderr


def test_explain_texts_carry_the_corrected_rules():
    from icans_cli.explain import topic

    ice = " ".join(topic("ice").paragraphs)
    assert "without return to baseline" in ice
    isolated = " ".join(topic("isolated").paragraphs)
    assert "at grade 1 isolated ICANS gets supportive care, not steroids" in isolated
    assert "controlled after treatment" in isolated
    steroids = " ".join(topic("steroids").paragraphs)
    assert "P-glycoprotein" in steroids and "part of a dose reaches the brain" in steroids


def test_explain_topics_are_case_insensitive_with_did_you_mean():
    assert runner.invoke(app, ["explain", "QALB"]).exit_code == 0
    r = runner.invoke(app, ["explain", "qalbb"])
    assert r.exit_code == 2 and "Did you mean qalb?" in r.stderr


def test_explain_qalb_refuses_serum_albumin_in_g_dl():
    r = runner.invoke(app, ["explain", "qalb", "--csf-albumin", "300", "--serum-albumin", "4",
                            "--age", "50"])
    assert r.exit_code == 2 and "g/dL" in r.stderr and "40 g/L" in r.stderr
    assert "ABOVE" not in r.stdout


def test_explain_qalb_refuses_csf_albumin_under_10_mg_l():
    r = runner.invoke(app, ["explain", "qalb", "--csf-albumin", "0.3", "--serum-albumin", "40",
                            "--age", "50"])
    assert r.exit_code == 2 and "g/L or mg/dL" in r.stderr


def test_explain_refuses_qalb_options_on_other_topics():
    r = runner.invoke(app, ["explain", "steroids", "--csf-albumin", "3"])
    assert r.exit_code == 2 and "only go with the qalb topic" in r.stderr


def test_explain_grading_cuts_no_cell_at_80_columns():
    r = runner.invoke(app, ["explain", "grading"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    assert "…" not in r.stdout
    assert all(len(x) <= 80 for x in r.stdout.splitlines())
    flat = " ".join(r.stdout.split())
    assert "not performed: unarousable" in flat


def test_every_case_tells_the_trainee_the_crs_state_before_asking_about_tocilizumab(
        _isolated_data_dir):
    """A21 asked 'Tocilizumab?' without saying whether there was CRS."""
    r = practice("\x03", "--case", "A21")
    words = " ".join(r.output.replace("│", " ").split())
    assert "No CRS: afebrile, no hypotension or hypoxia." in words
    r = practice("\x03", "--case", "A07")  # its vitals are in the story: not given away
    assert "No CRS" not in r.output and "Concurrent CRS grade" not in r.output


def test_axi_cel_grade_2_without_crs_keys_dexamethasone_as_asco_advises():
    from icans_cli.practice import load_cases
    from icans_cli.protocols import load

    (a10,) = [c for c in load_cases() if c.id == "A10"]
    key = a10.key(load())
    assert key.grade == 2 and key.steroid == "dexamethasone"


def test_kappa_on_few_cases_says_it_means_little():
    from rich.console import Console

    from icans_cli.practice.quiz import QUESTIONS, render_summary

    cases = [{"key": {"grade": g}} for g in ("0", "3", "na")]
    summary = {"cases": cases, "accuracy": {q: 1.0 for q in QUESTIONS},
               "grade_confusion": {"categories": ["0", "3"], "matrix": [[1, 0], [0, 1]]},
               "weighted_kappa": 1.0}
    con = Console(record=True, width=200)
    render_summary(summary, con)
    assert "1.00 (on 2 cases: too few to mean much" in con.export_text()
    summary["cases"] = [{"key": {"grade": "3"}}] * 12
    con = Console(record=True, width=200)
    render_summary(summary, con)
    assert "too few" not in con.export_text()
