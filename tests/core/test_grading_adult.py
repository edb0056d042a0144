"""ASTCT 2019 adult (and >= 12) ICANS table: every cell and every boundary, named after the rule."""

import pytest

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import Findings, grade_icans
from icans_cli.core.scores import IceItems


def g(**kw):
    kw.setdefault("ice_score", 10)
    return grade_icans(Findings(**kw))


# --- the peer bugs ------------------------------------------------------------------------------

def test_ice_10_with_nothing_else_is_grade_0_not_1():
    r = g(ice_score=10)
    assert r.status == "graded"
    assert r.grade == 0
    assert r.drivers == ()


def test_ice_zero_awake_is_grade_3():
    r = g(ice_score=0, consciousness="alert")
    assert r.grade == 3
    assert r.drivers == ("ice",)


def test_ice_zero_awake_with_global_aphasia_from_items_is_grade_3():
    r = grade_icans(Findings(ice_items=IceItems(0, 0, 0, 0, 0)))
    assert r.ice_score == 0
    assert r.grade == 3


def test_ice_zero_unarousable_is_grade_4():
    r = g(ice_score=0, consciousness="unarousable")
    assert r.grade == 4
    assert set(r.drivers) == {"ice", "consciousness"}


def test_unarousable_without_ice_is_grade_4_without_pretending_a_score():
    r = grade_icans(Findings(consciousness="unarousable"))
    assert r.grade == 4
    assert r.ice_score is None
    assert r.domain("ice").value == "not performed"


@pytest.mark.parametrize("score", [1, 5, 10])
def test_ice_above_zero_with_unarousable_is_a_contradiction(score):
    with pytest.raises(InvalidFinding) as e:
        Findings(ice_score=score, consciousness="unarousable")
    assert e.value.field == "ice_score"
    assert "unarousable" in str(e.value)


def test_focal_edema_is_grade_3_not_4():
    r = g(icp_edema={"focal_edema"})
    assert r.grade == 3
    assert r.drivers == ("icp_edema",)


@pytest.mark.parametrize("sign", ["tremor", "myoclonus", "intracranial_hemorrhage"])
def test_excluded_finding_is_recorded_but_never_graded(sign):
    r = g(excluded={sign})
    assert r.grade == 0
    assert r.excluded == (sign,)
    assert sign not in r.drivers


def test_tremor_with_ice_8_is_still_grade_1():
    assert g(ice_score=8, excluded={"tremor", "myoclonus"}).grade == 1


# --- ICE band boundaries ------------------------------------------------------------------------

@pytest.mark.parametrize("score,grade", [
    (10, 0), (9, 1), (8, 1), (7, 1), (6, 2), (5, 2), (4, 2), (3, 2), (2, 3), (1, 3), (0, 3),
], ids=lambda v: str(v))
def test_ice_band_each_total_gives_its_astct_grade(score, grade):
    r = g(ice_score=score)
    assert r.grade == grade
    assert r.domain("ice").grade == grade


def test_ice_9_is_grade_1_boundary_below_10():
    assert g(ice_score=9).grade == 1


def test_ice_7_is_grade_1_and_6_is_grade_2():
    assert g(ice_score=7).grade == 1
    assert g(ice_score=6).grade == 2


def test_ice_3_is_grade_2_and_2_is_grade_3():
    assert g(ice_score=3).grade == 2
    assert g(ice_score=2).grade == 3


# --- level of consciousness ---------------------------------------------------------------------

def test_alert_is_grade_0():
    assert g(consciousness="alert").grade == 0


def test_awakens_spontaneously_is_grade_1():
    r = g(consciousness="spontaneous")
    assert (r.grade, r.drivers) == (1, ("consciousness",))


def test_awakens_to_voice_is_grade_2():
    assert g(ice_score=10, consciousness="voice").grade == 2


def test_awakens_only_to_tactile_stimulus_is_grade_3():
    assert g(ice_score=10, consciousness="tactile").grade == 3


def test_unarousable_is_grade_4():
    assert g(ice_score=0, consciousness="unarousable").grade == 4


# --- seizure ------------------------------------------------------------------------------------

def test_no_seizure_is_grade_0():
    assert g(seizure="none").grade == 0


def test_self_limited_seizure_is_grade_3():
    r = g(ice_score=8, seizure="self_limited")
    assert (r.grade, r.drivers) == (3, ("seizure",))


def test_prolonged_seizure_is_grade_4():
    assert g(seizure="prolonged").grade == 4


def test_ice_3_with_generalised_seizure_is_grade_3_astct_example():
    assert g(ice_score=3, seizure="self_limited").grade == 3


# --- motor --------------------------------------------------------------------------------------

def test_no_motor_finding_is_grade_0():
    assert g(motor="none").grade == 0


def test_deep_focal_motor_weakness_is_grade_4():
    r = g(motor="focal_weakness")
    assert (r.grade, r.drivers) == (4, ("motor",))


# --- raised ICP / edema -------------------------------------------------------------------------

@pytest.mark.parametrize("sign", ["diffuse_edema", "posturing", "cn6_palsy", "papilledema",
                                  "cushing_triad"])
def test_diffuse_edema_or_raised_icp_sign_is_grade_4(sign):
    r = g(icp_edema={sign})
    assert (r.grade, r.drivers) == (4, ("icp_edema",))


def test_focal_edema_with_papilledema_is_grade_4():
    r = g(icp_edema={"focal_edema", "papilledema"})
    assert r.grade == 4
    assert r.domain("icp_edema").value == "papilledema;focal_edema"


