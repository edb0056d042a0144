"""A centre's protocol file checked like a prescription (spec section 4).

Every dose in a protocol is finite and within a plausible range for its drug, unit and route:
a typo (dexamethasone 100 mg, methylprednisolone 1,000 g, lorazepam 1 mg/kg, "every 0.01 h",
dexamethasone in mL) is refused with the field named, unless the line carries
``"outside_usual_range": "reason"``, which every screen then shows beside the dose. A per-kg dose
has a maximum: its ``max_amount``, or, when it has none, the amount at the heaviest weight the
line can see (its weight band's limit, else the tool's 350 kg), which must stay within the
drug's per-dose ceiling; a ``max_amount`` is never above that ceiling, so no weight band gets
round a cap (tocilizumab 12 mg/kg below 70 kg would reach 840 mg: refused).

The ranges are plausibility limits, not advice: wide enough for every regimen in the built-in
protocols and the labels and guidelines they cite, narrow enough to catch a slipped decimal.
Sources for the ceilings (read by the project, see CHANGELOG):
- tocilizumab: 8 mg/kg from 30 kg, 12 mg/kg under 30 kg, "doses exceeding 800 mg per infusion
  are not recommended" (Actemra label, CRS; ASCO 2021 "not to exceed 800 mg/dose");
- dexamethasone: ASCO 2021 10 mg per dose; up to 20 mg per dose in reviews (PMC10573998);
- methylprednisolone: 1,000 mg per dose (CARTOX 2018 pulse; ASCO 2021 CRS grade 4 "consider
  1,000 mg IV 2 times a day"); the label's high-dose regimen is 30 mg/kg;
- lorazepam 0.1 mg/kg, maximum 4 mg; levetiracetam 60 mg/kg, maximum 4,500 mg; fosphenytoin
  20 mg PE/kg, maximum 1,500 mg PE; valproate 40 mg/kg, maximum 3,000 mg (AES 2016 / ESETT);
- intrathecal hydrocortisone 50 mg and methotrexate 12 mg (ASCO 2021 footnote);
- anakinra 2 mg/kg, maximum 100 mg per dose (paediatric institutional tables, Blood Adv 2022).
Where no ceiling could be read (phenobarbital, siltuximab, midazolam, the intrathecal
methotrexate maximum of 15 mg), the range is a plausibility guard of general practice and says
so in its note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from icans_cli.core.dosing import Dose

HEAVIEST_KG = 350.0  # the tool's weight limit (dosing.WEIGHT_MAX_KG)
INTERVAL_HOURS = (1.0, 48.0)
INTERVAL_MINUTES = (1, 60)
MAX_DAYS = 30.0
MAX_COUNT = 12
MG_PER_UNIT = {"mg": 1.0, "g": 1000.0, "mcg": 0.001, "mg PE": 1.0}


@dataclass(frozen=True)
class Range:
    """Plausible amounts for one drug: per dose in its units (converted to mg), per kg, the
    units and routes it comes in, and the ceiling no single dose may pass."""

    units: tuple[str, ...]
    routes: tuple[str, ...]
    fixed_mg: tuple[float, float]  # a fixed amount per dose (or per day, for a daily amount)
    per_kg_mg: tuple[float, float] | None  # None: never per kg
    ceiling_mg: float  # no single dose above this, whatever the weight
    note: str = ""


RANGES: dict[str, Range] = {
    "dexamethasone": Range(("mg",), ("IV", "PO", "IV or PO", "IM"), (0.5, 20), (0.02, 0.5),
                           20),
    "methylprednisolone": Range(("mg", "g"), ("IV", "PO", "IV or PO"), (4, 1000), (0.5, 30),
                                1000),
    "hydrocortisone": Range(("mg",), ("IV", "intrathecal"), (5, 500), (0.5, 10), 500),
    "methotrexate": Range(("mg",), ("intrathecal",), (2, 15), None, 15,
                          "15 mg: a plausibility guard; ASCO's dose is 12 mg"),
    "tocilizumab": Range(("mg",), ("IV",), (40, 800), (4, 12), 800),
    "siltuximab": Range(("mg",), ("IV",), (100, 3850), (5, 11), 3850,
                        "no label ceiling read: 11 mg/kg at the tool's 350 kg"),
    "anakinra": Range(("mg",), ("IV", "SC"), (10, 200), (1, 10), 200),
    "levetiracetam": Range(("mg",), ("IV", "PO", "IV or PO"), (125, 4500), (5, 60), 4500),
    "lorazepam": Range(("mg",), ("IV", "IM", "PO", "IV or PO", "buccal", "intranasal"),
                       (0.25, 4), (0.02, 0.1), 4),
    "midazolam": Range(("mg",), ("IV", "IM", "buccal", "intranasal"), (0.5, 10), (0.05, 0.5),
                       10, "no ceiling read: a plausibility guard"),
    "diazepam": Range(("mg",), ("IV", "PO", "IV or PO"), (1, 10), (0.1, 0.5), 10,
                      "no ceiling read: a plausibility guard"),
    "fosphenytoin": Range(("mg PE",), ("IV", "IM"), (50, 1500), (5, 20), 1500),
    "valproate": Range(("mg",), ("IV", "PO", "IV or PO"), (100, 3000), (5, 40), 3000),
    "phenobarbital": Range(("mg",), ("IV", "PO", "IV or PO"), (15, 1500), (1, 20), 1500,
                           "no authoritative ceiling read: a plausibility guard"),
}


def finite_problem(value: object) -> str | None:
    """Why a number cannot be a dose (not finite), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    return None


