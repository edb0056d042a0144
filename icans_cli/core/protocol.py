"""Management protocols as data, and choosing the advice that fits the patient.

A protocol is a plain mapping (loaded from JSON outside the core): the ICANS table (``lines``),
the CRS table (``crs_lines``, applied by the concurrent CRS grade), ``disagreements`` and the
reassessment ``cadence``. Each line carries its conditions (ICANS grades, CRS, product, adult or
child, seizure kind, raised ICP, graded or not assessable, weight band), its section, its text
with ``{name}`` placeholders for its structured doses, its source and its evidence level.

Evidence levels follow the project's evidence file: V (read in a primary or reprinted source),
V2 (restated by a secondary source), R (recalled, UNVERIFIED: the text itself must say so).

What the advice must do for the patient in front of the clinician (spec section 4; each rule has
a named test):
- doses are structured and rendered for the patient's weight, capped at their maximum;
- a child (under 18) never sees an adult fixed amount: the loader refuses a fixed-amount dose on
  any line that is not marked ``patient: adult``;
- concurrent CRS is treated by its own grade too: the CRS table's lines are merged in, and the
  stronger corticosteroid regimen of the two tables is shown first, naming its table;
- seizures are advised by kind, a lumbar puncture only when nothing contraindicates it;
- a high-neurotoxicity product that changes nothing says why;
- a not-assessable result never reads as "all clear".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from icans_cli.core.dosing import AMOUNT_IN_TEXT, Dose, DoseError
from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import ICP_EDEMA, IcansResult
from icans_cli.core.prescription import check_dose

HIGH_NEUROTOXICITY_PRODUCTS = frozenset({"axi-cel", "brexu-cel"})
PRODUCTS = ("axi-cel", "brexu-cel", "tisa-cel", "liso-cel", "ide-cel", "cilta-cel", "obe-cel",
            "other")
ADULT_AGE = 18
# Raised intracranial pressure: every ICP/edema finding of grade 4 (not focal edema).
RAISED_ICP = frozenset(k for k, (g, _) in ICP_EDEMA.items() if g == 4)
SECTIONS = ("caution", "level_of_care", "corticosteroids", "anti_cytokine", "seizures",
            "supportive", "workup", "refractory", "taper")
SECTION_TITLES = {
    "caution": "Before acting",
    "level_of_care": "Level of care",
    "corticosteroids": "Corticosteroids",
    "anti_cytokine": "Anti-cytokine therapy",
    "seizures": "Seizures",
    "supportive": "Supportive care",
    "workup": "Work-up",
    "refractory": "If steroid-refractory",
    "taper": "Taper",
}
EVIDENCE = {"V": "verified in a primary or reprinted source",
            "V2": "restated by a secondary source",
            "R": "recalled, UNVERIFIED",
            "D": "derived by the tool from the rules it cites; no source states it"}
FIRST_LINE_STEROIDS = ("dexamethasone", "high_dose_methylprednisolone")
STARTS = ("now", "consider", "if_refractory")
_START_RANK = {"now": 3, "consider": 2, "if_refractory": 1, None: 0}
# Corticosteroid potency, to rank two regimens: dexamethasone 0.75 mg ~ methylprednisolone 4 mg
# (the standard glucocorticoid equivalence table). Used only to order lines, never printed.
_DEX_EQUIVALENT = {"dexamethasone": 1.0, "methylprednisolone": 0.75 / 4}
DECISION_LINE = "Decision support only: institutional protocol and the treating team decide."
_LINE_KEYS = {"grades", "crs", "product", "patient", "seizure", "icp", "status", "weight",
              "age", "section", "text", "short", "doses", "source", "evidence", "start",
              "first_line", "outside_usual_range"}
DERIVED_MARK = "(derived by this tool)"
# Plain names for the first-line regimens (never the internal identifiers on a screen).
FIRST_LINE_NAMES = {"dexamethasone": "dexamethasone",
                    "high_dose_methylprednisolone": "high-dose methylprednisolone"}
_PLACEHOLDER = re.compile(r"\{([a-z0-9_]+)\}")


class ProtocolError(ValueError):
    """A protocol's data is malformed. `problems` names every bad field."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        text = self.problems[0] if len(self.problems) == 1 else (
            f"{len(self.problems)} problems: " + "; ".join(self.problems[:5])
            + ("; ..." if len(self.problems) > 5 else ""))
        super().__init__(text)


@dataclass(frozen=True)
class AdviceLine:
    """One line of advice, rendered for this patient."""

    section: str
    text: str
    source_id: str
    citation: str
    short_source: str
    evidence: str
    protocol_id: str
    doses: tuple[tuple[str, Dose], ...] = ()
    weight_kg: float | None = None
    start: str | None = None  # corticosteroids: "now" | "consider" | "if_refractory"
    first_line: str | None = None  # the first-line corticosteroid this line advises, if any
    table: str = "icans"  # "icans" | "crs" | "tool" (generated from the result, not a table)
    crs_grades: tuple[int, ...] = ()  # CRS-table lines: the CRS grades they belong to
    short: str | None = None  # the bedside-summary form (doses compact), when the data has one
    condition: str | None = None  # "If the CRS is grade 3" on a CRS branch of unknown grade
    outside_usual_range: str | None = None  # a centre's reason for a dose outside the range

    @property
    def summary(self) -> str:
        """The bedside form: short when the data has one, with its condition."""
        return (f"{self.condition}: {_uncap(self.bare_summary)}" if self.condition
                else self.bare_summary)

    @property
    def bare_summary(self) -> str:
        """The bedside form without its condition."""
        return _cap(self.short) if self.short else self._bare_text

    @property
    def _bare_text(self) -> str:
        if self.condition and self.text.startswith(self.condition + ": "):
            return _cap(self.text[len(self.condition) + 2:])
        return self.text

    @property
    def verified(self) -> bool:
        return self.evidence != "R"

    @property
    def is_dose(self) -> bool:
        return bool(self.doses)

    @property
    def table_label(self) -> str:
        if self.table == "crs":
            return "CRS table, CRS " + crs_grades_text(self.crs_grades)
        return "ICANS table" if self.table == "icans" else ""

    def dose_dicts(self) -> list[dict[str, Any]]:
        return [d.as_dict(self.weight_kg) for _, d in self.doses]

    def as_dict(self) -> dict[str, Any]:
        doses = self.dose_dicts()
        out: dict[str, Any] = {"section": self.section, "text": self.text,
                               "source": self.citation, "evidence": self.evidence,
                               "protocol": self.protocol_id, "table": self.table,
                               "dose": doses[0] if doses else None}
        if len(doses) > 1:
            out["doses"] = doses
        if self.start:
            out["start"] = self.start
        if self.outside_usual_range:
            out["outside_usual_range"] = self.outside_usual_range
        return out

    def steroid_strength(self) -> tuple[int, float]:
        """(how firmly it is advised, daily dexamethasone-equivalent mg) to rank regimens:
        the line's first corticosteroid dose, its regimen (a later dose is an alternative or
        the escalation "if not improving", not what is given now)."""
        mg = 0.0
        for _, d in self.doses:
            if mg:
                break
            factor = _DEX_EQUIVALENT.get(d.drug.split()[0].lower())
            if factor is None:
                continue
            amount = d.computed_amount(self.weight_kg)
            if amount is None:
                amount = d.max_amount if d.per_kg and d.max_amount else d.amount
            per_day = amount if d.per_day else amount * (d.doses_per_day() or 1)
            mg = max(mg, per_day * factor)
        return _START_RANK[self.start], mg


