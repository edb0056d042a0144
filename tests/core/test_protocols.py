import re

import pytest

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import Findings, grade_icans
from icans_cli.core.protocol import Protocol, ProtocolError, recommend
from icans_cli.protocols import BUILTIN, UnknownProtocol, load

DOSE = re.compile(r"\d\s*(mg|g)\b|mg/kg|mg/day")


def rec(protocol="asco-2021", crs=None, product=None, age=40, weight=None, **findings):
    if age is not None and age < 12:
        findings.setdefault("capd_score", 0)
    elif not findings.get("sedated") and findings.get("consciousness") != "unarousable":
        findings.setdefault("ice_score", 10)
    r = grade_icans(Findings(age_years=age, **findings))
    return recommend(load(protocol), r, crs, product, age, weight_kg=weight)


def texts(branch):
    return " ".join(line.text for line in branch.lines)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_line_with_a_dose_is_flagged_and_sourced(name):
    r = rec(name, crs=3, ice_score=2, weight=70)
    for line in r.all_lines:
        if DOSE.search(line.text):
            assert line.is_dose, line.text
        assert line.citation and line.protocol_id == name


@pytest.mark.parametrize("name", BUILTIN)
def test_unverified_lines_say_so(name):
    p = load(name)
    for rule in (*p.rules, *p.disagreements):
        if rule.evidence == "R":
            assert "UNVERIFIED" in rule.text


def test_default_protocol_is_asco_2021():
    assert load().id == "asco-2021"


def test_unknown_protocol_rejected():
    with pytest.raises(UnknownProtocol):
        load("nccn")


def test_isolated_icans_never_gets_tocilizumab():
    for grade_findings in [dict(ice_score=8), dict(ice_score=5), dict(ice_score=1),
                           dict(ice_score=0, consciousness="unarousable")]:
        r = rec(crs=0, **grade_findings)
        (branch,) = r.branches
        assert not branch.crs
        assert not branch.tocilizumab_advised
        assert "No tocilizumab" in texts(branch)


def test_concurrent_crs_gets_tocilizumab_line_with_dose_and_source():
    r = rec(crs=2, ice_score=5)
    (branch,) = r.branches
    assert branch.tocilizumab_advised
    line = next(x for x in branch.lines if "tocilizumab 8 mg/kg" in x.text)
    assert "ASCO 2021" in line.citation


def test_unknown_crs_shows_both_branches_labelled():
    r = rec(crs=None, ice_score=5)
    assert [b.crs for b in r.branches] == [False, True]
    assert "NO CRS" in r.branches[0].label and "CONCURRENT CRS" in r.branches[1].label


def test_concurrent_crs_never_changes_icans_grade():
    for crs in (None, 0, 1, 4):
        r = rec(crs=crs, ice_score=5)
        assert r.grade == 2


def test_asco_grade_2_without_crs_high_risk_product_dexamethasone_x2():
    (b,) = rec(crs=0, product="axi-cel", ice_score=5).branches
    assert "dexamethasone 10 mg IV x2" in texts(b)
    assert b.corticosteroid_dose_advised


def test_asco_grade_3_without_crs_dexamethasone_every_6_12_h():
    (b,) = rec(crs=0, ice_score=2).branches
    assert "Dexamethasone 10 mg IV every 6-12 h" in texts(b)
    assert "ICU" in texts(b)


def test_asco_grade_4_uses_cartox_methylprednisolone_labelled():
    r = rec(crs=0, motor="focal_weakness")
    (b,) = r.branches
    mp = next(x for x in b.lines if "Methylprednisolone 1,000 mg/day" in x.text)
    assert "CARTOX" in mp.citation and "CARTOX 2018 regimen" in mp.text


def test_asco_grade_1_high_risk_product_may_start_steroids():
    (b,) = rec(crs=0, product="brexu-cel", ice_score=8).branches
    assert "from grade 1" in texts(b)


def test_asco_grade_1_standard_product_no_steroids():
    (b,) = rec(crs=0, product="tisa-cel", ice_score=8).branches
    assert "No corticosteroids at grade 1" in texts(b)
    assert not b.corticosteroid_dose_advised


def test_cartox_grade_2_without_crs_dexamethasone_every_6_h_marked_unverified():
    (b,) = rec("cartox-2018", crs=0, ice_score=5).branches
    line = next(x for x in b.lines if "every 6 h" in x.text and x.section == "corticosteroids")
    assert line.evidence == "R" and "UNVERIFIED" in line.text


def test_disagreement_on_grade_2_steroids_is_said():
    r = rec(crs=0, ice_score=5)
    assert any("Grade 1-2 corticosteroids differ" in x.text for x in r.disagreements)


def test_seizure_prophylaxis_disagreement_shown_from_grade_1():
    assert any("Seizure prophylaxis" in x.text for x in rec(ice_score=8).disagreements)


def test_child_with_crs_sees_weight_based_tocilizumab_from_the_label():
    (b,) = rec(crs=2, age=6, capd_score=10).branches
    assert any("12 mg/kg" in x.text and x.evidence == "V" and "Kymriah" in x.citation
               for x in b.lines)


