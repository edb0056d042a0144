"""`icans assess` and `icans show`: the interview, the summary, the confirmation and the save,
and the same summary for a saved record."""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from datetime import datetime
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

    import signal

    from icans_cli import interview
    from icans_cli.interview import on_sigint

    interview._interrupted = False
    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        previous = None
    try:
        current = get_app_session()
        if getattr(current, "_input", None) is not None:  # a test's session: keep it
            yield
            return
        from prompt_toolkit.output.defaults import create_output

        with create_app_session(output=create_output(stdout=sys.stderr)):
            yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class PatientLog:
    """What the store holds of one patient, read once per command: the intact records in time
    order (corrected ones marked); records that fail the chain are counted, never used."""

    def __init__(self, store, patient_id: str | None) -> None:
        from icans_cli.history import patient_entries
        from icans_cli.store import ALTERED

        self.altered = 0
        self.unreachable: str | None = None
        self.entries: list = []
        if not patient_id:
            return
        from icans_cli.store import LockTimeout, Unavailable

        intact = []
        try:
            for e in store.assessments(patient_id):
                if e.verdict == ALTERED:
                    self.altered += 1
                else:
                    intact.append((e.line, e.record))
        except (Unavailable, LockTimeout) as exc:
            self.unreachable = str(exc)
            return
        self.entries = patient_entries(intact, None)

    def last(self, before: datetime | None = None,
             exclude: str | None = None) -> Optional[dict[str, Any]]:
        """The last current (not superseded) record, optionally before a time."""
        current = [e for e in self.entries if not e.superseded_by and e.id != exclude
                   and (before is None or e.assessed_at < before)]
        return current[-1].record if current else None

    def last_assessable(self, before: datetime | None = None):
        """The last graded (assessable) record, for a not-assessable result."""
        from icans_cli.core.protocol import LastAssessable

        graded = [e for e in self.entries if not e.superseded_by
                  and e.status == "graded" and (before is None or e.assessed_at <= before)]
        if not graded:
            return None
        e = graded[-1]
        # The last graded record is the latest evidence of the grade, however old: it is shown
        # with its age, to continue what is under way (never to start something new on it).
        hours = (before - e.assessed_at).total_seconds() / 3600 if before is not None else None
        return LastAssessable(int(e.grade or 0), e.assessed_at.astimezone().strftime(
            "%Y-%m-%d %H:%M"), None if hours is None else round(hours))

    def superseded_by(self, record_id: str) -> str | None:
        return next((e.superseded_by for e in self.entries
                     if e.id == record_id and e.superseded_by), None)


def known_spelling(store, typed: str) -> str | None:
    """The spelling the log knows a pseudonym by, matched case- and separator-insensitively
    ("PT 0042" and "pt-0042" are "PT-0042"), or None when it is new (or the log cannot be
    read now)."""
    from icans_cli.store import LockTimeout, Unavailable

    try:
        return store.known_spelling(typed)
    except (Unavailable, LockTimeout):
        return None


RECORD_ID = __import__("re").compile(r"[0-9a-f][0-9a-f-]{0,35}")


def find_record(store, record_id: str) -> dict[str, Any]:
    """The record whose id starts with `record_id` (at least 4 characters); one that fails the
    chain is refused: what it says cannot be trusted."""
    from icans_cli.store import ALTERED

    needle = record_id.strip().lower()
    if not needle:
        _fail("give a record id (icans log show lists them)")
    matches = [e for e in store.find(needle) if not (e.record or {}).get("kind")] \
        if RECORD_ID.fullmatch(needle) else []
    if not matches:
        _fail(f"no record with that id in {store.where} (icans log show lists them)",
              ExitStatus.ERROR)  # found nothing, like history for an unknown patient
    if len(matches) > 1:
        _fail(f"{len(matches)} records start with that id; give more of it")
    if matches[0].verdict == ALTERED:
        _fail("that record fails the chain (ALTERED: changed after it was saved): what it "
              "says cannot be trusted, so it is not shown or used; icans log verify names "
              "the problem", ExitStatus.ERROR)
    return matches[0].record


