"""Advice that fits the patient (spec section 4): one named test per rule, through the core, for
both protocols, adults and children."""

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icans_cli.core.crs import CrsFindings, grade_crs
from icans_cli.core.dosing import Dose
from icans_cli.core.grading import Findings, grade_icans
from icans_cli.core.protocol import LastAssessable, recommend
from icans_cli.protocols import BUILTIN, load

FIXED_AMOUNT = re.compile(r"\b\d[\d,.]*\s*(mg|g|mg PE)\b(?!/kg)")
ADULT_STEROID_AMOUNTS = ("10 mg", "1,000 mg", "500 mg")


def advise(protocol="asco-2021", crs=None, product=None, age=40, weight=None, last=None,
           controlled=False, **findings):
    if age is not None and age < 12:
        if findings.get("consciousness") != "unarousable" and not findings.get("sedated"):
            findings.setdefault("capd_score", 4)
    elif findings.get("consciousness") != "unarousable" and not findings.get("sedated"):
        findings.setdefault("ice_score", 10)
    r = grade_icans(Findings(age_years=age, **findings))
    return recommend(load(protocol), r, crs, product, age, weight_kg=weight,
                     last_assessable=last, crs_controlled=controlled)


def only(rec):
    (branch,) = rec.branches
    return branch


def text(branch_or_rec):
    lines = branch_or_rec.lines if hasattr(branch_or_rec, "lines") else branch_or_rec.all_lines
    return "\n".join(x.text for x in lines)


def section(branch, name):
    return [x for x in branch.lines if x.section == name]


# --- doses are structured data ------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_every_dose_line_is_structured_and_sourced(name):
    p = load(name)
    for r in (*p.rules, *p.disagreements):
        assert p.sources[r.source_id].citation
        rendered = r.text
        for key, dose in r.doses:
            assert isinstance(dose, Dose)
            rendered = rendered.replace("{" + key + "}", "")
        # no amount is left as free text once the structured doses are taken out
        assert not re.search(r"\d[\d,.]*\s*(mg|g|mcg|mL)\b", rendered), r.text


@pytest.mark.parametrize("name", BUILTIN)
def test_json_dose_object_has_the_spec_keys_on_every_dose_line(name):
    rec = advise(name, crs=3, ice_score=2, weight=70)
    for line in rec.all_lines:
        d = line.as_dict()
        if line.is_dose:
            assert set(d["dose"]) >= {"drug", "amount", "unit", "per_kg", "max_amount", "route",
                                      "every_hours", "computed_amount"}
            assert d["source"] and d["protocol"] == name
        else:
            assert d["dose"] is None
    json.dumps(rec.as_dict())  # serialisable


def test_per_kg_dose_shows_its_computed_amount_capped_tocilizumab_8_mg_kg_at_70_kg():
    b = only(advise(crs=2, ice_score=5, weight=70))
    line = next(x for x in section(b, "anti_cytokine") if x.is_dose)
    assert "tocilizumab 8 mg/kg → 560 mg at 70 kg (maximum 800 mg per dose)" in line.text
    assert line.as_dict()["dose"]["computed_amount"] == 560


def test_per_kg_dose_above_the_cap_is_capped_at_the_maximum():
    b = only(advise(crs=2, ice_score=5, weight=130))
    line = next(x for x in section(b, "anti_cytokine") if x.is_dose)
    assert "→ 800 mg at 130 kg (capped at the maximum 800 mg per dose)" in line.text
    assert line.as_dict()["dose"]["computed_amount"] == 800


def test_per_kg_dose_without_weight_says_the_amount_is_not_computed():
    b = only(advise(crs=2, ice_score=5))
    line = next(x for x in section(b, "anti_cytokine") if x.is_dose)
    assert "no weight: amount not computed" in line.text
    assert line.as_dict()["dose"]["computed_amount"] is None


# --- children -----------------------------------------------------------------------------------

def _child_situations():
    for name, g, crs, seizure, icp in itertools.product(
            BUILTIN, ("ice0", "g1", "g2", "g3", "g4"), (None, 0, 1, 2, 3, 4),
            ("none", "self_limited", "prolonged"), (frozenset(), frozenset({"posturing"}))):
        yield name, g, crs, seizure, icp


CHILD_GRADES = {"ice0": dict(capd_score=0), "g1": dict(capd_score=5),
                "g2": dict(capd_score=5, consciousness="voice"), "g3": dict(capd_score=12),
                "g4": dict(consciousness="unarousable")}


