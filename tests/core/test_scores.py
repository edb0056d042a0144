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


# --- a late entry's time (--assessed-at) ----------------------------------------------------------

def test_late_entry_hh_mm_is_today_local_time():
    from datetime import datetime, timezone

    from icans_cli.core.identifiers import parse_assessed_at

    now = datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)
    t = parse_assessed_at("00:00", now.astimezone().replace(hour=23, minute=0))
    assert t.astimezone().hour == 0 and t.astimezone().minute == 0
    assert t.astimezone().date() == now.astimezone().replace(hour=23).date()


def test_late_entry_in_the_future_is_refused_with_yesterdays_date_as_the_example():
    from datetime import datetime, timedelta, timezone

    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_assessed_at

    now = datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)
    with pytest.raises(InvalidFinding, match="is in the future"):
        parse_assessed_at((now + timedelta(minutes=10)).isoformat(), now)
    assert parse_assessed_at((now + timedelta(minutes=4)).isoformat(), now)  # clock skew


def test_late_entry_more_than_24_hours_ago_is_refused():
    from datetime import datetime, timedelta, timezone

    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_assessed_at

    now = datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)
    assert parse_assessed_at((now - timedelta(hours=23, minutes=59)).isoformat(), now)
    with pytest.raises(InvalidFinding, match="more than 24 hours ago"):
        parse_assessed_at((now - timedelta(hours=24, minutes=1)).isoformat(), now)


@pytest.mark.parametrize("text", ["24:00", "7:60", "yesterday", "14.30"])
def test_late_entry_that_is_not_a_time_is_refused(text):
    from datetime import datetime, timezone

    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_assessed_at

    with pytest.raises(InvalidFinding):
        parse_assessed_at(text, datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc))
