"""Rich rendering of results, shared by assess, show, grade --format table, log show and history.

Two views of one assessment:
- the bedside summary: the decision first, on one 80x24 screen (the grade panel with its
  driver, what to do now, when to look again, what changed, the treating-team line, and one
  line pointing to the rest);
- the details: every line of advice, where guidelines disagree, the rationale and sources.

Everything must read correctly without colour: drivers are named in words, grades are spelled
out, and each dose line carries its source and protocol. Text that came from input or the log
(patient ids, assessor names) is always shown literally (`Text`, never markup).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from icans_cli.core.grading import EXCLUDED, IcansResult
from icans_cli.core.protocol import (
    SECTION_TITLES, AdviceLine, Branch, Recommendation, steroid_verdict,
)
from icans_cli.core.rationale import DOMAIN_LABELS, RationaleItem
from icans_cli.term import plain

GRADE_STYLE = {0: "bold green", 1: "bold yellow", 2: "bold magenta", 3: "bold red",
               4: "bold white on red"}
GRADE_BORDER = {0: "green", 1: "yellow", 2: "magenta", 3: "red", 4: "bold red"}
NOT_ASSESSABLE_STYLE = "bold black on yellow"
SPARK = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 12


@dataclass(frozen=True)
class Context:
    """What the summary needs besides the result and the advice."""

    patient_id: str | None = None
    assessed_at: datetime | None = None
    change: tuple[str, bool] | None = None  # (text, worse?) since the last assessment
    crs_text: str | None = None
    record_id: str | None = None  # for the "more" line: icans show ID --full
    age: float | None = None
    weight: float | None = None
    product: str | None = None
    crs_disputed: bool = False  # CRS controlled after an antipyretic only: sources differ
    tocilizumab_at: datetime | None = None  # the last tocilizumab dose for this CRS
    now: datetime | None = None  # a saved record shown later (icans show): ages from now


def grade_label(result: IcansResult) -> str:
    if result.status == "graded":
        return f"ICANS GRADE {result.grade}"
    if not result.grade_at_least:
        return "NOT ASSESSABLE: grade unknown (another cause)"
    return f"NOT ASSESSABLE: ICANS grade at least {result.grade_at_least}"


def driver_domains(result: IcansResult) -> tuple[str, ...]:
    """The drivers as a reader should see them: an unarousable patient's score domain is
    graded 4 ("unable to perform") but is not a second cause beside consciousness."""
    drivers = result.drivers
    if "consciousness" in drivers:
        drivers = tuple(d for d in drivers
                        if not (d in ("ice", "capd")
                                and result.domain(d).value == "not performed"))
    return drivers


def preview_text(result: IcansResult) -> str:
    """One line for the review screen: the grade the answers give, and why."""
    if result.status == "graded":
        names = driver_domains(result)
        return f"ICANS grade {result.grade}" + (
            f", driven by {', '.join(DOMAIN_LABELS[d] for d in names)}" if names else "")
    if not result.grade_at_least:
        return "NOT assessable (another cause): grade unknown, not grade 0"
    return f"NOT assessable (another cause): grade at least {result.grade_at_least}"


def score_text(ice: int | None, capd: int | None, path: str | None = None) -> str:
    if path == "capd" or (capd is not None and ice is None):
        return f"CAPD {capd}/32" if capd is not None else "CAPD not taken"
    return f"ICE {ice}/10" if ice is not None else "ICE not taken"


def plural(n: int, word: str, many: str | None = None) -> str:
    """1 assessment, 2 assessments."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _grade_style(result: IcansResult) -> str:
    return GRADE_STYLE[result.grade] if result.status == "graded" else NOT_ASSESSABLE_STYLE


def _border(result: IcansResult) -> str:
    return GRADE_BORDER[result.grade] if result.status == "graded" else "yellow"


def _drivers(result: IcansResult) -> str:
    if result.status != "graded":
        na = " and ".join(DOMAIN_LABELS[n] for n in result.not_assessable)
        return f"{na[:1].upper()}{na[1:]} not assessable (another cause)"
    if not result.drivers:
        return "No domain above grade 0"
    parts = []
    for name in driver_domains(result):
        d = result.domain(name)
        value = d.value.replace("_", " ").replace(";", ", ")
        parts.append(DOMAIN_LABELS[name] + ("" if name in ("ice", "capd") else f" ({value})"))
    text = "Driven by " + ", ".join(parts)
    if len(text) > 76:  # one line in the panel: the findings are in the details
        text = "Driven by " + ", ".join(DOMAIN_LABELS[n] for n in driver_domains(result))
    return text


