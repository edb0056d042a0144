"""The bedside interview (questionary). It asks, and returns answers; it never grades.

Order avoids the classic errors: another cause (sedation) first, then level of consciousness,
so an unarousable patient is never asked to "score" ICE; the score path (ICE or CAPD) follows
the age rule from the core. Every prompt is `unsafe_ask()`ed so Ctrl-C and end of input reach
the caller, which then saves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import questionary
from questionary import Choice

from icans_cli.core.crs import CrsFindings, CrsResult, grade_crs
from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import (
    CONSCIOUSNESS, EXCLUDED, ICP_EDEMA, MOTOR, SEIZURE, Findings, score_expected, score_path,
)
from icans_cli.core.identifiers import validate_patient_id
from icans_cli.core.protocol import PRODUCTS
from icans_cli.core.scores import CAPD_ANSWERS, CAPD_ITEMS, ICE_ITEMS, IceItems, capd_points, \
    show_capd_anchors

STYLE = questionary.Style([
    ("qmark", "fg:#5f87ff bold"),
    ("question", "bold"),
    ("answer", "fg:#00afff bold"),
    ("pointer", "fg:#ffaf00 bold"),
    ("highlighted", "fg:#ffaf00 bold"),
    ("selected", "fg:#00d75f"),
    ("instruction", "fg:#8a8a8a"),
])

CONSCIOUSNESS_CHOICES = [
    ("alert", "Alert (awake, no depressed consciousness)"),
    ("spontaneous", "Drowsy, awakens spontaneously"),
    ("voice", "Awakens only to voice"),
    ("tactile", "Awakens only to tactile stimulus"),
    ("unarousable", "Unarousable, or needs vigorous/repetitive stimuli (stupor, coma)"),
]
SEIZURE_CHOICES = [
    ("none", "No seizure"),
    ("self_limited", "Seizure that resolved rapidly, or EEG seizures resolved with intervention"),
    ("prolonged", "Prolonged seizure (> 5 min), or repeated without return to baseline"),
]
MOTOR_CHOICES = [
    ("none", "No deep focal motor weakness"),
    ("focal_weakness", "Deep focal motor weakness (hemiparesis, paraparesis)"),
]
ICP_CHOICES = [
    ("focal_edema", "Focal/local edema on neuroimaging"),
    ("diffuse_edema", "Diffuse cerebral edema on neuroimaging"),
    ("posturing", "Decerebrate or decorticate posturing"),
    ("cn6_palsy", "Cranial nerve VI palsy"),
    ("papilledema", "Papilledema"),
    ("cushing_triad", "Cushing's triad"),
]
EXCLUDED_CHOICES = [
    ("tremor", "Tremor"),
    ("myoclonus", "Myoclonus"),
    ("intracranial_hemorrhage", "Intracranial haemorrhage"),
]
HYPOTENSION_CHOICES = [
    ("none", "No hypotension"),
    ("fluids", "Hypotension not needing vasopressors"),
    ("one", "One vasopressor (with or without vasopressin)"),
    ("several", "Several vasopressors (vasopressin not counted)"),
]
OXYGEN_CHOICES = [
    ("none", "No supplemental oxygen"),
    ("nasal_cannula", "Nasal cannula (you will give the flow in L/min)"),
    ("blow_by", "Blow-by oxygen"),
    ("facemask", "Facemask"),
    ("non_rebreather", "Non-rebreather mask"),
    ("venturi", "Venturi mask"),
    ("cpap", "CPAP"),
    ("bipap", "BiPAP"),
    ("mechanical_ventilation", "Intubation and mechanical ventilation"),
]

assert [c for c, _ in CONSCIOUSNESS_CHOICES] == list(CONSCIOUSNESS)
assert {c for c, _ in SEIZURE_CHOICES} == set(SEIZURE) and {c for c, _ in MOTOR_CHOICES} == \
    set(MOTOR)
assert {c for c, _ in ICP_CHOICES} == set(ICP_EDEMA) and {c for c, _ in EXCLUDED_CHOICES} == \
    set(EXCLUDED)


@dataclass
class CrsAnswers:
    mode: str = "unknown"  # "grade" | "questions" | "unknown"
    grade: int | None = None
    fever: bool = False
    treatments: list[str] = field(default_factory=list)  # already given for CRS
    hypotension: str = "none"
    oxygen: str = "none"
    flow: float | None = None

    def findings(self) -> CrsFindings:
        return CrsFindings(
            fever=self.fever, hypotension=self.hypotension != "none",
            vasopressors={"one": 1, "several": 2}.get(self.hypotension, 0),
            oxygen=self.oxygen, oxygen_flow_l_min=self.flow,
            treatments=frozenset(self.treatments))

    def result(self) -> CrsResult | None:
        """The graded CRS when it was worked out from the questions."""
        return grade_crs(self.findings()) if self.mode == "questions" else None

    @property
    def controlled(self) -> bool:
        r = self.result()
        return bool(r and r.controlled)

    def detail(self) -> dict[str, Any] | None:
        if self.mode != "questions":
            return None
        r = self.result()
        return {"fever": self.fever, "treatments": sorted(self.treatments),
                "hypotension": self.hypotension, "oxygen": self.oxygen,
                "oxygen_flow_l_min": self.flow, "controlled": bool(r and r.controlled),
                "disagreement": r.disagreement if r else None}


@dataclass
class Answers:
    patient_id: str | None = None
    age: float | None = None
    weight: float | None = None
    developmental_delay: bool = False
    sedated: bool = False
    consciousness: str = "alert"
    orientation: list[str] = field(default_factory=list)  # which parts were correct
    naming: list[str] = field(default_factory=list)
    commands: bool = False
    writing: bool = False
    attention: bool = False
    ice_done: bool = False
    capd: list[str] = field(default_factory=list)  # eight Never..Always answers
    capd_baseline: int | None = None
    seizure: str = "none"
    motor: str = "none"
    icp: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    crs: CrsAnswers = field(default_factory=CrsAnswers)
    product: str | None = None
    needs_score: bool = False  # amending a record that holds only an ICE total

    @property
    def path(self) -> str:
        return score_path(self.age, self.developmental_delay)

    @property
    def scored(self) -> bool:
        """Whether an ICE/CAPD score is part of these answers."""
        return score_expected(self.consciousness, self.sedated)

    def ice_items(self) -> IceItems:
        return IceItems(len(self.orientation), len(self.naming), int(self.commands),
                        int(self.writing), int(self.attention))

    def findings(self) -> Findings:
        ice_items = capd = None
        if self.scored and self.path == "ice":
            ice_items = self.ice_items()
        elif self.scored and self.path == "capd":
            capd = capd_points(self.capd)
        return Findings(age_years=self.age, developmental_delay=self.developmental_delay,
                        ice_items=ice_items, capd_points=capd,
                        consciousness=self.consciousness, seizure=self.seizure,
                        motor=self.motor, icp_edema=frozenset(self.icp),
                        excluded=frozenset(self.excluded), sedated=self.sedated,
                        capd_baseline=self.capd_baseline if self.path == "capd" else None)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Answers":
        """Start from a logged record (for --amends)."""
        f = rec.get("findings") or {}
        a = cls(patient_id=rec.get("patient_id"), age=f.get("age_years"),
                weight=f.get("weight_kg"), capd_baseline=f.get("capd_baseline"),
                developmental_delay=bool(f.get("developmental_delay")),
                sedated=bool(f.get("sedated")), consciousness=f.get("consciousness", "alert"),
                seizure=f.get("seizure", "none"), motor=f.get("motor", "none"),
                icp=list(f.get("icp_edema") or []), excluded=list(f.get("excluded") or []),
                product=f.get("product"))
        items = f.get("ice_items")
        if items:
            a.orientation = list(ICE_ITEMS[0].parts[: items["orientation"]])
            a.naming = list(ICE_ITEMS[1].parts[: items["naming"]])
            a.commands, a.writing, a.attention = (bool(items["commands"]),
                                                  bool(items["writing"]),
                                                  bool(items["attention"]))
            a.ice_done = True
        elif f.get("ice_score") is not None:
            a.needs_score = True  # a batch record holds only the total: ask the items again
        capd = f.get("capd_items")
        if not capd and f.get("capd_score") is not None:
            a.needs_score = True
        if capd:
            a.capd = [CAPD_ANSWERS[(4 - p) if spec.reversed else p]
                      for spec, p in zip(CAPD_ITEMS, capd)]
        crs = f.get("crs_grade")
        detail = f.get("crs_detail")
        if detail and "hypotension" in detail:
            treatments = list(detail.get("treatments") or [])
            if detail.get("treated_for_crs") and not treatments:
                treatments = ["tocilizumab"]  # records before 0.2 said only "tocilizumab or
                # corticosteroids": either waives fever alike; the review screen shows it
            a.crs = CrsAnswers("questions", crs, bool(detail.get("fever")), treatments,
                               detail.get("hypotension", "none"), detail.get("oxygen", "none"),
                               detail.get("oxygen_flow_l_min"))
        elif crs is not None:
            a.crs = CrsAnswers("grade", crs)
        return a


# --- prompts ------------------------------------------------------------------------------------

def _select(message: str, choices: list[tuple[str, str]], default: str | None = None,
            instruction: str | None = None, keys: list[str] | None = None) -> str:
    """A list to pick from. `keys`: shortcut keys that must mean what they say (a grade's own
    number), instead of the default 1, 2, 3... by position."""
    if keys is not None:
        cs = [Choice(title, value=value, shortcut_key=key)
              for (value, title), key in zip(choices, keys)]
    else:
        cs = [Choice(title, value=value) for value, title in choices]
    return questionary.select(message, choices=cs, default=next(
        (c for c in cs if c.value == default), None), use_shortcuts=len(cs) <= 9,
        instruction=instruction or "(number or arrows, then Enter)", style=STYLE).unsafe_ask()


def _checkbox(message: str, choices: list[tuple[str, str]], checked: list[str],
              instruction: str) -> list[str]:
    cs = [Choice(title, value=value, checked=value in checked) for value, title in choices]
    return list(questionary.checkbox(message, choices=cs, instruction=instruction,
                                     style=STYLE).unsafe_ask())


def _confirm(message: str, default: bool = False) -> bool:
    return bool(questionary.confirm(message, default=default, style=STYLE).unsafe_ask())


def _text(message: str, default: str = "", validate: Callable[[str], Any] | None = None,
          instruction: str | None = None) -> str:
    return str(questionary.text(message, default=default, validate=validate,
                                instruction=instruction, style=STYLE).unsafe_ask())


def _note(text: str) -> None:
    """A line between prompts (e.g. the running score), printed through prompt_toolkit."""
    from prompt_toolkit import print_formatted_text
    from prompt_toolkit.formatted_text import FormattedText

    print_formatted_text(FormattedText([("bold", f"  = {text}")]))


def _validate_pid(text: str) -> bool | str:
    try:
        validate_patient_id(text)
    except InvalidFinding as exc:
        return f"Patient pseudonym {exc.message}: 1-64 printable characters"
    return True


def _validate_age(text: str) -> bool | str:
    t = text.strip()
    if not t:
        return True
    try:
        v = float(t)
    except ValueError:
        return "Age in years as a number (e.g. 7 or 1.5), or blank if 12 or over"
    if not 0 <= v <= 130:
        return "Age must be between 0 and 130"
    return True


def _validate_weight(required: bool) -> Callable[[str], bool | str]:
    def check(text: str) -> bool | str:
        t = text.strip()
        if not t:
            return "Weight is needed under 18: children's doses are per kg" if required else True
        try:
            v = float(t)
        except ValueError:
            return "Weight in kg as a number, e.g. 23.5"
        return True if 0 < v <= 350 else "Weight must be above 0 and at most 350 kg"
    return check


def _validate_baseline(text: str) -> bool | str:
    t = text.strip()
    if not t:
        return True
    return (t.isdigit() and 0 <= int(t) <= 32) or "A CAPD total 0-32, or blank if none"


def _validate_flow(text: str) -> bool | str:
    try:
        v = float(text.strip())
    except ValueError:
        return "Flow in litres per minute, e.g. 2 or 6 or 8"
    return True if 0 < v <= 80 else "Flow must be above 0 and at most 80 L/min"


def ask_patient(a: Answers) -> None:
    a.patient_id = validate_patient_id(_text(
        "Patient pseudonym", default=a.patient_id or "", validate=_validate_pid,
        instruction="(the ward's pseudonym only: never a name, record number or birth date)"))


def ask_age(a: Answers) -> None:
    shown = "" if a.age is None else f"{a.age:g}"
    t = _text("Age in years", default=shown, validate=_validate_age,
              instruction="(blank if 12 or over; under 12 is scored with CAPD)").strip()
    a.age = None if not t else (int(float(t)) if float(t).is_integer() else float(t))


def ask_weight(a: Answers) -> None:
    child = a.age is not None and a.age < 18
    shown = "" if a.weight is None else f"{a.weight:g}"
    t = _text("Weight in kg", default=shown, validate=_validate_weight(child),
              instruction="(children's doses are per kg, capped at the adult dose)" if child
              else "(optional for adults; per-kg doses then show their amount)").strip()
    a.weight = None if not t else (int(float(t)) if float(t).is_integer() else float(t))


def ask_capd_baseline(a: Answers) -> None:
    shown = "" if a.capd_baseline is None else str(a.capd_baseline)
    t = _text("CAPD baseline before infusion, if documented", default=shown,
              validate=_validate_baseline,
              instruction="(blank if none; the grade stays ASTCT, the change is shown)").strip()
    a.capd_baseline = int(t) if t else None


def ask_delay(a: Answers) -> None:
    if a.age is not None and a.age < 12:
        a.developmental_delay = False
        return
    a.developmental_delay = _confirm(
        "Baseline developmental delay? (then CAPD is used instead of ICE)",
        default=a.developmental_delay)


def ask_sedated(a: Answers) -> None:
    a.sedated = _confirm(
        "Is drowsiness or confusion explained by a SEDATING DRUG or another diagnosis (not "
        "ICANS)? Intubation alone is not a cause.", default=a.sedated)


def ask_consciousness(a: Answers) -> None:
    a.consciousness = _select("Level of consciousness", CONSCIOUSNESS_CHOICES, a.consciousness,
                              "(each number is the ASTCT grade it gives; then Enter)",
                              keys=["0", "1", "2", "3", "4"])


def ask_ice(a: Answers) -> None:
    o, n = ICE_ITEMS[0], ICE_ITEMS[1]
    a.orientation = _checkbox(
        "ICE orientation: which did the patient get RIGHT?",
        [(p, p.capitalize()) for p in o.parts], a.orientation,
        "(Space = correct, a = all correct, Enter = done)")
    a.naming = _checkbox(
        "ICE naming: point to 3 objects (e.g. clock, pen, button). Which were named RIGHT?",
        [(p, p.capitalize()) for p in n.parts], a.naming,
        "(Space = correct, a = all correct, Enter = done)")
    a.commands = _confirm('ICE command: follows a simple command ("Show me 2 fingers" or '
                          '"Close your eyes and stick out your tongue")?', a.commands)
    a.writing = _confirm("ICE writing: writes a standard sentence?", a.writing)
    a.attention = _confirm("ICE attention: counts backwards from 100 by 10?", a.attention)
    a.ice_done = True
    _note(f"ICE {a.ice_items().total}/10")


def ask_capd(a: Answers) -> None:
    answers = list(a.capd) if len(a.capd) == 8 else ["never"] * 8
    anchors = show_capd_anchors(a.age)
    for i, spec in enumerate(CAPD_ITEMS):
        instruction = "(number or arrows, then Enter)"
        if anchors:
            instruction = "Usual at this age: " + " | ".join(
                f"{band}: {text}" for band, text in spec.anchors) + "\n  " + instruction
        answers[i] = _select(f"CAPD {spec.number}/8: {spec.question}",
                             [(x, x.capitalize()) for x in CAPD_ANSWERS],
                             answers[i] if len(a.capd) == 8 else None, instruction)
    a.capd = answers
    _note(f"CAPD {sum(capd_points(answers))}/32")


def ask_score(a: Answers) -> None:
    if not a.scored:
        return
    if a.path == "ice":
        ask_ice(a)
    else:
        ask_capd(a)


def ask_seizure(a: Answers) -> None:
    a.seizure = _select("Seizures since the last assessment", SEIZURE_CHOICES, a.seizure)


def ask_motor(a: Answers) -> None:
    a.motor = _select("Motor findings", MOTOR_CHOICES, a.motor)


def ask_icp(a: Answers) -> None:
    a.icp = _checkbox("Raised ICP / cerebral edema: mark any present", ICP_CHOICES, a.icp,
                      "(Space marks, Enter when done; none marked = none)")


def ask_excluded(a: Answers) -> None:
    a.excluded = _checkbox("Also seen? Recorded but NOT graded (ASTCT excludes them)",
                           EXCLUDED_CHOICES, a.excluded,
                           "(Space marks, Enter when done)")


def ask_crs(a: Answers) -> None:
    c = a.crs
    mode = _select("Concurrent CRS (decides whether tocilizumab has any place)", [
        ("grade", "I know the current ASTCT CRS grade"),
        ("questions", "Work it out: answer the ASTCT CRS questions"),
        ("unknown", "Not known (both management branches will be shown)"),
    ], c.mode)
    if mode == "grade":
        g = _select("Current ASTCT CRS grade", [(str(i), f"CRS grade {i}" + (" (no CRS)" if
                                                                            i == 0 else ""))
                                                for i in range(5)],
                    None if c.grade is None else str(c.grade),
                    "(press the grade's number, then Enter)", keys=[str(i) for i in range(5)])
        a.crs = CrsAnswers("grade", int(g))
    elif mode == "questions":
        fever = _confirm("Fever >= 38.0 C not explained by another cause?", c.fever)
        treated = _checkbox("Already given for the CRS (marks what was given)?", [
            ("tocilizumab", "Tocilizumab"), ("corticosteroids", "Corticosteroids"),
            ("antipyretic", "Antipyretic (e.g. paracetamol)")], c.treatments,
            "(Space marks, Enter when done; none marked = none)")
        hyp = _select("Hypotension", HYPOTENSION_CHOICES, c.hypotension)
        oxy = _select("Oxygen", OXYGEN_CHOICES, c.oxygen)
        flow = None
        if oxy == "nasal_cannula":
            flow = float(_text("Nasal cannula flow (L/min)",
                               default="" if c.flow is None else f"{c.flow:g}",
                               validate=_validate_flow))
        from icans_cli.core.crs import grade_crs

        new = CrsAnswers("questions", None, fever, treated, hyp, oxy, flow)
        new.grade = grade_crs(new.findings()).grade
        a.crs = new
    else:
        a.crs = CrsAnswers("unknown")


def ask_product(a: Answers) -> None:
    choices = [(p, p) for p in PRODUCTS if p != "other"] + [("other", "other product"),
                                                              ("__none__", "not recorded")]
    v = _select("CAR-T product (axi-cel and brexu-cel: high neurotoxicity risk)", choices,
                a.product or "__none__")
    a.product = None if v == "__none__" else v


# (key, label, ask, applies?) in interview order; the review screen uses the same table.
QUESTIONS: list[tuple[str, str, Callable[[Answers], None], Callable[[Answers], bool]]] = [
    ("age", "Age", ask_age, lambda a: True),
    ("weight", "Weight", ask_weight, lambda a: True),
    ("delay", "Developmental delay", ask_delay, lambda a: a.age is None or a.age >= 12),
    ("sedated", "Another cause (sedation etc.)", ask_sedated, lambda a: True),
    ("consciousness", "Level of consciousness", ask_consciousness, lambda a: True),
    ("score", "ICE / CAPD", ask_score, lambda a: a.scored),
    ("baseline", "CAPD baseline", ask_capd_baseline, lambda a: a.path == "capd"),
    ("seizure", "Seizure", ask_seizure, lambda a: True),
    ("motor", "Motor", ask_motor, lambda a: True),
    ("icp", "ICP / edema", ask_icp, lambda a: True),
    ("excluded", "Excluded findings", ask_excluded, lambda a: True),
    ("crs", "Concurrent CRS", ask_crs, lambda a: True),
    ("product", "Product", ask_product, lambda a: True),
]


def describe(a: Answers, key: str) -> str:
    if key == "age":
        return "12 or over (not given)" if a.age is None else f"{a.age:g} years"
    if key == "weight":
        return "not given" if a.weight is None else f"{a.weight:g} kg"
    if key == "baseline":
        return "none documented" if a.capd_baseline is None else f"CAPD {a.capd_baseline}"
    if key == "delay":
        return "yes" if a.developmental_delay else "no"
    if key == "sedated":
        return "YES: consciousness and score not assessable" if a.sedated else "no"
    if key == "consciousness":
        return dict(CONSCIOUSNESS_CHOICES)[a.consciousness].split(" (")[0]
    if key == "score":
        if not a.scored:
            return "not scored"
        if a.path == "ice":
            it = a.ice_items()
            return (f"ICE {it.total}/10 (orient {it.orientation}, name {it.naming}, "
                    f"command {it.commands}, write {it.writing}, count {it.attention})")
        if len(a.capd) == 8:
            pts = capd_points(a.capd)
            return f"CAPD {sum(pts)}/32 (" + ", ".join(str(p) for p in pts) + ")"
        return "CAPD not answered"
    if key == "seizure":
        return {"none": "none", "self_limited": "self-limited seizure",
                "prolonged": "PROLONGED or repetitive seizures"}[a.seizure]
    if key == "motor":
        return "none" if a.motor == "none" else "deep focal motor weakness"
    if key == "icp":
        return "; ".join(dict(ICP_CHOICES)[x] for x in a.icp) or "none"
    if key == "excluded":
        return "; ".join(dict(EXCLUDED_CHOICES)[x] for x in a.excluded) or "none"
    if key == "crs":
        c = a.crs
        if c.mode == "unknown":
            return "not known"
        return f"CRS grade {c.grade}" + (" (from the CRS questions)" if c.mode == "questions"
                                         else "")
    if key == "product":
        return a.product or "not recorded"
    raise KeyError(key)


def interview(a: Answers, skip: set[str] | frozenset[str] = frozenset()) -> Answers:
    """Ask every question that applies, in order (`skip`: answered by an option)."""
    for key, _, ask, applies in QUESTIONS:
        if key in skip:
            continue
        if applies(a):
            ask(a)
    return a


def review(a: Answers, preview: Callable[[Answers], str]) -> Answers:
    """List every answer; let the user change any one; return when they accept."""
    while True:
        rows = [(key, label) for key, label, _, applies in QUESTIONS if applies(a)]
        width = max(len(label) for _, label in rows)
        choices = [Choice(f"Accept: {preview(a)}", value="__accept__")]
        for key, label in rows:
            choices.append(Choice(f"Change  {label.ljust(width)}  {describe(a, key)}",
                                  value=key))
        picked = questionary.select(
            "Review every answer. Accept, or pick one to change:", choices=choices,
            instruction="(arrows, then Enter)", style=STYLE).unsafe_ask()
        if picked == "__accept__":
            return a
        ask = next(q for q in QUESTIONS if q[0] == picked)[2]
        before_path, before_scored = a.path, a.scored
        ask(a)
        # A change that alters the score path or makes a score needed asks for the score.
        if a.scored and (a.path != before_path or not before_scored or (
                a.path == "ice" and not a.ice_done) or (a.path == "capd" and len(a.capd) != 8)):
            ask_score(a)