@dataclass(frozen=True)
class _Rule:
    table: str
    grades: frozenset[int]
    crs: Any  # "any" | "no" | "yes" | frozenset of CRS grades (1-4)
    product: str
    patient: str
    seizure: str
    icp: str
    status: str
    weight: tuple[str, float] | None  # ("below", 30) | ("from", 30)
    section: str
    text: str
    doses: tuple[tuple[str, Dose], ...]
    source_id: str
    evidence: str
    start: str | None
    first_line: str | None
    short: str | None = None
    age: tuple[str, float] | None = None  # ("below", 2) | ("from", 2), in years
    outside_usual_range: str | None = None


@dataclass(frozen=True)
class Cadence:
    hours: int
    text: str
    citation: str
    evidence: str


@dataclass(frozen=True)
class Source:
    citation: str
    short: str


@dataclass(frozen=True)
class Protocol:
    id: str
    version: str
    title: str
    note: str
    sources: Mapping[str, Source]
    rules: tuple[_Rule, ...]
    disagreements: tuple[_Rule, ...]
    cadence: tuple[tuple[frozenset[int], Cadence], ...]
    sha256: str = ""  # of the file it was read from (set by the loader, which reads files)
    source_file: str | None = None  # a centre's own protocol file; None for a built-in
    # Pure steps of the advice memoized on their whole input (a branch on its whole context,
    # a line on its rule, weight and prefix): exact by construction, and fast in a batch.
    _memo: dict = field(default_factory=dict, init=False, compare=False, hash=False,
                        repr=False)

    @property
    def age_thresholds(self) -> tuple[float, ...]:
        """Every age limit a line is conditioned on: the context keeps which of them the
        patient is under, and nothing else of the age (the lines cannot ask anything else)."""
        got = self._memo.get("age_thresholds")
        if got is None:
            got = tuple(sorted({r.age[1] for r in (*self.rules, *self.disagreements)
                                if r.age is not None}))
            self._memo["age_thresholds"] = got
        return got

    def memo(self, key: tuple, compute: Any) -> Any:
        """compute() once per key (bounded: a long batch cannot grow it without limit)."""
        got = self._memo.get(key)
        if got is None:
            got = compute()
            if len(self._memo) < 20000:
                self._memo[key] = got
        return got

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Protocol":
        """Validate and build; a ProtocolError lists every bad field."""
        return _Loader(data).build()

    def cadence_for(self, grade: int) -> Cadence:
        return next(c for gs, c in self.cadence if grade in gs)


@dataclass(frozen=True)
class Branch:
    crs: bool
    label: str
    lines: tuple[AdviceLine, ...]
    crs_grade: int | None = None  # known CRS grade on a CRS branch (None: not graded)
    short: str = ""  # of two branches: "If no CRS", "If CRS", "If for hypoxia"...
    controlled: bool = False  # CRS controlled after treatment (managed as no CRS)

    @property
    def corticosteroid_dose_advised(self) -> bool:
        return any(x.section == "corticosteroids" and x.is_dose for x in self.lines)

    @property
    def corticosteroids_advised(self) -> bool:
        """Corticosteroids to give now or to consider (not only 'if refractory')."""
        return any(x.section == "corticosteroids" and x.start in ("now", "consider")
                   for x in self.lines)

    @property
    def first_line_steroid(self) -> str:
        """'dexamethasone', 'high_dose_methylprednisolone' or 'none': the first-line
        corticosteroid of the strongest regimen shown (the first corticosteroid line to start
        now), else one the protocol names as first line to consider now (ASCO's "consider
        dexamethasone" for axi-cel and brexu-cel)."""
        steroids = [x for x in self.lines if x.section == "corticosteroids"]
        for line in steroids:
            if line.start == "now":
                return line.first_line or "none"
        return next((x.first_line for x in steroids if x.start == "consider" and x.first_line),
                    "none")

    @property
    def tocilizumab_advised(self) -> bool:
        return any(x.section == "anti_cytokine" and x.is_dose for x in self.lines)

    @property
    def steroid_line(self) -> AdviceLine | None:
        """The corticosteroid line to act on first (the strongest regimen)."""
        return next((x for x in self.lines if x.section == "corticosteroids"), None)

    def glance(self) -> "Glance":
        """What to do now, for the bedside summary: the cautions, the corticosteroid line to
        act on, anti-cytokine yes or no, the first seizure line, the level of care."""
        def first(section: str) -> AdviceLine | None:
            return next((x for x in self.lines if x.section == section), None)

        anti = next((x for x in self.lines if x.section == "anti_cytokine" and any(
            d.drug == "tocilizumab" for _, d in x.doses)), None) or next(
            (x for x in self.lines if x.section == "anti_cytokine" and x.is_dose),
            first("anti_cytokine"))
        cares = [x for x in self.lines if x.section == "level_of_care"]
        care = max(cares, key=lambda x: _START_RANK[x.start], default=None)
        seizures = [x for x in self.lines if x.section == "seizures"]
        more_steroids = self.crs and self.crs_grade is None and any(
            x.section == "corticosteroids" and x.table == "crs" and COVERED not in x.text
            for x in self.lines)
        return Glance(
            cautions=tuple(x for x in self.lines if x.section == "caution"),
            steroid=self.steroid_line,
            anti_cytokine=anti,
            tocilizumab=self.tocilizumab_advised,
            seizure=seizures[0] if seizures else None,
            seizure_next=seizures[1] if len(seizures) > 1 and "STATUS" in
            seizures[0].text else None,
            care=care,
            workup=first("workup"),
            crs_adds_steroids=more_steroids,
        )


@dataclass(frozen=True)
class Glance:
    cautions: tuple[AdviceLine, ...]
    steroid: AdviceLine | None
    anti_cytokine: AdviceLine | None
    tocilizumab: bool
    seizure: AdviceLine | None
    seizure_next: AdviceLine | None  # status epilepticus: the second-line drugs
    care: AdviceLine | None
    workup: AdviceLine | None
    crs_adds_steroids: bool  # a CRS branch of unknown grade: CRS 3-4 would add steroids now

    @property
    def status_epilepticus(self) -> bool:
        return self.seizure_next is not None


