"""`icans show`: a saved record's bedside summary, one 80x24 screen, the decision first."""

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from icans_cli.core.grading import Findings, grade_icans
from icans_cli.core.protocol import recommend
from icans_cli.protocols import load
from icans_cli.records import assessment_record

runner = CliRunner()
T0 = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)


def add(path, pid, hours=0.0, crs=None, product=None, weight=None, **kw):
    f = Findings(**kw)
    r = grade_icans(f)
    rec = recommend(load(), r, crs, product, f.age_years, weight_kg=weight)
    body = assessment_record(patient_id=pid, assessor="nurse-a", source="interactive",
                             assessed_at=T0 + timedelta(hours=hours), findings=f, result=r,
                             recommendation=rec, crs_grade=crs, product=product,
                             weight_kg=weight)
    return log.append(path, body)["id"]


def show(path, rid, *extra, columns="80"):
    return runner.invoke(app, ["show", rid[:8], "--log-file", str(path), *extra],
                         env={"COLUMNS": columns}, catch_exceptions=False)


def flat(text):
    """The words of a wrapped screen, one space apart (to find a phrase across a wrap)."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


@pytest.fixture
def logf(tmp_path):
    return tmp_path / "assessments.jsonl"


CASES = {
    "grade 0": dict(crs=0, age_years=50, ice_score=10, weight=70),
    "grade 2, CRS unknown": dict(crs=None, age_years=50, ice_score=5, weight=70),
    "grade 3": dict(crs=3, age_years=50, ice_score=2, weight=70, product="axi-cel"),
    "grade 4, child": dict(crs=0, age_years=6, consciousness="unarousable", weight=20,
                           seizure="prolonged", icp_edema=frozenset({"posturing"})),
}


@pytest.mark.parametrize("case", CASES)
def test_show_summary_fits_24_lines_at_80_columns(logf, case):
    rid = add(logf, "PT-S", **CASES[case])
    r = show(logf, rid)
    assert r.exit_code == 0, r.output
    lines = r.stdout.rstrip("\n").split("\n")
    assert len(lines) <= 24, r.stdout
    assert all(len(x.rstrip()) <= 80 for x in lines), r.stdout
    assert "ICANS GRADE" in lines[1]  # the grade panel is at the top
    assert any(x.startswith("Next check") for x in lines)
    assert "treating team decide" in r.stdout
    assert f"icans show {rid[:8]} --full" in lines[-1]


def test_show_grade_3_gives_the_decision_first(logf):
    rid = add(logf, "PT-3", **CASES["grade 3"])
    out = flat(show(logf, rid).stdout)
    assert "ICANS GRADE 3" in out
    assert "Steroids START: dexamethasone 10 mg IV every 6 h, with tocilizumab." in out
    assert "YES, for the CRS: tocilizumab 8 mg/kg → 560 mg, IV" in out
    assert "Care ICU." in out
    assert "ICU neuro checks; by 12:00 at the latest (4 h: UNVERIFIED)" in out
    assert "Why corticosteroids" not in out  # the rationale is one key away


def test_show_child_grade_4_warns_against_lp_and_treats_status_per_kg(logf):
    rid = add(logf, "PT-4", **CASES["grade 4, child"])
    out = flat(show(logf, rid).stdout)
    assert "NO lumbar puncture (raised ICP)" in out
    assert "lorazepam 0.1 mg/kg → 2 mg, IV" in out
    assert "children's dose per local protocol (UNVERIFIED)" in out
    assert "1,000" not in out


def test_show_full_adds_the_details(logf):
    rid = add(logf, "PT-F", **CASES["grade 3"])
    out = show(logf, rid, "--full", columns="100").stdout
    for heading in ("Domains (ASTCT 2019)", "Where guidelines disagree", "Why this grade",
                    "Sources:", "Work-up"):
        assert heading in out


def test_show_says_what_changed_since_the_patients_previous_record(logf):
    add(logf, "PT-C", hours=0, crs=0, age_years=50, ice_score=8, weight=70)
    rid = add(logf, "PT-C", hours=6, crs=0, age_years=50, ice_score=2, weight=70)
    out = flat(show(logf, rid).stdout)
    assert "Since last" in out and "ICE 8 → ICE 2, grade 1 → 3 since" in out
    assert "ago): WORSE" in out


def test_show_unknown_record_is_a_clear_error(logf):
    add(logf, "PT-U", **CASES["grade 0"])
    r = runner.invoke(app, ["show", "ffffffff", "--log-file", str(logf)])
    assert r.exit_code == 1 and "no record and no patient by that id" in r.stderr
    assert "Traceback" not in r.output


def test_show_ambiguous_prefix_asks_for_more_of_the_id(logf):
    ids = [add(logf, f"PT-{i}", **CASES["grade 0"]) for i in range(40)]
    firsts = [i[0] for i in ids]
    c = max(set(firsts), key=firsts.count)
    r = runner.invoke(app, ["show", c, "--log-file", str(logf)])
    assert r.exit_code == 2 and "give more of it" in r.stderr


def test_show_patient_id_is_shown_literally_not_as_markup(logf):
    rid = add(logf, "[bold red]PT-M", **CASES["grade 0"])
    out = show(logf, rid).stdout
    assert "[bold red]PT-M" in out


def _bedside_lines(findings, crs, product, weight, change=None, record_id=None, last=None,
                   protocol="asco-2021"):
    import io

    from rich.console import Console

    from icans_cli import render

    from icans_cli.core.advice import Case, advise
    from icans_cli.core.crs import CrsState

    advice = advise(load(protocol), Case(findings, CrsState(crs), product, weight,
                                         last_assessable=last, log_checked=True))
    r, rec = advice.result, advice.recommendation
    ctx = render.Context(patient_id="PT-LONGER-PSEUDONYM", assessed_at=T0, change=change,
                         record_id=record_id, age=findings.age_years, weight=weight,
                         product=product)
    buf = io.StringIO()
    Console(file=buf, width=80, force_terminal=False, color_system=None).print(
        render.bedside(r, rec, ctx))
    return buf.getvalue().rstrip("\n").split("\n")


WORST = [
    dict(seizure="prolonged", icp_edema=frozenset({"posturing", "diffuse_edema"}),
         ice_score=0, motor="focal_weakness"),
    dict(seizure="self_limited", icp_edema=frozenset({"focal_edema"}), ice_score=3),
    dict(consciousness="unarousable", seizure="prolonged"),
    dict(sedated=True, ice_score=None),
    dict(sedated=True, ice_score=None, seizure="self_limited",
         icp_edema=frozenset({"focal_edema"}), excluded=frozenset({"intracranial_hemorrhage"})),
    dict(ice_score=6, excluded=frozenset({"intracranial_hemorrhage"})),
    dict(ice_score=10),
]
# the longest "Since last" texts the log gives: a fall, and a not-assessable result
CHANGES = [("ICE 10 → ICE 3, grade 0 → 2 since 2026-11-28 08:00 (24.0 h ago): WORSE", True),
           ("CAPD 6, grade 1 2.0 h ago → not assessable now (at least grade 3)", False)]


@pytest.mark.slow  # a matrix of 2,240 screens: the whole suite runs it, the second Python not
@pytest.mark.parametrize("age", [None, 6, 15, 50])
@pytest.mark.parametrize("crs", [None, 0, 2, 3, 4])
@pytest.mark.parametrize("case", range(len(WORST)))
def test_the_decision_fits_one_80x24_screen_for_every_patient(age, crs, case):
    """The grade, what to do now and when to look again, with the save prompt under it, in
    24 lines of 80 columns: a child or an adult, age or weight not given, every CRS state,
    status epilepticus with raised ICP, a fall since the last check, a high-risk product."""
    kw = dict(WORST[case])
    if age is not None and age < 12 and "ice_score" in kw:
        score = kw.pop("ice_score")
        kw["capd_score"] = None if score is None else 32 - 3 * score
    if kw.get("ice_score", 0) is None and kw.get("capd_score", 0) is None:
        kw.pop("ice_score", None), kw.pop("capd_score", None)
    from icans_cli.core.protocol import LastAssessable

    f = Findings(age_years=age, **kw)
    last = LastAssessable(3, "2026-11-29 06:00", hours_ago=268) if kw.get("sedated") else None
    for weight, product, change, protocol in itertools.product(
            (None, 20.0 if age and age < 18 else 80.0), (None, "axi-cel"), CHANGES,
            ("asco-2021", "cartox-2018")):
        lines = _bedside_lines(f, crs, product, weight, change=change, last=last,
                               protocol=protocol)
        assert len(lines) <= 23, "\n".join(lines)  # + the save prompt = 24
        assert all(len(x) <= 80 for x in lines)
        assert "ICANS GRADE" in lines[1] or "NOT ASSESSABLE" in lines[1]
        assert "treating team decide" in lines[-1]
        # the decision is never what is left out: steroids, tocilizumab, the next check,
        # every caution but the EEG reminder, status epilepticus
        labels = [x.split("  ")[0] for x in lines]
        assert "Tocilizumab" in labels and "Next check" in labels
        assert "Steroids" in labels or "If no CRS" in labels or "If CRS" in labels
        text = flat("\n".join(lines))
        if f.icp_edema & {"posturing", "diffuse_edema"}:
            assert "NO lumbar puncture (raised ICP)" in text
        if f.seizure == "prolonged":
            assert "STATUS EPILEPTICUS" in text
        if "intracranial_hemorrhage" in f.excluded:
            assert "Intracranial haemorrhage: not in the ICANS grade" in text


def test_not_assessable_with_no_crs_says_no_tocilizumab_and_never_all_clear():
    lines = _bedside_lines(Findings(age_years=55, sedated=True, consciousness="unarousable"),
                           0, None, 70.0)
    text = flat("\n".join(lines))
    assert "NOT ASSESSABLE" in text
    assert "Tocilizumab NO: no CRS, and it does not treat ICANS" in text
    assert 'Not "all clear"' in text


def test_unarousable_is_driven_by_consciousness_not_by_a_score_never_taken():
    lines = _bedside_lines(Findings(age_years=6, consciousness="unarousable"), 0, None, 20.0)
    assert "no CAPD: unarousable" in lines[1]
    assert "Driven by level of consciousness (unarousable)" in lines[2]
    assert "CAPD score" not in lines[2]


def test_grade_4_methylprednisolone_is_not_doubled_by_an_unknown_crs():
    """Methylprednisolone 1 g/day already covers the CRS 3-4 regimens: the summary must not
    say the CRS adds steroids."""
    f = Findings(ice_score=8, seizure="prolonged", icp_edema=frozenset({"posturing"}))
    text = flat("\n".join(_bedside_lines(f, None, None, 70.0)))
    assert "START: methylprednisolone 1,000 mg/day" in text
    assert "adds steroids" not in text
    assert "NO lumbar puncture (raised ICP)" in text
    assert "Lower ICP: hyperventilation, mannitol or hypertonic saline (targets: neurocritical care)." in text


def test_grade_2_with_unknown_crs_says_crs_3_4_adds_steroids():
    text = flat("\n".join(_bedside_lines(Findings(ice_score=5), None, None, 70.0)))
    assert "CRS 3-4 adds steroids" in text


def test_a_worsening_patient_is_told_to_check_sooner_than_the_grade_cadence():
    worse = _bedside_lines(Findings(ice_score=3), 0, None, 70.0,
                           change=("ICE 6 → 3: a fall of 3 in 4 h", True))
    steady = _bedside_lines(Findings(ice_score=3), 0, None, 70.0,
                            change=("ICE 3 → 3: unchanged", False))
    nxt = [x for x in worse if x.startswith("Next check")][0]
    assert "within 8 h, by 16:00; SOONER while it is getting worse" in nxt
    assert not any("SOONER" in x for x in steady)


def _add_advised_with(path, **protocol_changes):
    f = Findings(age_years=50, ice_score=5)
    r = grade_icans(f)
    rec = recommend(load(), r, None, None, 50, weight_kg=70)
    body = assessment_record(patient_id="PT-V", assessor="nurse-a", source="interactive",
                             assessed_at=T0, findings=f, result=r, recommendation=rec,
                             crs_grade=None, product=None, weight_kg=70)
    body["protocol"].update(protocol_changes)
    return log.append(path, body)["id"]


def test_show_says_when_the_record_was_advised_with_another_protocol_version(logf):
    r = show(logf, _add_advised_with(logf, version="2019.0"))
    assert r.exit_code == 0
    text = flat(r.stdout + r.stderr)
    assert "advised with protocol asco-2021 version 2019.0" in text
    assert "as it is now" in text


def test_show_says_when_the_protocol_was_edited_under_the_same_version(logf):
    r = show(logf, _add_advised_with(logf, sha256="0" * 64))
    assert r.exit_code == 0
    text = flat(r.stdout + r.stderr)
    assert "has been edited since this record was advised" in text
    assert "same version, different content" in text


def test_show_says_nothing_about_the_protocol_when_it_is_unchanged(logf):
    r = show(logf, _add_advised_with(logf))
    assert r.exit_code == 0
    text = flat(r.stdout + r.stderr)
    assert "advised with" not in text and "has been edited" not in text


def test_show_of_a_corrected_record_says_so_above_the_summary(logf):
    old = add(logf, "PT-C", **CASES["grade 0"])
    f = Findings(age_years=50, ice_score=6)
    r = grade_icans(f)
    body = assessment_record(patient_id="PT-C", assessor="nurse-a", source="amendment",
                             assessed_at=T0, findings=f, result=r,
                             recommendation=recommend(load(), r, 0, None, 50, weight_kg=70),
                             crs_grade=0, product=None, weight_kg=70, amends=old)
    new = log.append(logf, body)["id"]
    out = show(logf, old)
    assert out.exit_code == 0
    first = out.stdout.split("\n")[0]
    assert first.startswith(f"! CORRECTED: this record was replaced by {new[:8]}")
    assert "CORRECTED" not in show(logf, new).stdout


def test_a_protocol_file_is_recorded_by_its_full_path_and_show_warns_when_it_is_gone(
        tmp_path, monkeypatch):
    import json

    data = json.loads(runner.invoke(app, ["protocol", "show", "asco-2021"]).stdout)
    data["id"] = "asco-2021-ward7"
    (tmp_path / "ours.json").write_text(json.dumps(data))
    logf = tmp_path / "assessments.jsonl"
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["grade", "-", "--protocol", "ours.json", "--log", "--assessed-now",
                            "--log-file", str(logf), "-f", "jsonl"],
                      input="patient_id,ice_score\nPT-W,5\n")
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(x) for x in logf.read_text().splitlines()]
    assert rec["protocol"]["file"] == str((tmp_path / "ours.json").resolve())
    monkeypatch.chdir("/")
    assert "NOT THE ADVICE GIVEN" not in show(logf, rec["id"]).stdout  # found from anywhere
    (tmp_path / "ours.json").unlink()
    load.cache_clear()  # one process per command in real use
    out = show(logf, rec["id"])
    assert out.exit_code == 0
    assert flat(out.stdout).startswith("! NOT THE ADVICE GIVEN: the record was advised with "
                                       "protocol 'asco-2021-ward7'")


def test_show_crs_grade_1_reads_consider_tocilizumab_and_crs_2_reads_yes(logf):
    one = show(logf, add(logf, "PT-T1", crs=1, age_years=60, ice_score=8, weight=80))
    assert "Tocilizumab  CONSIDER, for the CRS: tocilizumab 8 mg/kg → 640 mg" in one.stdout
    two = show(logf, add(logf, "PT-T2", crs=2, age_years=60, ice_score=8, weight=80))
    assert "Tocilizumab  YES, for the CRS: tocilizumab 8 mg/kg → 640 mg" in two.stdout


@pytest.mark.parametrize("crs", [1, 2, None])
def test_a_child_without_a_weight_sees_both_tocilizumab_bands_on_the_summary(crs):
    text = flat("\n".join(_bedside_lines(Findings(age_years=7, capd_score=12), crs, None,
                                         None)))
    assert "under 30 kg: tocilizumab 12 mg/kg" in text
    assert "30 kg or more: tocilizumab 8 mg/kg (max 800 mg)" in text
    assert text.index("under 30 kg") < text.index("30 kg or more")


def test_a_child_with_a_weight_sees_only_her_band():
    text = flat("\n".join(_bedside_lines(Findings(age_years=7, capd_score=12), 2, None, 20.0)))
    assert "tocilizumab 12 mg/kg → 240 mg" in text and "30 kg or more" not in text


def test_what_does_not_fit_goes_least_needed_first_work_up_before_a_fall():
    from icans_cli.core.protocol import LastAssessable  # noqa: F401 - shape of the call

    f = Findings(age_years=7, consciousness="unarousable", seizure="prolonged",
                 icp_edema=frozenset({"posturing"}))
    worse = ("CAPD 6 → CAPD not taken, grade 1 → 4 since 00:00 (2.0 h ago): WORSE", True)
    lines = _bedside_lines(f, None, None, None, change=worse)
    labels = [x.split("  ")[0] for x in lines]
    assert "Work-up" not in labels and "Since last" in labels  # the fall is kept
    assert "Not shown" in labels and "work-up" in flat("\n".join(lines))  # never in silence
    roomy = _bedside_lines(Findings(age_years=50, ice_score=5), 0, None, 80.0, change=worse)
    assert "Work-up" in [x.split("  ")[0] for x in roomy]  # nothing left out when it fits


def test_show_crs_controlled_after_an_antipyretic_only_says_sources_differ(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    r = runner.invoke(app, ["grade", "-", "--log", "--assessed-now", "--log-file", str(logf),
                            "-f", "jsonl"],
                      input="patient_id,age_years,ice_score,temperature_c,crs_treated\n"
                            "PT-AP,50,7,37.0,antipyretic\n")
    assert r.exit_code == 0, r.output
    assert "1 row: 1 graded" in r.stderr
    import json

    rid = json.loads(logf.read_text().splitlines()[0])["id"]
    out = show(logf, rid, "--full").stdout
    assert "CRS controlled? antipyretic only: sources differ" in out
    assert "Sources differ on an antipyretic alone" in flat(out)


@pytest.mark.parametrize("later", [1.5, 30, 268])
def test_sedated_after_a_grade_3_continues_it_and_starts_nothing_new_on_it(logf, later):
    add(logf, "PT-SED", hours=0, crs=0, age_years=50, ice_score=2, weight=70)
    rid = add(logf, "PT-SED", hours=later, crs=0, age_years=50, sedated=True, weight=70)
    out = flat(show(logf, rid).stdout)
    assert f"last assessable grade 3, {later:.0f} h ago" in out
    assert "Continue what is under way; start nothing new on it" in out
    assert "dexamethasone 10 mg IV" not in out.lower()