"""Management protocols as data, and choosing the advice for a result.

A protocol is a plain mapping (loaded from JSON outside the core) of lines of advice, each with
the grades, concurrent-CRS branch (yes/no/any), product risk (high/other/any) and optionally
patient (child) or seizure conditions it applies to, its section, its source and evidence level.

Evidence levels follow the project's evidence file: V (read in a primary or reprinted source),
V2 (restated by a secondary source), R (recalled, UNVERIFIED: the text itself must say so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import IcansResult

HIGH_NEUROTOXICITY_PRODUCTS = frozenset({"axi-cel", "brexu-cel"})
PRODUCTS = ("axi-cel", "brexu-cel", "tisa-cel", "liso-cel", "ide-cel", "cilta-cel", "obe-cel",
            "other")
SECTIONS = ("level_of_care", "corticosteroids", "anti_cytokine", "supportive", "workup",
            "refractory", "taper")
SECTION_TITLES = {
    "level_of_care": "Level of care",
    "corticosteroids": "Corticosteroids",
    "anti_cytokine": "Anti-cytokine therapy",
    "supportive": "Supportive care",
    "workup": "Work-up",
    "refractory": "If steroid-refractory",
    "taper": "Taper",
}
EVIDENCE = {"V": "verified in a primary or reprinted source",
            "V2": "restated by a secondary source",
            "R": "recalled, UNVERIFIED"}
FIRST_LINE_STEROIDS = ("dexamethasone", "high_dose_methylprednisolone")
DECISION_LINE = ("Decision support only: institutional protocol and the treating team decide "
                 "every treatment.")


class ProtocolError(ValueError):
    """A protocol's data is malformed."""


@dataclass(frozen=True)
class AdviceLine:
    section: str
    text: str
    source_id: str
    citation: str
    short_source: str
    evidence: str
    is_dose: bool
    protocol_id: str
    first_line: str | None = None  # first-line corticosteroid this line advises, if any

    @property
    def verified(self) -> bool:
        return self.evidence != "R"


@dataclass(frozen=True)
class _Rule:
    grades: frozenset[int]
    crs: str
    product: str
    patient: str
    seizure: bool
    line: AdviceLine


@dataclass(frozen=True)
class Cadence:
    hours: int
    text: str
    citation: str
    evidence: str