def test_adult_does_not_see_child_tocilizumab_note():
    (b,) = rec(crs=2, ice_score=5).branches
    assert not any("12 mg/kg" in x.text for x in b.lines)


def test_not_assessable_advised_at_floor_and_says_so():
    r = rec(sedated=True, seizure="self_limited", crs=0)
    assert r.grade == 3 and r.grade_is_floor
    assert r.id.endswith("crs-no/standard/adult") and "grade3+" in r.id


def test_cadence_grade_0_twice_daily_and_graded_every_8_h():
    assert rec(ice_score=10, crs=0).cadence.hours == 12
    assert rec(ice_score=5).cadence.hours == 8


def test_every_recommendation_carries_the_treating_team_line():
    assert "treating team decide" in rec().decision_line


def test_bad_crs_grade_and_product_rejected():
    r = grade_icans(Findings(ice_score=10))
    with pytest.raises(InvalidFinding):
        recommend(load(), r, 5)
    with pytest.raises(InvalidFinding) as e:
        recommend(load(), r, None, "kymriah")
    assert "axi-cel" in e.value.allowed


def test_malformed_protocol_rejected():
    with pytest.raises(ProtocolError):
        Protocol.from_dict({"id": "x"})


def test_recalled_line_that_does_not_say_unverified_is_rejected():
    data = {
        "id": "x", "version": "1", "title": "t",
        "sources": {"s": {"citation": "c"}},
        "cadence": [{"grades": [0, 1, 2, 3, 4], "hours": 8, "text": "t", "source": "s",
                     "evidence": "V"}],
        "lines": [{"grades": [2], "section": "corticosteroids", "text": "dex 10 mg",
                   "source": "s", "evidence": "R"}],
    }
    with pytest.raises(ProtocolError, match="UNVERIFIED"):
        Protocol.from_dict(data)


def _minimal(**line):
    base = {"grades": [0, 1, 2, 3, 4], "section": "corticosteroids", "text": "None advised.",
            "source": "s", "evidence": "V"}
    base.update(line)
    return {"id": "x", "version": "1", "title": "t", "sources": {"s": {"citation": "c"}},
            "cadence": [{"grades": [0, 1, 2, 3, 4], "hours": 8, "text": "t", "source": "s",
                         "evidence": "V"}],
            "lines": [base]}


def test_minimal_valid_protocol_loads():
    assert Protocol.from_dict(_minimal()).id == "x"


def test_free_text_amount_is_refused_as_unstructured():
    with pytest.raises(ProtocolError, match="structured"):
        Protocol.from_dict(_minimal(text="Dexamethasone 10 mg IV."))


def test_fixed_amount_on_a_line_a_child_can_see_is_refused():
    dose = {"drug": "dexamethasone", "amount": 10, "unit": "mg", "route": "IV"}
    with pytest.raises(ProtocolError, match="fixed amount on a line that a child can see"):
        Protocol.from_dict(_minimal(text="{d}", doses={"d": dose}, start="now"))
    ok = _minimal(text="{d}", doses={"d": dose}, start="now", patient="adult")
    ok["lines"].append({"grades": [0, 1, 2, 3, 4], "patient": "child",
                        "section": "corticosteroids", "text": "Per protocol.", "source": "s",
                        "evidence": "V"})
    assert Protocol.from_dict(ok).rules


def test_per_kg_dose_a_child_can_see_needs_its_maximum():
    dose = {"drug": "dexamethasone", "amount": 0.5, "unit": "mg", "route": "IV", "per_kg": True}
    with pytest.raises(ProtocolError, match="max_amount"):
        Protocol.from_dict(_minimal(text="{d}", doses={"d": dose}, start="now"))


def test_placeholder_without_dose_and_dose_without_placeholder_are_refused():
    dose = {"drug": "dexamethasone", "amount": 0.5, "unit": "mg", "route": "IV", "per_kg": True,
            "max_amount": 10}
    with pytest.raises(ProtocolError, match="no dose of that name"):
        Protocol.from_dict(_minimal(text="{x}"))
    with pytest.raises(ProtocolError, match="not placed in the text"):
        Protocol.from_dict(_minimal(text="Give it.", doses={"d": dose}, start="now"))


def test_grade_without_a_corticosteroid_line_is_refused():
    with pytest.raises(ProtocolError, match="grade 4 has no corticosteroid line"):
        Protocol.from_dict(_minimal(grades=[0, 1, 2, 3]))


def test_unknown_section_and_field_are_each_named():
    with pytest.raises(ProtocolError) as e:
        Protocol.from_dict(_minimal(section="steroids", colour="red"))
    problems = " | ".join(e.value.problems)
    assert "lines[0].section: unknown section 'steroids'" in problems
    assert "lines[0].colour: unknown field" in problems


def test_line_without_a_source_is_refused():
    with pytest.raises(ProtocolError, match="every line names its source"):
        Protocol.from_dict(_minimal(source=None))