@dataclass(frozen=True)
class Recommendation:
    protocol_id: str
    protocol_version: str
    protocol_title: str
    protocol_note: str
    grade: int
    grade_is_floor: bool  # not assessable: advice for "at least" this grade
    crs: str  # "yes" | "no" | "unknown" | "controlled"
    product: str | None
    high_risk_product: bool
    branches: tuple[Branch, ...]
    disagreements: tuple[AdviceLine, ...]
    cadence: Cadence
    patient: str = "adult"  # "adult" | "child"
    weight_kg: float | None = None
    crs_grade: int | None = None
    protocol_sha256: str = ""
    protocol_file: str | None = None
    decision_line: str = DECISION_LINE
    crs_readings: tuple[int, ...] | None = None  # ambiguous: (airway only, for hypoxia)
    tocilizumab_hours_ago: float | None = None
    tocilizumab_wait_h: float | None = None  # a repeat held back for this many hours more
    age_years: float | None = None
    last_assessable: LastAssessable | None = None

    @property
    def id(self) -> str:
        return _format_id(self.protocol_id, self.protocol_version, self.grade,
                          self.grade_is_floor, self.crs, self.crs_grade, self.crs_readings,
                          self.high_risk_product, self.patient)

    @property
    def all_lines(self) -> tuple[AdviceLine, ...]:
        return tuple(line for b in self.branches for line in b.lines) + self.disagreements

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.protocol_id,
            "protocol_version": self.protocol_version,
            "grade": self.grade,
            "grade_is_floor": self.grade_is_floor,
            "crs": self.crs,
            "crs_grade": self.crs_grade,
            "product": self.product,
            "patient": self.patient,
            "weight_kg": self.weight_kg,
            "branches": [{"crs": b.crs, "label": b.label, "crs_grade": b.crs_grade,
                          "lines": [x.as_dict() for x in b.lines]} for b in self.branches],
            "disagreements": [x.as_dict() for x in self.disagreements],
            "next_assessment_hours": self.cadence.hours,
            "decision": self.decision_line,
            **({"crs_readings": {"if_airway": self.crs_readings[0],
                                 "if_hypoxia": self.crs_readings[1]}}
               if self.crs_readings else {}),
            **({"tocilizumab_repeat_in_hours": round(self.tocilizumab_wait_h, 1)}
               if self.tocilizumab_wait_h is not None else {}),
        }


def _format_id(protocol_id: str, version: str, grade: int, floor: bool, crs: str,
               crs_grade: int | None, readings: tuple[int, ...] | None, high: bool,
               patient: str) -> str:
    """'asco-2021@2026.12/grade3/crs-no/standard/adult': what a CSV row and the log keep."""
    if crs == "ambiguous" and readings:
        crs_text = "or".join(str(g) for g in reversed(readings))
    else:
        crs_text = crs if crs in ("unknown", "no", "controlled") else str(crs_grade)
    return (f"{protocol_id}@{version}/grade{grade}{'+' if floor else ''}/crs-{crs_text}/"
            f"{'high-risk' if high else 'standard'}/{patient}")


@dataclass(frozen=True)
class _Summary:
    """What the recommendation's id holds, worked out once for recommend and for
    recommendation_id (one function: the two cannot disagree)."""

    grade: int
    floor: bool
    status: str  # "yes" | "no" | "unknown" | "controlled" | "ambiguous"
    crs_grade: int | None
    readings: tuple[int, ...] | None
    high: bool
    child: bool
    light_no_age: bool


def _summarise(result: IcansResult, state: Any, product: str | None, age_years: float | None,
               weight_kg: float | None) -> _Summary:
    if state.readings is not None:
        status, crs_grade = "ambiguous", None
    elif state.controlled:
        status, crs_grade = "controlled", 0
    else:
        status, crs_grade = crs_status(state.grade), state.grade
    light_no_age = age_years is None and weight_kg is not None and weight_kg < NO_AGE_CHILD_KG
    return _Summary(result.effective_grade, result.status != "graded", status, crs_grade,
                    tuple(s.grade or 0 for s in state.readings) if state.readings else None,
                    product in HIGH_NEUROTOXICITY_PRODUCTS,
                    (age_years is not None and age_years < ADULT_AGE) or light_no_age,
                    light_no_age)


def recommendation_id(protocol: Protocol, result: IcansResult, state: Any,
                      product: str | None, age_years: float | None,
                      weight_kg: float | None) -> str:
    """The id recommend() would give, without rendering the advice (for CSV and tables)."""
    m = _summarise(result, state, product, age_years, weight_kg)
    return _format_id(protocol.id, protocol.version, m.grade, m.floor, m.status,
                      m.crs_grade if m.status in ("yes", "no", "controlled") else None,
                      m.readings, m.high, "child" if m.child else "adult")


def crs_status(crs_grade: int | None) -> str:
    if crs_grade is None:
        return "unknown"
    if isinstance(crs_grade, bool) or not isinstance(crs_grade, int) or not 0 <= crs_grade <= 4:
        raise InvalidFinding("crs_grade", f"{crs_grade!r} is not a CRS grade", "0-4, or blank")
    return "yes" if crs_grade >= 1 else "no"


@dataclass(frozen=True)
class LastAssessable:
    """The patient's last assessable (graded) assessment, for a not-assessable result."""

    grade: int
    assessed_at: str  # as the caller wants it shown
    hours_ago: float | None = None  # how long before this assessment

    @property
    def age_text(self) -> str:
        """'grade 4, 268 h ago (2026-11-20 10:00)'."""
        return f"{self.short_text} ({self.assessed_at})" if self._ago else \
            f"grade {self.grade} ({self.assessed_at})"

    @property
    def short_text(self) -> str:
        """'grade 4, 268 h ago' (the bedside form; the date when the age is not known)."""
        return f"grade {self.grade}{self._ago}" if self._ago else \
            f"grade {self.grade} ({self.assessed_at})"

    @property
    def _ago(self) -> str:
        if self.hours_ago is None:
            return ""
        return f", {self.hours_ago:.0f} h ago" if self.hours_ago >= 1 else ", under 1 h ago"


@dataclass(frozen=True)
class _Context:
    grade: int
    graded: bool
    child: bool
    age_known: bool
    weight_kg: float | None
    high: bool
    seizure: str
    raised_icp: bool
    focal_edema: bool = False
    age_below: frozenset[float] | None = None  # the protocol's age limits the patient is under
    light_no_age: bool = False  # no age and under NO_AGE_CHILD_KG: children's doses


# Without an age, a patient under this weight is given children's doses (no adult fixed
# amount) and asked for the age: "no age" is not "an adult" (derived by this tool).
NO_AGE_CHILD_KG = 40.0