def test_child_never_sees_an_adult_fixed_amount_in_any_situation_either_protocol():
    checked = 0
    for name, g, crs, seizure, icp in _child_situations():
        for weight in (None, 20):
            rec = advise(name, crs=crs, age=6, weight=weight, seizure=seizure, icp_edema=icp,
                         **CHILD_GRADES[g])
            for line in rec.all_lines:
                for _, dose in line.doses:
                    assert dose.per_kg, (name, g, crs, line.text)
                    if weight is None:
                        continue
                    computed = dose.computed_amount(weight)
                    assert computed is not None
                    if dose.max_amount is not None:
                        assert computed <= dose.max_amount
            checked += 1
    assert checked > 700


@pytest.mark.parametrize("name", BUILTIN)
def test_unarousable_6_year_old_20_kg_gets_no_adult_methylprednisolone(name):
    b = only(advise(name, crs=0, age=6, weight=20, consciousness="unarousable"))
    steroid = b.steroid_line
    assert steroid is not None and steroid.first_line == "high_dose_methylprednisolone"
    assert "institutional" in steroid.text and "UNVERIFIED" in steroid.text
    assert not any(a in text(b) for a in ADULT_STEROID_AMOUNTS)
    assert "1,000 mg/day" not in text(b)


@pytest.mark.parametrize("name", BUILTIN)
def test_4_year_old_capd_14_gets_no_adult_dexamethasone_10_mg(name):
    b = only(advise(name, crs=0, age=4, weight=16, capd_score=14))
    assert b.steroid_line.first_line == "dexamethasone"
    assert "Dexamethasone 10 mg" not in text(b) and "dexamethasone 10 mg" not in text(b)
    assert "paediatric dose per institutional protocol" in b.steroid_line.text


@pytest.mark.parametrize("name", BUILTIN)
def test_child_seizure_lines_have_no_adult_levetiracetam_or_phenobarbital(name):
    rec = advise(name, crs=0, age=7, weight=22, capd_score=6, seizure="self_limited")
    t = text(rec)
    assert "750 mg" not in t and "500 mg" not in t and "60 mg" not in t
    assert "levetiracetam" in t


def test_child_tocilizumab_under_30_kg_is_12_mg_kg_from_the_label():
    b = only(advise(crs=2, age=6, weight=20, capd_score=6))
    line = next(x for x in section(b, "anti_cytokine") if x.is_dose)
    assert "tocilizumab 12 mg/kg → 240 mg at 20 kg" in line.text
    assert "Kymriah" in line.citation and line.evidence == "V"
    assert "8 mg/kg" not in text(b)


def test_child_tocilizumab_from_30_kg_is_8_mg_kg_capped():
    b = only(advise(crs=2, age=15, weight=45, ice_score=5))
    line = next(x for x in section(b, "anti_cytokine") if x.is_dose)
    assert "tocilizumab 8 mg/kg → 360 mg at 45 kg" in line.text


def test_child_without_weight_sees_both_tocilizumab_bands_labelled_and_a_weigh_prompt():
    b = only(advise(crs=2, age=6, capd_score=6))
    t = text(b)
    assert "If under 30 kg:" in t and "If 30 kg or more:" in t
    assert "Weight not given" in t


def test_adult_never_sees_the_under_30_kg_tocilizumab_band_without_a_weight():
    assert "12 mg/kg" not in text(only(advise(crs=2, ice_score=5)))


def test_age_not_given_says_adult_doses_are_shown():
    b = only(advise(crs=0, age=None, ice_score=2))
    assert "Age not given: adult doses are shown" in text(b)


# --- concurrent CRS treated by its own grade ----------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_icans_2_with_crs_3_gets_crs_table_dexamethasone_first(name):
    b = only(advise(name, crs=3, ice_score=5, weight=70))
    first = b.steroid_line
    assert first.table == "crs" and first.start == "now"
    assert "Dexamethasone 10 mg IV every 6 h" in first.text
    assert "with tocilizumab" in first.text
    assert first.table_label == "CRS table, CRS grade 3"
    later = [x for x in section(b, "corticosteroids") if x.table == "icans"]
    assert later and later[0].start == "if_refractory"  # the ICANS table's line, named after