AGE_CAUTION = "Age not given: adult doses shown."
WEIGHT_CAUTION = "Weight not given: per-kg amounts not computed."
PANEL_CAUTIONS = (AGE_CAUTION, WEIGHT_CAUTION)  # said in the panel, not again below it


def _caution(rec: Recommendation, summary: str) -> bool:
    return any(c.summary == summary for b in rec.branches for c in b.glance().cautions)


def _patient_bits(rec: Recommendation, ctx: Context) -> Text:
    """CRS · age · weight · product; a missing age or a child's missing weight in bold
    yellow, since the doses below depend on them."""
    t = Text(_crs_words(rec), style="dim")
    if rec.crs == "controlled" and ctx.crs_disputed:
        t = Text("CRS controlled? antipyretic only: sources differ (d)", style="bold yellow")

    def bit(text: str, style: str = "dim") -> None:
        t.append(" · ", style="dim")
        t.append(text, style=style)

    if _caution(rec, AGE_CAUTION):
        bit("AGE NOT GIVEN: adult doses", "bold yellow")
    else:
        if ctx.age is not None:
            bit(f"{ctx.age:g} y")
        bit("child" if rec.patient == "child" else "adult")
    if rec.weight_kg is not None:
        bit(f"{rec.weight_kg:g} kg")
    elif _caution(rec, WEIGHT_CAUTION):
        bit("WEIGHT NOT GIVEN: no per-kg amounts", "bold yellow")
    else:  # an adult's per-kg doses then show their maximum, not an amount
        bit("weight not given")
    if rec.product:
        bit(rec.product)
    return t


def headline(result: IcansResult, rec: Recommendation, ctx: Context) -> Panel:
    body = Text()
    body.append(f" {grade_label(result)} ", style=_grade_style(result))
    if result.status == "graded" and result.grade == 4:
        body.append("  LIFE-THREATENING", style="bold red")
    path = result.score_path
    if path in ("ice", "capd") and result.domain(path).value == "not performed":
        body.append(f"  no {path.upper()}: unarousable")
    else:
        body.append("  " + score_text(result.ice_score, result.capd_score, path))
        change = result.capd_change
        if change is not None:  # the child's own baseline, beside the ASTCT total
            body.append(f" · baseline {result.capd_baseline} ("
                        + ("no change" if change == 0 else f"{change:+d}") + ")",
                        style="bold yellow" if change <= 0 else "")
    body.append("\n" + _drivers(result))
    body.append("\n")
    body.append_text(_patient_bits(rec, ctx))
    sub = []
    if ctx.patient_id:
        sub.append(plain(ctx.patient_id))
    if ctx.assessed_at:
        when = ctx.assessed_at.astimezone().strftime("%Y-%m-%d %H:%M")
        if ctx.now is not None:
            when += f" ({_ago(ctx.assessed_at, ctx.now)})"
        sub.append(when)
    return Panel(body, title=Text(f"ASTCT 2019 · protocol {rec.protocol_id}"),
                 subtitle=Text(" · ".join(sub)) if sub else None,
                 border_style=_border(result),
                 box=box.HEAVY if result.effective_grade >= 3 else box.ROUNDED, expand=True)


def _crs_words(rec: Recommendation) -> str:
    if rec.crs_readings:  # positive pressure for a reason not given: two readings
        airway, hypoxia = rec.crs_readings[0], rec.crs_readings[-1]
        return f"CRS grade {airway} or {hypoxia} (why ventilated?)"
    if rec.crs_grade is None and rec.crs not in ("unknown", "no", "controlled"):
        return "CRS not known"
    return {"unknown": "CRS not known", "no": "no CRS",
            "controlled": "CRS controlled after treatment"}.get(
        rec.crs, f"CRS grade {rec.crs_grade}")


def source_tag(line: AdviceLine, with_protocol: bool = True) -> str:
    """[source; protocol P] with the evidence level in words when it is not a primary read
    (the summary names the protocol once, in its panel, and leaves the levels to the
    details)."""
    if not with_protocol:
        return f"[{line.short_source}]"
    tag = f"[{line.short_source}; protocol {line.protocol_id}"
    if line.evidence == "V2":
        tag += "; secondary source"
    elif line.evidence == "D":
        tag += "; derived"
    return tag + "]"


