"""ASTCT 2019 CRS grading (Lee 2019), used only to choose the ICANS management branch.

Fever >= 38.0 C not attributable to another cause, with the worse of hypotension and hypoxia.
Concurrent CRS never changes the ICANS grade.

Traps (each has a named test):
- Exactly 6 L/min by nasal cannula is LOW-flow (grade 2); only > 6 L/min is high-flow (grade 3).
- Vasopressin is not counted towards "multiple vasopressors".
- After treatment for CRS, fever is no longer required: the grade rests on hypotension and
  hypoxia. With neither, no ASTCT grade is met: the CRS is *controlled* (grade 0 for management,
  no further tocilizumab). An earlier version called that patient "still CRS, grade 1" and
  advised more tocilizumab; spec section 3 was corrected.
- Which treatments waive fever differs between sources: Lee 2019's footnote names "antipyretic
  or anticytokine therapy such as tocilizumab or steroids"; other reprints name only
  tocilizumab or steroids. Lee 2019 is followed, and when only an antipyretic was given the
  result says that the sources differ and what the other reading gives.
- Every CRS finding counts only when not attributable to another cause (ASTCT). Positive
  pressure (CPAP, BiPAP, intubation) is CRS hypoxia only when it is for hypoxia: a patient
  intubated to protect the airway (the usual reason in grade-4 ICANS) is not CRS grade 4 for
  that. With the reason not known, the result holds both readings and no single grade: it is
  never assumed to be 4, nor assumed not to be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from icans_cli.core.errors import InvalidFinding

FEVER_C = 38.0
LOW_FLOW_MAX_L_MIN = 6.0

# device -> grade; nasal cannula is graded by its flow
OXYGEN_DEVICES: dict[str, int | None] = {
    "none": 0,
    "blow_by": 2,
    "nasal_cannula": None,  # <= 6 L/min: 2; > 6 L/min (high-flow): 3
    "facemask": 3,
    "non_rebreather": 3,
    "venturi": 3,
    "cpap": 4,
    "bipap": 4,
    "mechanical_ventilation": 4,
}
POSITIVE_PRESSURE = frozenset({"cpap", "bipap", "mechanical_ventilation"})
VENTILATION_REASONS = ("hypoxia", "airway")


TREATMENTS = ("tocilizumab", "corticosteroids", "antipyretic")
ANTICYTOKINE = frozenset({"tocilizumab", "corticosteroids"})


@dataclass(frozen=True)
class CrsFindings:
    fever: bool | None = None  # fever >= 38.0 C not attributable to another cause
    temperature_c: float | None = None  # alternative to `fever`
    hypotension: bool = False
    vasopressors: int = 0  # number of vasopressors, vasopressin NOT counted
    vasopressin: bool = False
    oxygen: str = "none"
    oxygen_flow_l_min: float | None = None
    treatments: frozenset[str] = frozenset()  # of TREATMENTS: already given for the CRS
    ventilation_reason: str | None = None  # positive pressure: "hypoxia" | "airway" | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "treatments", frozenset(self.treatments))
        for t in self.treatments:
            if t not in TREATMENTS:
                raise InvalidFinding("crs_treated", f"{t!r} is not recognised",
                                     "none, or " + ", ".join(TREATMENTS) + ", separated by ;")
        if self.oxygen not in OXYGEN_DEVICES:
            raise InvalidFinding("oxygen", f"{self.oxygen!r} is not recognised",
                                 ", ".join(OXYGEN_DEVICES))
        if isinstance(self.vasopressors, bool) or not isinstance(self.vasopressors, int) \
                or self.vasopressors < 0:
            raise InvalidFinding("vasopressors", f"{self.vasopressors!r} is not a count",
                                 "0, 1, 2, ... (vasopressin not counted)")
        if self.temperature_c is not None and not (25.0 <= self.temperature_c <= 45.0):
            raise InvalidFinding("temperature_c", f"{self.temperature_c} is implausible",
                                 "25.0-45.0")
        if self.ventilation_reason is not None:
            if self.ventilation_reason not in VENTILATION_REASONS:
                raise InvalidFinding("ventilation_reason", f"{self.ventilation_reason!r} is not "
                                     "recognised", ", ".join(VENTILATION_REASONS))
            if self.oxygen not in POSITIVE_PRESSURE:
                raise InvalidFinding("ventilation_reason", "is only for positive pressure "
                                     "(oxygen cpap, bipap or mechanical_ventilation)",
                                     "blank with any other oxygen")
        if self.oxygen == "nasal_cannula":
            if self.oxygen_flow_l_min is None:
                raise InvalidFinding("oxygen_flow_l_min", "nasal cannula needs its flow",
                                     "litres per minute, > 0")
            if not (0 < self.oxygen_flow_l_min <= 80):
                raise InvalidFinding("oxygen_flow_l_min", f"{self.oxygen_flow_l_min} is out "
                                     "of range", "> 0 and <= 80")

    @property
    def treated_for_crs(self) -> bool:
        """Tocilizumab or corticosteroids given for CRS (the reading every source shares)."""
        return bool(self.treatments & ANTICYTOKINE)

    @property
    def has_fever(self) -> bool:
        if self.temperature_c is not None:
            return self.temperature_c >= FEVER_C
        return bool(self.fever)


@dataclass(frozen=True)
class CrsResult:
    grade: int | None  # 0 = no CRS (or controlled); None: two readings (see `readings`)
    hypotension_grade: int
    hypoxia_grade: int
    fever: bool
    fever_waived: bool  # graded without fever because of earlier treatment for CRS
    explanation: str
    controlled: bool = False  # treated, and now neither hypotension nor hypoxia
    disagreement: str | None = None  # only an antipyretic waived the fever: sources differ
    # positive pressure for a reason not given: (the reading if it is only to protect the
    # airway, the reading if it is for hypoxia); `grade` is then None
    readings: tuple["CrsResult", "CrsResult"] | None = None

    @property
    def label(self) -> str:
        """Plain words for the summary: 'CRS grade 2', 'no CRS', 'CRS controlled after
        treatment', 'CRS grade 4 or no CRS (why ventilated?)'."""
        if self.readings is not None:
            airway, hypoxia = self.readings
            return (f"{hypoxia.label} if ventilated for hypoxia, {_lower(airway.label)} if only "
                    "to protect the airway")
        if self.controlled:
            return "CRS controlled after treatment"
        return f"CRS grade {self.grade}" if self.grade else "no CRS"