def test_icans_3_axi_cel_with_crs_3_is_dexamethasone_now_not_only_if_refractory():
    b = only(advise(crs=3, ice_score=2, product="axi-cel", weight=80))
    assert b.first_line_steroid == "dexamethasone"
    assert b.steroid_line.table == "crs"
    later = [x for x in section(b, "corticosteroids") if x.table == "icans"]
    assert later and all("not in addition" in x.text for x in later)


def test_high_risk_product_with_crs_gets_earlier_steroids_considered():
    b = only(advise(crs=1, ice_score=2, product="brexu-cel", weight=80))
    assert any("ASCO recommends earlier corticosteroids" in x.text
               for x in section(b, "corticosteroids"))
    assert "high-neurotoxicity product" not in text(b)  # the product changes the advice


def test_two_steroid_regimens_are_never_stacked():
    b = only(advise(crs=3, motor="focal_weakness", weight=70))  # ICANS 4 with CRS 3
    first, *rest = section(b, "corticosteroids")
    assert "1,000 mg/day" in first.text and first.start == "now"
    dex = next(x for x in rest if x.table == "crs")
    assert "(Covered by the methylprednisolone regimen of the ICANS table: not in addition.)" \
        in dex.text


@pytest.mark.parametrize("name", BUILTIN)
def test_crs_4_gets_methylprednisolone_500_mg_every_12_h_with_taper(name):
    b = only(advise(name, crs=4, ice_score=8, weight=70))
    first = b.steroid_line
    assert first.table == "crs" and first.first_line == "high_dose_methylprednisolone"
    assert "ethylprednisolone 500 mg IV every 12 h for 3 days, then 250 mg every 12 h" in \
        first.text
    assert "60 mg every 12 h until CRS grade 1" in first.text


def test_icans_4_with_crs_3_keeps_the_stronger_icans_regimen_first():
    b = only(advise(crs=3, motor="focal_weakness", weight=70))
    assert b.steroid_line.table == "icans"
    assert "1,000 mg/day" in b.steroid_line.text
    assert any(x.table == "crs" and "dexamethasone" in x.text.lower()
               for x in section(b, "corticosteroids"))


def test_icans_0_with_crs_3_still_treats_the_crs():
    b = only(advise(crs=3, ice_score=10, weight=70))
    assert b.tocilizumab_advised
    assert b.steroid_line.table == "crs"


def test_consider_icu_if_crs_2_or_more_is_resolved_against_the_known_grade():
    with_2 = only(advise(crs=2, ice_score=5))
    with_1 = only(advise(crs=1, ice_score=5))
    assert any("Consider ICU" in x.text for x in section(with_2, "level_of_care"))
    assert not section(with_1, "level_of_care")
    unknown = advise(crs=None, ice_score=5)
    crs_branch = unknown.branches[1]
    assert any(x.text.startswith("If the CRS is grade 2 or higher: consider ICU")
               for x in crs_branch.lines)


def test_unknown_crs_branch_lists_what_each_crs_grade_adds():
    crs_branch = advise(crs=None, ice_score=5, weight=70).branches[1]
    t = text(crs_branch)
    assert "If the CRS is grade 3: dexamethasone 10 mg IV every 6 h" in t
    assert "If the CRS is grade 4: methylprednisolone 500 mg" in t


def test_crs_controlled_after_treatment_is_isolated_icans_without_tocilizumab():
    crs = grade_crs(CrsFindings(fever=False, treatments={"tocilizumab"}))
    rec = advise(crs=crs.grade, controlled=crs.controlled, ice_score=5)
    b = only(rec)
    assert not b.crs and not b.tocilizumab_advised
    assert "CRS controlled after treatment" in b.label
    assert rec.crs == "controlled" and "crs-controlled" in rec.id


# --- seizures by kind ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_self_limited_seizure_starts_levetiracetam_and_eeg(name):
    b = only(advise(name, crs=0, ice_score=8, seizure="self_limited", weight=70))
    s = section(b, "seizures")
    assert any("levetiracetam" in x.text and "EEG" in x.text for x in s)
    assert not any("STATUS EPILEPTICUS" in x.text for x in s)


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("age,weight", [(40, 70), (8, 25)])
def test_prolonged_seizure_gets_the_convulsive_status_algorithm_weight_based(name, age, weight):
    kw = dict(ice_score=7) if age >= 12 else dict(capd_score=5)
    b = only(advise(name, crs=0, age=age, weight=weight, seizure="prolonged", **kw))
    s = section(b, "seizures")
    first = s[0]
    assert "STATUS EPILEPTICUS" in first.text and "convulsive status algorithm" in first.text
    assert f"lorazepam 0.1 mg/kg → {min(0.1 * weight, 4):g} mg at {weight} kg" in first.text
    assert any("second-line" in x.text and "levetiracetam 60 mg/kg" in x.text
               and "ICU" in x.text for x in s)


