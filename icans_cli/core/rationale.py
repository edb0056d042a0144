"""Why the tool says what it says, in the project's own words.

Each item names its sources and evidence level. Claims the evidence file marks UNVERIFIED are
either left out or said to be unverified in the text itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from icans_cli.core.grading import EXCLUDED, RULES_SOURCE, IcansResult
from icans_cli.core.protocol import Recommendation

DOMAIN_LABELS = {
    "ice": "ICE score",
    "capd": "CAPD score",
    "consciousness": "level of consciousness",
    "seizure": "seizure",
    "motor": "motor findings",
    "icp_edema": "raised ICP / cerebral edema",
}


@dataclass(frozen=True)
class RationaleItem:
    topic: str  # "grade" | "corticosteroids" | "tocilizumab" | "trade_off" | "crs_unknown"
    title: str
    text: str
    sources: tuple[str, ...]
    evidence: str  # V, V2, or mixed notes in the text


def why_grade(result: IcansResult) -> str:
    parts: list[str] = []
    graded = [d for d in result.domains if d.grade is not None]
    if result.status == "graded":
        g = result.grade
        if g == 0:
            parts.append("Grade 0: no domain reaches grade 1 ("
                         + "; ".join(d.description for d in graded) + ").")
        else:
            drivers = [d for d in graded if d.domain in result.drivers]
            parts.append(f"Grade {g}, driven by "
                         + ", and by ".join(f"the {DOMAIN_LABELS[d.domain]} ({d.description})"
                                            for d in drivers) + ".")
    else:
        na = " and ".join(DOMAIN_LABELS[n] for n in result.not_assessable)
        floor = result.grade_at_least
        parts.append(f"Not assessable: {na} cannot be graded because another cause (a sedating "
                     f"drug or another diagnosis) explains them. The grade is at least "
                     f"{floor}" + (" from " + " and ".join(
                         f"{d.description}" for d in graded if d.domain in result.drivers)
                         if result.drivers else "") + "; reassess when the other cause allows.")
    lesser = [d for d in graded if d.domain not in result.drivers and d.grade and d.grade > 0]
    for d in lesser:
        parts.append(f"{d.description[0].upper()}{d.description[1:]} alone would be grade "
                     f"{d.grade}.")
    if result.status == "graded" and result.grade == 4 and "consciousness" in result.drivers:
        parts.append("An unarousable patient cannot do the score, so none is recorded.")
    score = result.domain(result.score_path)
    if (result.score_path == "ice" and score.grade == 3 and score.value == "0"
            and result.domain("consciousness").grade not in (4, None)):
        parts.append("ICE 0 in a patient who is awake (for example global aphasia) is grade 3; "
                     "grade 4 needs an unarousable patient.")
    for name in result.excluded:
        parts.append(f"Recorded, not graded: {EXCLUDED[name]}.")
    if result.capd_baseline is not None:
        parts.append(capd_baseline_text(result))
    parts.append(f"Score used: {result.score_path_reason}.")
    return " ".join(parts)


def capd_baseline_text(result: IcansResult) -> str:
    """The change from a documented CAPD baseline; grading stays on the ASTCT bands."""
    base = result.capd_baseline
    change = result.capd_change
    text = (f"CAPD baseline {base}" + ("" if change is None else
                                         f"; now {result.capd_score}, "
                                         f"{'+' if change > 0 else ''}{change} from baseline")
            + ". The grade uses the ASTCT bands on the total, not the change.")
    if base:
        text += (" A baseline above 0 is common in young or developmentally delayed children, "
                 "so judge the change as well as the band (a reasoned point, not a source's).")
    return text


CORTICOSTEROIDS = RationaleItem(
    "corticosteroids",
    "Why corticosteroids",
    "ICANS is inflammation behind the blood-brain barrier, so the drug has to get there. "
    "Dexamethasone and methylprednisolone are small, fat-soluble molecules that pass through "
    "cell membranes, unlike an antibody. The passage is not free: the barrier's efflux pump, "
    "P-glycoprotein, carries dexamethasone back out (mice lacking the pump take up more of it "
    "into the brain), so part of a dose reaches the brain, not all of it. Once inside cells "
    "corticosteroids damp the transcription of many inflammatory genes at once, through NF-kB "
    "and AP-1, so IL-1 is turned down as well as IL-6, and they help tighten leaky brain "
    "endothelium. ASCO 2021: moderate to severe ICANS is managed with corticosteroids.",
    ("De Bosscher 2000, J Neuroimmunol (NF-kB/AP-1)",
     "Mason et al., Endocrinology 2008;149:5244 (P-glycoprotein and dexamethasone brain "
     "uptake, PMC2629618)",
     "Cell Tissue Res 2014 review (glucocorticoids and the blood-brain barrier)",
     "ASCO 2021 (Santomasso, JCO 2021;39:3978)"),
    "V",
)

TOCILIZUMAB = RationaleItem(
    "tocilizumab",
    "Why not tocilizumab for ICANS without CRS",
    "Tocilizumab is a large IgG antibody, and antibodies given into a vein reach the spinal fluid "
    "at only about 0.1-0.2% of their blood level in animal studies. Blocking the IL-6 receptor "
    "also raises IL-6 in the blood, because the receptor is how IL-6 is cleared; experts suspect "
    "that this IL-6 reaches the brain, where the drug does not follow (opinion, not measured). "
    "It has not worked for isolated neurotoxicity, and given prophylactically (ZUMA-1 cohort 3) "
    "it came with more grade 3 or worse neurological events: 41% against 28%. Size is not the "
    "whole story: anakinra reaches spinal fluid poorly too (0.28%) yet is used when ICANS resists "
    "steroids.",
    ("Fluids Barriers CNS 2018 (antibody CSF/serum 0.1-0.2%)",
     "Nishimoto, Blood 2008;112:3959 (serum IL-6 rises)",
     "Review table PMC10329188 (ZUMA-1 cohorts 41% vs 28%)",
     "J Neuroimmunol 2010 (anakinra CSF 0.28%)"),
    "V",
)

TRADE_OFF = RationaleItem(
    "trade_off",
    "The trade-off",
    "Corticosteroids act on the same transcription factors that CAR-T cells need to expand and "
    "kill, so they can blunt the therapy. After axi-cel, high cumulative, prolonged and early "
    "steroid exposure went with shorter survival in one study, while a review of 8 axi-cel "
    "studies mostly found no effect on efficacy, and giving steroids earlier (ZUMA-1 cohorts 4 "
    "and 6) came with less severe neurotoxicity. So: the lowest dose that works, the shortest "
    "course, and a taper watched for ICANS flares.",
    ("Strati, Blood 2021;137:3272", "Sun, Front Immunol 2021 (systematic review)",
     "Review table PMC10329188 (ZUMA-1 cohorts 4 and 6)"),
    "V",
)

CRS_UNKNOWN = RationaleItem(
    "crs_unknown",
    "CRS not known",
    "Whether there is concurrent CRS decides whether tocilizumab has any place, so both branches "
    "are shown. CRS means fever of 38.0 C or more with or without hypotension or hypoxia; after "
    "tocilizumab or corticosteroids it can persist without fever. ICANS can also come without "
    "any CRS (notably with cilta-cel).",
    ("ASTCT consensus (Lee 2019)", "SITC 2020 CRS table", "Carvykti (cilta-cel) label"),
    "V",
)

CRS_PRESENT = RationaleItem(
    "crs_present",
    "Why tocilizumab here",
    "Tocilizumab is advised for the concurrent CRS, an illness driven largely by IL-6 in the "
    "blood, where the antibody works well. It does not treat the ICANS itself; if the "
    "neurotoxicity does not improve, corticosteroids are the drug that reaches the brain.",
    ("ASCO 2021 (Santomasso, JCO 2021;39:3978)",),
    "V",
)


CRS_CONTROLLED = RationaleItem(
    "crs_controlled",
    "CRS controlled after treatment",
    "Once CRS has been treated, fever no longer has to be present to grade it, so the grade "
    "rests on hypotension and hypoxia. With neither, no ASTCT grade is met: the CRS is "
    "controlled, further tocilizumab has nothing to treat, and the neurotoxicity is managed as "
    "isolated ICANS, with corticosteroids by its grade.",
    ("ASTCT consensus (Lee 2019), CRS footnote", "SITC 2020 CRS table"),
    "V",
)


def rationale(result: IcansResult, recommendation: Recommendation) -> tuple[RationaleItem, ...]:
    items = [RationaleItem("grade", "Why this grade", why_grade(result), (RULES_SOURCE,), "V")]
    steroids = any(b.corticosteroids_advised for b in recommendation.branches)
    isolated = any(not b.crs for b in recommendation.branches)
    with_crs = any(b.crs for b in recommendation.branches)
    grade = recommendation.grade
    if steroids:
        items.append(CORTICOSTEROIDS)
    if isolated and grade >= 1:
        items.append(TOCILIZUMAB)
    if recommendation.crs == "controlled":
        items.append(CRS_CONTROLLED)
    if recommendation.crs == "unknown" and grade >= 1:
        items.append(CRS_UNKNOWN)
    elif with_crs and grade >= 1:
        items.append(CRS_PRESENT)
    if steroids:
        items.append(TRADE_OFF)
    return tuple(items)
