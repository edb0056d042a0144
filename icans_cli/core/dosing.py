"""Doses as structured data, and their text.

A protocol never states a dose as free text: each dose is a `Dose` (drug, amount and unit, or an
amount per kg with a maximum; route; interval; count, duration or taper), and the text a clinician
reads is rendered from it, with the amount computed for the patient's weight and capped at the
maximum. A line's text holds ``{name}`` placeholders where its doses go.

Traps this module guards against:
- a per-kg dose is never shown without its maximum, and a computed amount never exceeds it;
- a child is never shown an adult fixed amount (the protocol loader refuses such data; see
  ``protocol.py``), so every dose a child sees is per kg with the adult dose as its cap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from icans_cli.core.errors import InvalidFinding

UNITS = ("mg", "mg PE", "g", "mcg", "mL")
ROUTES = ("IV", "IM", "PO", "IV or PO", "SC", "intrathecal", "intranasal", "buccal")
WEIGHT_MIN_KG = 1.0
WEIGHT_MAX_KG = 350.0
# A literal amount in free text: a dose that escaped its structure.
AMOUNT_IN_TEXT = re.compile(r"\d[\d,.]*\s*(mg|g|mcg|microgram|mL)(/kg)?\b")


class DoseError(ValueError):
    """A dose in a protocol file is malformed (the protocol loader turns it into a message)."""


@dataclass(frozen=True)
class TaperStep:
    amount: float
    every_hours: float | None
    days: float | None = None
    until: str | None = None


@dataclass(frozen=True)
class Dose:
    drug: str
    amount: float
    unit: str
    route: str
    per_kg: bool = False
    max_amount: float | None = None
    max_per: str = "dose"  # "dose" | "day" | "total"
    per_day: bool = False  # the amount is a daily amount
    every_hours: tuple[float, float] | None = None  # (low, high); equal for a fixed interval
    every_minutes: int | None = None  # short repeat intervals (e.g. every 5 min)
    as_needed: bool = False  # "may repeat every ..." rather than "every ..."
    over: str | None = None  # infusion time, e.g. "1 h"
    count: int | None = None  # a fixed number of doses, e.g. x2
    days: float | None = None
    until: str | None = None
    taper: tuple[TaperStep, ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Dose":
        known = {"drug", "amount", "unit", "route", "per_kg", "max_amount", "max_per",
                 "per_day", "every_hours", "every_minutes", "as_needed", "over", "count", "days",
                 "until", "taper"}
        unknown = set(raw) - known
        if unknown:
            raise DoseError(f"unknown dose field {sorted(unknown)[0]!r} (fields: "
                            + ", ".join(sorted(known)) + ")")
        for key in ("drug", "amount", "unit", "route"):
            if key not in raw:
                raise DoseError(f"a dose needs {key!r}")
        drug = raw["drug"]
        if not isinstance(drug, str) or not drug.strip():
            raise DoseError("'drug' must be a drug name")
        amount = _positive(raw["amount"], "amount")
        unit = raw["unit"]
        if unit not in UNITS:
            raise DoseError(f"unit {unit!r} is not one of {', '.join(UNITS)}")
        route = raw["route"]
        if route not in ROUTES:
            raise DoseError(f"route {route!r} is not one of {', '.join(ROUTES)}")
        per_kg = raw.get("per_kg", False)
        if not isinstance(per_kg, bool):
            raise DoseError("'per_kg' must be true or false")
        max_amount = raw.get("max_amount")
        if max_amount is not None:
            max_amount = _positive(max_amount, "max_amount")
        max_per = raw.get("max_per", "dose")
        if max_per not in ("dose", "day", "total"):
            raise DoseError("'max_per' must be 'dose', 'day' or 'total'")
        every = raw.get("every_hours")
        if every is not None:
            if isinstance(every, list):
                if len(every) != 2:
                    raise DoseError("'every_hours' must be a number or [low, high]")
                lo, hi = _positive(every[0], "every_hours"), _positive(every[1], "every_hours")
                if lo > hi:
                    raise DoseError("'every_hours' [low, high] must have low <= high")
                every = (lo, hi)
            else:
                h = _positive(every, "every_hours")
                every = (h, h)
        minutes = raw.get("every_minutes")
        if minutes is not None:
            if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1:
                raise DoseError("'every_minutes' must be a whole number of minutes")
            if every is not None:
                raise DoseError("give every_hours or every_minutes, not both")
        count = raw.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise DoseError("'count' must be a whole number of doses")
        taper = tuple(_taper_step(s) for s in raw.get("taper") or ())
        if taper and per_kg:
            raise DoseError("a taper is given in fixed amounts; a per-kg dose cannot carry one")
        return cls(drug.strip(), amount, unit, route, per_kg, max_amount, max_per,
                   bool(raw.get("per_day", False)), every, minutes,
                   bool(raw.get("as_needed", False)),
                   _opt_str(raw.get("over"), "over"), count,
                   None if raw.get("days") is None else _positive(raw["days"], "days"),
                   _opt_str(raw.get("until"), "until"), taper)

    # --- for a patient --------------------------------------------------------------------------

    def computed_amount(self, weight_kg: float | None) -> float | None:
        """The amount for this weight, capped at the maximum; None unless per kg with a weight.

        A daily maximum caps the daily amount (a per-day dose) or, for a per-dose amount given
        at an interval, the dose times the doses a day."""
        if not self.per_kg or weight_kg is None:
            return None
        amount = self.amount * weight_kg
        cap = self.max_amount
        if cap is not None and self.max_per == "day" and not self.per_day:
            per_day = self.doses_per_day()
            cap = cap / per_day if per_day else cap
        if cap is None:
            return round_dose(amount)
        return min(round_dose(min(amount, cap)), cap)

    def capped(self, weight_kg: float | None) -> bool:
        if not self.per_kg or weight_kg is None or self.max_amount is None:
            return False
        return self.amount * weight_kg > (self.computed_amount(weight_kg) or 0) + 1e-9

    def doses_per_day(self) -> float | None:
        if self.every_hours is None:
            return None
        return 24 / self.every_hours[0]

    def as_dict(self, weight_kg: float | None = None) -> dict[str, Any]:
        """The `dose` object of spec section 4 (and the rest of the structure)."""
        every: Any = None
        if self.every_hours is not None:
            lo, hi = self.every_hours
            every = _num(lo) if lo == hi else [_num(lo), _num(hi)]
        out: dict[str, Any] = {
            "drug": self.drug, "amount": _num(self.amount), "unit": self.unit,
            "per_kg": self.per_kg,
            "max_amount": None if self.max_amount is None else _num(self.max_amount),
            "route": self.route, "every_hours": every,
            "computed_amount": (None if (c := self.computed_amount(weight_kg)) is None
                                else _num(c)),
        }
        if self.max_amount is not None:
            out["max_per"] = self.max_per
        for key in ("per_day", "as_needed"):
            if getattr(self, key):
                out[key] = True
        for key in ("every_minutes", "over", "count", "days", "until"):
            v = getattr(self, key)
            if v is not None:
                out[key] = _num(v) if isinstance(v, float) else v
        if self.taper:
            out["taper"] = [{k: (_num(v) if isinstance(v, float) else v)
                             for k, v in (("amount", s.amount), ("every_hours", s.every_hours),
                                          ("days", s.days), ("until", s.until))
                             if v is not None} for s in self.taper]
        return out

    def text(self, weight_kg: float | None = None, compact: bool = False) -> str:
        """e.g. 'tocilizumab 8 mg/kg → 560 mg at 70 kg (maximum 800 mg per dose), IV over 1 h,
        may repeat every 8 h' or 'dexamethasone 10 mg IV every 6-12 h'. `compact` (for the
        bedside summary, whose panel shows the weight): 'tocilizumab 8 mg/kg → 560 mg, IV
        over 1 h', '(capped)' when the maximum was reached, the maximum itself when there is no
        weight, no repeat clause, and a taper named rather than spelled out."""
        if compact:
            return self._compact(weight_kg)
        per = "/day" if self.per_day else ""
        text = f"{self.drug} {fmt_amount(self.amount)} {self.unit}" + ("/kg" if self.per_kg
                                                                      else "") + per
        cap = ""
        if self.max_amount is not None:
            cap = (f"maximum {fmt_amount(self.max_amount)} {self.unit} "
                   + ("in total" if self.max_per == "total" else f"per {self.max_per}"))
        if self.per_kg:
            amount = self.computed_amount(weight_kg)
            if amount is not None:
                text += (f" → {fmt_amount(amount)} {self.unit}{per} at "
                         f"{fmt_amount(weight_kg)} kg")  # type: ignore[arg-type]
                if cap:
                    text += (f" (capped at the {cap})" if self.capped(weight_kg)
                             else f" ({cap})")
            else:
                text += f" ({cap + '; ' if cap else ''}no weight: amount not computed)"
            text += ","
        parts = [text, self.route]
        if self.over:
            parts.append(f"over {self.over}")
        if self.count:
            parts.append(f"x{self.count} dose" + ("" if self.count == 1 else "s"))
        if self.every_hours is not None or self.every_minutes is not None:
            parts.append(("(may repeat every " if self.as_needed else "every ")
                         + (_hours(self.every_hours) if self.every_hours is not None
                            else f"{self.every_minutes} min")
                         + (")" if self.as_needed else ""))
        if self.days is not None:
            parts.append(f"for {fmt_amount(self.days)} day" + ("" if self.days == 1 else "s"))
        if self.until:
            parts.append(f"until {self.until}")
        if cap and not self.per_kg:
            parts.append(f"({cap})" if self.max_per != "total" else
                         f"up to {fmt_amount(self.max_amount)} {self.unit} in total")  # type: ignore[arg-type]
        text = " ".join(parts)
        for i, step in enumerate(self.taper):
            bits = [f"{fmt_amount(step.amount)} {self.unit}"]
            if step.every_hours is not None:
                bits.append(f"every {_hours((step.every_hours, step.every_hours))}")
            if step.days is not None:
                bits.append(f"for {fmt_amount(step.days)} day" + ("" if step.days == 1 else "s"))
            if step.until:
                bits.append(f"until {step.until}")
            text += (", then " if i == 0 else ", ") + " ".join(bits)
        return text


    def _compact(self, weight_kg: float | None) -> str:
        per = "/day" if self.per_day else ""
        text = f"{self.drug} {fmt_amount(self.amount)} {self.unit}" + ("/kg" if self.per_kg
                                                                      else "") + per
        if self.per_kg:
            amount = self.computed_amount(weight_kg)
            if amount is None:  # the cap is what the bedside needs to see without a weight
                text += (f" (max {fmt_amount(self.max_amount)} {self.unit}"
                         + {"total": " in total", "day": " a day"}.get(str(self.max_per), "")
                         + ")" if self.max_amount is not None else " (no weight)")
            else:
                # the weight is shown once beside the grade, not on every dose
                text += (f" → {fmt_amount(amount)} {self.unit}{per}"
                         + (" (capped)" if self.capped(weight_kg) else ""))
            text += ","
        parts = [text, self.route]
        if self.over:
            parts.append(f"over {self.over}")
        if self.count:
            parts.append(f"x{self.count} dose" + ("" if self.count == 1 else "s"))
        if not self.as_needed and self.every_hours is not None:
            parts.append("every " + _hours(self.every_hours))
        if self.days is not None:
            parts.append(f"for {fmt_amount(self.days)} day" + ("" if self.days == 1 else "s"))
        if self.until:
            parts.append(f"until {self.until}")
        text = " ".join(parts)
        if self.taper:
            text += ", then a taper"
        return text


def validate_weight(value: object) -> float | None:
    """Weight in kg: a number from 1 (below is a typing error for any CAR-T patient) to 350,
    or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFinding("weight_kg", f"{value!r} is not a number", "1-350 (kg)")
    if not WEIGHT_MIN_KG <= value <= WEIGHT_MAX_KG:
        raise InvalidFinding("weight_kg", f"{value:g} is out of range", "1-350 (kg)")
    return float(value)