def test_convulsive_status_gets_one_lorazepam_regimen_the_convulsive_algorithm():
    b = only(advise(crs=0, ice_score=7, seizure="prolonged", weight=70))
    lorazepam = [x for x in section(b, "seizures") if "lorazepam" in x.text]
    assert len(lorazepam) == 1 and "lorazepam 0.1 mg/kg" in lorazepam[0].text
    assert "CONVULSIVE STATUS EPILEPTICUS" in lorazepam[0].text


@pytest.mark.parametrize("name", BUILTIN)
def test_non_convulsive_status_is_its_own_finding_with_its_own_regimen(name):
    r = grade_icans(Findings(age_years=50, ice_score=8, seizure="nonconvulsive_status"))
    assert r.grade == 4 and r.drivers == ("seizure",)
    b = only(advise(name, crs=0, ice_score=8, seizure="nonconvulsive_status", weight=70))
    s = section(b, "seizures")
    lorazepam = [x for x in s if "lorazepam" in x.text]
    assert len(lorazepam) == 1 and "lorazepam 0.5 mg" in lorazepam[0].text
    assert "NON-CONVULSIVE STATUS EPILEPTICUS on EEG" in s[0].text
    assert not any("0.1 mg/kg" in x.text for x in s)  # not the convulsive algorithm


def test_non_convulsive_status_in_a_child_shows_no_adult_amount():
    b = only(advise(crs=0, age=6, weight=20, seizure="nonconvulsive_status"))
    s = section(b, "seizures")
    assert s and all("UNVERIFIED" in x.text for x in s)
    assert not FIXED_AMOUNT.search(" ".join(x.text for x in s))


@pytest.mark.parametrize("name", BUILTIN)
def test_status_epilepticus_under_2_years_offers_no_valproate(name):
    b = only(advise(name, crs=0, age=1, weight=10, seizure="prolonged"))
    t = " ".join(x.text for x in section(b, "seizures"))
    assert "valproate 40 mg/kg" not in t
    assert "valproate is not given under 2 years" in t
    assert "fosphenytoin causes hypotension and arrhythmias" in t


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("age", [2, 40, None])
def test_status_epilepticus_second_line_drugs_carry_their_cautions(name, age):
    b = only(advise(name, crs=0, age=age, weight=70 if age != 2 else 12, seizure="prolonged"))
    s = section(b, "seizures")
    t = " ".join(x.text for x in s)
    assert "valproate 40 mg/kg" in t
    caution = next(x for x in s if x.text.startswith("Cautions: valproate"))
    assert "under 2 years" in caution.text and "mitochondrial" in caution.text
    assert "low platelets or abnormal clotting" in caution.text
    assert "fosphenytoin causes hypotension and arrhythmias" in caution.text
    assert "care on vasopressors" in caution.text
    assert caution.short_source == "valproate label"


# --- lumbar puncture only without a contraindication --------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("sign", ["diffuse_edema", "posturing", "papilledema", "cn6_palsy",
                                  "cushing_triad"])
def test_raised_icp_turns_the_lp_line_into_a_warning(name, sign):
    b = only(advise(name, crs=0, ice_score=8, icp_edema={sign}, weight=70))
    lp = [x for x in b.lines if "umbar puncture" in x.text]
    assert lp and all("Do NOT do a lumbar puncture, nor intrathecal therapy" in x.text
                      for x in lp)
    assert lp[0].section == "caution"
    assert "intrathecal hydrocortisone" not in text(b)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_lp_line_names_its_contraindications(name):
    for findings in (dict(ice_score=5), dict(ice_score=2), dict(icp_edema={"focal_edema"}),
                     dict(consciousness="unarousable")):
        for line in advise(name, crs=0, **findings).all_lines:
            if line.section == "workup" and "umbar puncture" in line.text:
                assert ("if there is no contraindication (raised intracranial pressure, "
                        "thrombocytopenia or coagulopathy)") in line.text


# --- the product explained ----------------------------------------------------------------------

def test_high_risk_product_that_changes_nothing_at_grade_4_says_why():
    t = text(only(advise(crs=0, consciousness="unarousable", product="brexu-cel")))
    assert "brexu-cel is a high-neurotoxicity product" in t
    assert "already advised for every product" in t


