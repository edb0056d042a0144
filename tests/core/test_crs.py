"""ASTCT 2019 CRS table, for the management branch."""

import pytest

from icans_cli.core.crs import CrsFindings, grade_crs
from icans_cli.core.errors import InvalidFinding


def crs(**kw):
    kw.setdefault("fever", True)
    return grade_crs(CrsFindings(**kw))


def test_fever_alone_is_grade_1():
    assert crs().grade == 1


def test_no_fever_no_treatment_is_no_crs():
    r = crs(fever=False)
    assert r.grade == 0


def test_temperature_38_0_is_fever():
    assert grade_crs(CrsFindings(temperature_c=38.0)).grade == 1


def test_temperature_37_9_is_not_fever():
    assert grade_crs(CrsFindings(temperature_c=37.9)).grade == 0


def test_hypotension_without_vasopressors_is_grade_2():
    assert crs(hypotension=True).grade == 2


def test_one_vasopressor_is_grade_3():
    assert crs(hypotension=True, vasopressors=1).grade == 3


def test_one_vasopressor_with_vasopressin_is_grade_3():
    assert crs(vasopressors=1, vasopressin=True).grade == 3


def test_vasopressin_alone_is_grade_3():
    assert crs(vasopressin=True).grade == 3


def test_multiple_vasopressors_is_grade_4():
    assert crs(vasopressors=2).grade == 4


def test_vasopressin_not_counted_towards_multiple_vasopressors():
    assert crs(vasopressors=1, vasopressin=True).grade == 3


def test_exactly_6_l_min_is_low_flow():
    r = crs(oxygen="nasal_cannula", oxygen_flow_l_min=6.0)
    assert r.grade == 2
    assert r.hypoxia_grade == 2


def test_above_6_l_min_is_high_flow_grade_3():
    assert crs(oxygen="nasal_cannula", oxygen_flow_l_min=6.5).grade == 3


def test_low_flow_2_l_min_is_grade_2():
    assert crs(oxygen="nasal_cannula", oxygen_flow_l_min=2).grade == 2


def test_blow_by_is_grade_2():
    assert crs(oxygen="blow_by").grade == 2


@pytest.mark.parametrize("device", ["facemask", "non_rebreather", "venturi"])
def test_facemask_non_rebreather_venturi_is_grade_3(device):
    assert crs(oxygen=device).grade == 3


@pytest.mark.parametrize("device", ["cpap", "bipap", "mechanical_ventilation"])
def test_positive_pressure_for_hypoxia_is_grade_4(device):
    assert crs(oxygen=device, ventilation_reason="hypoxia").grade == 4


@pytest.mark.parametrize("device", ["cpap", "bipap", "mechanical_ventilation"])
def test_positive_pressure_to_protect_the_airway_is_not_crs_hypoxia(device):
    # intubated because of grade-4 ICANS: fever alone is CRS grade 1, not 4
    r = crs(oxygen=device, ventilation_reason="airway")
    assert r.grade == 1 and r.hypoxia_grade == 1
    assert "protect the airway" in r.explanation


@pytest.mark.parametrize("device", ["cpap", "bipap", "mechanical_ventilation"])
def test_positive_pressure_for_an_unknown_reason_is_never_assumed_grade_4(device):
    r = crs(oxygen=device)
    assert r.grade is None
    airway, hypoxia = r.readings
    assert (airway.grade, hypoxia.grade) == (1, 4)
    assert "if ventilated for hypoxia" in r.label and "airway" in r.label
    assert "Say which" in r.explanation


def test_positive_pressure_for_an_unknown_reason_with_pressors_keeps_both_readings():
    airway, hypoxia = crs(oxygen="mechanical_ventilation", vasopressors=1).readings
    assert (airway.grade, hypoxia.grade) == (3, 4)


def test_positive_pressure_without_fever_or_treatment_is_no_crs_whatever_the_reason():
    r = crs(fever=False, oxygen="mechanical_ventilation")
    assert r.grade == 0 and r.readings is None


