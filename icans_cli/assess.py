"""`icans assess` and `icans show`: the interview, the summary, the confirmation and the save,
and the same summary for a saved record."""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from datetime import datetime
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


def _entries(path: Path, patient_id: str):
    import json

    from icans_cli import log
    from icans_cli.history import patient_entries

    try:
        return patient_entries(log.iter_records(path, None,
                                                json.dumps(patient_id, ensure_ascii=False)),
                               patient_id)
    except log.LogError:
        return []


def last_assessment(path: Path, patient_id: str, before: datetime | None = None,
                    exclude: str | None = None) -> Optional[dict[str, Any]]:
    """The patient's last current (not superseded) record, optionally before a time."""
    current = [e for e in _entries(path, patient_id) if not e.superseded_by
               and e.id != exclude and (before is None or e.assessed_at < before)]
    return current[-1].record if current else None


def last_assessable(path: Path, patient_id: str, before: datetime | None = None):
    """The patient's last graded (assessable) record, for a not-assessable result."""
    from icans_cli.core.protocol import LastAssessable

    graded = [e for e in _entries(path, patient_id) if not e.superseded_by
              and e.status == "graded" and (before is None or e.assessed_at <= before)]
    if not graded:
        return None
    e = graded[-1]
    # The last graded record is the latest evidence of the grade, however old: it is shown
    # with its age, to continue what is under way (never to start something new on it).
    hours = (before - e.assessed_at).total_seconds() / 3600 if before is not None else None
    return LastAssessable(int(e.grade or 0), e.assessed_at.astimezone().strftime(
        "%Y-%m-%d %H:%M"), None if hours is None else round(hours))


def known_spelling(path: Path, typed: str) -> str | None:
    """The spelling the log knows a pseudonym by, matched case- and separator-insensitively
    ("PT 0042" and "pt-0042" are "PT-0042"), or None when it is new."""
    from icans_cli import log
    from icans_cli.core.identifiers import patient_key

    want, found = patient_key(typed), None
    try:
        for _, rec in log.iter_records(path):
            pid = rec.get("patient_id")
            if isinstance(pid, str) and (pid == typed or patient_key(pid) == want):
                found = pid
                if pid == typed:
                    return pid
    except log.LogError:
        return None
    return found


def find_record(path: Path, record_id: str) -> dict[str, Any]:
    from icans_cli import log

    needle = record_id.strip()
    if not needle:
        _fail("give a record id (icans log show lists them)")
    try:
        matches = [r for _, r in log.iter_records(path, None, needle)
                   if str(r.get("id", "")).startswith(needle)]
    except log.LogError as exc:
        _fail(str(exc))  # a log that cannot be used: usage, as for every other command
    if not matches:
        _fail(f"no record with that id in {path} (icans log show lists them)",
              ExitStatus.ERROR)  # found nothing, like history for an unknown patient
    if len(matches) > 1:
        _fail(f"{len(matches)} records start with that id; give more of it")
    return matches[0]


def run_assess(*, patient: Optional[str], assessor: str, age: Optional[float],
               protocol, log_path: Path, save: bool, as_json: bool,
               amends: Optional[str], weight: Optional[float] = None,
               capd_baseline: Optional[int] = None, allow_id: bool = False,
               full: bool = False, assessed_at: Optional[str] = None) -> None:
    if assessed_at is not None:
        from icans_cli import log
        from icans_cli.core.errors import InvalidFinding
        from icans_cli.core.identifiers import parse_assessed_at

        if amends:
            _fail("--assessed-at is for a new assessment entered later; a correction keeps "
                  "the original time unless you change it on the review screen")
        try:
            assessed_at = parse_assessed_at(assessed_at, log.utc_now()).isoformat(
                timespec="seconds")
        except InvalidFinding as exc:
            _fail(str(exc))
    if not interactive_input_available():
        _fail("icans assess is an interactive interview and needs a terminal. For scripts, "
              "grade a CSV export instead: icans grade FILE.csv (see icans grade --help).")
    if patient is not None:
        from icans_cli.core.errors import InvalidFinding
        from icans_cli.core.identifiers import check_pseudonym

        try:
            patient = check_pseudonym(patient, allow_id)
        except InvalidFinding as exc:
            _fail(f"--patient {exc.detail}")
    try:
        with prompt_session():
            _run(patient=patient, assessor=assessor, protocol=protocol, log_path=log_path,
                 save=save, as_json=as_json, amends=amends, allow_id=allow_id, full=full,
                 given={"age": age, "weight": weight, "baseline": capd_baseline},
                 assessed_at=assessed_at)
    except (KeyboardInterrupt, EOFError):
        typer.echo(f"\n{CANCELLED}", err=True)
        raise typer.Exit(ExitStatus.INTERRUPTED)


