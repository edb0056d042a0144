"""Rich rendering of results, shared by assess, grade --format table, log show and history.

Everything must read correctly without colour: drivers are marked in text, grades are spelled
out, and each advice line carries its source and protocol in words.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from icans_cli.core.grading import IcansResult
from icans_cli.core.protocol import SECTION_TITLES, AdviceLine, Recommendation
from icans_cli.core.rationale import DOMAIN_LABELS, RationaleItem

GRADE_STYLE = {0: "bold green", 1: "bold yellow", 2: "bold dark_orange", 3: "bold red",
               4: "bold white on red"}
GRADE_BORDER = {0: "green", 1: "yellow", 2: "dark_orange", 3: "red", 4: "bold red"}
SPARK = "▁▂▃▄▅▆▇█"


def grade_label(result: IcansResult) -> str:
    if result.status == "graded":
        return f"ICANS GRADE {result.grade}"
    return f"NOT ASSESSABLE: ICANS grade at least {result.grade_at_least}"


def score_text(ice: int | None, capd: int | None, path: str | None = None) -> str:
    if path == "capd" or (capd is not None and ice is None):
        return f"CAPD {capd}/32" if capd is not None else "CAPD not scored"
    return f"ICE {ice}/10" if ice is not None else "ICE not scored"


def headline(result: IcansResult, patient_id: str | None = None,
             when: datetime | None = None, glance: Text | None = None) -> Panel:
    g = result.effective_grade
    style = GRADE_STYLE[g]
    title = grade_label(result)
    body = Text()
    body.append(f" {title} ", style=style)
    if result.status == "graded" and result.grade == 4:
        body.append("  LIFE-THREATENING NEUROTOXICITY", style="bold red")
    body.append("\n")
    if result.drivers:
        body.append("Driven by: " + ", ".join(DOMAIN_LABELS[d] for d in result.drivers))
    else:
        body.append("No domain above grade 0")
    body.append(f"   ({score_text(result.ice_score, result.capd_score, result.score_path)})")
    if glance is not None:
        body.append("\n")
        body.append_text(glance)
    sub = []
    if patient_id:
        sub.append(f"patient {patient_id}")
    if when:
        sub.append(when.astimezone().strftime("%Y-%m-%d %H:%M"))
    return Panel(body, title="ASTCT 2019 ICANS", subtitle=" · ".join(sub) or None,
                 border_style=GRADE_BORDER[g], box=box.HEAVY if g >= 3 else box.ROUNDED,
                 expand=True)


def at_a_glance(rec: Recommendation, when: datetime | None = None) -> Text:
    """The three things to act on: corticosteroids, tocilizumab, level of care; and when next."""
    t = Text()
    for b in rec.branches:
        prefix = ""
        if len(rec.branches) > 1:
            prefix = "If CRS: " if b.crs else "If no CRS: "
            t.append(prefix.upper(), style="bold")
        steroid = next((x for x in b.lines if x.section == "corticosteroids"), None)
        t.append("Corticosteroids: ", style="bold")
        t.append((steroid.text if steroid else "none advised") + "\n")
        t.append(" " * len(prefix))
        t.append("Tocilizumab: ", style="bold")
        if b.tocilizumab_advised:
            t.append("YES, for the concurrent CRS (dose below)\n")
        elif rec.grade >= 1 and not b.crs:
            t.append("NO: there is no CRS, and it does not treat ICANS\n", style="bold")
        else:
            t.append("not for ICANS\n")
        care = next((x for x in b.lines if x.section == "level_of_care"), None)
        if care:
            t.append(" " * len(prefix))
            t.append("Level of care: ", style="bold")
            t.append(care.text + "\n")
    t.append("Next assessment: ", style="bold")
    due = ""
    if when is not None:
        due = " (by " + (when + timedelta(hours=rec.cadence.hours)).astimezone().strftime(
            "%H:%M") + ")"
    t.append(f"within {rec.cadence.hours} h{due}")
    return t


def domains_table(result: IcansResult) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="Domains (ASTCT 2019)",
              title_justify="left")
    t.add_column("", width=6)
    t.add_column("domain")
    t.add_column("finding")
    t.add_column("grade", justify="right")
    for d in result.domains:
        driver = d.domain in result.drivers
        grade = "n/a" if d.grade is None else str(d.grade)
        style = GRADE_STYLE.get(d.grade, "") if driver else ""
        t.add_row("DRIVER" if driver else "", DOMAIN_LABELS[d.domain], d.description,
                  Text(grade, style=style or ("dim" if d.grade is None else "")),
                  style="bold" if driver else None)
    return t


def source_tag(line: AdviceLine) -> str:
    tag = f"[{line.short_source} · protocol {line.protocol_id}]"
    if line.evidence == "V2":
        tag += " (secondary source)"
    return tag


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
        style = "yellow" if not line.verified else ("bold" if line.is_dose else "")
        grid.add_row(Text("  •"), Text.assemble((line.text, style),
                                                (" " + source_tag(line), "dim")))
    return grid


def recommendation_block(rec: Recommendation, when: datetime | None = None) -> Group:
    parts: list[RenderableType] = []
    floor = " (advice for AT LEAST this grade: not all domains assessable)" \
        if rec.grade_is_floor else ""
    parts.append(Text.assemble(("Recommendation", "bold"),
                               f": protocol {rec.protocol_id}, grade {rec.grade}{floor}"))
    parts.append(Text(f"  {rec.protocol_title}", style="dim"))
    if rec.protocol_note:
        parts.append(Text(f"  {rec.protocol_note}", style="dim"))
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
            grid.add_row(Text("  •"), Text.assemble(d.text, (" " + source_tag(d), "dim")))
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
        parts.append(Text.assemble(("  " + item.title + ": ", "bold"), item.text))
        parts.append(Text("    Sources: " + "; ".join(item.sources), style="dim"))
    return Group(*parts)


def decision_line(rec: Recommendation) -> Text:
    return Text(rec.decision_line, style="bold")


def assessment_summary(result: IcansResult, rec: Recommendation,
                       items: Iterable[RationaleItem], *, patient_id: str | None = None,
                       when: datetime | None = None,
                       crs_text: str | None = None) -> Group:
    parts: list[RenderableType] = [headline(result, patient_id, when, at_a_glance(rec, when)),
                                   domains_table(result)]
    if result.excluded:
        from icans_cli.core.grading import EXCLUDED
        for name in result.excluded:
            parts.append(Text(f"Recorded, not graded: {EXCLUDED[name]}", style="italic"))
    parts.append(Text(f"Score used: {result.score_path_reason}", style="dim"))
    if crs_text:
        parts.append(Text(f"CRS: {crs_text}"))
    parts.append(Text(""))
    parts.append(recommendation_block(rec, when))
    parts.append(Text(""))
    parts.append(rationale_block(items))
    parts.append(Text(""))
    parts.append(decision_line(rec))
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
    return f">={res.get('grade_at_least')} (n/a)"