@dataclass(frozen=True)
class Protocol:
    id: str
    version: str
    title: str
    note: str
    rules: tuple[_Rule, ...]
    disagreements: tuple[tuple[frozenset[int], AdviceLine], ...]
    cadence: tuple[tuple[frozenset[int], Cadence], ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Protocol":
        try:
            pid = str(data["id"])
            sources = {k: str(v["citation"]) for k, v in data["sources"].items()}
            shorts = {k: str(v.get("short") or v["citation"]) for k, v in data["sources"].items()}

            def line(raw: Mapping[str, Any], section: str) -> AdviceLine:
                src = raw["source"]
                if src not in sources:
                    raise ProtocolError(f"{pid}: unknown source {src!r}")
                ev = raw.get("evidence", "")
                if ev not in EVIDENCE:
                    raise ProtocolError(f"{pid}: evidence {ev!r} must be one of V, V2, R")
                text = str(raw["text"])
                if ev == "R" and "UNVERIFIED" not in text and "unverified" not in text:
                    raise ProtocolError(f"{pid}: a recalled line must say it is unverified: "
                                        f"{text[:60]}")
                if section not in SECTIONS and section != "disagreement":
                    raise ProtocolError(f"{pid}: unknown section {section!r}")
                first = raw.get("first_line")
                if first not in (None, *FIRST_LINE_STEROIDS):
                    raise ProtocolError(f"{pid}: first_line {first!r} is not one of "
                                        f"{', '.join(FIRST_LINE_STEROIDS)}")
                return AdviceLine(section, text, src, sources[src], shorts[src], ev,
                                  bool(raw.get("dose", False)), pid, first)

            def grades(raw: Mapping[str, Any]) -> frozenset[int]:
                g = frozenset(int(x) for x in raw["grades"])
                if not g or not g <= {0, 1, 2, 3, 4}:
                    raise ProtocolError(f"{pid}: grades must be within 0-4")
                return g

            rules = []
            for raw in data["lines"]:
                crs = raw.get("crs", "any")
                product = raw.get("product", "any")
                patient = raw.get("patient", "any")
                if crs not in ("yes", "no", "any") or product not in ("high", "other", "any") \
                        or patient not in ("child", "any"):
                    raise ProtocolError(f"{pid}: bad condition in {raw.get('text', '')[:60]}")
                rules.append(_Rule(grades(raw), crs, product, patient,
                                   bool(raw.get("seizure", False)),
                                   line(raw, raw["section"])))
            disagreements = tuple((grades(raw), line(raw, "disagreement"))
                                  for raw in data.get("disagreements", []))
            cadence = tuple((grades(raw), Cadence(int(raw["hours"]), str(raw["text"]),
                                                  sources[raw["source"]], raw["evidence"]))
                            for raw in data["cadence"])
            for g in range(5):
                if sum(1 for gs, _ in cadence if g in gs) != 1:
                    raise ProtocolError(f"{pid}: grade {g} needs exactly one cadence")
            return cls(pid, str(data["version"]), str(data["title"]), str(data.get("note", "")),
                       tuple(rules), disagreements, cadence)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(f"malformed protocol: {exc!r}") from exc

    def cadence_for(self, grade: int) -> Cadence:
        return next(c for gs, c in self.cadence if grade in gs)


@dataclass(frozen=True)
class Branch:
    crs: bool
    label: str
    lines: tuple[AdviceLine, ...]

    @property
    def corticosteroid_dose_advised(self) -> bool:
        return any(line.section == "corticosteroids" and line.is_dose for line in self.lines)

    @property
    def first_line_steroid(self) -> str:
        """'dexamethasone', 'high_dose_methylprednisolone' or 'none' (first line, this branch)."""
        for line in self.lines:
            if line.first_line:
                return line.first_line
        return "none"

    @property
    def tocilizumab_advised(self) -> bool:
        return any(line.section == "anti_cytokine" and line.is_dose for line in self.lines)


@dataclass(frozen=True)
class Recommendation:
    protocol_id: str
    protocol_version: str
    protocol_title: str
    protocol_note: str
    grade: int
    grade_is_floor: bool  # not assessable: advice for "at least" this grade
    crs: str  # "yes" | "no" | "unknown"
    product: str | None
    high_risk_product: bool
    branches: tuple[Branch, ...]
    disagreements: tuple[AdviceLine, ...]
    cadence: Cadence
    decision_line: str = DECISION_LINE

    @property
    def id(self) -> str:
        prod = "high-risk" if self.high_risk_product else "standard"
        floor = "+" if self.grade_is_floor else ""
        return (f"{self.protocol_id}@{self.protocol_version}/grade{self.grade}{floor}/"
                f"crs-{self.crs}/{prod}")

    @property
    def all_lines(self) -> tuple[AdviceLine, ...]:
        return tuple(line for b in self.branches for line in b.lines) + self.disagreements

    def as_dict(self) -> dict[str, Any]:
        def ld(line: AdviceLine) -> dict[str, Any]:
            return {"section": line.section, "text": line.text, "source": line.citation,
                    "evidence": line.evidence, "dose": line.is_dose,
                    "protocol": line.protocol_id}
        return {
            "id": self.id,
            "protocol": self.protocol_id,
            "protocol_version": self.protocol_version,
            "grade": self.grade,
            "grade_is_floor": self.grade_is_floor,
            "crs": self.crs,
            "product": self.product,
            "branches": [{"crs": b.crs, "label": b.label, "lines": [ld(x) for x in b.lines]}
                         for b in self.branches],
            "disagreements": [ld(x) for x in self.disagreements],
            "next_assessment_hours": self.cadence.hours,
            "decision": self.decision_line,
        }


def crs_status(crs_grade: int | None) -> str:
    if crs_grade is None:
        return "unknown"
    if isinstance(crs_grade, bool) or not isinstance(crs_grade, int) or not 0 <= crs_grade <= 4:
        raise InvalidFinding("crs_grade", f"{crs_grade!r} is not a CRS grade", "0-4, or blank")
    return "yes" if crs_grade >= 1 else "no"


def recommend(
    protocol: Protocol,
    result: IcansResult,
    crs_grade: int | None = None,
    product: str | None = None,
    age_years: float | None = None,
    seizure: bool | None = None,
) -> Recommendation:
    """Advice for a graded (or not-assessable) result under one protocol.

    CRS unknown gives both branches, each labelled. A not-assessable result is advised at its
    floor (`grade_at_least`), and says so.
    """
    if product is not None and product not in PRODUCTS:
        raise InvalidFinding("product", f"{product!r} is not recognised", ", ".join(PRODUCTS))
    status = crs_status(crs_grade)
    grade = result.effective_grade
    high = product in HIGH_NEUROTOXICITY_PRODUCTS
    child = age_years is not None and age_years < 18
    has_seizure = (result.domain("seizure").value != "none") if seizure is None else seizure

    def lines_for(crs: bool) -> tuple[AdviceLine, ...]:
        chosen = []
        for r in protocol.rules:
            if grade not in r.grades:
                continue
            if r.crs != "any" and (r.crs == "yes") != crs:
                continue
            if r.product != "any" and (r.product == "high") != high:
                continue
            if r.patient == "child" and not child:
                continue
            if r.seizure and not has_seizure:
                continue
            chosen.append(r.line)
        order = {s: i for i, s in enumerate(SECTIONS)}
        return tuple(sorted(chosen, key=lambda line: order[line.section]))

    if status == "unknown":
        branches = (
            Branch(False, "IF THERE IS NO CRS (isolated ICANS)", lines_for(False)),
            Branch(True, "IF THERE IS CONCURRENT CRS", lines_for(True)),
        )
    elif status == "yes":
        branches = (Branch(True, f"With concurrent CRS (grade {crs_grade})", lines_for(True)),)
    else:
        branches = (Branch(False, "No concurrent CRS (isolated ICANS)", lines_for(False)),)
    disagreements = tuple(line for gs, line in protocol.disagreements if grade in gs)
    return Recommendation(
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        protocol_title=protocol.title,
        protocol_note=protocol.note,
        grade=grade,
        grade_is_floor=result.status == "not_assessable",
        crs=status,
        product=product,
        high_risk_product=high,
        branches=branches,
        disagreements=disagreements,
        cadence=protocol.cadence_for(grade),
    )