def test_high_risk_product_at_grade_0_says_why():
    t = text(only(advise(crs=0, ice_score=10, product="axi-cel")))
    assert "there is no ICANS now" in t


def test_high_risk_product_that_changes_the_advice_needs_no_explanation():
    t = text(only(advise(crs=0, ice_score=5, product="axi-cel", weight=70)))
    assert "high-neurotoxicity product" not in t
    assert "dexamethasone 10 mg IV x2" in t


def test_product_not_recorded_at_grade_2_says_the_advice_assumes_standard_risk():
    t = text(only(advise(crs=0, ice_score=5)))
    assert "Product not recorded" in t


# --- cadence by grade ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,hours0", [("asco-2021", 12), ("cartox-2018", 8)])
def test_cadence_by_grade(name, hours0):
    assert advise(name, crs=0, ice_score=10).cadence.hours == hours0
    assert advise(name, ice_score=8).cadence.hours == 8
    assert advise(name, ice_score=5).cadence.hours == 8
    for findings in (dict(ice_score=2), dict(consciousness="unarousable")):
        c = advise(name, **findings).cadence
        assert c.hours == 4 and "ICU" in c.text and "UNVERIFIED" in c.text


# --- not assessable never reads as "all clear" --------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_not_assessable_is_never_all_clear(name):
    rec = advise(name, crs=0, sedated=True, consciousness="unarousable")
    b = only(rec)
    t = text(b)
    assert rec.grade_is_floor
    assert 'not "all clear"' in t and "Do not stop treatment already under way" in t
    assert "non-convulsive seizures" in t and "EEG" in t
    assert "No ICANS treatment at grade 0" not in t
    assert rec.cadence.hours <= 8


def test_not_assessable_shows_the_last_assessable_grade():
    rec = advise(crs=0, sedated=True, consciousness="unarousable",
                 last=LastAssessable(4, "2026-11-28 22:00"))
    t = text(only(rec))
    assert "the last assessable result was grade 4 (2026-11-28 22:00)" in t
    assert rec.cadence.hours == 4  # not assessable: the ICU's watch


# --- properties ---------------------------------------------------------------------------------

findings_st = st.fixed_dictionaries({
    "capd_score": st.integers(0, 32),
    "consciousness": st.sampled_from(["alert", "spontaneous", "voice", "tactile"]),
    "seizure": st.sampled_from(["none", "self_limited", "prolonged"]),
    "motor": st.sampled_from(["none", "focal_weakness"]),
    "icp_edema": st.frozensets(st.sampled_from(["focal_edema", "diffuse_edema", "posturing"])),
})


@settings(max_examples=150, deadline=None)
@given(findings_st, st.floats(0, 17.99), st.floats(1, 150), st.sampled_from(BUILTIN),
       st.sampled_from([None, 0, 1, 2, 3, 4]),
       st.sampled_from([None, "axi-cel", "tisa-cel", "brexu-cel"]))
def test_property_child_with_weight_has_no_fixed_amount_and_every_amount_within_its_max(
        findings, age, weight, name, crs, product):
    if age >= 12:
        findings = dict(findings, capd_score=None, ice_score=findings["capd_score"] % 11)
    rec = advise(name, crs=crs, product=product, age=age, weight=weight, **findings)
    for line in rec.all_lines:
        for _, dose in line.doses:
            assert dose.per_kg, line.text
            computed = dose.computed_amount(weight)
            assert computed is not None
            if dose.max_amount is not None:
                assert computed <= dose.max_amount
        assert not any(a in line.text for a in ("dexamethasone 10 mg", "1,000 mg/day"))


@settings(max_examples=150, deadline=None)
@given(st.floats(1, 350), st.sampled_from(BUILTIN), st.sampled_from([None, 2, 3, 4]),
       st.sampled_from([10, 5, 2]), st.sampled_from(["none", "prolonged"]))
def test_property_every_computed_amount_is_at_most_its_maximum(weight, name, crs, ice, seizure):
    rec = advise(name, crs=crs, weight=weight, ice_score=ice, seizure=seizure)
    for line in rec.all_lines:
        for d in line.dose_dicts():
            if d["computed_amount"] is not None and d["max_amount"] is not None:
                assert d["computed_amount"] <= d["max_amount"]