def recommend(
    protocol: Protocol,
    result: IcansResult,
    crs: Any = None,
    product: str | None = None,
    age_years: float | None = None,
    *,
    weight_kg: float | None = None,
    crs_controlled: bool = False,
    last_assessable: LastAssessable | None = None,
    log_checked: bool = False,
    tocilizumab_hours_ago: float | None = None,
) -> Recommendation:
    """Advice for a graded (or not-assessable) result under one protocol, for this patient.
    Callers go through :func:`icans_cli.core.advice.advise`, which passes the whole case.

    `crs`: a CrsState, or a CRS grade (None: not known). CRS unknown gives both branches,
    each labelled; positive pressure for a reason not given gives a branch for each reading.
    A not-assessable result is advised at its floor (`grade_at_least`) and says so; a higher
    last assessable grade is shown with its age, to continue what is under way, never to start
    a new or stronger regimen on it. `log_checked`: the caller looked for the patient's last
    assessable grade (`last_assessable` None then means there is none)."""
    from icans_cli.core.crs import CrsState, tocilizumab_held
    from icans_cli.core.dosing import validate_weight

    if product is not None and product not in PRODUCTS:
        raise InvalidFinding("product", f"{product!r} is not recognised", ", ".join(PRODUCTS))
    weight_kg = validate_weight(weight_kg)
    state = crs if isinstance(crs, CrsState) else CrsState(
        0 if crs_controlled and crs is None else crs, crs_controlled)
    m = _summarise(result, state, product, age_years, weight_kg)
    status, crs_grade, grade, light_no_age = m.status, m.crs_grade, m.grade, m.light_no_age
    ctx = _Context(
        grade=grade, graded=not m.floor, child=m.child,
        age_known=age_years is not None,
        weight_kg=weight_kg, high=m.high,
        seizure=result.domain("seizure").value,
        raised_icp=bool(RAISED_ICP & set(result.domain("icp_edema").value.split(";"))),
        focal_edema="focal_edema" in result.domain("icp_edema").value.split(";"),
        age_below=None if age_years is None else frozenset(
            t for t in protocol.age_thresholds if age_years < t),
        light_no_age=light_no_age,
    )

    def crs_branch(s: CrsState, label: str) -> Branch:
        if s.controlled:
            return _branch(protocol, ctx, False, 0, label, product, status="controlled")
        if s.grade:
            return _branch(protocol, ctx, True, s.grade, label, product)
        return _branch(protocol, ctx, False, 0, label, product)

    if status == "unknown":
        branches = (
            _branch(protocol, ctx, False, None, "IF THERE IS NO CRS (isolated ICANS)", product,
                    short="If no CRS"),
            _branch(protocol, ctx, True, None, "IF THERE IS CONCURRENT CRS (grade it: the CRS "
                    "grade changes the advice)", product, short="If CRS"),
        )
    elif status == "ambiguous":
        airway, hypoxia = state.readings  # type: ignore[misc]
        branches = (
            crs_branch(hypoxia, "IF THE POSITIVE PRESSURE IS FOR HYPOXIA: "
                       + _state_words(hypoxia)),
            crs_branch(airway, "IF IT IS ONLY TO PROTECT THE AIRWAY: " + _state_words(airway)),
        )
        branches = (replace(branches[0], short="If for hypoxia"),
                    replace(branches[1], short="If for airway"))
    elif status == "yes":
        branches = (_branch(protocol, ctx, True, crs_grade,
                            f"With concurrent CRS (grade {crs_grade})", product),)
    elif status == "controlled":
        branches = (_branch(protocol, ctx, False, 0, "CRS controlled after treatment: managed "
                            "as isolated ICANS, no further tocilizumab", product,
                            status="controlled"),)
    else:
        branches = (_branch(protocol, ctx, False, 0, "No concurrent CRS (isolated ICANS)",
                            product),)
    if not ctx.graded:
        caution = _not_assessable_lines(protocol, result, last_assessable, log_checked)
        branches = tuple(replace(b, lines=caution + b.lines) for b in branches)
    if "intracranial_hemorrhage" in result.excluded:
        # Left out of the grade, never out of sight: a grade-0 screen must not read "all clear".
        bleed = _tool_line(
            protocol, "caution", "Intracranial haemorrhage recorded: it is not an ICANS feature "
            "and is left out of the grade (ASTCT: grade it by CTCAE v5.0); treat it in its own "
            "right. No lumbar puncture or intrathecal therapy until imaging has excluded mass "
            "effect and platelets and clotting allow.", "ich",
            short="Intracranial haemorrhage: not in the ICANS grade; treat it in its own right. "
            "No LP until mass effect is excluded.")
        branches = tuple(replace(b, lines=(bleed,) + b.lines) for b in branches)
    disagreements = protocol.memo(("disagreements", ctx), lambda: tuple(
        _render(protocol, r, ctx.weight_kg) for r in protocol.disagreements
        if _matches(r, ctx, crs_branch=None, crs_grade=None)))
    cadence_grade = grade
    if not ctx.graded:
        # Not assessable never relaxes the watch: the patient is watched as in the ICU (where a
        # sedated patient usually is), as for grades 3-4.
        cadence_grade = max(grade, 3)
    top_crs = max([s.grade or 0 for s in state.readings] if state.readings else
                  [crs_grade or 0])
    if status in ("yes", "ambiguous") and top_crs >= 3:
        cadence_grade = max(cadence_grade, 3)  # in the ICU for the CRS: the ICU's checks
    elif status in ("yes", "unknown", "ambiguous") and cadence_grade == 0:
        # Active (or ungraded) CRS without ICANS yet: ICE every 8 h (ASH-SAP), not ASCO's
        # twice a day for a patient without CRS; ICANS most often follows CRS.
        cadence_grade = 1
    return Recommendation(
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        protocol_title=protocol.title,
        protocol_note=protocol.note,
        grade=grade,
        grade_is_floor=not ctx.graded,
        crs=status,
        product=product,
        high_risk_product=ctx.high,
        branches=branches,
        disagreements=disagreements,
        cadence=protocol.cadence_for(cadence_grade),
        patient="child" if ctx.child else "adult",
        weight_kg=weight_kg,
        crs_grade=crs_grade if status in ("yes", "no", "controlled") else None,
        protocol_sha256=protocol.sha256,
        protocol_file=protocol.source_file,
        crs_readings=tuple(s.grade or 0 for s in state.readings) if state.readings else None,
        tocilizumab_hours_ago=tocilizumab_hours_ago,
        tocilizumab_wait_h=tocilizumab_held(tocilizumab_hours_ago),
        age_years=age_years,
        last_assessable=last_assessable,
    )


def _state_words(s: Any) -> str:
    if s.controlled:
        return "CRS controlled after treatment"
    return f"CRS grade {s.grade}" if s.grade else "no CRS"


# --- choosing and ordering lines ----------------------------------------------------------------

def _matches(r: _Rule, ctx: _Context, crs_branch: bool | None, crs_grade: int | None) -> bool:
    """Whether a rule applies. crs_branch None: a disagreement (CRS does not matter)."""
    if ctx.grade not in r.grades:
        return False
    if crs_branch is not None and not _crs_matches(r.crs, crs_branch, crs_grade):
        return False
    if r.product != "any" and (r.product == "high") != ctx.high:
        return False
    if r.patient != "any" and (r.patient == "child") != ctx.child:
        return False
    if r.seizure != "any":
        if r.seizure == "seizure":
            if ctx.seizure == "none":
                return False
        elif r.seizure != ctx.seizure:
            return False
    if r.icp == "focal":  # focal edema on imaging without signs of raised ICP
        if ctx.raised_icp or not ctx.focal_edema:
            return False
    elif r.icp != "any" and (r.icp == "raised") != ctx.raised_icp:
        return False
    if r.status != "any" and (r.status == "graded") != ctx.graded:
        return False
    if r.age is not None:
        kind, years = r.age
        if ctx.age_below is None:
            # Unknown age: the line for the older patients, whose text must carry the caution
            # for the younger ones.
            if kind == "below":
                return False
        elif (years in ctx.age_below) != (kind == "below"):
            return False
    if r.weight is not None:
        kind, limit = r.weight
        if ctx.weight_kg is None:
            # Unknown weight: a child sees every band (each labelled); an adult is taken to
            # weigh at least the limit.
            return ctx.child or kind == "from"
        if (ctx.weight_kg < limit) != (kind == "below"):
            return False
    return True


