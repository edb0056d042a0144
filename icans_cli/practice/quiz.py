"""`icans practice`: the quiz loop, feedback that teaches, the session summary and its history."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from icans_cli.practice import STEROID_CHOICES, TOPICS, Case, Key, load_cases

GRADE_CHOICES = [("0", "Grade 0", "0"), ("1", "Grade 1", "1"), ("2", "Grade 2", "2"),
                 ("3", "Grade 3", "3"), ("4", "Grade 4", "4"),
                 ("na", "Not assessable (another cause explains it)", "n")]
STEROID_KEYS = {"none": "n", "dexamethasone": "d", "high_dose_methylprednisolone": "m"}
QUESTIONS = ("score", "grade", "steroid", "tocilizumab")


def pick_cases(count: int, seed: int, topic: str | None, ids: Sequence[str] = ()) -> list[Case]:
    cases = list(load_cases())
    if ids:
        by_id = {c.id.lower(): c for c in cases}
        missing = [i for i in ids if i.lower() not in by_id]
        if missing:
            raise LookupError(f"no case {missing[0]!r} (cases: {cases[0].id} ... {cases[-1].id})")
        return [by_id[i.lower()] for i in ids]
    if topic:
        cases = [c for c in cases if topic in c.topics]
    rnd = random.Random(seed)
    return rnd.sample(cases, min(count, len(cases)))


def _ask_score(case: Case, key: Key) -> tuple[str, str]:
    """(answer text, key text)"""
    from icans_cli.interview import _select, _text

    tool = _select("Which score applies, if any?", [
        ("ice", "ICE (0-10)", "i"), ("capd", "CAPD (0-32)", "c"),
        ("none", "Cannot be scored (unarousable, or another cause)", "n")])
    answer = tool
    if tool != "none":
        high = 10 if tool == "ice" else 32

        def problem(t: str) -> str | None:
            ok = t.strip().isdigit() and 0 <= int(t) <= high
            return None if ok else f"A whole number 0-{high}."

        answer = f"{tool} {int(_text(f'{tool.upper()} total', check=problem))}"
    expected = "none" if key.score is None else f"{key.score_path} {key.score}"
    return answer, expected


def run_session(cases: list[Case], protocol, console) -> dict[str, Any]:
    """Ask every question of every case; return the session's record body."""
    from rich.panel import Panel
    from rich.text import Text

    from icans_cli.core.rationale import why_grade
    from icans_cli.interview import _select

    results: list[dict[str, Any]] = []
    for n, case in enumerate(cases, 1):
        key = case.key(protocol)
        story = case.narrative
        if case.crs_detail is None:  # the vitals are not in the story: say the CRS state
            story += (" No CRS: afebrile, no hypotension or hypoxia." if case.crs_grade == 0
                      else f" Concurrent CRS grade {case.crs_grade}.")
        console.print(Panel(Text(story), title=f"Case {n}/{len(cases)} · {case.id}",
                            subtitle=f"age {case.age:g} · product {case.product or '-'}"
                            if case.age is not None else None, expand=True))
        if case.age is not None and case.age <= 2:
            from icans_cli.core.scores import ANCHORS_SOURCE, CAPD_ITEMS

            console.print(Text(f"Developmental anchors (usual at this age; {ANCHORS_SOURCE}):",
                               style="bold"))
            for spec in CAPD_ITEMS[:3]:
                console.print(Text(f"  {spec.number}. {spec.question} " + " | ".join(
                    f"{band}: {text}" for band, text in spec.anchors), style="dim"))
        marks: dict[str, bool] = {}
        answers: dict[str, str] = {}

        def feedback(q: str, answer: str, expected: str, shown: str) -> None:
            ok = answer == expected
            marks[q], answers[q] = ok, answer
            if ok:
                console.print(Text(f"  Right: {shown}", style="bold green"))
            else:
                console.print(Text(f"  Not quite: the answer is {shown}", style="bold red"))

        ans, exp = _ask_score(case, key)
        feedback("score", ans, exp, "cannot be scored" if exp == "none" else exp.upper())
        if ans.split(" ")[0] != exp.split(" ")[0]:
            console.print(Text("  Which score: " + (
                "none can be taken: the patient is unarousable, or another cause explains "
                "the state" if exp == "none" else key.result.score_path_reason) + ".",
                style="dim"))
        g = _select("ICANS grade (ASTCT 2019)?", GRADE_CHOICES, None,
                    "(the grade's number, or n for not assessable)")
        shown = (f"grade {key.grade}" if key.grade is not None
                 else f"not assessable (at least grade {key.grade_at_least})")
        feedback("grade", g, key.grade_answer, shown)
        console.print(Text("  " + why_grade(key.result), style="dim"))
        s = _select("First-line corticosteroids under ASCO 2021?",
                    [(k, v, STEROID_KEYS[k]) for k, v in STEROID_CHOICES.items()])
        feedback("steroid", s, key.steroid, STEROID_CHOICES[key.steroid].lower())
        (branch,) = key.recommendation.branches
        for line in branch.lines:
            if line.section == "corticosteroids":
                console.print(Text(f"  {line.short_source}: {line.text}", style="dim"))
        t = _select("Tocilizumab in this plan?", [("yes", "Yes", "y"), ("no", "No", "n")])
        crs_words = ("CRS controlled after treatment" if key.recommendation.crs == "controlled"
                     else f"CRS grade {key.crs_grade}")
        feedback("tocilizumab", t, "yes" if key.tocilizumab else "no",
                 f"yes: there is concurrent CRS ({crs_words})" if key.tocilizumab else
                 (f"no ({crs_words}" + (", grade 0 ICANS needs nothing)"
                                        if key.result.effective_grade == 0
                                        else ": it does not treat ICANS)")))
        console.print(Text("  Teaching point: " + case.teaching, style="bold"))
        if case.trap:
            console.print(Text(f"  (A common error here: {case.trap}.)", style="italic"))
        console.print()
        results.append({"case": case.id, "answers": answers, "right": marks,
                         "key": {"score": exp, "grade": key.grade_answer,
                                 "steroid": key.steroid,
                                 "tocilizumab": "yes" if key.tocilizumab else "no"}})
    return summarise(results)


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    from icans_cli.core.agreement import confusion_matrix, linear_weighted_kappa

    acc = {q: sum(r["right"][q] for r in results) / len(results) for q in QUESTIONS} \
        if results else {}
    cats = ["0", "1", "2", "3", "4", "na"]
    matrix = confusion_matrix([cats.index(r["key"]["grade"]) for r in results],
                              [cats.index(r["answers"]["grade"]) for r in results], len(cats))
    graded = [(int(r["key"]["grade"]), int(r["answers"]["grade"])) for r in results
              if r["key"]["grade"] != "na" and r["answers"]["grade"] != "na"]
    kappa = linear_weighted_kappa([a for a, _ in graded], [b for _, b in graded], 5)
    return {"cases": results, "accuracy": acc, "grade_confusion": {"categories": cats,
                                                                   "matrix": matrix},
            "weighted_kappa": kappa}


