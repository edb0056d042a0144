"""One advice for one patient, whatever the path.

The recommendation is a pure function of the whole case: the findings (age, every domain,
excluded findings, sedation, the CAPD baseline), the weight, the concurrent CRS as graded, the
product, the treatment times, and what the log says of the last assessable grade. The
interview, ``icans show``, batch grading and practice all build a :class:`Case` and call
:func:`advise`; nothing else builds advice. A cache may only key on the whole :class:`Case`
(it is a frozen, hashable value: a field added to it is in every key at once), and a property
test holds every path to the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from icans_cli.core.crs import CrsState
from icans_cli.core.dosing import validate_weight
from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import Findings, IcansResult, grade_icans
from icans_cli.core.protocol import (
    PRODUCTS, LastAssessable, Protocol, Recommendation, recommend, recommendation_id,
)


@dataclass(frozen=True)
class Case:
    """Everything the advice depends on, and nothing else (no patient id, no time of day)."""

    findings: Findings
    crs: CrsState = CrsState()
    product: str | None = None
    weight_kg: float | None = None
    tocilizumab_hours_ago: float | None = None  # the last tocilizumab dose for this CRS
    last_assessable: LastAssessable | None = None
    log_checked: bool = False  # the caller looked in the log for the last assessable grade

    def __post_init__(self) -> None:
        if self.product is not None and self.product not in PRODUCTS:
            raise InvalidFinding("product", f"{self.product!r} is not recognised",
                                 ", ".join(PRODUCTS))
        object.__setattr__(self, "weight_kg", validate_weight(self.weight_kg))


@dataclass(frozen=True)
class Advice:
    """The grade and the advice for one case. The advice is rendered when first asked for;
    its id (what a CSV row and the log keep) comes from the same summary without rendering."""

    protocol: Protocol
    case: Case
    result: IcansResult

    @property
    def recommendation(self) -> Recommendation:
        got = self.__dict__.get("_recommendation")
        if got is None:
            c = self.case
            got = recommend(self.protocol, self.result, c.crs, c.product, c.findings.age_years,
                            weight_kg=c.weight_kg, last_assessable=c.last_assessable,
                            log_checked=c.log_checked,
                            tocilizumab_hours_ago=c.tocilizumab_hours_ago)
            self.__dict__["_recommendation"] = got  # computed once (frozen: not a field)
        return got

    @property
    def id(self) -> str:
        got = self.__dict__.get("_id")
        if got is None:
            c = self.case
            got = recommendation_id(self.protocol, self.result, c.crs, c.product,
                                    c.findings.age_years, c.weight_kg)
            self.__dict__["_id"] = got
        return got


_GRADES: dict[Findings, IcansResult] = {}
_GRADES_MAX = 1024


def grade(findings: Findings) -> IcansResult:
    """grade_icans, remembered on the whole Findings (a pure function on its whole input)."""
    result = _GRADES.get(findings)
    if result is None:
        result = grade_icans(findings)
        if len(_GRADES) < _GRADES_MAX:
            _GRADES[findings] = result
    return result


def advise(protocol: Protocol, case: Case) -> Advice:
    """The grade and the advice for this case under this protocol (pure)."""
    return Advice(protocol, case, grade(case.findings))


# --- what of the age the grade and the advice can see ---------------------------------------

def age_landmarks(protocol: Protocol) -> tuple[float, ...]:
    """Every age the grade and the advice compare an age with, each as "under N": the score
    path (under 12: CAPD), children's doses (under 18), and every age limit a line of this
    protocol is conditioned on. A rule that compares the age with anything else must add it
    here (a property test holds batch output equal for every age and its canonical_age). The
    score path's reason text names the age itself: it is display, never a batch output."""
    from icans_cli.core.grading import ICE_AGE_MIN
    from icans_cli.core.protocol import ADULT_AGE

    return tuple(sorted({0.0, float(ICE_AGE_MIN), float(ADULT_AGE),
                         *protocol.age_thresholds}))


def canonical_age(age: float, landmarks: tuple[float, ...]) -> float:
    """The landmark at or below the age: every "under N" the grade and the advice ask of the
    age is answered the same way for it. A batch keys its cache on it, so rows of one age band
    share one computation."""
    low = landmarks[0]
    for mark in landmarks:
        if mark <= age:
            low = mark
    return float(low)
