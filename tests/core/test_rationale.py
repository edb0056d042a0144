from icans_cli.core.grading import Findings, grade_icans
from icans_cli.core.rationale import rationale, why_grade
from icans_cli.core.protocol import recommend
from icans_cli.protocols import load


def explain(crs=None, **kw):
    kw.setdefault("ice_score", 10)
    r = grade_icans(Findings(**kw))
    return r, rationale(r, recommend(load(), r, crs))


def test_why_grade_names_driver_and_what_lesser_finding_alone_would_give():
    text = why_grade(grade_icans(Findings(ice_score=8, seizure="self_limited")))
    assert "Grade 3, driven by the seizure (a self-limited seizure" in text
    assert "ICE 8/10 alone would be grade 1" in text


def test_why_grade_mentions_excluded_findings_and_why():
    text = why_grade(grade_icans(Findings(ice_score=10, excluded={"tremor"})))
    assert "Recorded, not graded: tremor" in text and "CTCAE" in text


def test_why_grade_not_assessable_gives_floor():
    text = why_grade(grade_icans(Findings(sedated=True, seizure="self_limited")))
    assert "Not assessable" in text and "at least 3" in text


def test_why_grade_ice_0_awake_explains_grade_3():
    assert "grade 4 needs an unarousable patient" in why_grade(
        grade_icans(Findings(ice_score=0)))


def test_isolated_icans_explains_steroids_and_why_not_tocilizumab():
    _, items = explain(crs=0, ice_score=2)
    topics = [i.topic for i in items]
    assert topics == ["grade", "corticosteroids", "tocilizumab", "trade_off"]


def test_concurrent_crs_explains_tocilizumab_is_for_the_crs():
    _, items = explain(crs=2, ice_score=5)
    assert "crs_present" in [i.topic for i in items]
    assert "tocilizumab" not in [i.topic for i in items]


def test_grade_0_has_no_treatment_rationale():
    _, items = explain(crs=0)
    assert [i.topic for i in items] == ["grade"]


def test_every_rationale_item_names_a_source():
    _, items = explain(crs=None, ice_score=0, consciousness="unarousable")
    assert all(i.sources for i in items)


def test_unverified_claims_are_not_stated_as_fact():
    _, items = explain(crs=None, ice_score=2)
    text = " ".join(i.text for i in items)
    # evidence file: these are UNVERIFIED and must not be printed as fact
    assert "Ang-2" not in text and "148 kDa" not in text
    assert "CSF IL-6 rise" not in text
    assert "opinion" in text  # the IL-6-reaches-the-brain idea is labelled as opinion
