"""ASTCT 2019 ICANS grading (Lee et al., BBMT 2019;25:625), adults and children.

The grade is the most severe of five domains: the encephalopathy score (ICE, or CAPD under 12 /
with developmental delay), level of consciousness, seizure, motor findings, and raised
ICP/cerebral edema. Each domain gives a grade; the overall grade is the maximum; every domain at
that maximum (when it is above 0) is a driver.

The tables below are the single source of truth; nothing else in the project restates them.

Traps (each has a named test):
- ICE 10 alone is grade 0, not 1.
- ICE 0 in an awake patient (global aphasia) is grade 3; grade 4 needs an unarousable patient.
- An unarousable patient cannot perform ICE/CAPD: the score is not taken (stored as None). ICE 0
  is accepted on input as a synonym; CAPD 0 is refused, because CAPD 0 means a normal child and
  would read as improvement in a trend.
- Focal edema is grade 3; only diffuse edema and the raised-ICP signs are grade 4.
- Tremor, myoclonus and intracranial haemorrhage are recorded, never graded.
- Exactly 12 years uses ICE (Lee 2019); the NCI Thesaurus puts 12 on the CAPD side.
- Sedation (another cause: a sedating drug or another diagnosis) makes consciousness and the
  score domains not assessable. Intubation is not itself a cause: a patient intubated because of
  ICANS is graded.
- A CAPD baseline (documented before infusion) never changes the grade: the ASTCT bands apply to
  the total; the baseline is shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.scores import (
    CAPD_DELIRIUM_THRESHOLD,
    IceItems,
    capd_total,
    ice_total,
)

RULES_VERSION = "astct-2019/1"
RULES_SOURCE = "ASTCT consensus grading (Lee et al., Biol Blood Marrow Transplant 2019;25:625)"

ICE_AGE_MIN = 12  # Lee 2019: "<12" uses CAPD, ">=12" uses ICE
CAPD_VALIDATED_TO_AGE = 21


# value -> (grade, plain description)
CONSCIOUSNESS: dict[str, tuple[int, str]] = {
    "alert": (0, "alert"),
    "spontaneous": (1, "awakens spontaneously"),
    "voice": (2, "awakens to voice"),
    "tactile": (3, "awakens only to tactile stimulus"),
    "unarousable": (4, "unarousable, or needs vigorous or repetitive tactile stimuli (stupor, coma)"),
}
SEIZURE: dict[str, tuple[int, str]] = {
    "none": (0, "no seizure"),
    "self_limited": (3, "a self-limited seizure (resolved rapidly, or non-convulsive EEG "
                        "seizures resolved with intervention)"),
    "prolonged": (4, "a prolonged seizure (>5 min), or repetitive seizures without return to "
                     "baseline"),
    # Electrical seizures without return to baseline (ASTCT grade 4: "repetitive clinical or
    # electrical seizures"): its own finding, because its treatment is not the convulsive
    # status algorithm.
    "nonconvulsive_status": (4, "non-convulsive status epilepticus on EEG (repetitive "
                                "electrical seizures without return to baseline)"),
}
MOTOR: dict[str, tuple[int, str]] = {
    "none": (0, "no focal motor weakness"),
    "focal_weakness": (4, "deep focal motor weakness (hemiparesis or paraparesis)"),
}
ICP_EDEMA: dict[str, tuple[int, str]] = {
    "focal_edema": (3, "focal/local edema on neuroimaging"),
    "diffuse_edema": (4, "diffuse cerebral edema on neuroimaging"),
    "posturing": (4, "decerebrate or decorticate posturing"),
    "cn6_palsy": (4, "cranial nerve VI palsy"),
    "papilledema": (4, "papilledema"),
    "cushing_triad": (4, "Cushing's triad"),
}
EXCLUDED: dict[str, str] = {
    "tremor": "tremor may be graded by CTCAE v5.0 but does not influence the ICANS grade "
              "(Lee 2019)",
    "myoclonus": "myoclonus may be graded by CTCAE v5.0 but does not influence the ICANS grade "
                 "(Lee 2019)",
    "intracranial_hemorrhage": "intracranial haemorrhage, with or without edema, is not an "
                               "ICANS feature; grade it by CTCAE v5.0 (Lee 2019)",
}


def score_expected(consciousness: str, sedated: bool) -> bool:
    """Whether an ICE/CAPD score can and should be taken: not from an unarousable patient (who
    cannot perform it) and not when another cause (sedation) makes it ungradable."""
    return consciousness != "unarousable" and not sedated


def ice_domain_grade(score: int) -> int:
    """ICE band: 10 -> 0, 7-9 -> 1, 3-6 -> 2, 0-2 -> 3 (grade 4 only via unarousable)."""
    if score == 10:
        return 0
    if score >= 7:
        return 1
    if score >= 3:
        return 2
    return 3


def capd_domain_grade(score: int) -> int:
    """CAPD band: 0 -> 0, 1-8 -> 1, >=9 -> 3. Grade 2 comes from consciousness, not CAPD."""
    if score == 0:
        return 0
    if score < CAPD_DELIRIUM_THRESHOLD:
        return 1
    return 3


def _choice(name: str, value: str, table: dict) -> str:
    if value not in table:
        raise InvalidFinding(name, f"{value!r} is not recognised", ", ".join(table))
    return value


@dataclass(frozen=True)
class Findings:
    """What the assessor found. Scores may come as items, totals or both."""

    age_years: float | None = None  # None: 12 or over
    developmental_delay: bool = False
    ice_items: IceItems | None = None
    ice_score: int | None = None
    capd_points: tuple[int, ...] | None = None
    capd_score: int | None = None
    consciousness: str = "alert"
    seizure: str = "none"
    motor: str = "none"
    icp_edema: frozenset[str] = field(default_factory=frozenset)
    excluded: frozenset[str] = field(default_factory=frozenset)
    sedated: bool = False
    capd_baseline: int | None = None  # documented pre-infusion CAPD (never changes the grade)

    def __post_init__(self) -> None:
        if self.age_years is not None:
            if isinstance(self.age_years, bool) or not isinstance(self.age_years, (int, float)):
                raise InvalidFinding("age_years", f"{self.age_years!r} is not a number",
                                     "a number >= 0")
            if not (0 <= self.age_years <= 130):
                raise InvalidFinding("age_years", f"{self.age_years} is out of range", "0-130")
        _choice("consciousness", self.consciousness, CONSCIOUSNESS)
        _choice("seizure", self.seizure, SEIZURE)
        _choice("motor", self.motor, MOTOR)
        object.__setattr__(self, "icp_edema", frozenset(self.icp_edema))
        object.__setattr__(self, "excluded", frozenset(self.excluded))
        for v in self.icp_edema:
            _choice("icp_edema", v, {"none": 0, **ICP_EDEMA})
        if "none" in self.icp_edema:
            if len(self.icp_edema) > 1:
                raise InvalidFinding("icp_edema", "'none' cannot be combined with findings",
                                     "none, or " + ", ".join(ICP_EDEMA))
            object.__setattr__(self, "icp_edema", frozenset())
        for v in self.excluded:
            _choice("excluded", v, EXCLUDED)
        # Normalise the scores; raises on ranges and on items that disagree with totals.
        if self.ice_items is not None or self.ice_score is not None:
            object.__setattr__(self, "ice_score", ice_total(self.ice_items, self.ice_score))
        if self.capd_points is not None or self.capd_score is not None:
            object.__setattr__(self, "capd_score", capd_total(self.capd_points, self.capd_score))
        path = self.score_path
        other = "capd_score" if path == "ice" else "ice_score"
        if getattr(self, other) is not None:
            raise InvalidFinding(other, f"not used for this patient: {self.score_path_reason}",
                                 "leave it blank and give " + ("ice_score" if path == "ice"
                                                               else "capd_score"))
        score = self.ice_score if path == "ice" else self.capd_score
        if self.consciousness == "unarousable" and score is not None:
            if path == "ice" and score == 0:
                # ICE 0 is accepted as "not performed"; the score is not taken.
                object.__setattr__(self, "ice_score", None)
                object.__setattr__(self, "ice_items", None)
                score = None
            elif path == "capd" and score == 0:
                raise InvalidFinding(
                    "capd_score", "0 means a normal child, but the patient is unarousable and "
                    "cannot be scored", "blank when unarousable (CAPD is not taken)")
            else:
                raise InvalidFinding(
                    f"{path}_score",
                    f"{score} contradicts consciousness 'unarousable': an unarousable patient "
                    f"cannot perform {path.upper()}",
                    "blank when unarousable" + (", or 0" if path == "ice" else ""),
                )
        if self.capd_baseline is not None:
            if path != "capd":
                raise InvalidFinding("capd_baseline", "not used for this patient: "
                                     + self.score_path_reason, "leave it blank")
            from icans_cli.core.scores import CAPD_MAX, _check_int

            _check_int("capd_baseline", self.capd_baseline, 0, CAPD_MAX)
        if (score is None and score_expected(self.consciousness, self.sedated)
                and self.grade_without_score is None):
            raise InvalidFinding(
                f"{path}_score",
                f"no {path.upper()} score: one is needed unless the patient is unarousable or "
                "sedated, or another domain is grade 3 or 4 (the score cannot change that)",
                "0-10 (or the five ICE items)" if path == "ice" else "0-32 (or the eight items)",
            )

    @property
    def score_path(self) -> str:
        return score_path(self.age_years, self.developmental_delay)

    @property
    def grade_4_without_score(self) -> bool:
        """A seizure, motor or ICP finding of grade 4 makes the grade 4 whatever the score
        (grade 4 is the highest), so a missing score cannot change it: a patient in status
        epilepticus may have no ICE taken and still be graded."""
        return (SEIZURE[self.seizure][0] == 4 or MOTOR[self.motor][0] == 4
                or any(ICP_EDEMA[v][0] == 4 for v in self.icp_edema))

    @property
    def grade_without_score(self) -> int | None:
        """The grade when a missing score cannot change it, else None. In an arousable patient
        the ICE or CAPD domain grades at most 3 (its grade 4 is "unable to perform: the patient
        is unarousable", which consciousness already says), so a grade-3 finding of another
        domain (a seizure that resolved, awakening only to touch, focal edema) decides the
        grade as surely as a grade-4 one: the most severe domain (ASTCT 2019)."""
        others = [SEIZURE[self.seizure][0], MOTOR[self.motor][0],
                  *(ICP_EDEMA[v][0] for v in self.icp_edema)]
        if not self.sedated:
            others.append(CONSCIOUSNESS[self.consciousness][0])
        top = max(others)
        return top if top >= 3 else None

    @property
    def score_path_reason(self) -> str:
        return score_path_reason(self.age_years, self.developmental_delay)


def score_path(age: float | None, developmental_delay: bool) -> str:
    """ICE for 12 and over (Lee 2019); CAPD under 12 or with developmental delay."""
    if age is not None and age < ICE_AGE_MIN:
        return "capd"
    return "capd" if developmental_delay else "ice"


def score_path_reason(age: float | None, developmental_delay: bool) -> str:
    if age is not None and age < ICE_AGE_MIN:
        return f"age {_fmt_age(age)} is under 12: CAPD (ICE is not validated under 12)"
    if developmental_delay:
        text = "baseline developmental delay: CAPD from age 12"
        if age is not None and age > CAPD_VALIDATED_TO_AGE:
            text += (f" (CAPD is validated up to age {CAPD_VALIDATED_TO_AGE}; at "
                     f"{_fmt_age(age)} it is used beyond its validation)")
        return text
    if age is None:
        return "age not given (taken as 12 or over): ICE"
    if age < ICE_AGE_MIN + 1:
        return ("age 12: ICE, following Lee 2019 (ASTCT: 12 and over use ICE); note the NCI "
                "Thesaurus puts age 12 on the CAPD side")
    return f"age {_fmt_age(age)}: ICE"


def _fmt_age(age: float) -> str:
    return str(int(age)) if float(age).is_integer() else f"{age:g}"


@dataclass(frozen=True)
class DomainResult:
    domain: str
    value: str  # the normalised finding ("voice", "7", "focal_edema;papilledema", "not given")
    description: str
    grade: int | None  # None: not assessable / not performed
    assessable: bool = True


@dataclass(frozen=True)
class IcansResult:
    status: str  # "graded" | "not_assessable"
    grade: int | None
    grade_at_least: int | None
    domains: tuple[DomainResult, ...]
    drivers: tuple[str, ...]
    excluded: tuple[str, ...]
    score_path: str
    score_path_reason: str
    ice_score: int | None
    capd_score: int | None
    not_assessable: tuple[str, ...] = ()
    rules_version: str = RULES_VERSION
    capd_baseline: int | None = None

    @property
    def capd_change(self) -> int | None:
        """CAPD now minus the documented baseline (positive is worse), when both are known."""
        if self.capd_baseline is None or self.capd_score is None:
            return None
        return self.capd_score - self.capd_baseline

    @property
    def effective_grade(self) -> int:
        """The grade to manage by: the grade, or the floor when not assessable."""
        return self.grade if self.grade is not None else (self.grade_at_least or 0)

    def domain(self, name: str) -> DomainResult:
        for d in self.domains:
            if d.domain == name:
                return d
        raise KeyError(name)


def grade_icans(f: Findings) -> IcansResult:
    """Grade ICANS from validated findings."""
    path = f.score_path
    score = f.ice_score if path == "ice" else f.capd_score
    domains: list[DomainResult] = []

    # The encephalopathy score domain.
    if f.sedated:
        shown = "not scored" if score is None else str(score)
        domains.append(DomainResult(path, shown, "not assessable: another cause (a sedating "
                                    "drug or another diagnosis) explains it", None, False))
    elif f.consciousness == "unarousable":
        domains.append(DomainResult(path, "not performed",
                                    "not performed: the patient is unarousable", 4))
    elif score is None:  # allowed only when another domain decides the grade (validated)
        domains.append(DomainResult(path, "not recorded", "not recorded: the grade is "
                                    f"{f.grade_without_score} from another domain whatever "
                                    "the score", None))
    else:
        if path == "ice":
            g = ice_domain_grade(score)
            desc = f"ICE {score}/10" + (" (no impairment)" if score == 10 else "")
        else:
            g = capd_domain_grade(score)
            desc = f"CAPD {score}/32" + (" (9 or more suggests delirium)"
                                         if score >= CAPD_DELIRIUM_THRESHOLD else "")
        domains.append(DomainResult(path, str(score), desc, g))

    c_grade, c_desc = CONSCIOUSNESS[f.consciousness]
    if f.sedated:
        domains.append(DomainResult("consciousness", f.consciousness,
                                    f"{c_desc}; not assessable: another cause explains it",
                                    None, False))
    else:
        domains.append(DomainResult("consciousness", f.consciousness, c_desc, c_grade))

    s_grade, s_desc = SEIZURE[f.seizure]
    domains.append(DomainResult("seizure", f.seizure, s_desc, s_grade))
    m_grade, m_desc = MOTOR[f.motor]
    domains.append(DomainResult("motor", f.motor, m_desc, m_grade))
    if f.icp_edema:
        ordered = sorted(f.icp_edema, key=lambda v: (-ICP_EDEMA[v][0], v))
        i_grade = max(ICP_EDEMA[v][0] for v in ordered)
        domains.append(DomainResult("icp_edema", ";".join(ordered),
                                    "; ".join(ICP_EDEMA[v][1] for v in ordered), i_grade))
    else:
        domains.append(DomainResult("icp_edema", "none", "no edema or raised-ICP signs", 0))

    graded = [d for d in domains if d.grade is not None]
    top = max(d.grade for d in graded)  # type: ignore[type-var]
    drivers = tuple(d.domain for d in graded if d.grade == top and top > 0)
    not_assessable = tuple(d.domain for d in domains if not d.assessable)
    if not_assessable and top < 4:
        status, grade, at_least = "not_assessable", None, top
    else:
        status, grade, at_least = "graded", top, None
    return IcansResult(
        status=status,
        grade=grade,
        grade_at_least=at_least,
        domains=tuple(domains),
        drivers=drivers,
        excluded=tuple(sorted(f.excluded)),
        score_path=path,
        score_path_reason=f.score_path_reason,
        ice_score=f.ice_score,
        capd_score=f.capd_score,
        not_assessable=not_assessable,
        capd_baseline=f.capd_baseline,
    )
