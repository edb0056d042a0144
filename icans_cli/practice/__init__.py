"""The trainee case bank (package data) and its answer key, computed by the clinical core."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from icans_cli.core.advice import Case as AdviceCase, advise
from icans_cli.core.crs import CrsFindings, CrsState, grade_crs
from icans_cli.core.grading import Findings, IcansResult, score_expected
from icans_cli.core.protocol import Recommendation
from icans_cli.core.scores import IceItems

TOPICS = ("adult", "pediatric", "crs", "pitfalls")
STEROID_CHOICES = {
    "none": "No corticosteroids (first line)",
    "dexamethasone": "Dexamethasone",
    "high_dose_methylprednisolone": "High-dose methylprednisolone",
}


@dataclass(frozen=True)
class Key:
    score_path: str
    score: int | None  # None: no score can be taken (unarousable or sedated)
    grade: int | None  # None: not assessable
    grade_at_least: int | None
    drivers: tuple[str, ...]
    crs_grade: int
    steroid: str
    tocilizumab: bool
    result: IcansResult
    recommendation: Recommendation

    @property
    def grade_answer(self) -> str:
        return str(self.grade) if self.grade is not None else "na"


@dataclass(frozen=True)
class Case:
    id: str
    topics: tuple[str, ...]
    age: float | None
    product: str | None
    narrative: str
    teaching: str
    trap: str | None
    findings: Findings
    crs_grade: int
    crs_detail: dict[str, Any] | None
    crs_controlled: bool = False

    def key(self, protocol) -> Key:
        advice = advise(protocol, AdviceCase(self.findings, CrsState(
            0 if self.crs_controlled else self.crs_grade, self.crs_controlled), self.product))
        r, rec = advice.result, advice.recommendation
        (branch,) = rec.branches
        score = r.ice_score if r.score_path == "ice" else r.capd_score
        if not score_expected(self.findings.consciousness, self.findings.sedated):
            score = None
        return Key(r.score_path, score, r.grade, r.grade_at_least, r.drivers, self.crs_grade,
                   branch.first_line_steroid, branch.tocilizumab_advised, r, rec)


def _case(raw: dict[str, Any]) -> Case:
    f = raw["findings"]
    items = f.get("ice_items")
    findings = Findings(
        age_years=raw.get("age"), developmental_delay=bool(raw.get("developmental_delay")),
        ice_items=IceItems(**items) if items else None, ice_score=f.get("ice_score"),
        capd_points=tuple(f["capd_items"]) if f.get("capd_items") else None,
        capd_score=f.get("capd_score"), consciousness=f.get("consciousness", "alert"),
        seizure=f.get("seizure", "none"), motor=f.get("motor", "none"),
        icp_edema=frozenset(f.get("icp_edema", ())), excluded=frozenset(f.get("excluded", ())),
        sedated=bool(f.get("sedated")))
    crs_detail = raw.get("crs")
    controlled = False
    if crs_detail is not None:
        c = crs_detail
        crs = grade_crs(CrsFindings(
            fever=c.get("fever", False), hypotension=c.get("hypotension", False),
            vasopressors=c.get("vasopressors", 0), oxygen=c.get("oxygen", "none"),
            oxygen_flow_l_min=c.get("flow"), treatments=frozenset(c.get("treatments", ())),
        ))
        crs_grade, controlled = crs.grade, crs.controlled
    else:
        crs_grade = int(raw["crs_grade"])
    return Case(raw["id"], tuple(raw["topics"]), raw.get("age"), raw.get("product"),
                raw["narrative"], raw["teaching"], raw.get("trap"), findings, crs_grade,
                crs_detail, controlled)


@lru_cache(maxsize=1)
def load_cases() -> tuple[Case, ...]:
    text = resources.files(__name__).joinpath("cases.json").read_text(encoding="utf-8")
    return tuple(_case(c) for c in json.loads(text)["cases"])