def test_focal_edema_warns_that_mass_effect_must_be_excluded_before_any_lp():
    r = grade_icans(Findings(ice_score=9, icp_edema=frozenset({"focal_edema"})))
    assert r.grade == 3
    rec = recommend(load(), r, 0, None, 50)
    cautions = [x for x in rec.branches[0].lines if x.section == "caution"]
    assert any("exclude mass effect" in x.text for x in cautions)
    assert not any("Do NOT do a lumbar puncture" in x.text for x in cautions)


def test_raised_icp_replaces_the_focal_edema_caution_with_no_lp():
    r = grade_icans(Findings(ice_score=9, icp_edema=frozenset({"focal_edema", "papilledema"})))
    rec = recommend(load(), r, 0, None, 50)
    texts = [x.text for x in rec.branches[0].lines if x.section == "caution"]
    assert any("Do NOT do a lumbar puncture" in t for t in texts)
    assert not any("exclude mass effect" in t for t in texts)


# --- tocilizumab with concurrent CRS of grade 1: consider, and why -------------------------------

@pytest.mark.parametrize("protocol", BUILTIN)
@pytest.mark.parametrize("age, weight, amount", [(40, 80, 640), (8, 20, 240)])
def test_crs_grade_1_beside_icans_makes_tocilizumab_consider_not_give_now(protocol, age,
                                                                          weight, amount):
    kw = {"ice_score": 8} if age >= 12 else {"capd_score": 10}
    branch = only(advise(protocol, crs=1, age=age, weight=weight, **kw))
    toci = [x for x in branch.lines if x.section == "anti_cytokine"
            and any(d.drug == "tocilizumab" for _, d in x.doses)]
    assert toci and all(x.start == "consider" for x in toci)
    assert branch.glance().anti_cytokine.start == "consider"
    assert f"→ {amount} mg" in toci[0].text
    assert "grade-1 CRS to supportive care unless the fever lasts more than 3 days" in \
        toci[0].text  # the disagreement is said, not chosen silently


@pytest.mark.parametrize("protocol", BUILTIN)
@pytest.mark.parametrize("crs", [2, 3, 4])
def test_crs_grade_2_or_more_beside_icans_gives_tocilizumab_now(protocol, crs):
    branch = only(advise(protocol, crs=crs, ice_score=5, weight=80))
    anti = branch.glance().anti_cytokine
    assert anti.start is None and "→ 640 mg" in anti.text


def test_crs_unknown_says_yes_for_crs_grade_2_or_more_and_consider_for_grade_1():
    rec = advise(crs=None, ice_score=8, weight=80)
    with_crs = next(b for b in rec.branches if b.crs)
    conds = {x.condition: x.start for x in with_crs.lines if x.section == "anti_cytokine"
             and x.doses}
    assert conds == {"If the CRS is grade 2 or higher": None, "If the CRS is grade 1": "consider"}


# --- an old grade continues treatment; it never starts one ---------------------------------------

@pytest.mark.parametrize("protocol", BUILTIN)
@pytest.mark.parametrize("hours", [2, 268])
def test_an_old_grade_continues_treatment_it_never_starts_one(protocol, hours):
    rec = advise(protocol, crs=0, age=50, weight=80, sedated=True,
                 last=LastAssessable(4, "2026-11-20 10:00", hours_ago=hours))
    branch = only(rec)
    assert rec.grade == 0 and rec.grade_is_floor  # advised on what is assessable now
    caution = branch.lines[0]
    assert caution.section == "caution" and caution.evidence == "D"
    assert f"grade 4, {hours} h ago (2026-11-20 10:00)" in caution.text
    assert "Continue the treatment and the level of care under way" in caution.text
    assert "do not start a new or stronger regimen on that grade alone" in caution.text
    assert "(derived by this tool)" in caution.text
    assert caution.short_source == "derived (icans-cli)"
    t = text(branch)
    assert "methylprednisolone 1,000 mg" not in t and "1,000 mg/day" not in t
    steroid = branch.glance().steroid
    assert steroid.start is None and "No corticosteroid is started on this result alone" in \
        steroid.text
    assert rec.cadence.hours == 4  # watched as in the ICU


def test_not_assessable_floor_above_the_last_grade_keeps_the_floor():
    rec = advise(crs=0, age=50, weight=80, sedated=True, seizure="prolonged",
                 last=LastAssessable(1, "2026-11-29 00:00", hours_ago=3))
    assert rec.grade == 4 and not rec.grade_is_floor