def run_assess(*, patient: Optional[str], assessor: str, age: Optional[float],
               protocol, store, save: bool, as_json: bool,
               amends: Optional[str], weight: Optional[float] = None,
               capd_baseline: Optional[int] = None, allow_id: bool = False,
               full: bool = False, assessed_at: Optional[str] = None) -> None:
    if assessed_at is not None:
        from icans_cli.core.errors import InvalidFinding
        from icans_cli.core.identifiers import parse_assessed_at
        from icans_cli.store.chain import utc_now

        if amends:
            _fail("--assessed-at is for a new assessment entered later; a correction keeps "
                  "the original time unless you change it on the review screen")
        try:
            assessed_at = parse_assessed_at(assessed_at, utc_now()).isoformat(
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
            _run(patient=patient, assessor=assessor, protocol=protocol, store=store,
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


def _run(*, patient, assessor, protocol, store, save, as_json, amends, allow_id, full,
         given, assessed_at=None) -> None:
    from icans_cli import interview as iv
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.store.chain import utc_now
    from icans_cli.core.identifiers import parse_time

    _say(f"icans assess · ASTCT 2019 · protocol {protocol.id} · assessor {assessor}", "bold")
    _say("Ctrl-C or Ctrl-D cancels at any prompt; nothing is saved until you confirm.", "dim")
    skip = {k for k, v in given.items() if v is not None}
    previous = None
    before = None
    before_label = "the last assessment"
    if amends:
        previous = find_record(store, amends)
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
            return known_spelling(store, typed)

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
        known = PatientLog(store, patient)
        if known.unreachable:
            _say(f"The log cannot be read now ({known.unreachable}): no earlier assessment "
                 "can be shown. The assessment will be kept on this workstation if the log "
                 "still cannot take it.", "bold red")
        if known.altered:
            _say(f"{known.altered} record(s) of this patient fail the chain (ALTERED) and are "
                 "not used: icans log verify names them.", "bold red")
        previous = known.last(before=late)
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

    now = utc_now().replace(microsecond=0)  # as the record keeps it
    when = parse_time(a.assessed_at) if a.assessed_at else now
    case = with_last_assessable(a.case(when), PatientLog(store, a.patient_id), when)
    summary = build_summary(case, a.patient_id or "", protocol, assessed_at=when,
                            crs_text=a.crs.text(), crs_disputed=a.crs.disputed,
                            tocilizumab_at=a.crs.tocilizumab_at,
                            previous=None if amends else previous)
    from rich.text import Text

    from icans_cli.term import err, out

    from contextlib import nullcontext

    from icans_cli.term import paging

    con_out = err() if as_json else out()
    con_err = err()

    def details() -> None:  # long: through a pager on a terminal (stdout only)
        with nullcontext() if as_json else paging():
            con_out.print(summary.details())

    con_out.print(summary.bedside(con_out.width))
    if full:
        details()
    if not save:
        if not full:  # the details stay one key away, as under the save prompt
            while iv.keypress("--no-save: nothing will be saved.",
                              [("q", "done"), ("d", "details")], "q") == "d":
                details()
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
        details()
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
    saved = _save(store, body, con_err)
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


def with_last_assessable(case, known: PatientLog, assessed_at: datetime):
    """The case with what the log knows of the patient's last assessable grade (looked up only
    when the findings can be not assessable: another cause is recorded)."""
    from dataclasses import replace

    if not case.findings.sedated:
        return case
    return replace(case, last_assessable=known.last_assessable(before=assessed_at),
                   log_checked=known.unreachable is None)


class _Stopped(Exception):
    """SIGTERM or SIGHUP (a closed terminal) while the record waits for the log."""


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM and SIGHUP raise _Stopped while a bedside record waits, so it is kept on the
    workstation instead of dying with the process."""
    import signal

    def stop(signum, frame):  # noqa: ARG001
        raise _Stopped()

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                old[sig] = signal.signal(sig, stop)
            except (ValueError, OSError):  # not the main thread
                pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _save(store, body: dict[str, Any], con) -> dict[str, Any]:
    """Append the bedside record; a lock held too long, a log out of reach, Ctrl-C or a closed
    terminal during the wait never lose it: it is kept on this workstation (0600) and the next
    command sends it, exactly once."""
    import uuid

    from rich.text import Text

    from icans_cli.store import StoreError, keep, outbox_for
    from icans_cli.store.chain import utc_now

    record = dict(body)
    record.setdefault("id", str(uuid.uuid4()))
    record.setdefault("recorded_at", utc_now().isoformat(timespec="seconds"))
    box = outbox_for(store)
    where = "THE WARD LOG" if store.kind == "postgres" else "THE LOG"

    def waiting(message: str) -> None:
        con.print(Text(message[:1].upper() + message[1:] + ". If it stays locked, the "
                       "assessment is kept on this workstation.", style="bold yellow"))

    try:
        with _stoppable():
            saved = store.save_or_keep(record, box, on_wait=waiting)
    except (KeyboardInterrupt, _Stopped):
        keep(box, record)
        con.print(Text(f"SAVED ON THIS WORKSTATION, NOT YET ON {where} (the wait was "
                       f"stopped): record {record['id'][:8]} is sent by the next icans "
                       "command, or icans log sync.", style="bold black on yellow"))
        raise typer.Exit(ExitStatus.OK)
    except StoreError as exc:  # a full disk, a log that is not one: kept if it can be
        try:
            keep(box, record)
        except OSError:
            _fail(f"{exc}; it could not be kept on this workstation either",
                  ExitStatus.WRITE_FAILED)
        con.print(Text(f"NOT ON {where}: {exc}. Record {record['id'][:8]} is kept on this "
                       "workstation; icans log sync sends it once the log can take it.",
                       style="bold black on yellow"))
        raise typer.Exit(ExitStatus.WRITE_FAILED)
    rec = saved.record
    if not saved.on_log:
        con.print(Text(f"SAVED ON THIS WORKSTATION, "
                       f"{'MAYBE NOT YET' if saved.in_doubt else 'NOT YET'} ON {where} "
                       f"({saved.why}). Record "
                       f"{rec['id'][:8]} is kept here and sent by the next icans command, or "
                       "icans log sync.", style="bold black on yellow"))
        return rec
    con.print(Text(f"Saved as record {rec['id'][:8]} (#{rec.get('seq')}) in {store.where}. "
                   f"Details later: icans show {rec['id'][:8]} --full", style="bold green"))
    return rec


def build_summary(case, patient_id: str, protocol, *, assessed_at: datetime,
                  crs_text: str | None = None, previous=None, record_id: str | None = None,
                  crs_disputed: bool = False, tocilizumab_at: str | None = None,
                  now: datetime | None = None) -> Summary:
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
                  tocilizumab_at=_when(tocilizumab_at), now=now)
    return Summary(result, rec, rationale(result, rec), ctx, rec.crs_grade)


def pick_record(store, what: str | None) -> tuple[dict[str, Any], "PatientLog | None"]:
    """What `icans show` shows: nothing given, the last assessment saved; a record id (its
    first characters); else a pseudonym (any spelling the log knows), that patient's latest
    current assessment."""
    from icans_cli.store import ALTERED

    if what is None or not what.strip():
        last = store.last_saved()
        if last is None:
            _fail(f"the log at {store.where} holds no assessments yet", ExitStatus.ERROR)
        if last.verdict == ALTERED:
            _fail("the last record fails the chain (ALTERED): what it says cannot be trusted; "
                  "icans log verify names the problem", ExitStatus.ERROR)
        return last.record, None
    needle = what.strip()
    is_record = RECORD_ID.fullmatch(needle.lower()) is not None and any(
        not (e.record or {}).get("kind") for e in store.find(needle.lower()))
    is_patient = known_spelling(store, needle) is not None
    if is_record and is_patient:  # never guess between two patients' summaries
        _fail("that is both a pseudonym in the log and the start of a record id: give more "
              "of the record id (icans log show lists them)")
    if is_record:
        return find_record(store, needle), None
    known = PatientLog(store, needle)
    if known.unreachable:
        _fail(known.unreachable, ExitStatus.ERROR)
    latest = known.last()
    if latest is None:
        hint = (f" ({known.altered} record(s) of that patient fail the chain: icans log "
                "verify)" if known.altered else "")
        _fail(f"no record and no patient by that id in {store.where}{hint} (icans log show "
              "lists them)", ExitStatus.ERROR)
    return latest, known  # the patient's log, read once: show uses it again


def run_show(*, what: str | None, store, full: bool) -> None:
    """`icans show`: the summary of a saved record, with the renderer assess uses; ages and
    OVERDUE from now when it is the patient's latest."""
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.protocol import ProtocolError
    from icans_cli.history import _time
    from icans_cli.protocols import UnknownProtocol, load
    from icans_cli.records import case_from_record
    from icans_cli.store.chain import utc_now
    from icans_cli.term import err, out

    rec, known = pick_record(store, what)
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
    if known is None:
        known = PatientLog(store, pid)
    rid = str(rec.get("id"))
    previous = known.last(before=when, exclude=rid)
    latest = known.last()
    is_latest = latest is not None and str(latest.get("id")) == rid
    detail = (rec.get("findings") or {}).get("crs_detail") or {}
    summary = build_summary(with_last_assessable(case, known, when), pid, protocol,
                            assessed_at=when, crs_text=_crs_text(rec), previous=previous,
                            record_id=rid, crs_disputed=bool(detail.get("disagreement")),
                            tocilizumab_at=detail.get("tocilizumab_at"),
                            now=utc_now() if is_latest else None)
    warnings, notes = [], []
    later = known.superseded_by(rid)
    if later:
        warnings.append(f"CORRECTED: this record was replaced by {str(later)[:8]}; "
                        f"see icans show {str(later)[:8]}")
    elif not is_latest and latest is not None:
        newer = str(latest.get("id"))[:8]
        warnings.append(f"NOT THE LATEST: a later assessment of this patient is {newer}; "
                        f"see icans show {newer}")
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
        from icans_cli.term import paging

        with paging():
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
