"""ASTCT 2019 pediatric table: CAPD under 12 (and >= 12 with developmental delay)."""

import pytest

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import Findings, grade_icans


def child(**kw):
    kw.setdefault("age_years", 6)
    kw.setdefault("capd_score", 0)
    return grade_icans(Findings(**kw))


def test_capd_0_is_grade_0():
    r = child(capd_score=0)
    assert (r.grade, r.score_path) == (0, "capd")


def test_capd_1_is_grade_1():
    assert child(capd_score=1).grade == 1


def test_capd_8_is_grade_1_below_delirium_threshold():
    assert child(capd_score=8).grade == 1


def test_capd_9_is_grade_3():
    r = child(capd_score=9)
    assert (r.grade, r.drivers) == (3, ("capd",))


def test_capd_32_is_grade_3():
    assert child(capd_score=32).grade == 3


def test_pediatric_grade_2_comes_from_awakening_to_voice_not_capd():
    r = child(capd_score=5, consciousness="voice")
    assert (r.grade, r.drivers) == (2, ("consciousness",))


def test_pediatric_grade_1_capd_under_9_and_spontaneous_awakening():
    r = child(capd_score=5, consciousness="spontaneous")
    assert (r.grade, r.drivers) == (1, ("capd", "consciousness"))


def test_pediatric_tactile_only_is_grade_3():
    assert child(capd_score=4, consciousness="tactile").grade == 3


def test_pediatric_unable_to_perform_capd_unarousable_is_grade_4():
    r = child(capd_score=None, consciousness="unarousable")
    assert r.grade == 4
    assert "capd" in r.drivers


def test_pediatric_capd_above_zero_with_unarousable_is_error():
    with pytest.raises(InvalidFinding) as e:
        Findings(age_years=6, capd_score=12, consciousness="unarousable")
    assert e.value.field == "capd_score"


@pytest.mark.parametrize("domain,value,grade", [
    ("seizure", "self_limited", 3), ("seizure", "prolonged", 4), ("motor", "focal_weakness", 4),
    ("icp_edema", {"focal_edema"}, 3), ("icp_edema", {"diffuse_edema"}, 4),
])
def test_pediatric_seizure_motor_edema_same_as_adult(domain, value, grade):
    assert child(**{domain: value}).grade == grade


def test_under_12_uses_capd():
    r = child(age_years=11.9, capd_score=3)
    assert r.score_path == "capd"
    assert "under 12" in r.score_path_reason


def test_age_12_uses_ice_per_lee_2019_and_states_nci_conflict():
    r = grade_icans(Findings(age_years=12, ice_score=10))
    assert r.score_path == "ice"
    assert "Lee 2019" in r.score_path_reason
    assert "NCI Thesaurus" in r.score_path_reason


def test_ice_given_for_child_under_12_is_rejected():
    with pytest.raises(InvalidFinding) as e:
        Findings(age_years=8, ice_score=10)
    assert e.value.field == "ice_score"
    assert "under 12" in str(e.value)


def test_child_under_12_without_capd_is_rejected():
    with pytest.raises(InvalidFinding) as e:
        Findings(age_years=8)
    assert e.value.field == "capd_score"


def test_developmental_delay_at_12_and_over_uses_capd():
    r = grade_icans(Findings(age_years=16, developmental_delay=True, capd_score=10))
    assert (r.score_path, r.grade) == ("capd", 3)


def test_developmental_delay_past_21_says_capd_beyond_validation():
    r = grade_icans(Findings(age_years=30, developmental_delay=True, capd_score=2))
    assert "validated up to age 21" in r.score_path_reason


def test_capd_given_for_adult_without_delay_is_rejected():
    with pytest.raises(InvalidFinding) as e:
        Findings(age_years=40, capd_score=10)
    assert e.value.field == "capd_score"


def test_sedated_child_capd_not_assessable():
    r = child(capd_score=None, sedated=True, consciousness="tactile")
    assert r.status == "not_assessable"
    assert set(r.not_assessable) == {"capd", "consciousness"}


def test_unarousable_child_capd_is_not_taken_and_stored_as_none():
    r = grade_icans(Findings(age_years=6, consciousness="unarousable"))
    assert r.grade == 4 and r.capd_score is None
    assert r.domain("capd").value == "not performed"


def test_unarousable_child_capd_0_is_refused_because_0_means_a_normal_child():
    with pytest.raises(InvalidFinding) as e:
        Findings(age_years=6, consciousness="unarousable", capd_score=0)
    assert e.value.field == "capd_score" and "normal child" in e.value.message


def test_capd_baseline_never_changes_the_grade_and_gives_the_change():
    with_base = grade_icans(Findings(age_years=3, capd_score=14, capd_baseline=6))
    without = grade_icans(Findings(age_years=3, capd_score=14))
    assert with_base.grade == without.grade == 3
    assert with_base.capd_change == 8


def test_capd_baseline_text_says_when_a_young_childs_baseline_is_above_0():
    from icans_cli.core.rationale import why_grade

    text = why_grade(grade_icans(Findings(age_years=2, capd_score=7, capd_baseline=5)))
    assert "CAPD baseline 5; now 7, +2 from baseline" in text
    assert "baseline above 0 is common in young" in text
    zero = why_grade(grade_icans(Findings(age_years=2, capd_score=7, capd_baseline=0)))
    assert "above 0" not in zero


def test_capd_baseline_for_an_ice_patient_is_refused():
    with pytest.raises(InvalidFinding) as e:
        Findings(age_years=40, ice_score=8, capd_baseline=3)
    assert e.value.field == "capd_baseline"


def test_capd_baseline_out_of_range_is_refused():
    with pytest.raises(InvalidFinding):
        Findings(age_years=4, capd_score=8, capd_baseline=33)
