import pytest

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.scores import (
    CAPD_ITEMS,
    ICE_ITEMS,
    IceItems,
    capd_points,
    capd_total,
    ice_total,
    show_capd_anchors,
)


def test_ice_items_total_ten_points():
    assert sum(i.max_points for i in ICE_ITEMS) == 10
    assert [i.key for i in ICE_ITEMS] == ["orientation", "naming", "commands", "writing",
                                          "attention"]


def test_ice_orientation_has_year_month_city_hospital():
    assert ICE_ITEMS[0].parts == ("year", "month", "city", "hospital")


def test_ice_total_from_items():
    assert ice_total(IceItems(4, 3, 1, 1, 1)) == 10
    assert ice_total(IceItems(2, 1, 0, 1, 0)) == 4


def test_ice_total_from_score_alone():
    assert ice_total(score=7) == 7


def test_ice_items_that_disagree_with_total_are_rejected():
    with pytest.raises(InvalidFinding) as e:
        ice_total(IceItems(4, 3, 1, 1, 1), 9)
    assert e.value.field == "ice_score"
    assert "sum" in str(e.value)


@pytest.mark.parametrize("field,kwargs", [
    ("ice_orientation", dict(orientation=5, naming=0, commands=0, writing=0, attention=0)),
    ("ice_naming", dict(orientation=0, naming=4, commands=0, writing=0, attention=0)),
    ("ice_commands", dict(orientation=0, naming=0, commands=2, writing=0, attention=0)),
    ("ice_writing", dict(orientation=0, naming=0, commands=0, writing=2, attention=0)),
    ("ice_attention", dict(orientation=0, naming=0, commands=0, writing=0, attention=-1)),
])
def test_ice_item_out_of_range_names_the_item(field, kwargs):
    with pytest.raises(InvalidFinding) as e:
        IceItems(**kwargs)
    assert e.value.field == field
    assert "allowed" in str(e.value)


@pytest.mark.parametrize("bad", [11, -1, 10.5, "7", True])
def test_ice_score_outside_0_10_or_not_integer_is_rejected(bad):
    with pytest.raises(InvalidFinding) as e:
        ice_total(score=bad)
    assert e.value.field == "ice_score"
    assert e.value.allowed == "0-10"


def test_ice_needs_items_or_score():
    with pytest.raises(InvalidFinding):
        ice_total()


def test_capd_has_eight_items_first_four_reversed():
    assert len(CAPD_ITEMS) == 8
    assert [i.reversed for i in CAPD_ITEMS] == [True] * 4 + [False] * 4


def test_capd_items_1_to_4_score_never_4_always_0():
    for spec in CAPD_ITEMS[:4]:
        assert spec.points("never") == 4
        assert spec.points("always") == 0


def test_capd_items_5_to_8_score_never_0_always_4():
    for spec in CAPD_ITEMS[4:]:
        assert spec.points("never") == 0
        assert spec.points("always") == 4


def test_capd_best_answers_total_zero_and_worst_total_32():
    best = ["always"] * 4 + ["never"] * 4
    worst = ["never"] * 4 + ["always"] * 4
    assert capd_total(capd_points(best)) == 0
    assert capd_total(capd_points(worst)) == 32


def test_capd_unknown_answer_rejected():
    with pytest.raises(InvalidFinding) as e:
        capd_points(["maybe"] + ["never"] * 7)
    assert "never, rarely, sometimes, often, always" in str(e.value)


@pytest.mark.parametrize("bad", [33, -1])
def test_capd_score_outside_0_32_rejected(bad):
    with pytest.raises(InvalidFinding) as e:
        capd_total(score=bad)
    assert e.value.field == "capd_score"


def test_capd_items_disagreeing_with_total_rejected():
    with pytest.raises(InvalidFinding):
        capd_total((1, 1, 1, 1, 1, 1, 1, 1), 9)


def test_capd_anchors_shown_at_age_2_and_under_only():
    assert show_capd_anchors(0.5)
    assert show_capd_anchors(2)
    assert not show_capd_anchors(2.5)
    assert not show_capd_anchors(None)


def test_every_capd_item_has_anchor_text_for_young_children():
    for spec in CAPD_ITEMS:
        assert spec.anchors and all(text for _, text in spec.anchors)
