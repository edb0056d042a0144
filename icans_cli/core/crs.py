"""ASTCT 2019 CRS grading (Lee 2019), used only to choose the ICANS management branch.

Fever >= 38.0 C not attributable to another cause, with the worse of hypotension and hypoxia.
Concurrent CRS never changes the ICANS grade.

Traps (each has a named test):
- Exactly 6 L/min by nasal cannula is LOW-flow (grade 2); only > 6 L/min is high-flow (grade 3).
- Vasopressin is not counted towards "multiple vasopressors".
- After tocilizumab or corticosteroids for CRS, fever is no longer required; such a patient is
  never called "no CRS".
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class CrsFindings:
    fever: bool | None = None  # fever >= 38.0 C not attributable to another cause
    temperature_c: float | None = None  # alternative to `fever`
    hypotension: bool = False
    vasopressors: int = 0  # number of vasopressors, vasopressin NOT counted
    vasopressin: bool = False
    oxygen: str = "none"
    oxygen_flow_l_min: float | None = None
    treated_for_crs: bool = False  # tocilizumab or corticosteroids already given for CRS

    def __post_init__(self) -> None:
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
        if self.oxygen == "nasal_cannula":
            if self.oxygen_flow_l_min is None:
                raise InvalidFinding("oxygen_flow_l_min", "nasal cannula needs its flow",
                                     "litres per minute, > 0")
            if not (0 < self.oxygen_flow_l_min <= 80):
                raise InvalidFinding("oxygen_flow_l_min", f"{self.oxygen_flow_l_min} is out "
                                     "of range", "> 0 and <= 80")

    @property
    def has_fever(self) -> bool:
        if self.temperature_c is not None:
            return self.temperature_c >= FEVER_C
        return bool(self.fever)


@dataclass(frozen=True)
class CrsResult:
    grade: int  # 0 = no CRS
    hypotension_grade: int
    hypoxia_grade: int
    fever: bool
    fever_waived: bool  # graded without fever because of prior tocilizumab/steroids
    explanation: str


def hypotension_grade(f: CrsFindings) -> int:
    if f.vasopressors >= 2:
        return 4
    if f.vasopressors == 1 or f.vasopressin:
        return 3
    if f.hypotension:
        return 2
    return 1


def hypoxia_grade(f: CrsFindings) -> int:
    if f.oxygen == "nasal_cannula":
        assert f.oxygen_flow_l_min is not None
        return 2 if f.oxygen_flow_l_min <= LOW_FLOW_MAX_L_MIN else 3
    g = OXYGEN_DEVICES[f.oxygen]
    assert g is not None
    return max(g, 1)


def grade_crs(f: CrsFindings) -> CrsResult:
    hyp = hypotension_grade(f)
    oxy = hypoxia_grade(f)
    fever = f.has_fever
    if fever:
        g = max(hyp, oxy)
        why = f"fever >= {FEVER_C:.1f} C with the worse of hypotension (grade {hyp}) and " \
              f"hypoxia (grade {oxy})"
        return CrsResult(g, hyp, oxy, True, False, why)
    if f.treated_for_crs:
        g = max(hyp, oxy)
        why = ("no fever, but tocilizumab or corticosteroids were given for CRS, so fever is "
               f"no longer required: graded on hypotension (grade {hyp}) and hypoxia "
               f"(grade {oxy}); this is still CRS")
        return CrsResult(g, hyp, oxy, False, True, why)
    why = "no fever >= 38.0 C and no prior tocilizumab/corticosteroids for CRS: no CRS"
    if hyp > 1 or oxy > 1:
        why += " (hypotension or hypoxia without fever has another cause to look for)"
    return CrsResult(0, hyp, oxy, False, False, why)
