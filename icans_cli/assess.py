"""`icans assess`: the interview, the summary, the confirmation and the save."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from icans_cli.exit import ExitStatus

CANCELLED = "Assessment cancelled: nothing was saved."


def _fail(message: str, code: ExitStatus = ExitStatus.USAGE):
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(int(code))


def interactive_input_available() -> bool:
    """A real terminal, or a prompt_toolkit session whose input a test has supplied."""
    try:
        if sys.stdin.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    from prompt_toolkit.application.current import get_app_session

    return getattr(get_app_session(), "_input", None) is not None


@contextmanager
def prompt_session() -> Iterator[None]:
    """Prompts go to stderr, so stdout carries only results (and --json stays clean)."""
    from prompt_toolkit.application.current import create_app_session, get_app_session

    current = get_app_session()
    if getattr(current, "_input", None) is not None:  # a test's session: keep it
        yield
        return
    from prompt_toolkit.output.defaults import create_output

    with create_app_session(output=create_output(stdout=sys.stderr)):
        yield


def last_assessment(path: Path, patient_id: str) -> Optional[dict[str, Any]]:
    import json

    from icans_cli import log
    from icans_cli.history import patient_entries

    problems: list = []
    try:
        entries = patient_entries(log.iter_records(path, problems.append,
                                                   json.dumps(patient_id, ensure_ascii=False)),
                                  patient_id)
    except log.LogError:
        return None
    current = [e for e in entries if not e.superseded_by]
    return current[-1].record if current else None


def last_assessable(path: Path, patient_id: str):
    """The patient's last graded (assessable) record, for a not-assessable result."""
    import json

    from icans_cli import log
    from icans_cli.core.protocol import LastAssessable
    from icans_cli.history import patient_entries

    try:
        entries = patient_entries(log.iter_records(path, None,
                                                   json.dumps(patient_id, ensure_ascii=False)),
                                  patient_id)
    except log.LogError:
        return None
    graded = [e for e in entries if not e.superseded_by and e.status == "graded"]
    if not graded:
        return None
    e = graded[-1]
    return LastAssessable(int(e.grade or 0),
                          e.assessed_at.astimezone().strftime("%Y-%m-%d %H:%M"))


def find_record(path: Path, record_id: str) -> dict[str, Any]:
    from icans_cli import log

    matches = [r for _, r in log.iter_records(path, None, record_id)
               if str(r.get("id", "")).startswith(record_id)]
    if not matches:
        _fail(f"no record with id {record_id!r} in {path}")
    if len(matches) > 1:
        _fail(f"{len(matches)} records start with {record_id!r}; give more of the id")
    return matches[0]


def run_assess(*, patient: Optional[str], assessor: str, age: Optional[float],
               protocol_name: str, log_path: Path, save: bool, as_json: bool,
               amends: Optional[str], weight: Optional[float] = None,
               capd_baseline: Optional[int] = None) -> None:
    if not interactive_input_available():
        _fail("icans assess is an interactive interview and needs a terminal. For scripts, "
              "grade a CSV export instead: icans grade FILE.csv (see icans grade --help).")
    from icans_cli.protocols import UnknownProtocol, load

    try:
        protocol = load(protocol_name)
    except UnknownProtocol as exc:
        _fail(str(exc))
    try:
        with prompt_session():
            _run(patient=patient, assessor=assessor, age=age, protocol=protocol,
                 log_path=log_path, save=save, as_json=as_json, amends=amends, weight=weight,
                 capd_baseline=capd_baseline)
    except (KeyboardInterrupt, EOFError):
        typer.echo(f"\n{CANCELLED}", err=True)
        raise typer.Exit(ExitStatus.INTERRUPTED)


def _say(text: str, style: str = "") -> None:
    """A status line on stderr before the summary, without importing rich (startup time)."""
    import os

    codes = {"bold": "1", "dim": "2", "bold red": "1;31", "bold green": "1;32"}.get(style)
    colour = codes and sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    sys.stderr.write((f"\x1b[{codes}m{text}\x1b[0m" if colour else text) + "\n")
    sys.stderr.flush()