def _crs_matches(cond: Any, crs_branch: bool, crs_grade: int | None) -> bool:
    if cond == "any":
        return True
    if cond == "no":
        return not crs_branch
    if cond == "yes":
        return crs_branch
    # a set of CRS grades: on a CRS branch whose grade is known and in it, or (each labelled)
    # on the hypothetical CRS branch whose grade is not known
    return crs_branch and (crs_grade is None or crs_grade in cond)


def _branch(protocol: Protocol, ctx: _Context, crs: bool, crs_grade: int | None, label: str,
            product: str | None, short: str = "", status: str = "") -> Branch:
    return protocol.memo(("branch", ctx, crs, crs_grade, label, product, short, status),
                         lambda: _build_branch(protocol, ctx, crs, crs_grade, label, product,
                                               short, status))


def _build_branch(protocol: Protocol, ctx: _Context, crs: bool, crs_grade: int | None,
                  label: str, product: str | None, short: str, status: str) -> Branch:
    lines = [_render(protocol, r, ctx.weight_kg,
                     prefix=_prefix(r, ctx, crs_grade))
             for r in protocol.rules if _matches(r, ctx, crs, crs_grade)]
    lines = _dedupe(lines)
    if ctx.graded:
        lines += _product_lines(protocol, ctx, crs, crs_grade, product, lines)
    if ctx.light_no_age:
        lines.append(_tool_line(protocol, "caution", (
            f"Age not given and the weight is under {NO_AGE_CHILD_KG:g} kg: children's doses "
            "are shown (per kg, no adult fixed amount). Give the age: adult doses need it "
            f"{DERIVED_MARK}."), "derived_age",
            short=f"Age not given, under {NO_AGE_CHILD_KG:g} kg: children's doses shown; give "
                  "the age.", evidence="D"))
    elif not ctx.age_known and any(x.is_dose for x in lines):
        lines.append(_tool_line(protocol, "caution", (
            "Age not given: adult doses are shown. For a patient under 18, give the age and "
            "the weight to see children's doses."), "asco2021",
            short="Age not given: adult doses shown."))
    if ctx.child and ctx.weight_kg is None and any(
            d.per_kg for x in lines for _, d in x.doses):
        lines.append(_tool_line(protocol, "caution", (
            "Weight not given: children's doses are per kg and their amounts are not "
            "computed. Weigh the child (or take the admission weight)."), "asco2021",
            short="Weight not given: per-kg amounts not computed."))
    order = {s: i for i, s in enumerate(SECTIONS)}
    steroids = _order_steroids([x for x in lines if x.section == "corticosteroids"],
                               crs_known=not crs or crs_grade is not None)
    rest = [x for x in lines if x.section != "corticosteroids"]
    ordered = sorted(rest + steroids, key=lambda x: order[x.section])  # stable: steroid order
    return Branch(crs, label, tuple(ordered), crs_grade, short, status == "controlled")


def _prefix(r: _Rule, ctx: _Context, crs_grade: int | None) -> str:
    bits = []
    if crs_grade is None and isinstance(r.crs, frozenset):
        bits.append("If the CRS is " + crs_grades_text(r.crs))
    if r.weight is not None and ctx.weight_kg is None and ctx.child:
        kind, limit = r.weight
        bits.append(f"if under {limit:g} kg" if kind == "below" else f"if {limit:g} kg or more")
    if not bits:
        return ""
    text = ", ".join(bits)
    return text[0].upper() + text[1:] + ": "


def crs_grades_text(grades: frozenset[int] | tuple[int, ...]) -> str:
    """{2, 3, 4} -> 'grade 2 or higher'; {3} -> 'grade 3'; {1, 2} -> 'grade 1 or 2'."""
    gs = sorted(grades)
    if len(gs) > 1 and gs == list(range(gs[0], 5)):
        return f"grade {gs[0]} or higher"
    return "grade " + " or ".join(str(g) for g in gs)


def _dedupe(lines: list[AdviceLine]) -> list[AdviceLine]:
    """One line per advice: a CRS-table line that repeats an ICANS-table line (the same text,
    its CRS-grade condition aside) is left out."""
    seen: set[tuple[str, str]] = set()
    out = []
    for x in lines:
        bare = x.text[len(x.condition) + 2:] if x.condition else x.text
        key = (x.section, _cap(bare))
        if key not in seen:
            seen.add(key)
            out.append(x)
    return out


def _order_steroids(lines: list[AdviceLine], crs_known: bool = True) -> list[AdviceLine]:
    """The stronger table's corticosteroid lines first (each names its table); the other
    table's lines after, in their own order. Lines without a table (tool notes) go last. When
    the CRS grade is not known, the ICANS table leads: the CRS table's lines are each
    conditional on a grade."""
    if not lines:
        return []
    tables: dict[str, list[AdviceLine]] = {}
    for x in lines:
        tables.setdefault(x.table, []).append(x)
    notes = tables.pop("tool", [])
    if len(tables) < 2:
        return [x for t in tables.values() for x in t] + notes

    def strength(group: list[AdviceLine]) -> tuple[int, float]:
        return max(x.steroid_strength() for x in group)

    icans, crs = tables["icans"], tables["crs"]
    stronger = crs_known and strength(crs) > strength(icans)
    first, second = (crs, icans) if stronger else (icans, crs)
    top = strength(first)
    if top[0] == _START_RANK["now"]:
        # Never two regimens at once: a line of the other table that the stronger regimen
        # already covers says so.
        cover = max(first, key=lambda x: x.steroid_strength())
        second = [_covered(x, cover) if x.steroid_strength() <= top and x.start
                  and _covers(cover, x) else x for x in second]
    return first + second + notes


COVERED = "Covered by the "  # how a covered line's note starts
STEROID_VERDICTS = {"now": "START", "consider": "CONSIDER", "if_refractory": "IF REFRACTORY"}


def steroid_verdict(line: AdviceLine, grade_is_floor: bool) -> str:
    """The word the bedside's Steroids line leads with: START, CONSIDER, IF REFRACTORY; else
    CONTINUE for a not-assessable result (nothing new on it; what is under way goes on) and NO
    for a graded one."""
    if line.start in STEROID_VERDICTS:
        return STEROID_VERDICTS[line.start]
    return "CONTINUE" if grade_is_floor else "NO"


def _covers(cover: AdviceLine, line: AdviceLine) -> bool:
    """Whether `cover` applies whenever `line` does: with the CRS grade not known, a line for
    "if the CRS is grade 1" never covers one for "if the CRS is grade 3"."""
    if not cover.condition:
        return True
    return bool(line.crs_grades) and set(line.crs_grades) <= set(cover.crs_grades)


def _covered(line: AdviceLine, cover: AdviceLine) -> AdviceLine:
    """The line with a note naming the regimen that covers it (by drug and table: in the
    details the covering line may be printed above or below it)."""
    from dataclasses import replace

    drug = cover.doses[0][1].drug if cover.doses else FIRST_LINE_NAMES.get(
        cover.first_line or "", "stronger")
    table = {"icans": "ICANS", "crs": "CRS"}.get(cover.table, cover.table)
    note = f"{COVERED}{drug} regimen of the {table} table: not in addition."
    return replace(line, text=f"{line.text} ({note})",
                   short=f"{line.bare_summary} ({note})" if line.short else None)