def hypotension_grade(f: CrsFindings) -> int:
    if f.vasopressors >= 2:
        return 4
    if f.vasopressors == 1 or f.vasopressin:
        return 3
    if f.hypotension:
        return 2
    return 1


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:3] != "CRS" else text


def hypoxia_grade(f: CrsFindings, reason: str | None = None) -> int:
    """The hypoxia grade; positive pressure counts only when it is for hypoxia (`reason`, or
    the findings' own ventilation_reason)."""
    if f.oxygen in POSITIVE_PRESSURE and (reason or f.ventilation_reason) == "airway":
        return 1  # intubated to protect the airway: not CRS hypoxia
    if f.oxygen == "nasal_cannula":
        assert f.oxygen_flow_l_min is not None
        return 2 if f.oxygen_flow_l_min <= LOW_FLOW_MAX_L_MIN else 3
    g = OXYGEN_DEVICES[f.oxygen]
    assert g is not None
    return max(g, 1)


def _words(hyp: int, oxy: int) -> str:
    """'hypotension needing one vasopressor (grade 3) and no hypoxia'."""
    h = {1: "no hypotension", 2: "hypotension without vasopressors (grade 2)",
         3: "hypotension needing a vasopressor (grade 3)",
         4: "hypotension needing several vasopressors (grade 4)"}[hyp]
    o = {1: "no hypoxia", 2: "low-flow oxygen (grade 2)", 3: "high-flow oxygen or a mask (grade 3)",
         4: "positive pressure ventilation (grade 4)"}[oxy]
    return f"{h} and {o}"


def grade_crs(f: CrsFindings) -> CrsResult:
    if f.oxygen in POSITIVE_PRESSURE and f.ventilation_reason is None:
        airway = _grade(f, hypoxia_grade(f, "airway"))
        hypoxia = _grade(f, hypoxia_grade(f, "hypoxia"))
        if (airway.grade, airway.controlled) == (hypoxia.grade, hypoxia.controlled):
            return hypoxia  # the reason changes nothing (e.g. no fever and no treatment)
        why = (f"{f.oxygen.replace('_', ' ')} for a reason not given: ASTCT counts positive "
               f"pressure only when it is for hypoxia. If for hypoxia: {hypoxia.explanation}. "
               f"If only to protect the airway: {airway.explanation}. Say which.")
        return CrsResult(None, hypotension_grade(f), 4, hypoxia.fever, hypoxia.fever_waived,
                         why, False, hypoxia.disagreement, (airway, hypoxia))
    return _grade(f, hypoxia_grade(f))