def _line_text(line: AdviceLine, with_tag: bool = True) -> Text:
    style = "yellow" if not line.verified else ("bold" if line.is_dose else "")
    t = Text(line.text, style=style)
    if with_tag:
        t.append(" " + source_tag(line), style="dim")
    return t


def _summary_text(line: AdviceLine, lead: str = "", bare: bool = False) -> Text:
    """The bedside form of a line: short, and a dose names its source (the protocol is named
    once, in the panel above). `bare`: without its CRS-grade condition (the lead says it)."""
    style = "yellow" if not line.verified else ("bold" if line.is_dose else "")
    t = Text(lead, style="bold")
    body = line.bare_summary if bare else line.summary
    t.append(body[:1].lower() + body[1:] if lead and body[1:2].islower() else body, style=style)
    if line.is_dose or not line.verified:
        t.append(" " + source_tag(line, with_protocol=False), style="dim")
    return t


def _grid() -> Table:
    g = Table.grid(padding=(0, 1))
    g.add_column(width=LABEL_WIDTH, no_wrap=True)
    g.add_column(ratio=1)
    return g


_BANDS = (", if under 30 kg", ", if 30 kg or more", "If under 30 kg", "If 30 kg or more")


def _weight_bands(branch: Branch, anti: AdviceLine) -> list[AdviceLine]:
    """A child without a weight: the tocilizumab lines of every weight band under the same CRS
    condition as `anti` (under 30 kg first), so the summary never shows one band alone."""
    def crs_part(line: AdviceLine) -> str:
        c = line.condition or ""
        for band in _BANDS:
            c = c.replace(band, "")
        return c

    if not anti.condition or "kg" not in anti.condition:
        return [anti]
    same = [x for x in branch.lines if x.section == "anti_cytokine" and x.doses
            and x.condition and "kg" in x.condition and crs_part(x) == crs_part(anti)
            and x.start == anti.start]
    return sorted(same, key=lambda x: "under" not in (x.condition or ""))


def _bands_text(lines: list[AdviceLine], lead: str) -> Text:
    first = lines[0]
    cond = first.condition or ""
    for band in _BANDS:
        cond = cond.replace(band, "")
    t = Text(lead + (f" {cond[:1].lower()}{cond[1:]}" if cond else "") + ": ", style="bold")
    for i, x in enumerate(lines):
        band = "under 30 kg" if "under" in (x.condition or "") else "30 kg or more"
        body = (_uncap_first(x.bare_summary).replace(", IV over 1 h", "")
                .replace(" (no weight)", ""))
        t.append(("; " if i else "") + f"{band}: ", style="bold")
        t.append(body, style="bold" if x.is_dose else "")
        t.append(" " + source_tag(x, with_protocol=False), style="dim")
    t.append("; IV over 1 h.", style="bold")
    return t


def _ago(then: datetime, now: datetime) -> str:
    """How long before `now`, in the hours a ward counts in."""
    hours = (now - then).total_seconds() / 3600
    if hours < 0:
        return "in the future"
    if hours < 48:
        return f"{hours:.1f} h ago"
    return f"{hours / 24:.1f} days ago"


def _uncap_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _toci_given(anti: AdviceLine, ctx: Context, lead: str) -> Text | None:
    """A dose given for this CRS too recently to repeat: not now. The repeat, its dose and its
    earliest time instead of a fresh YES (a second dose minutes after the first)."""
    from icans_cli.core.crs import tocilizumab_repeat

    if ctx.tocilizumab_at is None or ctx.assessed_at is None:
        return None
    held = tocilizumab_repeat(ctx.tocilizumab_at, ctx.assessed_at)
    if held is None:
        return None
    hours, earliest = held
    given = ctx.tocilizumab_at.astimezone().strftime("%H:%M")
    due = earliest.astimezone()
    ago = (_ago(ctx.tocilizumab_at, ctx.now) if ctx.now is not None
           else f"{hours:.1f} h ago")
    t = Text(f"{lead}GIVEN at {given} ({ago}): ", style="bold")
    t.append(f"repeat only if no improvement, from {due:%H:%M}: ", style="bold")
    t.append(_uncap_first(anti.bare_summary).split(", IV")[0], style="bold")
    t.append(" " + source_tag(anti, with_protocol=False), style="dim")
    return t