def _render(protocol: Protocol, r: _Rule, weight_kg: float | None,
            prefix: str = "") -> AdviceLine:
    return protocol.memo(("line", r, weight_kg, prefix),
                         lambda: _render_line(protocol, r, weight_kg, prefix))


def _render_line(protocol: Protocol, r: _Rule, weight_kg: float | None,
                 prefix: str) -> AdviceLine:
    def fill(template: str, compact: bool) -> str:
        for name, dose in r.doses:
            template = template.replace("{" + name + "}", dose.text(weight_kg, compact))
        return template

    src = protocol.sources[r.source_id]
    text = fill(r.text, False)
    short = fill(r.short, True) if r.short else None
    if r.outside_usual_range:
        # a centre's dose outside the usual range is said beside it, on every screen
        note = f" [OUTSIDE THE USUAL RANGE: {r.outside_usual_range}]"
        text += note
        short = short + note if short else None
    return AdviceLine(r.section, prefix + _uncap(text) if prefix else _cap(text), r.source_id,
                      src.citation, src.short, r.evidence, protocol.id, r.doses, weight_kg,
                      r.start, r.first_line, r.table,
                      tuple(sorted(r.crs)) if isinstance(r.crs, frozenset) else (),
                      short, prefix[:-2] if prefix else None, r.outside_usual_range)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _uncap(text: str) -> str:
    """'Supportive care' -> 'supportive care', but 'ICU' and 'CRS' stay as they are."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


# --- lines the tool adds from the result (each with a source) -----------------------------------

def _tool_line(protocol: Protocol, section: str, text: str, source_id: str,
               evidence: str = "V", short: str | None = None) -> AdviceLine:
    src = protocol.sources.get(source_id) or Source(
        _TOOL_SOURCES[source_id], _TOOL_SHORT.get(source_id, _TOOL_SOURCES[source_id]))
    return AdviceLine(section, text, source_id, src.citation, src.short, evidence, protocol.id,
                      table="tool", short=short)


_TOOL_SOURCES = {
    "asco2021": "ASCO 2021 (Santomasso BD et al., J Clin Oncol 2021;39:3978)",
    "astct2019": "ASTCT consensus grading (Lee et al., Biol Blood Marrow Transplant "
                 "2019;25:625)",
    "derived_last": "icans-cli: derived: a patient who cannot be assessed now continues the "
                    "treatment under way for the last assessable grade, and nothing new or "
                    "stronger is started on that grade alone; no guideline states it",
}
_TOOL_SOURCES["ich"] = (
    "ASTCT consensus grading (Lee et al., Biol Blood Marrow Transplant 2019;25:625): "
    "intracranial haemorrhage, with or without edema, is excluded from ICANS grading and may "
    "be graded by CTCAE v5.0; lumbar puncture contraindications of general neurological "
    "practice (a mass lesion or mass effect until evaluated; thrombocytopenia or coagulopathy: "
    "Queen's University lumbar puncture module, elentra.healthsci.queensu.ca)")
_TOOL_SOURCES["derived_age"] = (
    "icans-cli: derived: without an age, a patient under 40 kg is given children's doses and "
    "asked for the age (spec: no age is not an adult); no guideline states it")
_TOOL_SHORT = {"derived_last": "derived (icans-cli)", "derived_age": "derived (icans-cli)",
               "ich": "ASTCT 2019 + LP practice"}


def _product_lines(protocol: Protocol, ctx: _Context, crs: bool, crs_grade: int | None,
                   product: str | None, lines: list[AdviceLine]) -> list[AdviceLine]:
    """One line when a high-neurotoxicity product changes nothing in this branch (and why), or
    when the product is not recorded at the grades where it would."""
    if product is None:
        if 1 <= ctx.grade <= 3 and not crs:
            return [_tool_line(protocol, "corticosteroids", (
                "Product not recorded: the advice above is for a standard-risk product. For "
                "axi-cel or brexu-cel, ASCO allows corticosteroids earlier (from grade 1), and "
                "high-dose steroids may be an option at grade 3."), "asco2021")]
        return []
    if not ctx.high:
        return []
    other = _Context(**{**ctx.__dict__, "high": False})
    plain = _dedupe([_render(protocol, r, ctx.weight_kg)
                     for r in protocol.rules if _matches(r, other, crs, crs_grade)])
    if [x.text for x in plain] != [x.text for x in lines]:
        return []  # the product already changes the advice; its lines say so
    name = product
    if ctx.grade == 0:
        why = ("there is no ICANS now; ASCO's earlier corticosteroids for this product start "
               "at grade 1")
    elif any(x.section == "corticosteroids" and x.table == "crs" and x.start == "now"
             for x in lines):
        why = (f"with concurrent CRS grade {crs_grade} the CRS regimen already includes "
               "corticosteroids")
    elif any(x.section == "corticosteroids" and x.start == "now" for x in lines):
        why = f"at grade {ctx.grade} corticosteroids are already advised for every product"
    else:
        why = "this protocol gives the same advice at this grade for every product"
    return [_tool_line(protocol, "corticosteroids", (
        f"{name} is a high-neurotoxicity product (ASCO allows corticosteroids earlier for it); "
        f"the advice above is the same for it: {why}."), "asco2021")]


def _not_assessable_lines(protocol: Protocol, result: IcansResult, last: LastAssessable | None,
                          log_checked: bool) -> tuple[AdviceLine, ...]:
    """A not-assessable result never reads as "all clear": the last assessable grade with its
    age, continue what is under way (never start a new or stronger regimen on an old grade),
    re-grade when the other cause allows, an EEG."""
    floor = result.grade_at_least
    now = (f"the grade now is at least {floor}" if floor else
           "no assessable finding is above grade 0")
    eeg = _tool_line(protocol, "caution", "EEG to look for non-convulsive seizures, which a "
                     "sedated patient cannot show (ASCO: EEG for unexplained altered mental "
                     "status).", "asco2021", short="EEG for non-convulsive seizures.")
    if last is not None and last.grade > (floor or 0):
        return (
            _tool_line(protocol, "caution", f"Not assessable, which is not \"all clear\": the "
                       f"last assessable result was {last.age_text}, and {now}. Continue the "
                       "treatment and the level of care under way for it; do not start a new "
                       "or stronger regimen on that grade alone (the advice below is for what "
                       "can be assessed now). Re-grade as soon as the other cause allows "
                       f"{DERIVED_MARK}.", "derived_last", "D",
                       short=f"Not \"all clear\": last assessable {last.short_text}. "
                       "Continue what is under way; start nothing new on it; re-grade when "
                       "sedation allows."),
            eeg,
        )
    if last is not None:
        head = (f"Not assessable, which is not \"all clear\": the last assessable result was "
                f"{last.age_text}; {now}.")
    elif log_checked:
        head = (f"Not assessable, which is not \"all clear\": {now}, and no earlier assessable "
                "grade is in the log.")
    else:
        head = (f"Not assessable, which is not \"all clear\": {now}; check the patient's last "
                "assessable grade (icans history).")
    last_short = (f"last assessable {last.short_text}" if last else
                  "no earlier assessable grade in the log" if log_checked else
                  "see icans history for the last assessable grade")
    now_short = f"now at least {floor}" if floor else "nothing assessable above 0"
    return (
        _tool_line(protocol, "caution", head + " Do not stop treatment already under way "
                   "because of this result; reassess as soon as the other cause allows.",
                   "astct2019", short=f"Not \"all clear\": {last_short}; {now_short}. Do not "
                   "stop treatment under way."),
        eeg,
    )


# --- loading ------------------------------------------------------------------------------------

class _Loader:
    """Validates a protocol mapping, collecting every problem with its place."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def bad(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def build(self) -> Protocol:
        d = self.data
        if not isinstance(d, Mapping):
            raise ProtocolError("a protocol is a JSON object")
        for key in ("id", "version", "title", "sources", "cadence", "lines"):
            if key not in d:
                self.bad(key, "missing")
        unknown = set(d) - {"id", "version", "title", "note", "sources", "cadence", "lines",
                            "crs_lines", "disagreements", "$schema", "comment"}
        for key in sorted(unknown):
            self.bad(key, "unknown top-level field (allowed: id, version, title, note, "
                          "sources, cadence, lines, crs_lines, disagreements)")
        if self.problems:
            raise ProtocolError(self.problems)
        for key in ("id", "version", "title", "note"):
            self.printable(d.get(key), key)
        pid = str(d["id"])
        sources: dict[str, Source] = {}
        if not isinstance(d["sources"], Mapping) or not d["sources"]:
            self.bad("sources", "must be an object of named sources")
        else:
            for k, v in d["sources"].items():
                if not isinstance(v, Mapping) or not isinstance(v.get("citation"), str) \
                        or not v["citation"].strip():
                    self.bad(f"sources.{k}", "needs a citation")
                    continue
                self.printable(v["citation"], f"sources.{k}.citation")
                self.printable(v.get("short"), f"sources.{k}.short")
                sources[k] = Source(v["citation"], str(v.get("short") or v["citation"]))
        self.sources = sources
        rules = [self.rule(raw, f"lines[{i}]", "icans") for i, raw in
                 enumerate(self.list_of("lines"))]
        rules += [self.rule(raw, f"crs_lines[{i}]", "crs") for i, raw in
                  enumerate(self.list_of("crs_lines"))]
        disagreements = [self.rule(raw, f"disagreements[{i}]", "icans", disagreement=True)
                         for i, raw in enumerate(self.list_of("disagreements"))]
        cadence = []
        for i, raw in enumerate(self.list_of("cadence")):
            where = f"cadence[{i}]"
            try:
                gs = self.grades(raw.get("grades"), f"{where}.grades")
                hours = raw["hours"]
                if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= 48:
                    self.bad(f"{where}.hours", "must be a whole number of hours, 1-48")
                    continue
                src = self.source(raw.get("source"), f"{where}.source")
                ev = self.evidence(raw, where)
                self.printable(raw.get("text"), f"{where}.text")
                if ev == "R" and "UNVERIFIED" not in str(raw.get("text", "")):
                    self.bad(f"{where}.text", "a recalled (R) cadence must say UNVERIFIED")
                if gs is None or src is None or ev is None:
                    continue
                cadence.append((gs, Cadence(hours, str(raw.get("text", "")),
                                            sources[src].citation, ev)))
            except (KeyError, TypeError, AttributeError):
                self.bad(where, "needs grades, hours, text, source and evidence")
        for g in range(5):
            n = sum(1 for gs, _ in cadence if g in gs)
            if n != 1:
                self.bad("cadence", f"grade {g} needs exactly one cadence (has {n})")
        good = [r for r in rules if r is not None]
        self.coverage(good)
        if self.problems:
            raise ProtocolError([f"{pid}: {p}" for p in self.problems])
        return Protocol(pid, str(d["version"]), str(d["title"]), str(d.get("note", "")),
                        sources, tuple(good), tuple(r for r in disagreements if r is not None),
                        tuple(cadence))

    def list_of(self, key: str) -> list[Any]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.bad(key, "must be a list")
            return []
        return value

    def grades(self, raw: Any, where: str) -> frozenset[int] | None:
        if not isinstance(raw, list) or not raw or not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 4 for x in raw):
            self.bad(where, "must be a list of grades within 0-4")
            return None
        return frozenset(raw)

    def source(self, raw: Any, where: str) -> str | None:
        if raw not in self.sources:
            self.bad(where, f"{raw!r} is not a named source" if raw else
                     "missing: every line names its source")
            return None
        return raw

    def evidence(self, raw: Mapping[str, Any], where: str) -> str | None:
        ev = raw.get("evidence")
        if ev not in EVIDENCE:
            self.bad(f"{where}.evidence", f"{ev!r} is not one of V, V2, R, D")
            return None
        return ev

    def printable(self, value: Any, where: str) -> None:
        """Text is printed as it is: a control character (an escape sequence) is refused."""
        from icans_cli.core.prescription import control_problem

        if isinstance(value, str):
            problem = control_problem(value)
            if problem:
                self.bad(where, problem)

    def rule(self, raw: Any, where: str, table: str, disagreement: bool = False) -> _Rule | None:
        if not isinstance(raw, Mapping):
            self.bad(where, "must be an object")
            return None
        before = len(self.problems)
        for key in sorted(set(raw) - _LINE_KEYS):
            self.bad(f"{where}.{key}", "unknown field (allowed: " + ", ".join(sorted(_LINE_KEYS))
                     + ")")
        if table == "crs":
            crs = self.crs_grades(raw.get("crs"), f"{where}.crs")
            grades = (self.grades(raw["grades"], f"{where}.grades") if "grades" in raw
                      else frozenset(range(5)))
        else:
            crs = (self.crs_grades(raw["crs"], f"{where}.crs") if isinstance(raw.get("crs"), list)
                   else self.choice(raw, "crs", ("any", "no", "yes"), where))
            grades = self.grades(raw.get("grades"), f"{where}.grades")
        product = self.choice(raw, "product", ("any", "high", "other"), where)
        patient = self.choice(raw, "patient", ("any", "adult", "child"), where)
        seizure = self.choice(raw, "seizure", ("any", "none", "seizure", "self_limited",
                                               "prolonged", "nonconvulsive_status"), where)
        icp = self.choice(raw, "icp", ("any", "raised", "not_raised", "focal"), where)
        status = self.choice(raw, "status", ("any", "graded", "not_assessable"), where)
        weight = None
        if "weight" in raw:
            w = raw["weight"]
            if isinstance(w, Mapping) and len(w) == 1 and next(iter(w)) in ("below_kg",
                                                                               "from_kg") \
                    and isinstance(next(iter(w.values())), (int, float)) \
                    and 0 < next(iter(w.values())) < 350:
                k, v = next(iter(w.items()))
                weight = ("below" if k == "below_kg" else "from", float(v))
            else:
                self.bad(f"{where}.weight", 'must be {"below_kg": N} or {"from_kg": N}')
        age = None
        if "age" in raw:
            a = raw["age"]
            if isinstance(a, Mapping) and len(a) == 1 and next(iter(a)) in ("below_years",
                                                                            "from_years") \
                    and isinstance(next(iter(a.values())), (int, float)) \
                    and not isinstance(next(iter(a.values())), bool) \
                    and 0 < next(iter(a.values())) <= 18:
                k, v = next(iter(a.items()))
                age = ("below" if k == "below_years" else "from", float(v))
            else:
                self.bad(f"{where}.age", 'must be {"below_years": N} or {"from_years": N}, '
                         "N from 0 to 18")
        outside = raw.get("outside_usual_range")
        if outside is not None and (not isinstance(outside, str) or not outside.strip()):
            self.bad(f"{where}.outside_usual_range", "must be the reason, as text")
            outside = None
        for key in ("text", "short", "outside_usual_range"):
            self.printable(raw.get(key), f"{where}.{key}")
        section = "disagreement" if disagreement else raw.get("section")
        if not disagreement and section not in SECTIONS:
            self.bad(f"{where}.section", f"unknown section {section!r} (allowed: "
                     + ", ".join(SECTIONS) + ")")
        text = raw.get("text")
        if not isinstance(text, str) or not text.strip():
            self.bad(f"{where}.text", "missing")
            text = ""
        src = self.source(raw.get("source"), f"{where}.source")
        ev = self.evidence(raw, where)
        if ev == "R" and "UNVERIFIED" not in text and "unverified" not in text:
            self.bad(f"{where}.text", "a recalled (R) line must say it is UNVERIFIED in its text")
        if ev == "D":
            # A rule no source states is the tool's: it says so, and never carries a
            # guideline's name as its source.
            if DERIVED_MARK not in text:
                self.bad(f"{where}.text", f"a derived (D) line must say {DERIVED_MARK!r}")
            if src is not None and not self.sources[src].citation.startswith("icans-cli"):
                self.bad(f"{where}.source", "a derived (D) line's source must be the tool's own "
                         "(a citation starting 'icans-cli'), never a guideline's name")
        doses: list[tuple[str, Dose]] = []
        raw_doses = raw.get("doses", {})
        if not isinstance(raw_doses, Mapping):
            self.bad(f"{where}.doses", "must be an object of named doses")
            raw_doses = {}
        for name, rd in raw_doses.items():
            try:
                if not isinstance(rd, Mapping):
                    raise DoseError("a dose must be an object")
                dose = Dose.from_dict(rd)
            except DoseError as exc:
                self.bad(f"{where}.doses.{name}", str(exc))
                continue
            if not dose.per_kg and patient != "adult":
                self.bad(f"{where}.doses.{name}", "a fixed amount on a line that a child can "
                         "see: give it per kg with the adult dose as max_amount, or mark the "
                         'line "patient": "adult"')
            if dose.per_kg and dose.max_amount is None and patient != "adult" \
                    and not (weight and weight[0] == "below"):
                self.bad(f"{where}.doses.{name}", "a per-kg dose a child can see needs its "
                         "maximum (max_amount), unless the line is for a weight band below a "
                         "limit")
            for key in ("drug", "over", "until"):
                self.printable(getattr(dose, key), f"{where}.doses.{name}.{key}")
            for fld, problem in check_dose(dose, child_can_see=patient != "adult",
                                           weight_band=weight, outside_ok=bool(outside)):
                self.bad(f"{where}.doses.{name}.{fld}", problem + (
                    "" if fld in ("unit", "route") or problem.startswith(("every", "'"))
                    else ' (a dose outside the usual range needs "outside_usual_range": '
                    '"reason" on its line, which the screen shows beside it)'))
            doses.append((name, dose))
        short = raw.get("short")
        if short is not None:
            if not isinstance(short, str) or not short.strip():
                self.bad(f"{where}.short", "must be text (the bedside-summary form)")
                short = None
            else:
                for name in sorted(set(_PLACEHOLDER.findall(short)) - set(raw_doses)):
                    self.bad(f"{where}.short", f"{{{name}}} has no dose of that name in 'doses'")
                if AMOUNT_IN_TEXT.search(_PLACEHOLDER.sub("", short)):
                    self.bad(f"{where}.short", "states an amount as free text: use {name}")
                if ev == "R" and "UNVERIFIED" not in short:
                    self.bad(f"{where}.short", "a recalled (R) line must say UNVERIFIED here too")
                if ev == "D" and DERIVED_MARK not in short:
                    self.bad(f"{where}.short", f"a derived (D) line must say {DERIVED_MARK!r} "
                             "here too")
        names = set(_PLACEHOLDER.findall(text))
        for name in sorted(names - {n for n, _ in doses}):
            self.bad(f"{where}.text", f"{{{name}}} has no dose of that name in 'doses'")
        for name, _ in doses:
            if name not in names:
                self.bad(f"{where}.text", f"the dose {name!r} is not placed in the text "
                         f"(write {{{name}}} where it goes)")
        if AMOUNT_IN_TEXT.search(_PLACEHOLDER.sub("", text)):
            self.bad(f"{where}.text", "states an amount as free text: a dose must be "
                     "structured (put it in 'doses' and write {name} in the text)")
        start = raw.get("start")
        if start is not None and start not in STARTS:
            self.bad(f"{where}.start", f"{start!r} is not one of {', '.join(STARTS)}")
        first = raw.get("first_line")
        if first is not None and (first not in FIRST_LINE_STEROIDS
                                  or start not in ("now", "consider")):
            self.bad(f"{where}.first_line", "must be one of " + ", ".join(FIRST_LINE_STEROIDS)
                     + ' on a line with "start": "now" or "consider"')
        if section == "corticosteroids" and doses and start is None:
            self.bad(f"{where}.start", "a corticosteroid dose line needs start: now, consider "
                     "or if_refractory")
        if len(self.problems) > before or None in (grades, crs, src, ev):
            return None
        return _Rule(table, grades, crs, product, patient, seizure, icp, status, weight,  # type: ignore[arg-type]
                     section, text, tuple(doses), src, ev, start, first, short,  # type: ignore[arg-type]
                     age, outside.strip() if outside else None)

    def choice(self, raw: Mapping[str, Any], key: str, allowed: tuple[str, ...],
               where: str) -> str:
        value = raw.get(key, "any")
        if value not in allowed:
            self.bad(f"{where}.{key}", f"{value!r} is not one of {', '.join(allowed)}")
            return "any"
        return value

    def crs_grades(self, raw: Any, where: str) -> frozenset[int] | None:
        if not isinstance(raw, list) or not raw or not all(
                isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 4 for x in raw):
            self.bad(where, "must be the CRS grades the line applies to: a list within 1-4 "
                            "(a CRS-table line always needs one)")
            return None
        return frozenset(raw)

    def coverage(self, rules: list[_Rule]) -> None:
        """Every ICANS grade, with and without CRS, for adults and children, whatever the
        product, has at least one corticosteroid line (saying what to give, or that none is
        advised)."""
        for g in range(5):
            for crs in (False, True):
                for child in (False, True):
                    for high in (False, True):
                        ctx = _Context(g, True, child, True, 40.0, high, "none", False)
                        if not any(r.section == "corticosteroids" and r.table == "icans"
                                   and _matches(r, ctx, crs, 2 if crs else 0) for r in rules):
                            self.bad("lines", f"grade {g} has no corticosteroid line "
                                     f"({'with' if crs else 'without'} CRS, "
                                     f"{'child' if child else 'adult'}, "
                                     f"{'high-risk' if high else 'standard'} product)")
                            return
