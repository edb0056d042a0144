"""Is a weight plausible for the age? (growth charts; the interview asks to confirm, batch needs
``weight_confirmed``).

A weight outside the range for the age is more often a typing slip (pounds typed as kilograms,
a missing decimal point) than a child that size, and every per-kg dose is computed from it: a
4-year-old entered as 35 (pounds by habit) would get tocilizumab for 35 kg. Outside the range
the weight is not refused: it is confirmed.

The range at each age is the envelope of the 1st to 99th percentiles of weight-for-age of boys
and girls (WHO 2006 Child Growth Standards at birth and 1 year; CDC 2000 growth charts from 2 to
18 years; computed with the charts' LMS parameters: see CHANGELOG), widened by 10% on each side,
since children on CAR-T can be wasted or steroid-swollen. Between the ages in the table the
limits are interpolated; from 18 years an adult range applies.
"""

from __future__ import annotations

# age in years -> (1st percentile of the lighter sex, 99th percentile of the heavier), kg
_P1_P99: tuple[tuple[float, float, float], ...] = (
    (0, 2.3, 4.6), (1, 6.7, 12.5), (2, 9.6, 16.4), (4, 12.2, 23.2), (6, 15.3, 32.4),
    (8, 18.5, 43.9), (10, 22.5, 58.8), (12, 27.6, 75.6), (14, 34.6, 90.3), (16, 39.9, 101.1),
    (18, 42.3, 108.9),
)
MARGIN = 0.10
ADULT_RANGE = (35.0, 250.0)  # outside it an adult's weight is confirmed, not refused
SOURCE = ("WHO 2006 Child Growth Standards (0-1 year) and CDC 2000 growth charts (2-18 years), "
          "1st-99th percentile of weight-for-age, widened by 10%")


def plausible_range(age_years: float) -> tuple[float, float]:
    """(low, high) kg for this age."""
    if age_years >= _P1_P99[-1][0]:
        low, high = _P1_P99[-1][1:]
        return (min(round(low * (1 - MARGIN), 1), ADULT_RANGE[0]),
                max(round(high * (1 + MARGIN), 1), ADULT_RANGE[1]))
    for (a0, lo0, hi0), (a1, lo1, hi1) in zip(_P1_P99, _P1_P99[1:]):
        if a0 <= age_years <= a1:
            f = (age_years - a0) / (a1 - a0)
            low, high = lo0 + f * (lo1 - lo0), hi0 + f * (hi1 - hi0)
            return round(low * (1 - MARGIN), 1), round(high * (1 + MARGIN), 1)
    low, high = _P1_P99[0][1:]
    return round(low * (1 - MARGIN), 1), round(high * (1 + MARGIN), 1)


def implausible(age_years: float | None, weight_kg: float) -> tuple[float, float] | None:
    """The range when the weight is outside it for this age, else None (no age: not judged)."""
    if age_years is None:
        return None
    low, high = plausible_range(age_years)
    return None if low <= weight_kg <= high else (low, high)


LB_PER_KG = 2.20462


def pounds_to_kg(pounds: float) -> float:
    return round(pounds / LB_PER_KG, 1)