def _toci(branch: Branch, rec: Recommendation, lead: str = "",
          ctx: Context | None = None) -> Text:
    glance = branch.glance()
    if glance.tocilizumab and glance.anti_cytokine is not None:
        anti = glance.anti_cytokine
        given = _toci_given(anti, ctx, lead) if ctx is not None and branch.crs else None
        if given is not None:
            return given
        verb = "CONSIDER" if anti.start == "consider" else "YES"
        bands = _weight_bands(branch, anti)
        if len(bands) > 1:
            return _bands_text(bands, f"{lead}{verb}")
        if anti.condition:
            when = anti.condition[0].lower() + anti.condition[1:]
            return _summary_text(anti, f"{lead}{verb} {when}: ", bare=True)
        return _summary_text(anti, f"{lead}{verb}, for the CRS: ")
    text = Text(lead, style="bold")
    if not branch.crs and (rec.grade >= 1 or rec.crs in ("no", "controlled")
                           or branch.controlled):
        why = "CRS controlled after treatment" if branch.controlled else "no CRS"
        text.append(f"NO: {why}, and it does not treat ICANS", style="bold")
    else:
        text.append("not for ICANS")
    return text


def _steroid_text(line: AdviceLine, rec: Recommendation, lead: str = "") -> Text:
    """The Steroids line, led by its verdict (START, CONSIDER, IF REFRACTORY, CONTINUE, NO)."""
    verdict = steroid_verdict(line, rec.grade_is_floor)
    said = {"IF REFRACTORY": "If refractory ", "CONSIDER": "Consider "}.get(verdict)
    bare = line.bare_summary
    if said and bare.startswith(said):  # "IF REFRACTORY: if refractory after..." says it twice
        rest = bare[len(said):]
        t = Text(f"{lead}{verdict} ", style="bold")
        if line.condition:
            t.append(f"({line.condition[:1].lower()}{line.condition[1:]}) ", style="bold")
        style = "yellow" if not line.verified else ("bold" if line.is_dose else "")
        t.append(rest, style=style)
        if line.is_dose or not line.verified:
            t.append(" " + source_tag(line, with_protocol=False), style="dim")
        return t
    return _summary_text(line, f"{lead}{verdict}: ")


def _one_branch(grid: _Rows, branch: Branch, rec: Recommendation,
                ctx: Context | None = None) -> None:
    glance = branch.glance()
    if glance.care is not None and rec.grade >= 3:
        grid.add_row(Text("Care", style="bold"), _summary_text(glance.care))
    if glance.steroid is not None:
        grid.add_row(Text("Steroids", style="bold"), _steroid_text(glance.steroid, rec))
    grid.add_row(Text("Tocilizumab", style="bold"), _toci(branch, rec, ctx=ctx))
    if glance.care is not None and rec.grade < 3:
        grid.add_row(Text("Care", style="bold"), _summary_text(glance.care))


