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
    PRODUCTS, LastAssessable, Protocol, Recommendation, recommend,
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
    case: Case
    result: IcansResult
    recommendation: Recommendation


def advise(protocol: Protocol, case: Case) -> Advice:
    """The grade and the advice for this case under this protocol (pure)."""
    result = grade_icans(case.findings)
    rec = recommend(protocol, result, case.crs, case.product, case.findings.age_years,
                    weight_kg=case.weight_kg, last_assessable=case.last_assessable,
                    log_checked=case.log_checked,
                    tocilizumab_hours_ago=case.tocilizumab_hours_ago)
    return Advice(case, result, rec)