def _grade(f: CrsFindings, oxy: int) -> CrsResult:
    hyp = hypotension_grade(f)
    words = _words(hyp, oxy)
    if f.oxygen in POSITIVE_PRESSURE and oxy == 1:
        words += " (positive pressure only to protect the airway is not CRS hypoxia)"
    if f.has_fever:
        g = max(hyp, oxy)
        why = f"fever >= {FEVER_C:.1f} C with {words}"
        return CrsResult(g, hyp, oxy, True, False, why)
    if f.treatments:
        given = " and ".join(t for t in TREATMENTS if t in f.treatments)
        disagreement = None
        if not f.treated_for_crs:
            disagreement = (
                "Sources differ on an antipyretic alone: Lee 2019's footnote says fever is no "
                "longer required after \"antipyretic or anticytokine therapy\" (followed here); "
                "other reprints name only tocilizumab or steroids, and by them this patient "
                "would have no CRS (no fever).")
        if hyp == 1 and oxy == 1:
            why = (f"no fever after {given} for CRS, and neither hypotension nor hypoxia: no "
                   "ASTCT grade is met, so the CRS is controlled after treatment (no further "
                   "tocilizumab)")
            return CrsResult(0, hyp, oxy, False, True, why, True, disagreement)
        g = max(hyp, oxy)
        why = (f"no fever, but {given} was given for CRS, so fever is no longer required: "
               f"graded on {words}")
        return CrsResult(g, hyp, oxy, False, True, why, False, disagreement)
    why = "no fever >= 38.0 C and no treatment for CRS so far: no CRS"
    if hyp > 1 or oxy > 1:
        why += " (hypotension or hypoxia without fever has another cause to look for)"
    return CrsResult(0, hyp, oxy, False, False, why)


@dataclass(frozen=True)
class CrsState:
    """The concurrent CRS as the advice needs it: a grade (None: not known), controlled after
    treatment, or two readings when positive pressure was given for a reason not stated."""

    grade: int | None = None
    controlled: bool = False
    disputed: bool = False  # fever waived by an antipyretic only: the sources differ
    readings: tuple["CrsState", "CrsState"] | None = None  # (airway only, for hypoxia)

    def __post_init__(self) -> None:
        if self.grade is not None and (isinstance(self.grade, bool)
                                       or not isinstance(self.grade, int)
                                       or not 0 <= self.grade <= 4):
            raise InvalidFinding("crs_grade", f"{self.grade!r} is not a CRS grade",
                                 "0-4, or blank")
        if self.controlled and self.grade != 0:
            raise InvalidFinding("crs_grade", f"{self.grade} contradicts a controlled CRS",
                                 "0 when the CRS is controlled after treatment")
        if self.readings is not None and self.grade is not None:
            raise InvalidFinding("crs_grade", "two readings and one grade",
                                 "a grade, or two readings")

    @classmethod
    def of(cls, result: CrsResult | None, grade: int | None = None) -> "CrsState":
        """From a CRS graded from its findings, else from a grade as given (None: unknown)."""
        if result is None:
            known = _GIVEN.get(grade) if type(grade) is int or grade is None else None
            return known if known is not None and cls is CrsState else cls(grade)
        if result.readings is not None:
            airway, hypoxia = result.readings
            return cls(None, readings=(cls.of(airway), cls.of(hypoxia)))
        return cls(result.grade, result.controlled, bool(result.disagreement))


# A grade as given, the state made once (a frozen value: one is as good as another).
_GIVEN: dict[int | None, CrsState] = {g: CrsState(g) for g in (None, 0, 1, 2, 3, 4)}


TOCILIZUMAB_REPEAT_H = 8  # ASCO 2021: tocilizumab may be repeated every 8 h if no improvement


def tocilizumab_held(hours_ago: float | None) -> float | None:
    """Hours until a repeat tocilizumab dose may be given, when the last dose was given less
    than TOCILIZUMAB_REPEAT_H hours ago; None when a repeat is not held back."""
    if hours_ago is None or hours_ago >= TOCILIZUMAB_REPEAT_H:
        return None
    return TOCILIZUMAB_REPEAT_H - max(hours_ago, 0.0)


def tocilizumab_repeat(given_at: datetime, now: datetime) -> tuple[float, datetime] | None:
    """A tocilizumab dose given less than TOCILIZUMAB_REPEAT_H before `now`: (hours since it,
    the earliest time of a repeat); None when a repeat is not held back."""
    hours = (now - given_at).total_seconds() / 3600
    if hours >= TOCILIZUMAB_REPEAT_H:
        return None
    return max(hours, 0.0), given_at + timedelta(hours=TOCILIZUMAB_REPEAT_H)