def _say(text: str, style: str = "") -> None:
    """A status line on stderr before the summary, without importing rich (startup time)."""
    import os

    from icans_cli.term import plain

    codes = {"bold": "1", "dim": "2", "bold red": "1;31", "bold green": "1;32"}.get(style)
    colour = codes and sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    text = plain(text)
    sys.stderr.write((f"\x1b[{codes}m{text}\x1b[0m" if colour else text) + "\n")
    sys.stderr.flush()


def _run(*, patient, assessor, protocol, log_path, save, as_json, amends, allow_id, full,
         given, assessed_at=None) -> None:
    from icans_cli import interview as iv
    from icans_cli import log
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_time

    _say(f"icans assess · ASTCT 2019 · protocol {protocol.id} · assessor {assessor}", "bold")
    _say("Ctrl-C or Ctrl-D cancels at any prompt; nothing is saved until you confirm.", "dim")
    skip = {k for k, v in given.items() if v is not None}
    previous = None
    before = None
    before_label = "the last assessment"
    if amends:
        previous = find_record(log_path, amends)
        try:
            a = iv.Answers.from_record(previous)
            a.findings()
        except InvalidFinding as exc:
            _fail(f"cannot amend that record: {exc}")
        a.assessed_at = str(previous.get("assessed_at") or "")
        before, before_label = copy.deepcopy(a), "the record being corrected"
        _say(f"Correcting record {str(previous.get('id'))[:8]} of {a.assessed_at}: change what "
             "was wrong, then accept. The correction keeps the original time unless you "
             "change it.", "bold")
        if a.needs_score and a.scored:
            _say("That record holds only a score total: mark the items again.", "bold")
            iv.ask_score(a)
    else:
        def known(typed: str) -> str | None:
            return known_spelling(log_path, typed)

        if patient is None:
            a = iv.Answers()
            iv.ask_patient(a, allow_id, known)
            patient = a.patient_id
        else:
            patient = iv.match_known(patient, known)
        late = parse_time(assessed_at) if assessed_at else None
        if late is not None:
            _say(f"Entered later: assessed at {late.astimezone():%Y-%m-%d %H:%M} (the record "
                 "keeps both times).", "bold")
        previous = last_assessment(log_path, patient, before=late)
        if previous is not None:
            _say("Last assessment: " + _describe_record(previous), "bold")
            a = iv.Answers.from_record(previous, with_scores=False)
            before = iv.Answers.from_record(previous)
        else:
            _say("No earlier assessment of this patient in the log.", "dim")
            a = iv.Answers()
        a.patient_id = patient
        a.assessed_at, a.late_entry = assessed_at, assessed_at is not None
        for key, attr in (("age", "age"), ("weight", "weight"), ("baseline", "capd_baseline")):
            if given[key] is not None:
                setattr(a, attr, given[key])
        if given["weight"] is not None:
            iv.confirm_weight(a)  # --weight outside the usual range for the age
        if previous is not None:
            iv.reassess(a, skip, last=before)
        else:
            iv.interview(a, skip)

    def preview(ans: iv.Answers) -> str:
        from icans_cli import render
        from icans_cli.core import grade_icans

        try:
            r = grade_icans(ans.findings())
        except InvalidFinding as exc:
            return f"cannot grade yet: {exc}"
        return render.preview_text(r)

    while True:
        a = iv.review(a, preview, before, before_label)
        try:
            findings = a.findings()
            break
        except InvalidFinding as exc:
            _say(f"Cannot grade: {exc}. Change that answer.", "bold red")

    now = log.utc_now().replace(microsecond=0)  # as the record keeps it
    when = parse_time(a.assessed_at) if a.assessed_at else now
    case = with_last_assessable(a.case(when), log_path, a.patient_id or "", when)
    summary = build_summary(case, a.patient_id or "", protocol, assessed_at=when,
                            crs_text=a.crs.text(), crs_disputed=a.crs.disputed,
                            tocilizumab_at=a.crs.tocilizumab_at,
                            previous=None if amends else previous)
    from rich.text import Text

    from icans_cli.term import err, out

    con_out = err() if as_json else out()
    con_err = err()
    con_out.print(summary.bedside(con_out.width))
    if full:
        con_out.print(summary.details())
    if not save:
        if not full:  # the details stay one key away, as under the save prompt
            while iv.keypress("--no-save: nothing will be saved.",
                              [("q", "done"), ("d", "details")], "q") == "d":
                con_out.print(summary.details())
                con_out.print(summary.bedside(con_out.width))
        con_err.print(Text("--no-save: nothing was saved.", style="bold"))
        return
    if amends and before is not None and iv.unchanged(a, before):
        iv.note("Nothing changed from the record being corrected.", "error")
        if iv.keypress("Save it anyway?", [("y", "save anyway"), ("n", "do not save")],
                       "n") != "y":
            con_err.print(Text("Not saved.", style="bold"))
            return
    seen_details = False
    while True:
        # After the details, y or n must be pressed: an Enter typed after "d" out of habit
        # would otherwise save unseen.
        choice = iv.keypress("Save to the log?",
                             [("y", "save"), ("n", "no"), ("d", "details")],
                             None if seen_details else "y")
        if choice != "d":
            break
        seen_details = True
        con_out.print(summary.details())
        con_out.print(summary.bedside(con_out.width))
    if choice != "y":
        con_err.print(Text("Not saved.", style="bold"))
        return
    from icans_cli.records import assessment_record

    body = assessment_record(patient_id=a.patient_id or "", assessor=assessor,
                             source="amendment" if amends else "interactive", assessed_at=when,
                             findings=findings, result=summary.result,
                             recommendation=summary.rec, crs_grade=summary.crs_grade,
                             product=a.product, crs_detail=a.crs.detail(), weight_kg=a.weight,
                             amends=str(previous.get("id")) if amends and previous else None)
    if a.path == "ice" and a.ice_done and a.scored and a.ice_total is None:
        # which tasks were done right, so a correction starts from the same marks (the
        # items hold only counts)
        body["findings"]["ice_tasks"] = iv.task_names(a.ice)
    try:
        saved = log.append(log_path, body)
    except log.LogError as exc:
        _fail(str(exc), ExitStatus.WRITE_FAILED)
    con_err.print(Text(f"Saved as record {saved['id'][:8]} (#{saved['seq']}) in {log_path}. "
                       f"Details later: icans show {saved['id'][:8]} --full",
                       style="bold green"))
    if as_json:
        import json

        sys.stdout.write(json.dumps(saved, ensure_ascii=False) + "\n")