@pytest.mark.parametrize("protocol", BUILTIN)
@pytest.mark.parametrize("ice", [10, 2])
@pytest.mark.parametrize("crs", [None, 0, 2])
def test_intracranial_haemorrhage_is_left_out_of_the_grade_never_out_of_sight(protocol, ice,
                                                                               crs):
    rec = advise(protocol, crs=crs, ice_score=ice, weight=80,
                 excluded=frozenset({"intracranial_hemorrhage"}))
    for branch in rec.branches:
        first = branch.lines[0]
        assert first.section == "caution" and first.summary.startswith(
            "Intracranial haemorrhage: not in the ICANS grade")
        assert "No LP until mass effect is excluded" in first.summary
        assert "CTCAE" in first.text and first.short_source == "ASTCT 2019 + LP practice"


def test_tremor_alone_adds_no_caution():
    rec = advise(crs=0, ice_score=10, excluded=frozenset({"tremor"}))
    assert not any(x.section == "caution" for x in only(rec).lines)


@pytest.mark.parametrize("protocol", BUILTIN)
@pytest.mark.parametrize("crs, hours", [(0, None), (None, 8), (1, 8), (2, 8)])
def test_grade_0_with_active_or_unknown_crs_is_checked_every_8_h_not_12(protocol, crs, hours):
    rec = advise(protocol, crs=crs, ice_score=10)
    without_crs = {"asco-2021": 12, "cartox-2018": 8}[protocol]  # ASCO: twice a day
    assert rec.grade == 0 and rec.cadence.hours == (hours or without_crs)


@pytest.mark.parametrize("protocol", BUILTIN)
def test_icans_2_with_crs_1_follows_asco_no_corticosteroid_now(protocol):
    # ASCO ICANS table with CRS: tocilizumab, steroids if refractory; its CRS table: grade-1
    # CRS supportive. No steroid "now" for a standard-risk product.
    b = only(advise(protocol, crs=1, ice_score=5, weight=70, product="tisa-cel"))
    steroids = section(b, "corticosteroids")
    assert steroids and not any(x.start == "now" for x in steroids)
    assert b.glance().steroid.start == "if_refractory"
    assert b.glance().anti_cytokine.start == "consider"


def test_icans_2_with_crs_1_matches_icans_2_without_crs_and_controlled_crs_on_steroids():
    for crs, controlled in ((1, False), (0, False), (None, True)):
        b = only(advise(crs=crs, controlled=controlled, ice_score=5, weight=70,
                        product="tisa-cel"))
        assert not any(x.start == "now" for x in section(b, "corticosteroids"))


@pytest.mark.parametrize("protocol", BUILTIN)
def test_icans_3_with_crs_1_steroids_unless_tocilizumab_is_the_tools_rule(protocol):
    b = only(advise(protocol, crs=1, ice_score=2, weight=70))
    first = b.steroid_line
    assert first.start == "now" and first.first_line == "dexamethasone"
    assert first.evidence == "D" and "(derived by this tool)" in first.text
    assert "(derived by this tool)" in first.summary
    assert first.short_source == "derived (icans-cli)"
    assert "ASCO" not in first.short_source and "ASH" not in first.short_source


@pytest.mark.parametrize("name", BUILTIN)
def test_every_derived_line_says_so_and_names_no_guideline(name):
    p = load(name)
    for r in (*p.rules, *p.disagreements):
        if r.evidence == "D":
            assert "(derived by this tool)" in r.text
            assert p.sources[r.source_id].citation.startswith("icans-cli")


# --- intubation is not always CRS grade 4 ---------------------------------------------------------

def _ventilated(reason=None, **crs):
    from icans_cli.core.advice import Case, advise as advise_case
    from icans_cli.core.crs import CrsState

    crs.setdefault("fever", True)
    state = CrsState.of(grade_crs(CrsFindings(oxygen="mechanical_ventilation",
                                              ventilation_reason=reason, **crs)))
    f = Findings(age_years=50, consciousness="unarousable")
    return advise_case(load(), Case(f, state, None, 80.0)).recommendation


def test_intubated_to_protect_the_airway_is_not_given_the_crs_grade_4_regimen():
    rec = _ventilated("airway")
    (b,) = rec.branches
    assert rec.crs_grade == 1
    t = text(b).lower()
    assert "methylprednisolone 500 mg iv every 12 h" not in t
    assert b.glance().anti_cytokine.start == "consider"  # CRS grade 1: consider, not YES


