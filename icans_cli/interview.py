"""The bedside interview (questionary). It asks, and returns answers; it never grades.

Order avoids the classic errors: another cause (a sedating drug) first, then level of
consciousness, so an unarousable patient is never asked to "score" ICE; the score path (ICE or
CAPD) follows the age rule from the core. Every prompt is `unsafe_ask()`ed so Ctrl-C and end of
input (Ctrl-D, at every prompt) reach the caller, which then saves nothing.

One numbering rule for every list: a number key is always the ASTCT grade that the answer gives
(level of consciousness, seizure, motor, CRS grade); every other choice has a letter key. CAPD
answers are lettered (n, r, s, o, a), never numbered like scores.

A known patient (a record in the log) is reassessed quickly: the details (age, weight, product,
developmental delay) are shown and kept with one key, and the findings other than sedation,
consciousness and the score are confirmed "as last time" with one key. A routine unchanged
reassessment takes eight keystrokes.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import questionary
from questionary import Choice

from icans_cli.core.advice import Case
from icans_cli.core.crs import POSITIVE_PRESSURE, CrsFindings, CrsResult, CrsState, grade_crs
from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import (
    CONSCIOUSNESS, EXCLUDED, ICP_EDEMA, MOTOR, SEIZURE, Findings, score_expected, score_path,
)
from icans_cli.core.identifiers import (
    check_pseudonym, identifying_reason, parse_time, validate_patient_id,
)
from icans_cli.core.protocol import PRODUCTS
from icans_cli.core.scores import (
    CAPD_ANSWERS, CAPD_ITEMS, ICE_ITEMS, IceItems, capd_points, show_capd_anchors,
)

# The terminal's own named colours (its theme sets their contrast, dark or light): never a
# fixed palette colour, which a light background can wash out (a test holds this).
STYLE = questionary.Style([
    ("qmark", "fg:ansiblue bold"),
    ("question", "bold"),
    ("answer", "fg:ansicyan bold"),
    ("pointer", "fg:ansiblue bold"),
    ("highlighted", "bold"),
    ("selected", "fg:ansigreen bold"),
    ("instruction", ""),
    ("key", "bold"),
    ("error", "fg:ansired bold"),
    ("last", "italic"),
])

# (value, title, key): number keys are the ASTCT grade the answer gives.
CONSCIOUSNESS_CHOICES = [
    ("alert", "Alert (awake)", "0"),
    ("spontaneous", "Drowsy, awakens spontaneously", "1"),
    ("voice", "Awakens only to voice", "2"),
    ("tactile", "Awakens only to touch", "3"),
    ("unarousable", "Unarousable, or needs vigorous stimuli", "4"),
]
SEIZURE_CHOICES = [
    ("none", "No seizure", "0"),
    ("self_limited", "Seizure that resolved quickly (or EEG seizures stopped by treatment)", "3"),
    ("prolonged", "Convulsive: over 5 min, or repeated with no recovery between", "4"),
    ("nonconvulsive_status", "Non-convulsive status on EEG (no return to baseline)", "e"),
]
MOTOR_CHOICES = [
    ("none", "No deep focal motor weakness", "0"),
    ("focal_weakness", "Deep focal weakness (hemiparesis, paraparesis)", "4"),
]
ICP_CHOICES = [
    ("focal_edema", "Focal/local edema on imaging (grade 3)"),
    ("diffuse_edema", "Diffuse cerebral edema on imaging (grade 4)"),
    ("posturing", "Decerebrate or decorticate posturing (grade 4)"),
    ("cn6_palsy", "Cranial nerve VI palsy (grade 4)"),
    ("papilledema", "Papilledema (grade 4)"),
    ("cushing_triad", "Cushing's triad (grade 4)"),
]
EXCLUDED_CHOICES = [
    ("tremor", "Tremor"),
    ("myoclonus", "Myoclonus"),
    ("intracranial_hemorrhage", "Intracranial haemorrhage"),
]
CRS_MODE_CHOICES = [
    ("grade", "I know the current ASTCT CRS grade", "k"),
    ("questions", "Work it out: the ASTCT CRS questions", "w"),
    ("unknown", "Not known (both management branches are shown)", "u"),
]
HYPOTENSION_CHOICES = [
    ("none", "No hypotension", "n"),
    ("fluids", "Hypotension not needing vasopressors", "f"),
    ("one", "One vasopressor (with or without vasopressin)", "o"),
    ("several", "Several vasopressors (vasopressin not counted)", "s"),
]
OXYGEN_CHOICES = [
    ("none", "No supplemental oxygen", "n"),
    ("nasal_cannula", "Nasal cannula (the flow is asked next)", "c"),
    ("blow_by", "Blow-by oxygen", "b"),
    ("facemask", "Facemask", "f"),
    ("non_rebreather", "Non-rebreather mask", "r"),
    ("venturi", "Venturi mask", "v"),
    ("cpap", "CPAP", "p"),
    ("bipap", "BiPAP", "i"),
    ("mechanical_ventilation", "Intubated, mechanical ventilation", "m"),
]
VENTILATION_CHOICES = [
    ("hypoxia", "For hypoxia (the lungs: CRS counts it)", "h"),
    ("airway", "Only to protect the airway (e.g. for ICANS): not CRS", "a"),
    (None, "Not known (both CRS grades are shown)", "n"),
]
PRODUCT_CHOICES = [
    ("axi-cel", "axi-cel (high neurotoxicity risk)", "a"),
    ("brexu-cel", "brexu-cel (high neurotoxicity risk)", "b"),
    ("tisa-cel", "tisa-cel", "t"),
    ("liso-cel", "liso-cel", "l"),
    ("ide-cel", "ide-cel", "i"),
    ("cilta-cel", "cilta-cel", "c"),
    ("obe-cel", "obe-cel", "o"),
    ("other", "another product", "x"),
    (None, "not recorded", "n"),
]
CAPD_KEYS = ("n", "r", "s", "o", "a")  # Never, Rarely, Sometimes, Often, Always
TREATMENT_CHOICES = [("tocilizumab", "Tocilizumab"), ("corticosteroids", "Corticosteroids"),
                     ("antipyretic", "Antipyretic (e.g. paracetamol)")]
# The ten ICE tasks, one checklist: (item, part) -> label.
ICE_TASKS = [
    ("orientation", "Year"), ("orientation", "Month"), ("orientation", "City"),
    ("orientation", "Hospital"),
    ("naming", "Names object 1 (e.g. clock)"), ("naming", "Names object 2 (e.g. pen)"),
    ("naming", "Names object 3 (e.g. button)"),
    ("commands", 'Follows a command ("show me 2 fingers")'),
    ("writing", "Writes a standard sentence"),
    ("attention", "Counts back from 100 by 10"),
]

assert [c for c, _, _ in CONSCIOUSNESS_CHOICES] == list(CONSCIOUSNESS)
assert all(CONSCIOUSNESS[v][0] == int(k) for v, _, k in CONSCIOUSNESS_CHOICES)
assert all(SEIZURE[v][0] == int(k) for v, _, k in SEIZURE_CHOICES if k.isdigit())
assert [v for v, _, _ in SEIZURE_CHOICES] == list(SEIZURE)
assert all(MOTOR[v][0] == int(k) for v, _, k in MOTOR_CHOICES)
assert {c for c, _ in ICP_CHOICES} == set(ICP_EDEMA) and {c for c, _ in EXCLUDED_CHOICES} == \
    set(EXCLUDED)
assert [p for p, _, _ in PRODUCT_CHOICES if p] == list(PRODUCTS)
assert [t for t, _ in ICE_TASKS].count("orientation") == ICE_ITEMS[0].max_points


@dataclass
class CrsAnswers:
    mode: str = "unknown"  # "grade" | "questions" | "unknown"
    grade: int | None = None
    fever: bool = False
    treatments: list[str] = field(default_factory=list)  # already given for CRS
    hypotension: str = "none"
    oxygen: str = "none"
    flow: float | None = None
    tocilizumab_at: str | None = None  # the last tocilizumab dose for this CRS (ISO)
    ventilation_reason: str | None = None  # positive pressure: "hypoxia" | "airway" | None

    def findings(self) -> CrsFindings:
        return CrsFindings(
            fever=self.fever, hypotension=self.hypotension != "none",
            vasopressors={"one": 1, "several": 2}.get(self.hypotension, 0),
            oxygen=self.oxygen, oxygen_flow_l_min=self.flow,
            treatments=frozenset(self.treatments),
            ventilation_reason=self.ventilation_reason if self.oxygen in POSITIVE_PRESSURE
            else None)

    def state(self) -> CrsState:
        """The CRS as the advice sees it (the same function batch uses)."""
        if self.mode == "questions":
            return CrsState.of(self.result())
        return CrsState(self.grade if self.mode == "grade" else None)

    @property
    def disputed(self) -> bool:
        r = self.result()
        return bool(r and r.disagreement)

    def text(self) -> str:
        """How the CRS was graded, for the details."""
        r = self.result()
        if r is not None:
            return f"{r.label}: {r.explanation}" + (f". {r.disagreement}" if r.disagreement
                                                     else "")
        if self.mode == "grade":
            return f"grade {self.grade} (as given)"
        return "not known: both management branches are shown"

    def result(self) -> CrsResult | None:
        """The graded CRS when it was worked out from the questions."""
        return grade_crs(self.findings()) if self.mode == "questions" else None

    @property
    def controlled(self) -> bool:
        r = self.result()
        return bool(r and r.controlled)

    def detail(self) -> dict[str, Any] | None:
        if self.mode != "questions":
            return {"tocilizumab_at": self.tocilizumab_at} if self.tocilizumab_at else None
        r = self.result()
        out = {"fever": self.fever, "treatments": sorted(self.treatments),
               "hypotension": self.hypotension, "oxygen": self.oxygen,
               "oxygen_flow_l_min": self.flow, "controlled": bool(r and r.controlled),
               "disagreement": r.disagreement if r else None}
        if self.oxygen in POSITIVE_PRESSURE:
            out["ventilation_reason"] = self.ventilation_reason
        if self.tocilizumab_at:
            out["tocilizumab_at"] = self.tocilizumab_at
        return out


@dataclass
class Answers:
    patient_id: str | None = None
    age: float | None = None
    weight: float | None = None
    developmental_delay: bool = False
    sedated: bool = False
    consciousness: str = "alert"
    ice: list[int] = field(default_factory=list)  # indexes of ICE_TASKS done right
    ice_done: bool = False
    capd: list[str] = field(default_factory=list)  # eight Never..Always answers
    capd_baseline: int | None = None
    seizure: str = "none"
    motor: str = "none"
    icp: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    crs: CrsAnswers = field(default_factory=CrsAnswers)
    product: str | None = None
    needs_score: bool = False  # amending a record that holds only a score total
    assessed_at: str | None = None  # amendments: the original time, kept; or --assessed-at
    late_entry: bool = False  # assessed_at from --assessed-at: within the last 24 h
    ice_total: int | None = None  # the ICE total typed (the tasks then not recorded)
    known: bool = False  # filled from a logged record: its answers are "last time"

    @property
    def path(self) -> str:
        return score_path(self.age, self.developmental_delay)

    @property
    def scored(self) -> bool:
        """Whether an ICE/CAPD score is part of these answers."""
        return score_expected(self.consciousness, self.sedated)

    def ice_score(self) -> int:
        return self.ice_total if self.ice_total is not None else self.ice_items().total

    def last(self, value: Any) -> Any:
        """`value` as last time's answer, or None for a patient new to the log (no last
        time to show)."""
        return value if self.known else None

    def ice_items(self) -> IceItems:
        counts = {k: 0 for k in ("orientation", "naming", "commands", "writing", "attention")}
        for i in self.ice:
            counts[ICE_TASKS[i][0]] += 1
        return IceItems(**counts)

    def case(self, assessed_at: Any) -> Case:
        """Everything the advice depends on (the Case every path builds)."""
        from icans_cli.records import tocilizumab_hours

        when = assessed_at.isoformat(timespec="seconds") if hasattr(
            assessed_at, "isoformat") else assessed_at
        return Case(self.findings(), self.crs.state(), self.product, self.weight,
                    tocilizumab_hours(self.crs.detail(), when))

    def findings(self) -> Findings:
        ice_items = capd = ice_score = None
        if self.scored and self.path == "ice":
            if self.ice_total is not None:
                ice_score = self.ice_total
            else:
                ice_items = self.ice_items()
        elif self.scored and self.path == "capd":
            capd = capd_points(self.capd)
        return Findings(age_years=self.age, developmental_delay=self.developmental_delay,
                        ice_items=ice_items, ice_score=ice_score, capd_points=capd,
                        consciousness=self.consciousness, seizure=self.seizure,
                        motor=self.motor, icp_edema=frozenset(self.icp),
                        excluded=frozenset(self.excluded), sedated=self.sedated,
                        capd_baseline=self.capd_baseline if self.path == "capd" else None)

    @classmethod
    def from_record(cls, rec: dict[str, Any], with_scores: bool = True) -> "Answers":
        """Start from a logged record (for --amends, or a known patient's defaults)."""
        f = rec.get("findings") or {}
        a = cls(patient_id=rec.get("patient_id"), age=f.get("age_years"),
                weight=f.get("weight_kg"), capd_baseline=f.get("capd_baseline"),
                developmental_delay=bool(f.get("developmental_delay")),
                sedated=bool(f.get("sedated")), consciousness=f.get("consciousness", "alert"),
                seizure=f.get("seizure", "none"), motor=f.get("motor", "none"),
                icp=list(f.get("icp_edema") or []), excluded=list(f.get("excluded") or []),
                product=f.get("product"), known=True)
        if with_scores:
            items = f.get("ice_items")
            if items:
                a.ice = _tasks_from_items(items)
                named = _tasks_from_names(f.get("ice_tasks") or [])
                if named and sorted(ICE_TASKS[i][0] for i in named) == \
                        sorted(ICE_TASKS[i][0] for i in a.ice):  # the same counts: use them
                    a.ice = named
                a.ice_done = True
            elif f.get("ice_score") is not None:
                a.ice_total, a.ice_done = int(f["ice_score"]), True  # the total alone
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
                treatments = ["tocilizumab"]  # older records said only "tocilizumab or
                # corticosteroids": either waives fever alike; the review screen shows it
            a.crs = CrsAnswers("questions", crs, bool(detail.get("fever")), treatments,
                               detail.get("hypotension", "none"), detail.get("oxygen", "none"),
                               detail.get("oxygen_flow_l_min"), detail.get("tocilizumab_at"),
                               detail.get("ventilation_reason"))
        elif crs is not None:
            a.crs = CrsAnswers("grade", crs,
                               tocilizumab_at=(detail or {}).get("tocilizumab_at"))
        return a


def task_names(tasks: list[int]) -> list[str]:
    """The ICE tasks marked done right, by name ("orientation: Year"), for the record."""
    return [f"{ICE_TASKS[i][0]}: {ICE_TASKS[i][1]}" for i in sorted(tasks)]


def _tasks_from_names(names: list[str]) -> list[int] | None:
    index = {f"{k}: {label}": i for i, (k, label) in enumerate(ICE_TASKS)}
    found = [index.get(str(n)) for n in names]
    return None if any(i is None for i in found) else sorted(set(found))  # type: ignore


def _tasks_from_items(items: dict[str, int]) -> list[int]:
    """Which of the ten ICE tasks to mark for a record's item counts."""
    out: list[int] = []
    for key in ("orientation", "naming", "commands", "writing", "attention"):
        idx = [i for i, (k, _) in enumerate(ICE_TASKS) if k == key]
        out.extend(idx[: int(items.get(key) or 0)])
    return out


# --- prompts ------------------------------------------------------------------------------------

_interrupted = False


def on_sigint(signum: int, frame: Any) -> None:  # noqa: ARG001
    """SIGINT between two prompts (the terminal is not raw then, so Ctrl-C is a signal): noted,
    and raised. A KeyboardInterrupt that lands in a finaliser is swallowed by Python; the note
    makes the next prompt raise it instead, so Ctrl-C is never lost."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _ask(question: "questionary.Question") -> Any:
    global _interrupted
    if _interrupted:
        _interrupted = False
        raise KeyboardInterrupt
    return question.unsafe_ask()


def _eof_binding(question: "questionary.Question") -> "questionary.Question":
    """Ctrl-D ends the interview from any prompt, even with text typed (prompt_toolkit
    alone ends only an empty text line and ignores it in lists)."""
    from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings

    extra = KeyBindings()

    @extra.add("c-d", eager=True)
    def _(event) -> None:
        event.app.exit(exception=EOFError)

    app = question.application
    app.key_bindings = merge_key_bindings([app.key_bindings or KeyBindings(), extra])
    return question


def _choose(message: str, options: list[tuple[str, str]], last: str | None = None,
            instruction: str | None = None, show_options: bool = True) -> str:
    """One key answers; nothing else does. Enter alone is never an answer (it never confirms a
    default, so Enter pressed through an interview records nothing), and a key that is not an
    answer says so under the question. `options`: (key, label); `last`: what the patient had
    last time, shown for reference (answering it still takes its own key). Ctrl-C and Ctrl-D
    end the interview from here."""
    from prompt_toolkit.application import Application
    from prompt_toolkit.formatted_text import to_formatted_text
    from prompt_toolkit.layout import FormattedTextControl, Layout, Window
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.keys import Keys

    status: dict[str, Any] = {"error": ""}
    keys = [k for k, _ in options]
    press = ", ".join(keys[:-1]) + f" or {keys[-1]}" if len(keys) > 1 else keys[0]

    def tokens():
        t: list[tuple[str, str]] = [("class:qmark", "?"), ("class:question", f" {message}")]
        if last:
            t.append(("class:last", f"  (last time: {last})"))
        if show_options:
            for k, label in options:
                t += [("", "\n"), ("class:key", f"   {k}  "), ("", label)]
        t.append(("", "\n"))
        if status["error"]:
            t += [("class:error", f"  ! {status['error']}"), ("", "\n")]
        t.append(("class:instruction", f"  {instruction or 'Press ' + press}: "))
        return to_formatted_text(t)

    kb = KeyBindings()

    @kb.add(Keys.ControlC, eager=True)
    def _(event) -> None:
        event.app.exit(exception=KeyboardInterrupt)

    @kb.add(Keys.ControlD, eager=True)
    def _(event) -> None:
        event.app.exit(exception=EOFError)

    def make(key: str):
        def pick(event) -> None:
            event.app.exit(result=key)
        return pick

    for key in keys:
        kb.add(key)(make(key))
        if key.upper() != key:
            kb.add(key.upper())(make(key))

    @kb.add(Keys.ControlM, eager=True)
    def _(event) -> None:
        status["error"] = f"Enter is not an answer here: press {press}."
        event.app.invalidate()

    @kb.add(Keys.Any)
    def _(event) -> None:
        pressed = event.key_sequence[0].data if event.key_sequence else ""
        shown = f"'{pressed}'" if len(pressed) == 1 and pressed.isprintable() else "That key"
        status["error"] = f"{shown} is not an answer here: press {press}."
        event.app.invalidate()

    # A bare application (a prompt session would load its hundreds of editing bindings for a
    # question that takes one key: a tenth of a second per question).
    def shown():
        return [*tokens(), ("[SetCursorPosition]", "")]

    app: Application = Application(
        layout=Layout(Window(FormattedTextControl(shown, show_cursor=True),
                             dont_extend_height=True, wrap_lines=True)),
        key_bindings=kb, style=STYLE, erase_when_done=True, full_screen=False)
    return str(_ask(questionary.Question(app)))  # the answer is said below, in one line


def _select(message: str, choices: list[tuple[Any, str, str]], default: Any = None,
            instruction: str | None = None) -> Any:
    """One of `choices` (value, title, key) by its key. `default`: last time's answer, shown
    beside the question, never taken by Enter."""
    by_key = {key: (value, title) for value, title, key in choices}
    last = next((title for value, title, _ in choices if value == default
                 and default is not None), None)
    key = _choose(message, [(k, t) for _, t, k in choices], last)
    value, title = by_key[key]
    _echo(message, title)
    return value


def _confirm(message: str, default: bool | None = None) -> bool:
    """y or n: one key, and Enter is not an answer (`default`: last time's, shown)."""
    last = None if default is None else ("yes" if default else "no")
    answer = _choose(message, [("y", "yes"), ("n", "no")], last, show_options=False)
    _echo(message, "yes" if answer == "y" else "no")
    return answer == "y"


def _checkbox(message: str, choices: list[tuple[Any, str]], checked: list[Any],
              instruction: str, echo: bool = True) -> list[Any]:
    """Space marks, Enter is done; the answer is said in words below (questionary's own echo
    is "done", which reads the same for nothing marked and for several)."""
    cs = [Choice(title, value=value, checked=value in checked) for value, title in choices]
    picked = list(_ask(_eof_binding(questionary.checkbox(message, choices=cs,
                                                         instruction=instruction,
                                                         style=STYLE))))
    if echo:
        titles = [title for value, title in choices if value in picked]
        note("= " + ("; ".join(titles) if titles else "none"))
    return picked


def _marks(message: str, choices: list[tuple[Any, str]], current: list[Any],
           none_label: str, known: bool = False) -> list[Any]:
    """None of these (its own key), or mark them. Nothing marked is asked again: "none" is a
    finding, and only its key records it. `known`: `current` is last time's answer."""
    last = ("; ".join(t for v, t in choices if v in current) or "none") if known else None
    while True:
        key = _choose(message, [("n", none_label), ("m", "Mark them (Space marks, Enter done)")],
                      last)
        if key == "n":
            _echo(message, "none")
            return []
        picked = _checkbox(message, choices, current, "(Space marks, Enter done)", echo=True)
        if picked:
            return picked
        note(f"Nothing was marked: press n for {none_label.lower()}, or mark them.", "error")


def _text(message: str, default: str = "", check: Callable[[str], str | None] | None = None,
          instruction: str | None = None, keep_refused: bool = True) -> str:
    """A text answer; a problem is said on the line below the prompt, and it is asked again
    with what was typed (never a message on the bottom row of the screen), or blank when
    `keep_refused` is false (a name typed as a pseudonym is not left on the screen)."""
    while True:
        question = _eof_binding(questionary.text(message, default=default,
                                                 instruction=instruction, style=STYLE))
        if not keep_refused:  # what was typed leaves the screen; an accepted answer is said
            question.application.erase_when_done = True
        answer = str(_ask(question))
        problem = check(answer) if check else None
        if not problem:
            if not keep_refused:
                note(f"{message}: {answer.strip()}")
            return answer
        note(problem, "error")
        default = answer if keep_refused else ""


def keypress(message: str, options: list[tuple[str, str]], default: str | None = None) -> str:
    """A one-key answer, e.g. y / n / d. Enter alone is never an answer (`default` is kept for
    the callers' signature and ignored: nothing is saved by Enter). Ctrl-C and Ctrl-D end it."""
    key = _choose(message, options, show_options=False,
                  instruction=" / ".join(f"{k} {label}" for k, label in options))
    _echo(message, dict(options)[key])
    return key


def note(text: str, kind: str = "info") -> None:
    """A line between prompts, wrapped at word boundaries to the terminal, on the prompts'
    stream (stderr), so it stands beside the prompt it is about."""
    import os
    import shutil
    import sys

    width = max(40, min(shutil.get_terminal_size((80, 24)).columns, 120) - 2)
    code = {"info": "1", "error": "1;31", "warning": "1;33", "dim": "2"}.get(kind, "")
    colour = code and sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    lead = "  ! " if kind in ("error", "warning") else "  "
    for line in textwrap.wrap(text, width - len(lead)) or [""]:
        line = lead + line
        sys.stderr.write((f"\x1b[{code}m{line}\x1b[0m" if colour else line) + "\n")
        lead = " " * len(lead)
    sys.stderr.flush()


def _echo(message: str, answer: str) -> None:
    """The answer under a list once it is answered, "? Question Answer", wrapped at word
    boundaries (questionary's own echo is one line that the terminal cuts mid-word)."""
    import os
    import shutil
    import sys

    width = max(40, min(shutil.get_terminal_size((80, 24)).columns, 120) - 1)
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    lines = textwrap.wrap(f"{message} {answer}", width - 2, subsequent_indent="  ") or [""]
    for i, line in enumerate(lines):
        if colour:
            head, rest = (line[:len(message)], line[len(message):]) if i == 0 else ("", line)
            text = ("\x1b[1;38;5;69m?\x1b[0m " if i == 0 else "") + \
                f"\x1b[1m{head}\x1b[0m\x1b[1;38;5;39m{rest}\x1b[0m"
        else:
            text = ("? " if i == 0 else "") + line
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _check_pid(allow_id: bool) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            pid = validate_patient_id(text)
        except InvalidFinding as exc:
            return f"The pseudonym {exc.message}: 1-64 printable characters."
        reason = None if allow_id else identifying_reason(pid)
        if reason:
            return (f"That {reason}. Enter the ward's pseudonym, never a name, record number "
                    "or birth date (a site whose pseudonyms look like this can use --allow-id).")
        return None
    return check


def _check_age(text: str) -> str | None:
    t = text.strip().lower()
    if not t:
        return "Enter alone is not an answer: age in years (7, 1.5), or a for an adult."
    if t == "a":
        return None
    try:
        v = float(t)
    except ValueError:
        return "The age in years as a number (7, 1.5), or a for an adult."
    return None if 0 <= v <= 130 else "Age must be between 0 and 130 years."


def _check_weight(required: bool) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        t = text.strip().lower()
        if not t:
            return "Under 18 the weight is needed: children's doses are per kg." if required \
                else None
        pounds = t.endswith(("lb", "lbs"))
        number = t.rstrip("sb").rstrip("l").strip() if pounds else (
            t[:-2].strip() if t.endswith("kg") else t)
        try:
            v = float(number)
        except ValueError:
            return "Weight in kg as a number, e.g. 23.5 (or pounds: 176 lb)."
        if pounds:
            v = v / 2.20462
        return None if 1 <= v <= 350 else "Weight must be from 1 to 350 kg."
    return check


def _check_baseline(text: str) -> str | None:
    t = text.strip()
    return None if not t or (t.isdigit() and 0 <= int(t) <= 32) else \
        "A CAPD total 0-32, or blank if none was documented."


def _check_flow(text: str) -> str | None:
    try:
        v = float(text.strip())
    except ValueError:
        return "Flow in litres per minute, e.g. 2, 6 or 8."
    return None if 0 < v <= 80 else "Flow must be above 0 and at most 80 L/min."


def _number(text: str) -> float | int | None:
    t = text.strip()
    if not t:
        return None
    v = float(t)
    return int(v) if v.is_integer() else v


def ask_patient(a: Answers, allow_id: bool = False, known: Callable[[str], str | None]
                = lambda _: None) -> None:
    note("The ward's pseudonym only: never a name, record number or birth date.", "dim")
    typed = check_pseudonym(_text("Patient pseudonym", default=a.patient_id or "",
                                  check=_check_pid(allow_id), keep_refused=False), allow_id)
    a.patient_id = match_known(typed, known)


def match_known(typed: str, known: Callable[[str], str | None]) -> str:
    """A pseudonym the log knows under another spelling ("PT 0042" for "PT-0042": matched
    case- and separator-insensitively) is the same patient only if the user says so: one key
    each way, never Enter."""
    spelled = known(typed)
    if spelled is None or spelled == typed:
        return typed
    key = _choose(f"{typed} → {spelled} (known)?", [
        ("k", f"The known patient {spelled}"),
        ("n", f"A new patient, {typed}")])
    _echo(f"{typed} → {spelled} (known)?", spelled if key == "k" else f"new patient {typed}")
    return spelled if key == "k" else typed


def ask_age(a: Answers) -> None:
    shown = "" if a.age is None else f"{a.age:g}"
    t = _text("Age in years", default=shown, check=_check_age,
              instruction="(a: an adult, age not at hand; under 12 is scored with CAPD)")
    a.age = None if t.strip().lower() == "a" else _number(t)


def ask_weight(a: Answers) -> None:
    """kg, or pounds with "lb" (converted and said); a weight outside the usual range for the
    age (a growth chart's) is confirmed with its own key; a refused value is cleared."""

    child = a.age is not None and a.age < 18
    shown = "" if a.weight is None else f"{a.weight:g}"
    while True:
        text = _text("Weight in kg", default=shown, check=_check_weight(child),
                     instruction="(needed under 18: doses per kg; 176 lb is converted)"
                     if child else "(optional for adults; 176 lb is converted)",
                     keep_refused=False)
        weight = _weight_kg(text)
        if weight is None:
            a.weight = None
            return
        a.weight = weight
        if confirm_weight(a):
            return
        shown = ""


def confirm_weight(a: Answers) -> bool:
    """A weight outside the usual range for the age (growth charts) is kept only with its own
    key: pounds typed as kilograms give every per-kg dose twice over. False: re-enter it."""
    from icans_cli.core.growth import implausible

    band = None if a.weight is None else implausible(a.age, a.weight)
    if band is None:
        return True
    note(f"{a.weight:g} kg is outside the usual range for age {a.age:g} ({band[0]:g}-"
         f"{band[1]:g} kg): pounds typed as kg, or a slip?", "warning")
    key = _choose("That weight", [("c", f"Confirm {a.weight:g} kg (it was measured)"),
                                  ("r", "Re-enter it")])
    if key == "c":
        _echo("That weight", f"{a.weight:g} kg, confirmed")
        return True
    a.weight = None
    ask_weight(a)
    return True


def _weight_kg(text: str) -> float | int | None:
    """'72', '72 kg' or '176 lb' (said converted) -> kg; blank -> None."""
    from icans_cli.core.growth import pounds_to_kg

    t = text.strip().lower()
    if not t:
        return None
    for unit in ("lbs", "lb"):
        if t.endswith(unit):
            kg = pounds_to_kg(float(t[:-len(unit)].strip()))
            note(f"= {kg:g} kg ({t[:-len(unit)].strip()} lb)")
            return int(kg) if float(kg).is_integer() else kg
    return _number(t[:-2] if t.endswith("kg") else t)


def ask_delay(a: Answers) -> None:
    if a.age is not None and a.age < 12:
        a.developmental_delay = False
        return
    a.developmental_delay = _confirm("Baseline developmental delay? (then CAPD, not ICE)",
                                     default=a.last(a.developmental_delay))


def ask_capd_baseline(a: Answers) -> None:
    shown = "" if a.capd_baseline is None else str(a.capd_baseline)
    t = _text("CAPD baseline before infusion", default=shown, check=_check_baseline,
              instruction="(blank if none documented)").strip()
    a.capd_baseline = int(t) if t else None


SEDATION_QUESTION = "Drowsiness or confusion due to a sedating drug or another illness?"
SEDATION_NOTE = "Intubation alone is not a cause: a patient intubated because of ICANS is graded."


def ask_sedated(a: Answers) -> None:
    note(SEDATION_NOTE, "dim")
    a.sedated = _confirm(SEDATION_QUESTION, default=a.last(a.sedated))


def ask_consciousness(a: Answers) -> None:
    a.consciousness = _select("Level of consciousness", CONSCIOUSNESS_CHOICES,
                              a.last(a.consciousness))


def ask_ice(a: Answers, last: "Answers | None" = None) -> None:
    """The ICE total typed, or its ten tasks ticked, or (a known patient) the same tasks
    missed as last time: each by its own key. An unanswered checklist is not ICE 0: nothing
    ticked asks again; ICE 0 in an awake patient is kept only with its own key."""
    options = [("t", "Type the total (0-10)"), ("c", "Tick the tasks done right")]
    same = _same_ice(last)
    if same is not None:
        options.insert(0, ("s", f"Same as last time: {same}"))
    key = _choose("ICE", options)
    if key == "s":
        assert last is not None
        a.ice, a.ice_total, a.ice_done = list(last.ice), last.ice_total, True
        _echo("ICE", f"same as last time: {same}")
    elif key == "t":
        t = _text("ICE total", check=_check_ice_total, instruction="(0-10)",
                  keep_refused=False).strip()
        a.ice, a.ice_total, a.ice_done = [], int(t), True
    else:
        while True:
            a.ice = _checkbox("ICE: tick each task done RIGHT",
                              [(i, label) for i, (_, label) in enumerate(ICE_TASKS)], a.ice,
                              "(Space: one, a: all, Enter: done)", echo=False)
            if a.ice:
                break
            note("Nothing was ticked: that is not ICE 0. Tick what was done right; for ICE 0, "
                 "press t and type 0.", "error")
        a.ice_total, a.ice_done = None, True
    total = a.ice_score()
    note(f"= ICE {total}/10")
    if total == 0 and a.consciousness != "unarousable" and not a.sedated:
        why = _select("ICE 0 in a patient who is awake: which is it?", [
            ("aphasia", "Global aphasia or cannot do any task: ICE 0 (grade 3)", "k"),
            ("again", "Not what was seen: answer ICE again", "m"),
        ])
        if why == "again":
            ask_ice(a, last)


def _same_ice(last: "Answers | None") -> str | None:
    """'ICE 7: missed Year, Writing, Attention' when last time's ICE can be repeated."""
    if last is None or last.path != "ice" or not last.scored or not last.ice_done:
        return None
    total = last.ice_score()
    if last.ice_total is not None:
        return f"ICE {total} (the total)"
    missed = [label.split(" (")[0] for i, (_, label) in enumerate(ICE_TASKS)
              if i not in last.ice]
    return f"ICE {total}" + (": missed " + ", ".join(missed) if missed else "")


def _check_ice_total(text: str) -> str | None:
    t = text.strip()
    return None if t.isdigit() and 0 <= int(t) <= 10 else "The ICE total: a whole number 0-10."


def _anchor_band(age: float) -> str:
    """The developmental-anchor band for this age (newborn-8 weeks, around 28 weeks, 1-2
    years)."""
    if age < 8 / 52:
        return "newborn-8 weeks"
    return "around 28 weeks" if age < 1 else "1-2 years"


def ask_capd(a: Answers, last: "Answers | None" = None) -> None:
    if last is not None and last.path == "capd" and last.scored and len(last.capd) == 8:
        pts = sum(capd_points(last.capd))
        key = _choose("CAPD", [("s", f"Same answers as last time: CAPD {pts}/32"),
                               ("q", "Answer the eight items")])
        if key == "s":
            a.capd = list(last.capd)
            _echo("CAPD", f"same as last time: CAPD {pts}/32")
            return
    answers = list(a.capd) if len(a.capd) == 8 else ["never"] * 8
    anchors = show_capd_anchors(a.age)
    if anchors:
        from icans_cli.core.scores import ANCHORS_SOURCE

        note(f"Developmental anchors for this child's age ({ANCHORS_SOURCE}):", "dim")
    letters = [(x, f"{x.capitalize()}", k) for x, k in zip(CAPD_ANSWERS, CAPD_KEYS)]
    for i, spec in enumerate(CAPD_ITEMS):
        if anchors:
            band = _anchor_band(float(a.age))  # type: ignore[arg-type]
            usual = next((text for b, text in spec.anchors if b == band), None) or \
                spec.anchors[0][1]
            note(f"Usual at {band}: {usual}", "dim")
        note(f"CAPD {spec.number}/8: {spec.question}")
        # beside the item: the patient's answer at the last logged assessment, never one
        # given earlier in this interview (that is not "last time")
        answers[i] = _select(f"CAPD item {spec.number}", letters,
                             last.capd[i] if last is not None and len(last.capd) == 8
                             else None,
                             "(n r s o a = never ... always, then Enter)")
    a.capd = answers
    note(f"= CAPD {sum(capd_points(answers))}/32")
    if len(set(answers)) == 1:
        # Items 1-4 and 5-8 point opposite ways, so one answer for all eight is a mixed
        # picture: more often Enter pressed through than what was seen.
        note(f"All eight answered '{answers[0].capitalize()}', but items 1-4 and 5-8 point "
             "opposite ways.", "warning")
        why = _select("One answer for all eight: which is it?", [
                          ("keep", "That is what I saw: keep it", "k"),
                          ("again", "Not what I saw: answer the eight items again", "m"),
                      ])  # no "last time" beside it: there was none
        if why == "again":
            a.capd = []
            ask_capd(a, last)


def ask_score(a: Answers, last: "Answers | None" = None) -> None:
    if not a.scored:
        return
    if a.path == "ice":
        ask_ice(a, last)
    else:
        ask_capd(a, last)


def ask_seizure(a: Answers) -> None:
    a.seizure = _select("Seizure since last check", SEIZURE_CHOICES, a.last(a.seizure))


def ask_motor(a: Answers) -> None:
    a.motor = _select("Motor findings", MOTOR_CHOICES, a.last(a.motor))


def ask_icp(a: Answers) -> None:
    a.icp = _marks("Raised ICP / cerebral edema?", ICP_CHOICES, a.icp, "None of these signs",
                   a.known)


def ask_excluded(a: Answers) -> None:
    a.excluded = _marks("Also seen? Recorded, NOT graded", EXCLUDED_CHOICES, a.excluded,
                        "None of these", a.known)


def ask_crs(a: Answers) -> None:
    c = a.crs
    mode = _select("Concurrent CRS? (it decides tocilizumab)", CRS_MODE_CHOICES,
                   a.last(c.mode))
    if mode == "grade":
        g = _select("Current ASTCT CRS grade", [
            (str(i), f"CRS grade {i}" + (" (no CRS)" if i == 0 else ""), str(i))
            for i in range(5)], a.last(None if c.grade is None else str(c.grade)))
        a.crs = CrsAnswers("grade", int(g))
        if int(g) >= 1:
            a.crs.tocilizumab_at = ask_tocilizumab_at(c.tocilizumab_at)
    elif mode == "questions":
        fever = _confirm("Fever 38.0 C or more, not explained by another cause?",
                         a.last(c.fever))
        treated = _marks("Already given for the CRS?", TREATMENT_CHOICES, c.treatments,
                         "Nothing yet", a.known)
        hyp = _select("Hypotension", HYPOTENSION_CHOICES, a.last(c.hypotension))
        oxy = _select("Oxygen", OXYGEN_CHOICES, a.last(c.oxygen))
        flow = None
        if oxy == "nasal_cannula":
            flow = float(_text("Nasal cannula flow (L/min)",
                               default="" if c.flow is None else f"{c.flow:g}",
                               check=_check_flow))
        reason = None
        if oxy in POSITIVE_PRESSURE:
            note("CRS counts positive pressure only when it is for hypoxia (ASTCT): a patient "
                 "intubated to protect the airway is not CRS grade 4 for that.", "dim")
            reason = _select("Why the positive pressure?", VENTILATION_CHOICES,
                             a.last(c.ventilation_reason))
        new = CrsAnswers("questions", None, fever, treated, hyp, oxy, flow,
                         ventilation_reason=reason)
        new.grade = grade_crs(new.findings()).grade
        if "tocilizumab" in treated:
            new.tocilizumab_at = ask_tocilizumab_at(c.tocilizumab_at)
        a.crs = new
    else:
        a.crs = CrsAnswers("unknown")


def ask_tocilizumab_since(a: Answers) -> None:
    """A CRS carried forward from last time: was tocilizumab given since (and when)? Without
    this, an unchanged reassessment would advise a fresh dose every time."""
    c = a.crs
    if c.mode == "unknown" or not (c.grade or (c.mode == "questions" and c.result()
                                               and c.result().readings)):
        return
    given = _confirm("Tocilizumab given since the last check?")
    if given:
        c.tocilizumab_at = ask_tocilizumab_at(None)
        if c.mode == "questions" and "tocilizumab" not in c.treatments:
            c.treatments = sorted({*c.treatments, "tocilizumab"})


TOCILIZUMAB_WINDOW_H = 72  # a dose for this CRS episode; older than this is not asked for


def ask_tocilizumab_at(previous: str | None) -> str | None:
    """When the last tocilizumab dose for this CRS was given (a repeat is due no sooner than
    8 h after it), or None."""
    from datetime import datetime, timezone

    from icans_cli.core.identifiers import parse_assessed_at

    def check(text: str) -> str | None:
        t = text.strip().lower()
        if not t:  # "none given" is a finding: it takes a key of its own, never Enter alone
            return ("Enter alone is not an answer: the time (HH:MM), n if none was given, u if "
                    "the time is not known.")
        if t in ("n", "none", "no", "u", "unknown"):
            return None
        try:
            parse_assessed_at(text, datetime.now(timezone.utc), "tocilizumab",
                              TOCILIZUMAB_WINDOW_H)
        except InvalidFinding as exc:
            return f"That {exc.message}" + (f" ({exc.allowed})." if exc.allowed else ".")
        return None

    shown = ""
    if previous:
        try:
            shown = parse_time(previous).astimezone().strftime("%Y-%m-%d %H:%M")
        except InvalidFinding:
            shown = ""
    answer = _text("Last tocilizumab for this CRS at", default=shown, check=check,
                   instruction="(HH:MM or a date and time; n: none given; u: time not known)"
                   ).strip()
    if answer.lower() in ("n", "none", "no", "u", "unknown"):
        return None
    return parse_assessed_at(answer, datetime.now(timezone.utc), "tocilizumab",
                             TOCILIZUMAB_WINDOW_H).isoformat(timespec="seconds")


def ask_product(a: Answers) -> None:
    a.product = _select("CAR-T product", PRODUCT_CHOICES, a.last(a.product))


def ask_assessed_at(a: Answers) -> None:
    from datetime import datetime, timedelta, timezone

    from icans_cli.core.identifiers import parse_assessed_at, parse_time

    def check(text: str) -> str | None:
        now = datetime.now(timezone.utc)
        try:
            t = parse_assessed_at(text, now) if a.late_entry else parse_time(text)
        except InvalidFinding as exc:
            return f"That {exc.message}" + (f" ({exc.allowed})." if exc.allowed else ".")
        if t > now + timedelta(minutes=5):
            return "That is in the future: the time the assessment was done."
        return None

    if a.late_entry:
        answer = _text("Time of the assessment", default=a.assessed_at or "", check=check,
                       instruction="(HH:MM today, or a date-time)")
        a.assessed_at = parse_assessed_at(answer, datetime.now(timezone.utc)).isoformat(
            timespec="seconds")
    else:
        a.assessed_at = _text("Time of the assessment being corrected",
                              default=a.assessed_at or "", check=check,
                              instruction="(Enter keeps the original)").strip()


# (key, label, ask, applies?) in interview order; the review screen uses the same table.
QUESTIONS: list[tuple[str, str, Callable[[Answers], None], Callable[[Answers], bool]]] = [
    ("assessed_at", "Assessed at", ask_assessed_at, lambda a: a.assessed_at is not None),
    ("age", "Age", ask_age, lambda a: True),
    ("weight", "Weight", ask_weight, lambda a: True),
    ("delay", "Developmental delay", ask_delay, lambda a: a.age is None or a.age >= 12),
    ("product", "Product", ask_product, lambda a: True),
    ("sedated", "Another cause", ask_sedated, lambda a: True),
    ("consciousness", "Consciousness", ask_consciousness, lambda a: True),
    ("score", "ICE / CAPD", ask_score, lambda a: a.scored),
    ("baseline", "CAPD baseline", ask_capd_baseline, lambda a: a.path == "capd" and a.scored),
    ("seizure", "Seizure", ask_seizure, lambda a: True),
    ("motor", "Motor", ask_motor, lambda a: True),
    ("icp", "ICP / edema", ask_icp, lambda a: True),
    ("excluded", "Not graded", ask_excluded, lambda a: True),
    ("crs", "Concurrent CRS", ask_crs, lambda a: True),
]
DETAILS = ("age", "weight", "delay", "product")
AS_BEFORE = ("seizure", "motor", "icp", "excluded", "crs")


def describe(a: Answers, key: str) -> str:
    if key == "assessed_at":
        if not a.assessed_at:
            return ""
        try:
            return parse_time(a.assessed_at).astimezone().strftime("%Y-%m-%d %H:%M")
        except InvalidFinding:
            return a.assessed_at
    if key == "age":
        return "adult (not given)" if a.age is None else f"{a.age:g} years"
    if key == "weight":
        return "not given" if a.weight is None else f"{a.weight:g} kg"
    if key == "delay":
        return "yes" if a.developmental_delay else "no"
    if key == "baseline":
        return "none documented" if a.capd_baseline is None else f"CAPD {a.capd_baseline}"
    if key == "sedated":
        return "YES: consciousness and score not assessable" if a.sedated else "no"
    if key == "consciousness":
        return next(t for v, t, _ in CONSCIOUSNESS_CHOICES if v == a.consciousness)
    if key == "score":
        if not a.scored:
            return "not taken"
        if a.path == "ice":
            if a.ice_total is not None:
                return f"ICE {a.ice_total}/10 (the total)"
            it = a.ice_items()
            return (f"ICE {it.total}/10 (orient {it.orientation} name {it.naming} "
                    f"command {it.commands} write {it.writing} count {it.attention})")
        if len(a.capd) == 8:
            pts = capd_points(a.capd)
            return f"CAPD {sum(pts)}/32"
        return "CAPD not answered"
    if key == "seizure":
        return {"none": "none", "self_limited": "self-limited seizure",
                "prolonged": "CONVULSIVE STATUS (prolonged or repetitive)",
                "nonconvulsive_status": "NON-CONVULSIVE STATUS on EEG"}[a.seizure]
    if key == "motor":
        return "none" if a.motor == "none" else "deep focal weakness"
    if key == "icp":
        return "; ".join(dict(ICP_CHOICES)[x].split(" (")[0] for x in a.icp) or "none"
    if key == "excluded":
        return "; ".join(dict(EXCLUDED_CHOICES)[x] for x in a.excluded) or "none"
    if key == "crs":
        c = a.crs
        if c.mode == "unknown":
            return "not known"
        r = c.result()
        text = r.label + " (worked out)" if r is not None else f"CRS grade {c.grade}"
        if c.tocilizumab_at:
            try:
                when = parse_time(c.tocilizumab_at).astimezone().strftime("%H:%M")
            except InvalidFinding:
                when = c.tocilizumab_at
            text += f"; tocilizumab at {when}"
        return text
    if key == "product":
        return a.product or "not recorded"
    raise KeyError(key)


def interview(a: Answers, skip: set[str] | frozenset[str] = frozenset()) -> Answers:
    """Ask every question that applies, in order (`skip`: answered already)."""
    for key, _, ask, applies in QUESTIONS:
        if key in skip or key == "assessed_at":
            continue
        if applies(a):
            ask(a)
    return a


def reassess(a: Answers, skip: set[str] | frozenset[str] = frozenset(),
             last: Answers | None = None) -> Answers:
    """A known patient, `a` filled from the last record, `last` that record with its score:
    the details and the other findings are kept as last time with one key each (s; never
    Enter); sedation, consciousness and the score are asked as always (the score offers "the
    same as last time" as one answer, shown). A CRS carried forward asks whether tocilizumab
    was given since."""
    note(f"Known patient: {_summary(a, DETAILS)}.", "dim")
    if _same("Patient details") != "s":
        for key, _, ask, applies in QUESTIONS:
            if key in DETAILS and key not in skip and applies(a):
                ask(a)
    ask_sedated(a)
    ask_consciousness(a)
    ask_score(a, last)
    if a.path == "capd" and a.scored and "baseline" not in skip and a.capd_baseline is None:
        ask_capd_baseline(a)
    note(f"Last time: {_summary(a, AS_BEFORE)}.", "dim")
    if _same("Seizure, motor, ICP/edema, not graded and CRS") == "s":
        ask_tocilizumab_since(a)
    else:
        for key in AS_BEFORE:
            next(q[2] for q in QUESTIONS if q[0] == key)(a)
    return a


def _same(what: str) -> str:
    key = _choose(f"{what}: the same as last time?", [("s", "The same (as shown above)"),
                                                        ("c", "Some changed: ask them")])
    _echo(f"{what}: the same as last time?", "the same" if key == "s" else "changed")
    return key


_SHORT = {"age": "age", "weight": "weight", "delay": "developmental delay",
          "product": "product", "seizure": "seizure", "motor": "motor", "icp": "ICP/edema",
          "excluded": "not graded", "crs": ""}


def _summary(a: Answers, keys: tuple[str, ...]) -> str:
    """'seizure none, motor none, ICP/edema none, not graded none, CRS grade 0'."""
    parts = []
    for k, _, _, applies in QUESTIONS:
        if k in keys and applies(a):
            value = describe(a, k)
            if k == "crs" and value == "not known":
                value = "CRS not known"
            parts.append(f"{_SHORT[k]} {value}".strip())
    return ", ".join(parts)


REVIEW_KEYS = "123456789bcefghijklm"  # a line's key ("a" accepts)


def review(a: Answers, preview: Callable[[Answers], str],
           before: Answers | None = None, before_label: str = "the last assessment") -> Answers:
    """List every answer with its key; a accepts (never Enter), a line's key changes it.
    Lines that differ from `before` are marked with *."""
    while True:
        rows = [(key, label) for key, label, _, applies in QUESTIONS if applies(a)]
        width = max(len(label) for _, label in rows)
        marked = False
        options = [("a", f"Accept: {preview(a)}")]
        for (key, label), k in zip(rows, REVIEW_KEYS):
            star = " "
            if before is not None and describe(a, key) != _describe_or_none(before, key):
                star, marked = "*", True
            options.append((k, f"{star} {label.ljust(width)}  {describe(a, key)}"))
        if marked:
            note(f"* differs from {before_label}", "dim")
        picked = _choose("Review", options,
                         instruction="a accepts; a line's key changes it")
        if picked == "a":
            _echo("Review", "accepted")
            return a
        key = rows[REVIEW_KEYS.index(picked)][0]
        ask = next(q for q in QUESTIONS if q[0] == key)[2]
        before_path, before_scored = a.path, a.scored
        ask(a)
        # A change that alters the score path or makes a score needed asks for the score.
        if a.scored and (a.path != before_path or not before_scored or (
                a.path == "ice" and not a.ice_done) or (a.path == "capd" and len(a.capd) != 8)):
            ask_score(a)


def _describe_or_none(a: Answers, key: str) -> str | None:
    applies = next(q[3] for q in QUESTIONS if q[0] == key)
    return describe(a, key) if applies(a) else None


def unchanged(a: Answers, before: Answers) -> bool:
    """Whether the answers say exactly what `before` says (for an amendment)."""
    return all(describe(a, k) == _describe_or_none(before, k) for k, _, _, applies in QUESTIONS
               if applies(a) and k != "assessed_at") and \
        (a.assessed_at or "") == (before.assessed_at or "")