def _both_branches(grid: _Rows, rec: Recommendation, ctx: Context | None = None) -> None:
    """Two branches: the CRS not known (no CRS / CRS), or positive pressure for a reason not
    given (for hypoxia / only for the airway). What differs, in as few lines as the branches
    allow (the decision must stay on one screen): tocilizumab in one row, steroids and care
    once when both branches share them."""
    first, second = rec.branches
    if rec.crs == "ambiguous":
        airway, hypoxia = rec.crs_readings or (0, 0)
        grid.add_row(Text("CRS?", style="bold"), Text(
            f"Ventilated why? For hypoxia: CRS grade {hypoxia}; only for the airway: "
            + (f"CRS grade {airway}" if airway else "no CRS") + ". Say which (ASTCT counts "
            "it only for hypoxia)."), drop=4)
        leads = ("If for hypoxia: ", "If only airway: ")
    else:
        adds = any(b.glance().crs_adds_steroids for b in rec.branches)
        grid.add_row(Text("CRS?", style="bold"),
                     Text("Not known: grade it. It decides tocilizumab"
                          + ("; CRS 3-4 adds steroids." if adds else ".")), drop=4)
        leads = ("Without CRS: ", "With CRS: ")
    glances = (first.glance(), second.glance())
    steroids = [g.steroid for g in glances]
    if steroids[0] is not None and steroids[1] is not None and \
            steroids[0].summary == steroids[1].summary:
        grid.add_row(Text("Steroids", style="bold"), _steroid_text(steroids[0], rec))
    else:
        for b, line in zip((first, second), steroids):
            if line is not None:
                grid.add_row(Text(b.short, style="bold"),
                             _steroid_text(line, rec, "Steroids "))
    toci = Text()
    for i, (b, g, lead) in enumerate(zip((first, second), glances, leads)):
        if i:
            toci.append("\n")
        anti = g.anti_cytokine
        if not b.crs and rec.grade >= 1 and not g.tocilizumab:
            why = ("" if rec.crs == "unknown" else
                   "CRS controlled after treatment; " if b.controlled else "no CRS; ")
            toci.append(f"{lead}NO ({why}it does not treat ICANS)", style="bold")
        elif b.crs and g.tocilizumab and anti is not None and not anti.condition:
            verb = "CONSIDER" if anti.start == "consider" else "YES"
            given = _toci_given(anti, ctx, f"{lead}") if ctx is not None else None
            toci.append_text(given if given is not None
                             else _summary_text(anti, f"{lead}{verb}: "))
        else:
            toci.append_text(_toci(b, rec, lead, ctx))
    grid.add_row(Text("Tocilizumab", style="bold"), toci)
    cares = [g.care for g in glances]
    if cares[0] is not None and cares[1] is not None and cares[0].summary == cares[1].summary:
        grid.add_row(Text("Care", style="bold"), _summary_text(cares[0]))
    else:
        for b, care in zip((first, second), cares):
            if care is not None:
                grid.add_row(Text(b.short, style="bold"), _summary_text(care, "Care: "),
                             drop=3)


class _Rows:
    """The summary's rows, each with how early it may be left out to keep the decision on one
    screen (None: never; a higher number goes first). What is left out stays in the details."""

    def __init__(self) -> None:
        self.rows: list[tuple[int | None, Text, Text]] = []

    def add_row(self, label: Text, body: Text, drop: int | None = None) -> None:
        self.rows.append((drop, label, body))

    def grid(self, leave_out: set[int] = frozenset()) -> Table:  # type: ignore[assignment]
        g = _grid()
        for i, (_, label, body) in enumerate(self.rows):
            if i not in leave_out:
                g.add_row(label, body)
        return g


def _height(renderable: RenderableType, width: int) -> int:
    import io

    from rich.console import Console

    c = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False,
                legacy_windows=False)
    return len(c.render_lines(renderable, c.options.update(width=width), pad=False))


BEDSIDE_LINES = 23  # an 80x24 screen, less the save prompt (or less nothing, with the pointer)