def _run(*, patient, assessor, age, protocol, log_path, save, as_json, amends, weight=None,
         capd_baseline=None) -> None:
    from icans_cli import interview as iv
    from icans_cli import log
    from icans_cli.core import grade_icans, rationale, recommend
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import validate_patient_id
    from icans_cli.records import assessment_record

    _say(f"icans assess · ASTCT 2019 ICANS assessment · protocol {protocol.id} · assessor "
         f"{assessor}", "bold")
    _say("Ctrl-C cancels at any prompt; nothing is saved until you confirm.", "dim")
    previous = None
    if amends:
        previous = find_record(log_path, amends)
        try:
            a = iv.Answers.from_record(previous)
        except InvalidFinding as exc:
            _fail(f"cannot amend that record: {exc}")
        _say(f"Amending record {str(previous.get('id'))[:8]} of {previous.get('assessed_at')}: "
             "change what was wrong, then accept.", "bold")
        if a.needs_score and a.scored:
            _say("That record holds only a score total: answer the items again.", "bold")
            iv.ask_score(a)
    else:
        a = iv.Answers()
        if patient:
            try:
                a.patient_id = validate_patient_id(patient)
            except InvalidFinding as exc:
                _fail(f"--patient {exc.detail}")
        else:
            iv.ask_patient(a)
        previous = last_assessment(log_path, a.patient_id or "")
        if previous:
            _say("Last assessment: " + _describe_record(previous), "bold")
        else:
            _say("No earlier assessment of this patient in the log.", "dim")
        if age is not None:
            a.age = age
        if weight is not None:
            a.weight = weight
        if capd_baseline is not None:
            a.capd_baseline = capd_baseline
        iv.interview(a, skip={k for k, v in (("age", age), ("weight", weight),
                                             ("baseline", capd_baseline)) if v is not None})

    def preview(ans: iv.Answers) -> str:
        try:
            r = grade_icans(ans.findings())
        except InvalidFinding as exc:
            return f"cannot grade yet: {exc}"
        from icans_cli.core.rationale import DOMAIN_LABELS

        if r.status == "graded":
            return f"ICANS grade {r.grade}" + (
                f" (driven by {', '.join(DOMAIN_LABELS[d] for d in r.drivers)})"
                if r.drivers else "")
        return f"not assessable, grade at least {r.grade_at_least}"

    while True:
        a = iv.review(a, preview)
        try:
            findings = a.findings()
            break
        except InvalidFinding as exc:
            _say(f"Cannot grade: {exc}. Change that answer.", "bold red")

    from rich.text import Text

    from icans_cli import render
    from icans_cli.term import err, out

    con_out = err() if as_json else out()
    con_err = err()
    result = grade_icans(findings)
    crs_grade = a.crs.grade if a.crs.mode != "unknown" else None
    last = None
    if result.status == "not_assessable":
        last = last_assessable(log_path, a.patient_id or "")
    rec = recommend(protocol, result, crs_grade, a.product, a.age, weight_kg=a.weight,
                    crs_controlled=a.crs.controlled, last_assessable=last,
                    log_checked=True)
    items = rationale(result, rec)
    when = log.utc_now()
    crs_text = None
    crs_result = a.crs.result()
    if crs_result is not None:
        crs_text = f"{crs_result.label}: {crs_result.explanation}"
        if crs_result.disagreement:
            crs_text += ". " + crs_result.disagreement
    elif a.crs.mode == "grade":
        crs_text = f"grade {crs_grade} (as given)"
    else:
        crs_text = "not known: both management branches are shown"
    con_out.print(render.assessment_summary(result, rec, items, patient_id=a.patient_id,
                                            when=when, crs_text=crs_text))
    change = _change_line(previous, result) if previous and not amends else None
    if change:
        con_out.print(change)
    if not save:
        con_err.print(Text("--no-save: nothing was saved.", style="bold"))
        return
    import questionary

    if not questionary.confirm("Save this assessment to the log?", default=True,
                               style=iv.STYLE).unsafe_ask():
        con_err.print(Text("Not saved.", style="bold"))
        return
    body = assessment_record(patient_id=a.patient_id or "", assessor=assessor,
                             source="amendment" if amends else "interactive", assessed_at=when,
                             findings=findings, result=result, recommendation=rec,
                             crs_grade=crs_grade, product=a.product,
                             crs_detail=a.crs.detail(), weight_kg=a.weight,
                             amends=str(previous.get("id")) if amends and previous else None)
    try:
        saved = log.append(log_path, body)
    except log.LogError as exc:
        _fail(str(exc), ExitStatus.ERROR)
    con_err.print(Text(f"Saved as record {saved['id'][:8]} (#{saved['seq']}) in {log_path}",
                       style="bold green"))
    if as_json:
        import json

        sys.stdout.write(json.dumps(saved, ensure_ascii=False) + "\n")


def _describe_record(rec: dict[str, Any]) -> str:
    from datetime import datetime, timezone

    from icans_cli.history import entry_from

    e = entry_from(0, rec)
    hours = (datetime.now(timezone.utc) - e.assessed_at).total_seconds() / 3600
    score = "no score" if e.score is None else f"{(e.score_path or '').upper()} {e.score}"
    res = rec.get("result") or {}
    grade = (f"grade {res.get('icans_grade')}" if res.get("status") == "graded"
             else f"not assessable (>= {res.get('grade_at_least')})")
    return (f"{e.assessed_at.astimezone().strftime('%Y-%m-%d %H:%M')} ({hours:.1f} h ago), "
            f"{score}, {grade}, by {rec.get('assessor', '?')}")


def _change_line(previous: dict[str, Any], result) -> Any:
    from rich.text import Text

    from icans_cli.history import entry_from, worsening

    e = entry_from(0, previous)
    now_score = result.ice_score if result.score_path == "ice" else result.capd_score
    g = result.effective_grade
    flags = worsening(e, result.score_path, now_score, g)
    if flags:
        return Text("CHANGE SINCE LAST ASSESSMENT: " + "; ".join(f.upper() for f in flags),
                    style="bold white on red")
    return Text(f"Since the last assessment: score {e.score} -> {now_score}, grade {e.grade} "
                f"-> {g}; no fall or rise.", style="bold")
