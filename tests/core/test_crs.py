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
def test_positive_pressure_is_grade_4(device):
    assert crs(oxygen=device).grade == 4


def test_worse_of_hypotension_and_hypoxia_sets_grade():
    r = crs(vasopressors=1, oxygen="nasal_cannula", oxygen_flow_l_min=3)
    assert r.grade == 3


def test_after_tocilizumab_or_steroids_fever_not_required():
    r = crs(fever=False, treated_for_crs=True, hypotension=True)
    assert r.grade == 2
    assert r.fever_waived


def test_treated_patient_without_fever_is_never_called_no_crs():
    r = crs(fever=False, treated_for_crs=True)
    assert r.grade >= 1
    assert "still CRS" in r.explanation


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