def bedside(result: IcansResult, rec: Recommendation, ctx: Context, width: int = 80,
            max_lines: int | None = BEDSIDE_LINES) -> Group:
    """The decision first, on one screen (80x24 with the save prompt): rows that would push
    it past `max_lines` at `width` are left to the details, least needed first."""
    grid = _Rows()
    seen: set[str] = set()
    for b in rec.branches:
        for c in b.glance().cautions:
            if c.summary not in seen and c.summary not in PANEL_CAUTIONS:
                seen.add(c.summary)
                # the EEG reminder of a not-assessable result can wait, and so can a second
                # "no LP" when one caution already says it
                said_no_lp = any("no lp" in r[2].plain.lower() for r in grid.rows)
                grid.add_row(Text("CAUTION", style="bold red"), _summary_text(c),
                             drop=5 if c.summary.startswith("EEG for") or (
                                 said_no_lp and "no lp" in c.summary.lower()) else None)
    glance = rec.branches[-1].glance()
    if glance.status_epilepticus:  # the emergency first
        grid.add_row(Text("SEIZURE", style="bold red"), _summary_text(glance.seizure))
        grid.add_row(Text(""), _summary_text(glance.seizure_next), drop=2)
    if len(rec.branches) == 1:
        _one_branch(grid, rec.branches[0], rec, ctx)
    else:
        _both_branches(grid, rec, ctx)
    if glance.seizure is not None and not glance.status_epilepticus:
        # left out only as the last resort, and then named under "Not shown"
        grid.add_row(Text("Seizure", style="bold red"), _summary_text(glance.seizure), drop=1)
    if glance.workup is not None and rec.grade >= 2:
        grid.add_row(Text("Work-up", style="bold"), _summary_text(glance.workup), drop=9)
    due = ""
    if ctx.assessed_at is not None:
        due_at = ctx.assessed_at + timedelta(hours=rec.cadence.hours)
        due = f", by {due_at.astimezone().strftime('%H:%M')}"
    if rec.cadence.evidence == "R" and rec.cadence.hours == 4:
        next_text = Text("ICU neuro checks; ", style="bold")
        next_text.append(f"by {due[5:]} at the latest" if due else "at the latest every 4 h")
        next_text.append(" (4 h: UNVERIFIED)", style="yellow")
    else:
        next_text = Text(f"within {rec.cadence.hours} h{due}", style="bold")
        if rec.cadence.evidence == "R":
            next_text.append(" (UNVERIFIED)", style="yellow")
    if rec.cadence.evidence != "R" or rec.cadence.hours != 4:
        if ctx.change is not None and ctx.change[1] and rec.grade >= 1:
            # the cadence's own source: "more often while symptoms change"
            next_text.append("; SOONER while it is getting worse", style="bold red")
    if ctx.now is not None and ctx.assessed_at is not None:  # shown later: from now
        late = (ctx.now - ctx.assessed_at).total_seconds() / 3600 - rec.cadence.hours
        if late > 0:
            next_text.append(f"  OVERDUE by {late:.1f} h", style="bold white on red")
        else:
            next_text.append(f"  (in {-late:.1f} h)")
    grid.add_row(Text("Next check", style="bold"), next_text)
    if ctx.change is not None:
        text, worse = ctx.change
        # a not-assessable result's caution already names the last assessable grade
        grid.add_row(Text("Since last", style="bold"),
                     Text(text, style="bold white on red" if worse else ""),
                     drop=1 if worse else (8 if result.status != "graded" else 6))
    head = headline(result, rec, ctx)
    tail: list[RenderableType] = [Text(rec.decision_line, style="bold")]
    pointer = ("Details (all advice, why, sources): icans show "
               f"{ctx.record_id[:8]} --full" if ctx.record_id else None)

    def build(leave_out: set[int]) -> Group:
        table = grid.grid(leave_out)
        if leave_out:  # never left out in silence
            names = []
            for i in sorted(leave_out):
                label, body = grid.rows[i][1].plain, grid.rows[i][2].plain
                name = ("EEG" if body.startswith("EEG") else "2nd-line seizure drugs"
                        if not label else "LP" if label == "CAUTION"
                        else "CRS?" if label == "CRS?" else "care if CRS"
                        if label.startswith("If") else label.lower())
                if name not in names:
                    names.append(name)
            table.add_row(Text("Not shown", style="bold yellow"),
                          Text(f"{', '.join(names)}: d (or --full).", style="yellow"))
        parts: list[RenderableType] = [head, table, *tail]
        if pointer:  # in assess, the prompt under the summary offers d for the details
            parts.append(Text(pointer, style="dim"))
        return Group(*parts)

    leave_out: set[int] = set()
    order = sorted((i for i, (d, _, _) in enumerate(grid.rows) if d is not None),
                   key=lambda i: -(grid.rows[i][0] or 0))
    group = build(leave_out)
    while max_lines is not None and order and _height(group, width) > max_lines:
        leave_out.add(order.pop(0))
        group = build(leave_out)
    return group


def domains_table(result: IcansResult) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="Domains (ASTCT 2019)",
              title_justify="left")
    t.add_column("", width=6)
    t.add_column("domain")
    t.add_column("finding", ratio=1)
    t.add_column("grade", justify="right")
    for d in result.domains:
        driver = d.domain in result.drivers
        grade = "n/a" if d.grade is None else str(d.grade)
        style = GRADE_STYLE.get(d.grade, "") if driver else ""
        t.add_row("DRIVER" if driver else "", DOMAIN_LABELS[d.domain], d.description,
                  Text(grade, style=style or ("dim" if d.grade is None else "")),
                  style="bold" if driver else None)
    return t


