"""The CSF/serum albumin quotient (Q_alb): a context marker of blood-CSF barrier leakage.

Not part of ASTCT grading. Reference limits differ between sources; the one used here is named:
Hegen et al., Clin Chem Lab Med 2016: upper reference limit = age/25 + 8 (x 10^-3).
"""

from __future__ import annotations

from dataclasses import dataclass

from icans_cli.core.errors import InvalidFinding

LIMIT_NAME = "Hegen et al. 2016 (Clin Chem Lab Med): upper reference limit = age/25 + 8, x10^-3"


@dataclass(frozen=True)
class QalbResult:
    qalb_e3: float  # Q_alb x 10^-3
    limit_e3: float
    above: bool
    age: float


def qalb(csf_albumin_mg_l: float, serum_albumin_g_l: float, age_years: float) -> QalbResult:
    """Q_alb = CSF albumin / serum albumin. With CSF in mg/L and serum in g/L the ratio is
    already in units of 10^-3."""
    if not csf_albumin_mg_l > 0:
        raise InvalidFinding("csf_albumin", f"{csf_albumin_mg_l:g} is not a positive amount",
                             "mg/L, > 0 (typical 100-400)")
    if csf_albumin_mg_l < 10:
        raise InvalidFinding("csf_albumin", f"{csf_albumin_mg_l:g} is too low for mg/L: was it "
                             "given in g/L or mg/dL? (0.25 g/L = 250 mg/L; 25 mg/dL = "
                             "250 mg/L)", "mg/L, 10 or more (typical 100-400)")
    if not serum_albumin_g_l > 0:
        raise InvalidFinding("serum_albumin", f"{serum_albumin_g_l:g} is not a positive amount",
                             "g/L, > 0 (typical 35-50)")
    if serum_albumin_g_l < 10:
        raise InvalidFinding("serum_albumin", f"{serum_albumin_g_l:g} is too low for g/L: US "
                             f"labs report g/dL ({serum_albumin_g_l:g} g/dL = "
                             f"{serum_albumin_g_l * 10:g} g/L)", "g/L, 10 or more (typical 35-50)")
    if not 0 <= age_years <= 130:
        raise InvalidFinding("age", f"{age_years} is out of range", "0-130 years")
    if age_years < 18:
        raise InvalidFinding("age", f"{age_years:g} is under 18: the Hegen limit was derived in "
                             "adults, and no paediatric limit is used here",
                             "18-130 years")
    q = csf_albumin_mg_l / serum_albumin_g_l
    limit = age_years / 25 + 8
    return QalbResult(q, limit, q > limit, age_years)