def test_intubated_for_hypoxia_is_crs_grade_4():
    rec = _ventilated("hypoxia")
    assert rec.crs_grade == 4
    assert "methylprednisolone 500 mg iv every 12 h" in text(only(rec)).lower()


def test_intubated_for_a_reason_not_given_shows_both_crs_grades_and_assumes_neither():
    rec = _ventilated(None)
    assert rec.crs == "ambiguous" and rec.crs_grade is None
    hypoxia, airway = rec.branches
    assert hypoxia.label.startswith("IF THE POSITIVE PRESSURE IS FOR HYPOXIA: CRS grade 4")
    assert airway.label.startswith("IF IT IS ONLY TO PROTECT THE AIRWAY: CRS grade 1")
    assert hypoxia.glance().anti_cytokine.start is None
    assert airway.glance().anti_cytokine.start == "consider"
    assert "/crs-4or1/" in rec.id
    assert rec.as_dict()["crs_readings"] == {"if_airway": 1, "if_hypoxia": 4}


# --- no age is not an adult ----------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_no_age_and_under_40_kg_shows_no_fixed_adult_amount_and_asks_for_the_age(name):
    rec = advise(name, crs=0, age=None, weight=18, ice_score=2, seizure="self_limited")
    assert rec.patient == "child"
    t = text(rec)
    assert not FIXED_AMOUNT.search(t), t
    caution = next(x for x in only(rec).lines if x.section == "caution"
                   and x.text.startswith("Age not given and the weight is under 40 kg"))
    assert "Give the age" in caution.text and caution.evidence == "D"
    assert "(derived by this tool)" in caution.text


def test_no_age_and_40_kg_or_more_is_taken_as_an_adult_and_says_so():
    rec = advise(crs=0, age=None, weight=70, ice_score=2)
    assert rec.patient == "adult"
    assert any(x.summary == "Age not given: adult doses shown." for x in only(rec).lines)


# --- smaller points -------------------------------------------------------------------------------

def test_with_crs_unknown_a_crs_3_steroid_line_is_never_covered_by_a_crs_1_line():
    rec = advise(crs=None, ice_score=2, weight=70)
    with_crs = next(b for b in rec.branches if b.crs)
    crs3 = next(x for x in with_crs.lines if x.condition == "If the CRS is grade 3"
                and x.section == "corticosteroids")
    assert "Covered by" not in crs3.text


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("age", [8, 40])
@pytest.mark.parametrize("crs", [None, 3, 4])
def test_no_internal_identifier_reaches_a_line(name, age, crs):
    kw = {"capd_score": 12} if age < 12 else {"ice_score": 0, "consciousness": "unarousable"}
    if age < 12:
        kw = {"consciousness": "unarousable"}
    rec = advise(name, crs=crs, age=age, weight=30, **kw)
    assert "high_dose_methylprednisolone" not in text(rec)
    assert all("_" not in x.summary.split("(")[0] for b in rec.branches for x in b.lines
               if x.section == "corticosteroids")


def test_cartox_protocol_has_the_focal_edema_lumbar_puncture_caution():
    b = only(advise("cartox-2018", crs=0, ice_score=8,
                    icp_edema=frozenset({"focal_edema"})))
    assert any("exclude mass effect" in x.text for x in section(b, "caution"))


@pytest.mark.parametrize("name", BUILTIN)
def test_asco_consider_methylprednisolone_1000_mg_keeps_its_consider(name):
    b = only(advise(name, crs=4, ice_score=8, weight=70))
    line = next(x for x in section(b, "corticosteroids") if "if not improving" in x.text)
    assert "if not improving, consider methylprednisolone 1,000 mg" in line.text


def test_capd_at_the_childs_own_baseline_is_on_the_bedside_screen():
    import io

    from rich.console import Console

    from icans_cli import render
    from icans_cli.core.advice import Case, advise as advise_case
    from icans_cli.core.crs import CrsState

    f = Findings(age_years=15, developmental_delay=True, capd_score=12, capd_baseline=12)
    a = advise_case(load(), Case(f, CrsState(0), None, 50.0))
    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None).print(render.bedside(
        a.result, a.recommendation, render.Context(age=15, weight=50.0)))
    out = " ".join(buf.getvalue().split())
    assert "ICANS GRADE 3" in out  # the grade stays ASTCT's
    assert "baseline 12 (no change)" in out