def advice_lines(lines: Iterable[AdviceLine]) -> Table:
    """Section headings, then one bullet per line with a hanging indent, so a wrapped line
    never runs back under the bullet."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=3)
    grid.add_column(ratio=1)
    section = None
    for line in lines:
        if line.section != section:
            section = line.section
            grid.add_row(Text(""), Text(SECTION_TITLES.get(section, section),
                                        style="bold underline"))
        text = _line_text(line)
        if line.table == "crs" and line.section == "corticosteroids" and line.crs_grades:
            text.append(f" ({line.table_label})", style="dim")
        grid.add_row(Text("  •"), text)
    return grid


def _indented(text: Text) -> Padding:
    return Padding(text, (0, 0, 0, 4))


def recommendation_block(rec: Recommendation, when: datetime | None = None) -> Group:
    parts: list[RenderableType] = []
    floor = " (not assessable: advice for at least this grade)" if rec.grade_is_floor else ""
    parts.append(Text.assemble(("Recommendation", "bold"),
                               f": protocol {rec.protocol_id}, grade {rec.grade}{floor}"))
    parts.append(_indented(Text(rec.protocol_title, style="dim")))
    if rec.protocol_note:
        parts.append(_indented(Text(rec.protocol_note, style="dim")))
    if len(rec.branches) == 2:
        # CRS unknown: what differs between the branches first, then what both share.
        a, b = rec.branches
        common = [x for x in a.lines if x in b.lines]
        for br in rec.branches:
            only = [x for x in br.lines if x not in common]
            parts.append(Text(f"\n {br.label} ", style="bold reverse"))
            parts.append(advice_lines(only) if only else Text("    (nothing beyond the lines "
                                                              "common to both)"))
        if common:
            parts.append(Text("\n IN EITHER CASE ", style="bold reverse"))
            parts.append(advice_lines(common))
    else:
        for br in rec.branches:
            parts.append(Text(f"\n {br.label} ", style="bold"))
            parts.append(advice_lines(br.lines))
    if rec.disagreements:
        parts.append(Text("\nWhere guidelines disagree", style="bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=3)
        grid.add_column(ratio=1)
        for d in rec.disagreements:
            grid.add_row(Text("  •"), _line_text(d))
        parts.append(grid)
    due = ""
    if when is not None:
        due_at = when + timedelta(hours=rec.cadence.hours)
        due = f" (by {due_at.astimezone().strftime('%Y-%m-%d %H:%M')})"
    parts.append(Text.assemble(("\nNext assessment: ", "bold"),
                               f"within {rec.cadence.hours} h{due}. {rec.cadence.text} ",
                               (f"[{rec.cadence.citation}]", "dim")))
    return Group(*parts)


def rationale_block(items: Iterable[RationaleItem]) -> Group:
    parts: list[RenderableType] = [Text("Why", style="bold")]
    for item in items:
        parts.append(Padding(Text.assemble((item.title + ": ", "bold"), item.text),
                             (0, 0, 0, 2)))
        parts.append(_indented(Text("Sources: " + "; ".join(item.sources), style="dim")))
    return Group(*parts)


def details(result: IcansResult, rec: Recommendation, items: Iterable[RationaleItem],
            ctx: Context) -> Group:
    """Everything behind the summary: domains, advice, disagreements, rationale, sources."""
    parts: list[RenderableType] = [Text(f"Details · {grade_label(result)}", style="bold"),
                                   domains_table(result)]
    for name in result.excluded:
        parts.append(Text(f"Recorded, not graded: {EXCLUDED[name]}", style="italic"))
    parts.append(Text(f"Score used: {result.score_path_reason}", style="dim"))
    if ctx.crs_text:
        parts.append(Text(f"CRS: {ctx.crs_text}"))
    parts.append(Text(""))
    parts.append(recommendation_block(rec, ctx.assessed_at))
    parts.append(Text(""))
    parts.append(rationale_block(items))
    parts.append(Text(""))
    parts.append(Text(rec.decision_line, style="bold"))
    return Group(*parts)


def sparkline(values: list[int | None], low: int, high: int) -> str:
    out = []
    for v in values:
        if v is None:
            out.append("·")
            continue
        frac = (v - low) / (high - low) if high > low else 0
        out.append(SPARK[min(len(SPARK) - 1, max(0, round(frac * (len(SPARK) - 1))))])
    return "".join(out)


def record_grade_text(res: dict[str, Any]) -> str:
    if res.get("status") == "graded":
        return str(res.get("icans_grade"))
    floor = res.get("grade_at_least")
    return f"≥{floor}, not assessable" if floor else "not assessable (grade unknown)"