class Summary:
    """One assessment's result, advice and context, rendered two ways (assess and show)."""

    def __init__(self, result, rec, items, ctx, crs_grade) -> None:
        self.result, self.rec, self.items, self.ctx = result, rec, items, ctx
        self.crs_grade = crs_grade

    def bedside(self, width: int = 80, max_lines: int | None = None):
        """The one-screen summary at `width`, in `max_lines` (default: an 80x24 screen less
        the save prompt, or less nothing when the summary ends with its details pointer)."""
        from icans_cli import render

        if max_lines is None:
            max_lines = render.BEDSIDE_LINES + (1 if self.ctx.record_id else 0)
        return render.bedside(self.result, self.rec, self.ctx, width=width,
                              max_lines=max_lines)

    def details(self):
        from icans_cli import render

        return render.details(self.result, self.rec, self.items, self.ctx)


def with_last_assessable(case, log_path: Path, patient_id: str, assessed_at: datetime):
    """The case with what the log knows of the patient's last assessable grade (looked up only
    when the findings can be not assessable: another cause is recorded)."""
    from dataclasses import replace

    if not case.findings.sedated:
        return case
    return replace(case, last_assessable=last_assessable(log_path, patient_id,
                                                         before=assessed_at),
                   log_checked=True)


def build_summary(case, patient_id: str, protocol, *, assessed_at: datetime,
                  crs_text: str | None = None, previous=None, record_id: str | None = None,
                  crs_disputed: bool = False, tocilizumab_at: str | None = None) -> Summary:
    """Grade, advise and explain one case (the one advice function), with its context."""
    from icans_cli.core import rationale
    from icans_cli.core.advice import advise
    from icans_cli.history import change_since_result
    from icans_cli.render import Context

    advice = advise(protocol, case)
    result, rec = advice.result, advice.recommendation
    change = change_since_result(previous, result, assessed_at) if previous else None
    f = case.findings
    ctx = Context(patient_id=patient_id, assessed_at=assessed_at, change=change,
                  crs_text=crs_text, record_id=record_id, age=f.age_years,
                  weight=case.weight_kg, product=case.product, crs_disputed=crs_disputed,
                  tocilizumab_at=_when(tocilizumab_at))
    return Summary(result, rec, rationale(result, rec), ctx, rec.crs_grade)