def test_icp_none_is_grade_0():
    assert g(icp_edema={"none"}).grade == 0


def test_icp_none_combined_with_a_finding_is_rejected():
    with pytest.raises(InvalidFinding):
        Findings(ice_score=10, icp_edema={"none", "focal_edema"})


# --- most severe domain wins; drivers -----------------------------------------------------------

def test_grade_is_most_severe_domain():
    assert g(ice_score=8, consciousness="voice").grade == 2


def test_every_domain_at_the_maximum_is_a_driver():
    r = g(ice_score=2, seizure="self_limited", icp_edema={"focal_edema"})
    assert r.grade == 3
    assert r.drivers == ("ice", "seizure", "icp_edema")


# --- sedation / another cause -------------------------------------------------------------------

def test_sedated_makes_consciousness_and_ice_not_assessable():
    r = g(ice_score=2, consciousness="tactile", sedated=True)
    assert r.status == "not_assessable"
    assert r.grade is None
    assert r.grade_at_least == 0
    assert set(r.not_assessable) == {"ice", "consciousness"}


def test_sedated_grade_at_least_is_max_of_remaining_domains():
    r = g(ice_score=None, sedated=True, seizure="self_limited")
    assert (r.status, r.grade_at_least, r.drivers) == ("not_assessable", 3, ("seizure",))


def test_sedated_with_grade_4_remaining_domain_is_graded_4():
    r = g(ice_score=None, sedated=True, motor="focal_weakness")
    assert (r.status, r.grade, r.grade_at_least) == ("graded", 4, None)


def test_sedated_patient_needs_no_score():
    r = grade_icans(Findings(sedated=True))
    assert r.status == "not_assessable"


def test_missing_score_in_awake_unsedated_patient_is_an_error():
    with pytest.raises(InvalidFinding) as e:
        Findings(consciousness="alert")
    assert e.value.field == "ice_score"


# --- values -------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("consciousness", "drowsy"), ("seizure", "yes"),
                                         ("motor", "weak"), ("icp_edema", {"swelling"}),
                                         ("excluded", {"headache"})])
def test_unknown_value_names_field_and_allowed_values(field, value):
    with pytest.raises(InvalidFinding) as e:
        Findings(ice_score=10, **{field: value})
    assert e.value.field == field
    assert e.value.allowed


@pytest.mark.parametrize("age", [-1, 131, "ten"])
def test_age_out_of_range_rejected(age):
    with pytest.raises(InvalidFinding) as e:
        Findings(ice_score=10, age_years=age)
    assert e.value.field == "age_years"


def test_unarousable_ice_0_is_accepted_as_not_performed_and_stored_as_none():
    r = grade_icans(Findings(ice_score=0, consciousness="unarousable"))
    assert r.grade == 4 and r.ice_score is None
    assert r.domain("ice").value == "not performed"


def test_sedation_is_a_sedating_drug_or_another_diagnosis_not_intubation():
    r = grade_icans(Findings(sedated=True, consciousness="unarousable"))
    assert "sedating drug" in r.domain("ice").description
    assert "intubation" not in r.domain("ice").description


@pytest.mark.parametrize("kw", [dict(seizure="prolonged"), dict(motor="focal_weakness"),
                                dict(icp_edema=frozenset({"posturing"})),
                                dict(icp_edema=frozenset({"papilledema"}))])
def test_a_grade_4_domain_grades_4_without_an_ice_score(kw):
    """Grade 4 is the highest: a missing ICE cannot change it (a patient in status
    epilepticus may have none taken)."""
    r = grade_icans(Findings(**kw))
    assert r.status == "graded" and r.grade == 4
    assert r.domain("ice").grade is None and r.domain("ice").value == "not recorded"
    assert "ice" not in r.drivers


@pytest.mark.parametrize("kw", [dict(seizure="self_limited"),
                                dict(icp_edema=frozenset({"focal_edema"})),
                                dict(consciousness="tactile")])
def test_a_grade_3_finding_without_an_ice_score_is_grade_3(kw):
    """In an arousable patient ICE grades at most 3 (its grade 4 is "unarousable, unable to
    perform", which consciousness says), so a grade-3 domain decides the grade whatever the
    score: the most severe domain (ASTCT 2019). A post-ictal patient who cannot do the ICE is
    graded, not refused."""
    r = grade_icans(Findings(**kw))
    assert r.status == "graded" and r.grade == 3
    assert r.domain("ice").grade is None and r.domain("ice").value == "not recorded"
    assert "grade is 3 from another domain" in r.domain("ice").description


@pytest.mark.parametrize("kw", [dict(consciousness="voice"), dict(consciousness="spontaneous"),
                                dict()])
def test_without_a_grade_3_or_4_domain_a_missing_ice_score_is_refused(kw):
    """Below grade 3 elsewhere, the ICE could still raise the grade: it is needed."""
    with pytest.raises(InvalidFinding) as exc:
        Findings(**kw)
    assert exc.value.field == "ice_score"


def test_a_grade_3_finding_without_a_capd_score_is_grade_3_for_a_child():
    r = grade_icans(Findings(age_years=6, seizure="self_limited"))
    assert r.grade == 3 and r.domain("capd").value == "not recorded"


def test_a_child_in_status_epilepticus_grades_4_without_a_capd_score():
    r = grade_icans(Findings(age_years=4, seizure="prolonged"))
    assert r.grade == 4 and r.domain("capd").grade is None