def test_positive_pressure_for_the_airway_after_treatment_is_controlled():
    r = crs(fever=False, oxygen="mechanical_ventilation", treatments={"tocilizumab"})
    airway, hypoxia = r.readings
    assert airway.controlled and hypoxia.grade == 4
    assert crs(fever=False, oxygen="mechanical_ventilation", treatments={"tocilizumab"},
               ventilation_reason="airway").controlled


def test_ventilation_reason_without_positive_pressure_is_refused():
    with pytest.raises(InvalidFinding) as e:
        crs(oxygen="facemask", ventilation_reason="airway")
    assert e.value.field == "ventilation_reason"


def test_ventilation_reason_must_be_hypoxia_or_airway():
    with pytest.raises(InvalidFinding) as e:
        crs(oxygen="cpap", ventilation_reason="comfort")
    assert "hypoxia, airway" in str(e.value)


def test_worse_of_hypotension_and_hypoxia_sets_grade():
    r = crs(vasopressors=1, oxygen="nasal_cannula", oxygen_flow_l_min=3)
    assert r.grade == 3


def test_after_tocilizumab_or_steroids_fever_not_required():
    for given in ({"tocilizumab"}, {"corticosteroids"}):
        r = crs(fever=False, treatments=given, hypotension=True)
        assert r.grade == 2
        assert r.fever_waived and not r.controlled
        assert r.disagreement is None


def test_treated_crs_without_hypotension_or_hypoxia_is_controlled_not_grade_1():
    # Spec section 3 (corrected): after treatment, with neither hypotension nor hypoxia, no
    # ASTCT grade is met; the CRS is controlled (grade 0 for management), never "still CRS".
    r = crs(fever=False, treatments={"tocilizumab"})
    assert r.grade == 0
    assert r.controlled
    assert "controlled" in r.explanation and "no further tocilizumab" in r.explanation
    assert r.label == "CRS controlled after treatment"


def test_treated_crs_with_hypoxia_is_graded_on_hypoxia():
    r = crs(fever=False, treatments={"corticosteroids"}, oxygen="facemask")
    assert r.grade == 3 and not r.controlled


def test_fever_after_treatment_still_grades_normally():
    r = crs(fever=True, treatments={"tocilizumab"}, hypotension=True)
    assert r.grade == 2 and not r.fever_waived


def test_antipyretic_alone_waives_fever_per_lee_2019_and_says_sources_differ():
    r = crs(fever=False, treatments={"antipyretic"}, hypotension=True)
    assert r.grade == 2 and r.fever_waived
    assert r.disagreement and "antipyretic" in r.disagreement
    assert "would have no CRS" in r.disagreement


def test_antipyretic_with_tocilizumab_needs_no_disagreement():
    r = crs(fever=False, treatments={"antipyretic", "tocilizumab"}, hypotension=True)
    assert r.grade == 2 and r.disagreement is None


def test_untreated_without_fever_is_no_crs_label():
    r = crs(fever=False)
    assert r.label == "no CRS" and not r.controlled


def test_unknown_treatment_rejected():
    with pytest.raises(InvalidFinding) as e:
        CrsFindings(treatments={"aspirin"})
    assert e.value.field == "crs_treated" and "antipyretic" in e.value.allowed


def test_hypoxia_without_fever_untreated_is_not_crs():
    r = crs(fever=False, oxygen="facemask")
    assert r.grade == 0
    assert "another cause" in r.explanation


def test_nasal_cannula_needs_flow():
    with pytest.raises(InvalidFinding) as e:
        CrsFindings(oxygen="nasal_cannula")
    assert e.value.field == "oxygen_flow_l_min"


def test_unknown_oxygen_device_rejected():
    with pytest.raises(InvalidFinding) as e:
        CrsFindings(oxygen="hood")
    assert "nasal_cannula" in e.value.allowed


def test_tocilizumab_repeat_is_held_back_for_8_h_after_a_dose():
    from datetime import datetime, timedelta, timezone

    from icans_cli.core.crs import tocilizumab_repeat

    given = datetime(2026, 11, 29, 5, 0, tzinfo=timezone.utc)
    hours, earliest = tocilizumab_repeat(given, given + timedelta(hours=2))
    assert hours == 2.0 and earliest == given + timedelta(hours=8)
    assert tocilizumab_repeat(given, given + timedelta(hours=8)) is None