def run_show(*, record_id: str, log_path: Path, full: bool) -> None:
    """`icans show`: the summary of a saved record, with the renderer assess uses."""
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.protocol import ProtocolError
    from icans_cli.history import _time
    from icans_cli.protocols import UnknownProtocol, load
    from icans_cli.records import case_from_record
    from icans_cli.term import err, out

    rec = find_record(log_path, record_id)
    if rec.get("kind") == "practice_session":
        _fail("that is a practice session, not an assessment")
    try:
        case = case_from_record(rec)
    except (InvalidFinding, TypeError, ValueError, AttributeError):
        _fail("that record's findings can no longer be graded (icans log verify checks the log)",
              ExitStatus.ERROR)
    proto = rec.get("protocol") or {}
    protocol = None
    for name in (proto.get("file"), proto.get("id"), "asco-2021"):
        if not name:
            continue
        try:
            protocol = load(str(name))
            break
        except (UnknownProtocol, ProtocolError):
            continue
    assert protocol is not None
    when = _time(rec.get("assessed_at"))
    pid = str(rec.get("patient_id") or "")
    previous = last_assessment(log_path, pid, before=when, exclude=str(rec.get("id")))
    detail = (rec.get("findings") or {}).get("crs_detail") or {}
    summary = build_summary(with_last_assessable(case, log_path, pid, when), pid, protocol,
                            assessed_at=when, crs_text=_crs_text(rec), previous=previous,
                            record_id=str(rec.get("id")),
                            crs_disputed=bool(detail.get("disagreement")),
                            tocilizumab_at=detail.get("tocilizumab_at"))
    warnings, notes = [], []
    later = next((e.superseded_by for e in _entries(log_path, pid)
                  if e.id == str(rec.get("id")) and e.superseded_by), None)
    if later:
        warnings.append(f"CORRECTED: this record was replaced by {str(later)[:8]}; "
                        f"see icans show {str(later)[:8]}")
    if protocol.id != proto.get("id"):
        where = f" ({proto.get('file')})" if proto.get("file") else ""
        warnings.append(f"NOT THE ADVICE GIVEN: the record was advised with protocol "
                        f"{proto.get('id')!r}{where}, not available here; the advice below "
                        f"is from {protocol.id}")
    elif str(proto.get("version")) != protocol.version:
        warnings.append(f"advised with protocol {protocol.id} version {proto.get('version')}; "
                        f"the advice below is from version {protocol.version}, as it is now")
    elif proto.get("sha256") and proto.get("sha256") != protocol.sha256:
        warnings.append(f"protocol {protocol.id} has been edited since this record was advised "
                        "(same version, different content): the advice below is from the "
                        "protocol as it is now, not necessarily what was advised then")
    if rec.get("amends"):
        notes.append(f"this record corrects {str(rec['amends'])[:8]}")
    con = out()
    from rich.text import Text

    above = 0
    for w in warnings:  # above the summary, on the same stream: they change how it reads
        warning = Text("! " + w, style="bold red")
        above += len(warning.wrap(con, con.width))
        con.print(warning)
    con.print(summary.bedside(con.width, max(12, 24 - above)))
    if full:
        con.print(summary.details())
    for n in notes:
        err().print(f"Note: {n}.", markup=False, highlight=False)


def _when(value: str | None) -> datetime | None:
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_time

    if not value:
        return None
    try:
        return parse_time(value)
    except InvalidFinding:
        return None


def _crs_text(rec: dict[str, Any]) -> str | None:
    """How a saved record's CRS was graded, for the details (batch and interview records
    keep different CRS details)."""
    f = rec.get("findings") or {}
    d = f.get("crs_detail") or {}
    if d.get("explanation"):
        text = f"{d.get('label') or 'CRS'}: {d['explanation']}"
    elif d.get("controlled"):
        text = "controlled after treatment (" + (", ".join(d.get("treatments") or [])
                                                 or "treatment") + ")"
    elif f.get("crs_grade") is not None:
        text = f"grade {f['crs_grade']} (as given)"
    else:
        return None
    if d.get("disagreement"):
        text += ". " + str(d["disagreement"])
    return text


def _describe_record(rec: dict[str, Any]) -> str:
    from datetime import timezone

    from icans_cli.history import entry_from, grade_words, score_words

    e = entry_from(0, rec)
    hours = (datetime.now(timezone.utc) - e.assessed_at).total_seconds() / 3600
    return (f"{e.assessed_at.astimezone().strftime('%Y-%m-%d %H:%M')} ({hours:.1f} h ago), "
            f"{score_words(e.score_path, e.score)}, {grade_words(rec.get('result') or {})}, "
            f"by {rec.get('assessor', '?')}")
