"""One advice for one patient, whatever the path (spec section 4): batch advice never depends on
the rows before it, and equals the advice the interview builds from the same findings."""

import csv
import io
import json
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from icans_cli.cli import app
from icans_cli.core.advice import advise
from icans_cli.interview import ICE_TASKS, Answers, CrsAnswers
from icans_cli.protocols import load
from icans_cli.core.scores import CAPD_ANSWERS, CAPD_ITEMS

runner = CliRunner()
COLUMNS = ["patient_id", "age_years", "weight_kg", "weight_confirmed", "developmental_delay",
           "ice_score", "capd_score", "consciousness", "seizure", "motor", "icp_edema",
           "excluded", "sedated", "crs_grade", "temperature_c", "hypotension", "vasopressors",
           "oxygen", "ventilation_reason", "crs_treated", "product"]
T0 = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)


def grade(rows, fmt="jsonl"):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r.get(c, "") for c in COLUMNS])
    res = runner.invoke(app, ["grade", "-", "-f", fmt], input=buf.getvalue())
    assert res.exit_code in (0, 1), res.output
    if fmt == "jsonl":
        return [json.loads(x) for x in res.stdout.splitlines()]
    return list(csv.reader(io.StringIO(res.stdout)))[1:]


crs_findings = st.fixed_dictionaries({
    "temperature_c": st.sampled_from(["38.5", "37.0"]),
    "hypotension": st.sampled_from(["", "yes"]),
    "vasopressors": st.sampled_from(["", "0", "1", "2"]),
    "oxygen": st.sampled_from(["", "none", "facemask", "cpap", "mechanical_ventilation"]),
    "ventilation_reason": st.sampled_from(["", "hypoxia", "airway"]),
    "crs_treated": st.sampled_from(["", "tocilizumab", "antipyretic"]),
})


@st.composite
def rows(draw):
    age = draw(st.sampled_from(["", "1", "6", "12", "15", "40"]))
    child = age not in ("", "12", "15", "40")
    r = {
        "patient_id": f"PT-{draw(st.integers(1, 99)):02d}",
        "age_years": age,
        "weight_kg": draw(st.sampled_from(["", "12", "20", "35", "70"])),
        "weight_confirmed": "yes",
        "consciousness": draw(st.sampled_from(["", "alert", "voice", "tactile", "unarousable"])),
        "seizure": draw(st.sampled_from(["", "self_limited", "prolonged",
                                         "nonconvulsive_status"])),
        "motor": draw(st.sampled_from(["", "focal_weakness"])),
        "icp_edema": draw(st.sampled_from(["", "focal_edema", "papilledema",
                                           "focal_edema;posturing"])),
        "excluded": draw(st.sampled_from(["", "intracranial_hemorrhage", "tremor"])),
        "sedated": draw(st.sampled_from(["", "", "", "yes"])),
        "product": draw(st.sampled_from(["", "axi-cel", "tisa-cel"])),
    }
    if r["consciousness"] != "unarousable" and not r["sedated"]:
        if child:
            r["capd_score"] = str(draw(st.integers(0, 32)))
        else:
            r["ice_score"] = str(draw(st.integers(0, 10)))
    if draw(st.booleans()):
        r.update({k: v for k, v in draw(crs_findings).items()})
        if r["oxygen"] not in ("cpap", "mechanical_ventilation"):
            r["ventilation_reason"] = ""
    else:
        r["crs_grade"] = draw(st.sampled_from(["", "0", "1", "2", "3", "4"]))
    return r


def answers_for(case):
    """The interview's answers for the same findings (what a clinician would key in)."""
    f = case.findings
    a = Answers(patient_id="PT-X", age=f.age_years, weight=case.weight_kg,
                developmental_delay=f.developmental_delay, sedated=f.sedated,
                consciousness=f.consciousness, seizure=f.seizure, motor=f.motor,
                icp=sorted(f.icp_edema), excluded=sorted(f.excluded), product=case.product,
                capd_baseline=f.capd_baseline)
    if f.ice_score is not None:
        a.ice, a.ice_done = list(range(f.ice_score)), True  # any f.ice_score tasks right
    if f.capd_score is not None:
        left, answers = f.capd_score, []
        for spec in CAPD_ITEMS:
            p = min(4, left)
            left -= p
            answers.append(CAPD_ANSWERS[4 - p if spec.reversed else p])
        a.capd = answers
    return a


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=6))
def test_each_rows_advice_equals_it_graded_alone_and_the_interviews(batch):
    together = grade(batch)
    together_csv = grade(batch, "csv")
    protocol = load()
    for i, row in enumerate(batch):
        (alone,) = grade([row])
        assert together[i]["status"] == alone["status"]
        assert together[i]["errors"] == alone["errors"]
        assert together[i]["recommendation"] == alone["recommendation"], row
        (alone_csv,) = grade([row], "csv")
        assert together_csv[i] == alone_csv, row
        if alone["status"] == "invalid":
            continue
        from icans_cli.batch import parse_row

        names = [c.lower() for c in COLUMNS]
        parsed = parse_row(names, [row.get(c, "") for c in COLUMNS], 1, 2, COLUMNS)
        a = answers_for(parsed.case)
        if parsed.crs_findings is not None:
            cf = parsed.crs_findings
            a.crs = CrsAnswers("questions", None, cf.has_fever, sorted(cf.treatments),
                               {0: "fluids" if cf.hypotension else "none", 1: "one"}.get(
                                   cf.vasopressors, "several"), cf.oxygen,
                               cf.oxygen_flow_l_min, ventilation_reason=cf.ventilation_reason)
        elif parsed.crs_grade is not None:
            a.crs = CrsAnswers("grade", parsed.crs_grade)
        interview = advise(protocol, a.case(T0)).recommendation.as_dict()
        assert interview == alone["recommendation"], row


def test_focal_edema_after_a_plain_grade_3_row_keeps_its_mass_effect_caution():
    c3 = {"patient_id": "C3", "ice_score": "2"}
    c4 = {"patient_id": "C4", "ice_score": "6", "icp_edema": "focal_edema"}
    together = grade([c3, c4])[1]
    (alone,) = grade([c4])
    assert together["recommendation"] == alone["recommendation"]
    caution = [x["text"] for b in together["recommendation"]["branches"] for x in b["lines"]
               if x["section"] == "caution"]
    assert any("exclude mass effect" in t for t in caution)


def test_haemorrhage_after_a_plain_grade_0_row_keeps_its_caution():
    together = grade([{"patient_id": "A", "ice_score": "10"},
                      {"patient_id": "B", "ice_score": "10",
                       "excluded": "intracranial_hemorrhage"}])[1]
    texts = [x["text"] for b in together["recommendation"]["branches"] for x in b["lines"]]
    assert any(t.startswith("Intracranial haemorrhage recorded") for t in texts)


def test_the_batch_cache_keys_on_the_whole_case():
    """A field added to the Case is in the key at once: the key is the Case itself."""
    from dataclasses import replace

    from icans_cli.batch import Grader

    g = Grader(load())
    case = _case()
    g.advise(case)
    g.advise(replace(case, weight_kg=70.0))
    assert set(g._cache) == {case, replace(case, weight_kg=70.0)}


def _case():
    from icans_cli.core.advice import Case
    from icans_cli.core.grading import Findings

    return Case(Findings(age_years=40, ice_score=8))


def test_ice_tasks_in_the_interview_path_match_the_score():
    a = answers_for(_case())
    assert a.ice_items().total == 8 and len(ICE_TASKS) == 10
