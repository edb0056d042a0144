"""Encephalopathy scores: ICE (ASTCT, Lee 2019) and CAPD (Traube 2014).

Both are kept as data (item wording, points, answer scales, developmental anchors) so that an
interview can show them and a pure function can total them. Nothing here grades ICANS; that is
``grading.py``.

Traps this module guards against:
- ICE 10 means no impairment; it is not "mild" anything.
- CAPD items 1-4 score *backwards* (Never = 4 ... Always = 0); items 5-8 forwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from icans_cli.core.errors import InvalidFinding

ICE_MAX = 10
CAPD_MAX = 32
CAPD_DELIRIUM_THRESHOLD = 9  # a total of 9 or more suggests delirium (Traube 2014)


@dataclass(frozen=True)
class IceItemSpec:
    key: str
    label: str
    task: str
    max_points: int
    parts: tuple[str, ...] = ()  # for the checklist items (orientation, naming)


ICE_ITEMS: tuple[IceItemSpec, ...] = (
    IceItemSpec(
        "orientation",
        "Orientation",
        "Orientation to year, month, city and hospital: 1 point each.",
        4,
        ("year", "month", "city", "hospital"),
    ),
    IceItemSpec(
        "naming",
        "Naming",
        "Names 3 objects pointed at (e.g. clock, pen, button): 1 point each.",
        3,
        ("first object", "second object", "third object"),
    ),
    IceItemSpec(
        "commands",
        "Following commands",
        'Follows a simple command (e.g. "Show me 2 fingers" or '
        '"Close your eyes and stick out your tongue").',
        1,
    ),
    IceItemSpec("writing", "Writing", "Writes a standard sentence.", 1),
    IceItemSpec("attention", "Attention", "Counts backwards from 100 by 10.", 1),
)
ICE_ITEM_KEYS = tuple(i.key for i in ICE_ITEMS)


@dataclass(frozen=True)
class IceItems:
    orientation: int
    naming: int
    commands: int
    writing: int
    attention: int

    def __post_init__(self) -> None:
        for spec in ICE_ITEMS:
            value = getattr(self, spec.key)
            _check_int(f"ice_{spec.key}", value, 0, spec.max_points)

    @property
    def total(self) -> int:
        return sum(getattr(self, k) for k in ICE_ITEM_KEYS)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ICE_ITEM_KEYS}


def ice_total(items: IceItems | None = None, score: int | None = None) -> int:
    """The ICE total from its five items, from a total, or from both (which must agree)."""
    if items is None and score is None:
        raise InvalidFinding("ice_score", "no ICE items or total given", "0-10")
    if score is not None:
        _check_int("ice_score", score, 0, ICE_MAX)
    if items is None:
        assert score is not None
        return score
    if score is not None and score != items.total:
        raise InvalidFinding(
            "ice_score",
            f"{score} does not equal the sum of the ICE items ({items.total})",
            "the sum of ice_orientation, ice_naming, ice_commands, ice_writing, ice_attention",
        )
    return items.total


# --- CAPD -------------------------------------------------------------------------------------

CAPD_ANSWERS: tuple[str, ...] = ("never", "rarely", "sometimes", "often", "always")
ANCHORS_SOURCE = (
    "CAPD developmental anchor points (Silver et al., Palliat Support Care 2015; CHOP delirium "
    "pathway), paraphrased"
)


@dataclass(frozen=True)
class CapdItemSpec:
    number: int
    key: str
    question: str
    reversed: bool  # True: Never scores 4 ... Always 0
    anchors: tuple[tuple[str, str], ...]  # (age band, what is usual there), for ages <= 2

    def points(self, answer: str) -> int:
        try:
            index = CAPD_ANSWERS.index(answer)
        except ValueError:
            raise InvalidFinding(
                f"capd_{self.key}", f"{answer!r} is not a CAPD answer", ", ".join(CAPD_ANSWERS)
            ) from None
        return 4 - index if self.reversed else index


_LATER_ITEMS_ANCHOR = (
    ("0-2 years", "Judge against what is usual for this child at this age and at their own "
     "documented baseline; the published chart gives milestones for newborn to 2 years."),
)

CAPD_ITEMS: tuple[CapdItemSpec, ...] = (
    CapdItemSpec(
        1, "eye_contact", "Does the child make eye contact with the caregiver?", True,
        (
            ("newborn-8 weeks", "fixes on a face; holds gaze briefly; follows a face sideways"),
            ("around 28 weeks", "attends to the examiner's hand and to objects"),
            ("1-2 years", "holds gaze, prefers the main parent, looks at whoever is speaking"),
        ),
    ),
    CapdItemSpec(
        2, "purposeful", "Are the child's actions purposeful?", True,
        (
            ("newborn-8 weeks", "turns head; movement led by primitive reflexes; starts to reach"),
            ("around 28 weeks", "reaches with coordinated, smooth movement"),
            ("1-2 years", "reaches for and handles objects; tries to change position or get up"),
        ),
    ),
    CapdItemSpec(
        3, "aware", "Is the child aware of his/her surroundings?", True,
        (
            ("newborn-8 weeks", "has calm, alert awake time; turns to the main carer's voice"),
            ("around 28 weeks", "prefers familiar carers; tells new objects from familiar ones"),
            ("1-2 years", "prefers the main parent, upset when separated; comforted by a "
             "favourite object"),
        ),
    ),
    CapdItemSpec(4, "communicates", "Does the child communicate needs and wants?", True,
                 _LATER_ITEMS_ANCHOR),
    CapdItemSpec(5, "restless", "Is the child restless?", False, _LATER_ITEMS_ANCHOR),
    CapdItemSpec(6, "inconsolable", "Is the child inconsolable?", False, _LATER_ITEMS_ANCHOR),
    CapdItemSpec(7, "underactive",
                 "Is the child underactive (very little movement while awake)?", False,
                 _LATER_ITEMS_ANCHOR),
    CapdItemSpec(8, "slow_to_respond",
                 "Does it take the child a long time to respond to interactions?", False,
                 _LATER_ITEMS_ANCHOR),
)
CAPD_ANCHOR_MAX_AGE = 2  # show developmental anchors for children aged 2 and under


def capd_points(answers: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """Points for eight Never...Always answers, in item order."""
    if len(answers) != len(CAPD_ITEMS):
        raise InvalidFinding("capd_items", f"{len(answers)} answers given", "exactly 8")
    return tuple(spec.points(a) for spec, a in zip(CAPD_ITEMS, answers))


def capd_total(points: tuple[int, ...] | None = None, score: int | None = None) -> int:
    """The CAPD total from eight item points (0-4 each), a total, or both (which must agree)."""
    if points is None and score is None:
        raise InvalidFinding("capd_score", "no CAPD items or total given", "0-32")
    if score is not None:
        _check_int("capd_score", score, 0, CAPD_MAX)
    if points is None:
        assert score is not None
        return score
    if len(points) != len(CAPD_ITEMS):
        raise InvalidFinding("capd_items", f"{len(points)} item scores given", "exactly 8")
    for spec, p in zip(CAPD_ITEMS, points):
        _check_int(f"capd_{spec.key}", p, 0, 4)
    total = sum(points)
    if score is not None and score != total:
        raise InvalidFinding(
            "capd_score", f"{score} does not equal the sum of the CAPD items ({total})",
            "the sum of the eight item scores",
        )
    return total


def show_capd_anchors(age_years: float | None) -> bool:
    return age_years is not None and age_years <= CAPD_ANCHOR_MAX_AGE


def _check_int(field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFinding(field, f"{value!r} is not a whole number", f"{low}-{high}")
    if not low <= value <= high:
        raise InvalidFinding(field, f"{value} is outside {low}-{high}", f"{low}-{high}")