def round_dose(amount: float) -> float:
    """Two decimals below 10, one below 100, whole numbers above: what a chart shows. (The
    caller caps again after rounding, so rounding never lifts an amount over its maximum.)"""
    if amount < 10:
        return round(amount, 2)
    if amount < 100:
        return round(amount, 1)
    return float(round(amount))


def fmt_amount(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _hours(every: tuple[float, float]) -> str:
    lo, hi = every
    return f"{fmt_amount(lo)} h" if lo == hi else f"{fmt_amount(lo)}-{fmt_amount(hi)} h"


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DoseError(f"'{name}' must be a number above 0 (got {value!r})")
    if not math.isfinite(value):  # 1e309 in JSON reads as infinity: never "inf mg"
        raise DoseError(f"'{name}' must be a finite number (got {value!r})")
    return float(value)


def _opt_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DoseError(f"'{name}' must be text")
    return value.strip()


def _taper_step(raw: object) -> TaperStep:
    if not isinstance(raw, dict):
        raise DoseError("a taper step must be an object with amount and every_hours")
    unknown = set(raw) - {"amount", "every_hours", "days", "until"}
    if unknown:
        raise DoseError(f"unknown taper field {sorted(unknown)[0]!r}")
    if "amount" not in raw:
        raise DoseError("a taper step needs 'amount'")
    every = raw.get("every_hours")
    return TaperStep(_positive(raw["amount"], "amount"),
                     None if every is None else _positive(every, "every_hours"),
                     None if raw.get("days") is None else _positive(raw["days"], "days"),
                     _opt_str(raw.get("until"), "until"))