def _mg(amount: float, unit: str) -> float:
    return amount * MG_PER_UNIT.get(unit, 1.0)


def _fmt(x: float) -> str:
    return f"{x:,.2f}".rstrip("0").rstrip(".")


def check_dose(dose: "Dose", *, child_can_see: bool,
               weight_band: tuple[str, float] | None,
               outside_ok: bool) -> list[tuple[str, str]]:
    """(field, problem) for each way the dose is implausible. `outside_ok`: the line carries
    an outside_usual_range reason, which waives the amount ranges (never the units, the
    route, the intervals or finiteness)."""
    problems: list[tuple[str, str]] = []
    drug = dose.drug.strip().lower()
    r = RANGES.get(drug)
    for name in ("amount", "max_amount", "days"):
        p = finite_problem(getattr(dose, name))
        if p:
            problems.append((name, p))
    if dose.every_hours is not None:
        lo, hi = dose.every_hours
        if not (INTERVAL_HOURS[0] <= lo and hi <= INTERVAL_HOURS[1]):
            problems.append(("every_hours", f"every {_fmt(lo)}-{_fmt(hi)} h is outside "
                             f"{INTERVAL_HOURS[0]:g}-{INTERVAL_HOURS[1]:g} h"))
    if dose.every_minutes is not None and not (
            INTERVAL_MINUTES[0] <= dose.every_minutes <= INTERVAL_MINUTES[1]):
        problems.append(("every_minutes", f"every {dose.every_minutes} min is outside "
                         f"{INTERVAL_MINUTES[0]}-{INTERVAL_MINUTES[1]} min"))
    if dose.days is not None and math.isfinite(dose.days) and not 0 < dose.days <= MAX_DAYS:
        problems.append(("days", f"{_fmt(dose.days)} days is outside 0-{MAX_DAYS:g}"))
    if dose.count is not None and not 1 <= dose.count <= MAX_COUNT:
        problems.append(("count", f"{dose.count} doses is outside 1-{MAX_COUNT}"))
    for i, step in enumerate(dose.taper):
        if step.every_hours is not None and not (
                INTERVAL_HOURS[0] <= step.every_hours <= INTERVAL_HOURS[1]):
            problems.append((f"taper[{i}].every_hours", f"every {_fmt(step.every_hours)} h is "
                             f"outside {INTERVAL_HOURS[0]:g}-{INTERVAL_HOURS[1]:g} h"))
        p = finite_problem(step.amount)
        if p:
            problems.append((f"taper[{i}].amount", p))
    if r is None:
        if not outside_ok:
            problems.append(("drug", f"{dose.drug!r} has no plausible range in this tool "
                             "(known: " + ", ".join(sorted(RANGES)) + "); a line with "
                             "another drug needs \"outside_usual_range\": \"reason\""))
        return problems
    if dose.unit not in r.units:
        problems.append(("unit", f"{dose.drug} in {dose.unit!r}: allowed "
                         + ", ".join(r.units)))
        return problems  # the amounts cannot be read in an unknown unit
    if dose.route not in r.routes:
        problems.append(("route", f"{dose.drug} {dose.route!r}: allowed "
                         + ", ".join(r.routes)))
    if outside_ok or any(f in ("amount", "max_amount") for f, _ in problems):
        return problems
    unit = dose.unit if dose.unit != "g" else "mg"
    if dose.per_kg:
        if r.per_kg_mg is None:
            problems.append(("per_kg", f"{dose.drug} is not dosed per kg here"))
        else:
            lo, hi = r.per_kg_mg
            per_kg = _mg(dose.amount, dose.unit)
            if not lo <= per_kg <= hi:
                problems.append(("amount", f"{dose.drug} {_fmt(per_kg)} {unit}/kg is outside "
                                 f"the usual {_fmt(lo)}-{_fmt(hi)} {unit}/kg"))
        if dose.max_amount is not None and math.isfinite(dose.max_amount):
            cap = _mg(dose.max_amount, dose.unit)
            if cap > r.ceiling_mg:
                problems.append(("max_amount", f"{dose.drug} maximum {_fmt(cap)} {unit} is above "
                                 f"the usual ceiling of {_fmt(r.ceiling_mg)} {unit} per dose"
                                 + (" (a child's dose is never above the adult cap)"
                                    if child_can_see else "")))
        elif dose.max_amount is None and not dose.per_day:
            heaviest = weight_band[1] if weight_band and weight_band[0] == "below" \
                else HEAVIEST_KG
            most = _mg(dose.amount, dose.unit) * heaviest
            if most > r.ceiling_mg:
                problems.append(("max_amount", f"{dose.drug} {_fmt(dose.amount)} {unit}/kg "
                                 f"reaches {_fmt(most)} {unit} at {_fmt(heaviest)} kg, above "
                                 f"the ceiling of {_fmt(r.ceiling_mg)} {unit} per dose: give "
                                 f"max_amount (at most {_fmt(r.ceiling_mg)})"))
    else:
        lo, hi = r.fixed_mg
        mg = _mg(dose.amount, dose.unit)
        if not lo <= mg <= hi:
            what = "a day" if dose.per_day else "per dose"
            problems.append(("amount", f"{dose.drug} {_fmt(mg)} {unit} {what} is outside the "
                             f"usual {_fmt(lo)}-{_fmt(hi)} {unit}"))
        if dose.max_amount is not None and math.isfinite(dose.max_amount) \
                and dose.max_per != "total" and _mg(dose.max_amount, dose.unit) > r.ceiling_mg:
            problems.append(("max_amount", f"{dose.drug} maximum {_fmt(dose.max_amount)} "
                             f"{unit} is above the usual ceiling of {_fmt(r.ceiling_mg)} {unit}"))
        for i, step in enumerate(dose.taper):
            if math.isfinite(step.amount) and not lo <= _mg(step.amount, dose.unit) <= hi:
                problems.append((f"taper[{i}].amount", f"{dose.drug} {_fmt(step.amount)} "
                                 f"{unit} is outside the usual {_fmt(lo)}-{_fmt(hi)} {unit}"))
    return problems


_CONTROL = {*range(0x00, 0x20), 0x7f, *range(0x80, 0xa0)}


def control_problem(text: str) -> str | None:
    """Why a protocol's text cannot be printed (a control character or an escape sequence
    would be obeyed by the terminal), or None."""
    for ch in text:
        if ord(ch) in _CONTROL:
            return (f"contains a control character (U+{ord(ch):04X}: an escape sequence or a "
                    "line break); text is printed as it is")
    return None