def render_summary(summary: dict[str, Any], console) -> None:
    from rich.table import Table

    acc = summary["accuracy"]
    t = Table(title="Accuracy", title_justify="left")
    t.add_column("question")
    t.add_column("right", justify="right")
    labels = {"score": "score (tool and total)", "grade": "ICANS grade",
              "steroid": "corticosteroids", "tocilizumab": "tocilizumab"}
    n = len(summary["cases"])
    for q in QUESTIONS:
        t.add_row(labels[q], f"{round(acc[q] * n)}/{n} ({acc[q]:.0%})")
    console.print(t)
    cats = summary["grade_confusion"]["categories"]
    console.print("Grades: the right answer in rows, yours in columns")
    m = Table()
    m.add_column("right")
    for c in cats:
        m.add_column(c, justify="right")
    for i, c in enumerate(cats):
        row = summary["grade_confusion"]["matrix"][i]
        m.add_row(c, *[(str(v) if v else ".") for v in row])
    console.print(m)
    k = summary["weighted_kappa"]
    few = sum(1 for c in summary["cases"] if c["key"]["grade"] != "na")
    console.print("Linearly weighted Cohen's kappa (grades 0-4, not-assessable cases left out): "
                  + ("undefined for this session (too little variation)" if k is None
                     else f"{k:.2f}" + (f" (on {few} case{'s' if few != 1 else ''}: too few "
                                        "to mean much; 10 or more give a steadier figure)"
                                        if few < 10 else "")))


def save(path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from icans_cli import log

    return log.append(path, body)


def history(path: Path, console) -> int:
    from rich.table import Table

    from icans_cli import log
    from icans_cli.render import sparkline

    rows = [r for _, r in log.iter_records(path, lambda p: console.print(f"warning: {p}"))
            if r.get("kind") == "practice_session"]
    if not rows:
        console.print("No practice sessions saved yet: run icans practice.")
        return 0
    from icans_cli.render import plural

    t = Table(title=f"{plural(len(rows), 'practice session')} · {path}", title_justify="left")
    for col in ("when", "cases", "topic", "score", "grade", "steroids", "tocilizumab", "kappa"):
        t.add_column(col, justify="right" if col not in ("when", "topic") else "left")
    for r in rows:
        a = r.get("accuracy", {})
        k = r.get("weighted_kappa")
        t.add_row(str(r.get("recorded_at", ""))[:16].replace("T", " "), str(len(r["cases"])),
                  r.get("topic") or "all",
                  *[f"{a.get(q, 0):.0%}" for q in QUESTIONS],
                  "-" if k is None else f"{k:.2f}")
    console.print(t)
    grades = [round(r.get("accuracy", {}).get("grade", 0) * 10) for r in rows]
    console.print("Grade accuracy, oldest -> newest: " + sparkline(grades, 0, 10))
    return len(rows)


def session_body(summary: dict[str, Any], *, seed: int, topic: str | None, protocol_id: str,
                 trainee: str) -> dict[str, Any]:
    return {"kind": "practice_session", "trainee": trainee, "seed": seed, "topic": topic,
            "protocol": protocol_id,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **summary}


__all__ = ["TOPICS", "pick_cases", "run_session", "render_summary", "save", "history",
           "session_body"]
