"""The typer app: parses options, calls the modules, maps exceptions to messages and exit codes.

Heavy or optional modules (questionary, the protocol data, the log, rich rendering) are imported
inside the commands that need them, so `icans --help` stays fast (a test guards this).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer

from icans_cli import __version__
from icans_cli.exit import ExitStatus

from typer.core import TyperGroup  # noqa: E402

HELP = {"help_option_names": ["-h", "--help"]}
ORDER = ("assess", "show", "due", "history", "grade", "export", "log", "protocol", "practice",
         "explain")


class _InOrder(TyperGroup):
    """Commands listed in the order a user needs them, not alphabetically or as defined."""

    def list_commands(self, ctx):  # type: ignore[no-untyped-def]
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


app = typer.Typer(
    name="icans",
    help="ICANS after CAR-T: ICE/CAPD scoring, ASTCT 2019 grading, and sourced corticosteroid "
         "decision support. Decision support only: the treating team decides.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=HELP,
    cls=_InOrder,
)
log_app = typer.Typer(help="The assessment log: where it is, what it holds, whether it is "
                           "intact.", no_args_is_help=True, rich_markup_mode=None,
                      context_settings=HELP)
app.add_typer(log_app, name="log", short_help="The log: list, verify, head, path.")
protocol_app = typer.Typer(help="Management protocols: the built-in ones, and checking a "
                                "centre's own protocol file.", no_args_is_help=True,
                           rich_markup_mode=None, context_settings=HELP)
app.add_typer(protocol_app, name="protocol",
              short_help="Protocols: list, show, check a centre's own file.")
export_app = typer.Typer(help="Export logged assessments for other systems.",
                         no_args_is_help=True, rich_markup_mode=None, context_settings=HELP)
app.add_typer(export_app, name="export", short_help="The log for other systems (FHIR R4).")

TABLE_FORMAT_OPTION = typer.Option(None, "--format", "-f",
                                   help="table (default on a terminal), jsonl (default "
                                        "otherwise) or csv.")
LOG_FILE_OPTION = typer.Option(None, "--log-file", help="Log file to use instead of "
                               "$ICANS_DATA_DIR or the platform data directory.")
PROTOCOL_OPTION = typer.Option("asco-2021", "--protocol", "-p", envvar="ICANS_PROTOCOL",
                               metavar="NAME|FILE",
                               help="Management protocol: asco-2021, cartox-2018, or a protocol "
                                    "file (icans protocol check FILE). Default: "
                                    "$ICANS_PROTOCOL, else asco-2021.")


def fail(message: str, code: ExitStatus = ExitStatus.USAGE) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(int(code))


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"icans {__version__}")
        raise typer.Exit(ExitStatus.OK)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """ICANS grading and management support for CAR-T teams."""


# --- log ----------------------------------------------------------------------------------------

def _log_path(log_file: Optional[Path]) -> Path:
    """The log every command uses; a log or data directory readable by others is said once,
    whichever command touches it (it holds patient data)."""
    from icans_cli import log

    path = log.resolve_path(log_file)
    for w in log.permission_warnings(path):
        warn(w)
    return path


def _records(path: Path, contains: str | None = None):
    from icans_cli import log

    def report(p) -> None:
        warn(f"log {p}")

    try:
        yield from log.iter_records(path, report, contains)
    except log.LogError as exc:
        fail(str(exc))


@log_app.command("path", short_help="Print the log file in use.")
def log_path(log_file: Optional[Path] = LOG_FILE_OPTION) -> None:
    """Print the resolved log file (--log-file, else $ICANS_DATA_DIR, else the platform default).

    Example: icans log path
    """
    path = _log_path(log_file)
    typer.echo(str(path))


VERIFY_PROVES = ("A hash chain shows an edited, deleted, inserted or reordered line before the "
                 "last record checked. It cannot show that records were cut off the end, or a "
                 "log rewritten whole by someone who can write it: keep the output of "
                 "`icans log head` elsewhere (the EHR note, the handover) and check it with "
                 "`icans log verify --head SEQ:HASH`.")


@log_app.command("verify", short_help="Check the hash chain (and a kept head).")
def log_verify(
    head: Optional[str] = typer.Option(None, "--head", metavar="SEQ:HASH",
                                       help="A head kept earlier (icans log head): prove that "
                                            "the log still holds that record, unchanged, and "
                                            "everything before it."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Check the hash chain: exit 0 if intact, 1 naming the first bad line otherwise.

    What it proves, and what it cannot, is said with the result.

    \b
    Examples:
      icans log verify
      icans log verify --head 42:3f5a0c...
    """
    from icans_cli import log

    path = _log_path(log_file)
    expect = None
    if head is not None:
        try:
            expect = log.Head.parse(head)
        except ValueError as exc:
            fail(f"--head {exc}")
    if not path.exists():
        fail(f"no log at {path}")
    try:
        v = log.verify(path, expect)
    except log.LogError as exc:
        fail(str(exc))
    if not v.problems:
        if v.records == 0:
            typer.echo(f"EMPTY: the log at {path} holds no records. If it held records before, "
                       "they are gone: compare with a head you kept (icans log head).")
            raise typer.Exit(ExitStatus.ERROR if expect else ExitStatus.OK)
        said = f"OK: {v.records:,} records; the chain is intact up to record #{v.head.seq}"  # type: ignore[union-attr]
        if expect is not None:
            said += (f", and record #{expect.seq} is the one whose hash you kept: the log "
                     "holds it and everything before it unchanged")
            later = v.records - expect.seq  # type: ignore[union-attr]
            if later > 0:
                said += (f"; the {later:,} record{'s' if later != 1 else ''} after it "
                         f"{'are' if later != 1 else 'is'} chained to it but not covered by "
                         "the kept head (keep a new head to cover them)")
        typer.echo(said + f" ({path}).")
        typer.echo(VERIFY_PROVES)
        raise typer.Exit(ExitStatus.OK)
    first = v.problems[0]
    typer.echo(f"BROKEN: {first}", err=True)
    for p in v.problems[1:10]:
        typer.echo(f"  also {p}", err=True)
    if len(v.problems) > 10:
        typer.echo(f"  ... and {len(v.problems) - 10} more", err=True)
    raise typer.Exit(ExitStatus.ERROR)


@log_app.command("head", short_help="Print SEQ:HASH of the last record, to keep.")
def log_head(log_file: Optional[Path] = LOG_FILE_OPTION) -> None:
    """Print SEQ:HASH of the last record, to keep elsewhere and check with verify --head.

    Example: icans log head
    """
    from icans_cli import log

    path = _log_path(log_file)
    try:
        h = log.head(path)
    except log.LogError as exc:
        fail(str(exc))
    if h is None:
        fail(f"the log at {path} holds no records", ExitStatus.ERROR)
    typer.echo(str(h))


def _since(value: str | None):
    if not value:
        return None
    import re
    from datetime import timedelta

    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_time
    from icans_cli.log import utc_now

    m = re.fullmatch(r"\s*(\d{1,9})\s*([mhd])\s*", value)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        span = timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})
        if span > timedelta(days=36500):
            fail("--since spans more than 100 years; give a date, e.g. 2026-01-01")
        return utc_now() - span
    try:
        return parse_time(value, "--since")
    except InvalidFinding as exc:
        fail(f"--since {exc.detail}; or a span such as 24h, 7d, 90m")


def _eff_grade(rec) -> int | None:
    res = rec.get("result") or {}
    g = res.get("icans_grade")
    return res.get("grade_at_least") if g is None else g


FORMATS_LOG = ("table", "jsonl", "csv")
LOG_CSV_COLUMNS = ("seq", "id", "recorded_at", "assessed_at", "patient_id", "assessor", "source",
                   "score_path", "ice_score", "capd_score", "status", "icans_grade",
                   "grade_at_least", "drivers", "excluded", "crs_grade", "product",
                   "recommendation", "next_assessment_hours", "amends", "superseded_by")


def _flat(rec, superseded_by: str | None = None) -> dict:
    res = rec.get("result") or {}
    fnd = rec.get("findings") or {}
    return {
        "seq": rec.get("seq"), "id": rec.get("id"), "recorded_at": rec.get("recorded_at"),
        "assessed_at": rec.get("assessed_at"), "patient_id": rec.get("patient_id"),
        "assessor": rec.get("assessor"), "source": rec.get("source"),
        "score_path": res.get("score_path"), "ice_score": res.get("ice_score"),
        "capd_score": res.get("capd_score"), "status": res.get("status"),
        "icans_grade": res.get("icans_grade"), "grade_at_least": res.get("grade_at_least"),
        "drivers": ";".join(res.get("drivers") or []),
        "excluded": ";".join(res.get("excluded") or []),
        "crs_grade": fnd.get("crs_grade"), "product": fnd.get("product"),
        "recommendation": (rec.get("recommendation") or {}).get("id"),
        "next_assessment_hours": (rec.get("recommendation") or {}).get("next_assessment_hours"),
        "amends": rec.get("amends"), "superseded_by": superseded_by,
    }


def _write_machine(fmt: str, rows, extra=None) -> None:
    import csv
    import json

    from icans_cli.csvsafe import safe_cell

    if fmt == "jsonl":
        from icans_cli.term import data_out

        write = data_out().write
        for rec, sup in rows:
            out = dict(rec)
            if sup is not None:
                out["superseded_by"] = sup
            write(json.dumps(out, ensure_ascii=False) + "\n")
        return
    from icans_cli.term import data_out

    w = csv.writer(data_out(), lineterminator="\r\n")
    w.writerow(LOG_CSV_COLUMNS)
    for rec, sup in rows:
        flat = _flat(rec, sup)
        w.writerow([safe_cell(flat[c]) for c in LOG_CSV_COLUMNS])


def _pipe_safe(fn):
    """A command whose output may go to `| head`: a closed pipe stops it quietly with the
    same exit code as icans grade (141)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            from icans_cli.batchrun import _silence_stdout

            _silence_stdout()
            raise typer.Exit(ExitStatus.PIPE)
    return wrapper


def _pick_format(fmt: Optional[str], allowed) -> str:
    from icans_cli.term import is_terminal

    if fmt is None:
        return "table" if is_terminal() else allowed[1]
    if fmt not in allowed:
        fail(f"--format must be one of {', '.join(allowed)} (what was typed is not "
             "shown: it could be patient data)")
    return fmt


@log_app.command("show")
@_pipe_safe
def log_show(
    patient: Optional[str] = typer.Option(None, "--patient", help="Only this pseudonym."),
    since: Optional[str] = typer.Option(None, "--since",
                                        help="Only assessments at or after this ISO date-time, "
                                             "or within a span: 24h, 7d."),
    min_grade: Optional[int] = typer.Option(None, "--min-grade", min=0, max=4,
                                            help="Only grade (or floor) >= N."),
    fmt: Optional[str] = TABLE_FORMAT_OPTION,
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """List logged assessments, oldest first (streamed: any size of log).

    Example: icans log show --patient PT-001 --since 24h --format csv
    """
    import json

    from icans_cli import log
    from icans_cli.history import _time

    fmt = _pick_format(fmt, FORMATS_LOG)
    path = _log_path(log_file)
    cutoff = _since(since)
    needle = json.dumps(patient, ensure_ascii=False) if patient else None
    # First pass: which records a correction supersedes (only lines naming one are parsed).
    superseded: dict[str, str] = {}
    try:
        for _, line, complete in log.iter_lines(path):
            if complete and b'"amends":"' in line and (needle is None
                                                       or needle.encode() in line):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("amends") and (patient is None or rec.get("patient_id") == patient):
                    superseded[str(rec["amends"])] = str(rec.get("id"))
    except log.LogError as exc:
        fail(str(exc))

    def selected():
        for _, rec in _records(path, needle):
            if patient and rec.get("patient_id") != patient:
                continue
            if rec.get("kind") == "practice_session":
                continue
            if cutoff and _time(rec.get("assessed_at")) < cutoff:
                continue
            g = _eff_grade(rec)
            if min_grade is not None and (g is None or g < min_grade):
                continue
            yield rec, superseded.get(str(rec.get("id")))

    from icans_cli.term import is_terminal

    if fmt == "jsonl" and not (patient or cutoff or min_grade is not None or is_terminal()):
        _raw_jsonl(path, superseded)
        return
    if fmt != "table":
        _write_machine(fmt, selected())
        return
    _stream_table(selected(), path)


_ID = __import__("re").compile(rb'"id":"([^"]*)"')  # the first is the record's own (sorted keys)


def _raw_jsonl(path: Path, superseded: dict[str, str]) -> None:
    """Every record as stored (a line of the record's shape is copied, not re-encoded), the
    superseded ones with `superseded_by` added: the fastest streaming reader."""
    import json

    from icans_cli import log

    out = sys.stdout.buffer
    shape = log.record_shape
    try:
        for n, line, complete in log.iter_lines(path):
            if not complete or not shape(line):
                if line.strip():
                    warn(f"log line {n}: not a valid record (torn or corrupted); skipped")
                continue
            m = superseded and _ID.search(line)
            if m and m.group(1).decode() in superseded:
                rec = json.loads(line)
                if str(rec.get("id")) in superseded:
                    rec["superseded_by"] = superseded[str(rec.get("id"))]
                    out.write(json.dumps(rec, ensure_ascii=False).encode() + b"\n")
                    continue
            out.write(line + b"\n")
        out.flush()
    except log.LogError as exc:
        fail(str(exc))


def _stream_table(rows, path: Path) -> None:
    """A table printed in blocks with fixed column widths, so a long log streams."""
    from rich.table import Table
    from rich.text import Text

    from icans_cli.history import _time, score_words
    from icans_cli.render import plural, record_grade_text
    from icans_cli.term import out, plain

    con = out()
    # fixed widths, so blocks line up; the patient and assessor columns take what is left
    spare = max(0, con.width - 80)
    widths = (8, 16, 14 + spare * 2 // 3, 10 + spare // 3, 11, 12)
    cols = ("record", "assessed", "patient", "assessor", "score", "grade")

    def block():
        t = Table(show_header=not shown, box=None, pad_edge=False, padding=(0, 1))
        for c, w in zip(cols, widths):
            t.add_column(c, width=w, overflow="fold")
        t.add_column("note", ratio=1)
        return t

    shown = 0
    t = block()
    for rec, sup in rows:
        f = _flat(rec, sup)
        note = (f"superseded by {plain(sup)[:8]}" if sup else
                (f"corrects {plain(f['amends'])[:8]}" if f["amends"] else ""))
        t.add_row(Text(plain(f["id"])[:8]),
                  _time(f["assessed_at"]).astimezone().strftime("%Y-%m-%d %H:%M"),
                  Text(plain(f["patient_id"])), Text(plain(f["assessor"])),
                  score_words(f["score_path"], f["ice_score"] if f["score_path"] != "capd"
                              else f["capd_score"]),
                  record_grade_text(rec.get("result") or {}), Text(note),
                  style="dim strike" if sup else None)
        shown += 1
        if shown % 500 == 0:
            con.print(t)
            t = block()
    if t.row_count or not shown:
        con.print(t)
    con.print(Text(f"{plural(shown, 'assessment')} · {plain(path)}", style="dim"))


@app.command("history", short_help="One patient's assessments, trend, falls and rises.")
@_pipe_safe
def history(
    patient: str = typer.Argument(..., help="The patient's pseudonym."),
    fmt: Optional[str] = TABLE_FORMAT_OPTION,
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Every assessment of one patient in time order, with the score trend and flags.

    Flags: the score fell since the previous assessment, the grade rose, the next assessment is
    overdue for the grade's reassessment cadence. Corrected records show as superseded.

    Example: icans history PT-001
    """
    import json

    from icans_cli.history import annotate, patient_entries
    from icans_cli.log import utc_now

    fmt = _pick_format(fmt, ("table", "jsonl", "csv"))
    path = _log_path(log_file)
    entries = patient_entries(_records(path, json.dumps(patient, ensure_ascii=False)), patient)
    if not entries:
        fail("no assessments of that patient in the log", ExitStatus.ERROR)
    flags = annotate(entries, utc_now())
    if fmt != "table":
        from icans_cli.term import data_out

        if fmt == "jsonl":
            for e in entries:
                out_rec = dict(e.record)
                out_rec["superseded_by"] = e.superseded_by
                out_rec["flags"] = e.flags
                data_out().write(json.dumps(out_rec, ensure_ascii=False) + "\n")
        else:
            _write_machine(fmt, [(e.record, e.superseded_by) for e in entries])
        for f in flags:
            warn(f)
        return
    from rich.table import Table
    from rich.text import Text

    from icans_cli.history import score_words
    from icans_cli.render import GRADE_STYLE, plural, record_grade_text, sparkline
    from icans_cli.term import out, plain

    con = out()
    current = [e for e in entries if not e.superseded_by]
    corrected = len(entries) - len(current)
    title = f"Patient {plain(patient)}: {plural(len(current), 'assessment')}"
    if corrected:
        title += f" ({plural(corrected, 'corrected record')} shown struck through, not counted)"
    t = Table(title=Text(title), title_justify="left")
    for col in ("assessed", "record", "assessor", "score", "grade", "drivers", "flags"):
        t.add_column(col)
    for e in entries:
        res = e.record.get("result") or {}
        grade = Text(record_grade_text(res), style=GRADE_STYLE.get(e.grade, "")
                     if e.status == "graded" else "bold black on yellow")
        note = "; ".join(e.flags)
        if e.superseded_by:
            note = f"SUPERSEDED by {plain(e.superseded_by)[:8]}"
        elif e.record.get("amends"):
            note = (f"corrects {plain(e.record['amends'])[:8]}" + ("; " + note if note else ""))
        t.add_row(e.assessed_at.astimezone().strftime("%Y-%m-%d %H:%M"),
                  Text(plain(e.id)[:8]), Text(plain(e.record.get("assessor", ""))),
                  score_words(e.score_path, e.score), grade,
                  ", ".join(res.get("drivers") or []) or "-",
                  Text(note, style="bold red" if e.flags else "dim"),
                  style="dim strike" if e.superseded_by else None)
    con.print(t)
    for path_name, low, high in (("ice", 0, 10), ("capd", 0, 32)):
        vals = [e.score for e in current if e.score_path == path_name]
        if vals:
            shown = [v for v in vals if v is not None]
            trend = f"{path_name.upper()} trend (oldest → newest, {low}-{high}" + \
                    (", higher is better" if path_name == "ice" else ", higher is worse") + "): "
            con.print(Text(trend + sparkline(vals, low, high) +
                           (f"  {shown[0]} → {shown[-1]}" if shown else "")))
    for f in flags:
        con.print(Text("FLAG: " + f, style="bold red"))


# --- assess -------------------------------------------------------------------------------------

@app.command("assess", short_help="The bedside interview: grade, what to do, when next.")
def assess(
    patient: Optional[str] = typer.Option(None, "--patient", help="The patient's pseudonym "
                                          "(never a name, record number or birth date)."),
    assessor: Optional[str] = typer.Option(None, "--assessor", help="Who assesses (default: "
                                           "$ICANS_ASSESSOR, else your user name)."),
    age: Optional[float] = typer.Option(None, "--age", min=0, max=130,
                                        help="Age in years (under 12: CAPD instead of ICE)."),
    weight: Optional[float] = typer.Option(None, "--weight", min=1, max=350,
                                           help="Weight in kg (asked for everyone under 18: "
                                                "children's doses are per kg)."),
    capd_baseline: Optional[int] = typer.Option(None, "--capd-baseline", min=0, max=32,
                                                help="CAPD documented before infusion (shown "
                                                     "beside the score; the grade stays "
                                                     "ASTCT)."),
    protocol: str = PROTOCOL_OPTION,
    save: bool = typer.Option(True, "--save/--no-save", help="--no-save: try it, save nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the saved record as JSON on "
                                 "stdout (the summary then goes to stderr)."),
    amends: Optional[str] = typer.Option(None, "--amends", metavar="RECORD_ID",
                                         help="Correct a logged record: start from its "
                                              "answers, save a correction that names it."),
    full: bool = typer.Option(False, "--full", help="Print the details (all advice, why, "
                              "sources) under the summary, without pressing d."),
    allow_id: bool = typer.Option(False, "--allow-id", help="Accept a pseudonym that looks "
                                  "like a name, record number or date (for sites whose "
                                  "pseudonyms look like that)."),
    assessed_at: Optional[str] = typer.Option(None, "--assessed-at", metavar="TIME",
                                              help="When the assessment was done, if you "
                                                   "enter it later: HH:MM today or an ISO "
                                                   "date-time; within the last 24 h "
                                                   "(default: now)."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Assess a patient at the bedside: ICE (or CAPD), the other ASTCT domains, CRS; then the
    grade, what to do now and when to look again on one screen (d for the details); saved to
    the log after you confirm. A patient already in the log is reassessed in a few keys.

    Example: icans assess --patient PT-001
    """
    from icans_cli.assess import run_assess

    run_assess(patient=patient, assessor=_assessor(assessor), age=age, weight=weight,
               capd_baseline=capd_baseline, protocol=_protocol(protocol),
               log_path=_log_path(log_file), save=save, as_json=as_json, amends=amends,
               allow_id=allow_id, full=full, assessed_at=assessed_at)


@app.command("show", short_help="A saved assessment's summary again (handover).")
def show(
    record_id: str = typer.Argument(..., metavar="RECORD_ID",
                                    help="A record id, or its first characters."),
    full: bool = typer.Option(False, "--full", help="Also print the details: all advice, "
                              "where guidelines disagree, why, sources."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Print the summary of a saved assessment, as assess showed it (for the handover).

    Example: icans show 0b881c63 --full
    """
    from icans_cli.assess import run_show

    run_show(record_id=record_id, log_path=_log_path(log_file), full=full)


# --- grade --------------------------------------------------------------------------------------

def _assessor(value: Optional[str]) -> str:
    """--assessor, else $ICANS_ASSESSOR, else the user name; validated like a pseudonym
    (printable, at most 64 characters), since it reaches the log and every listing."""
    import getpass
    import os

    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import validate_assessor

    where = "--assessor" if value else "ICANS_ASSESSOR"
    name = value or os.environ.get("ICANS_ASSESSOR")
    if not name:
        where = "the user name"
        try:
            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name available
            name = "unknown"
    try:
        return validate_assessor(name)
    except InvalidFinding as exc:
        fail(f"{where} {exc.detail}")


def _protocol(name: str):
    from icans_cli.core.protocol import ProtocolError
    from icans_cli.protocols import UnknownProtocol, load

    try:
        return load(name)
    except UnknownProtocol as exc:
        fail(str(exc))
    except ProtocolError as exc:
        for p in exc.problems[:20]:
            typer.echo(f"  {p}", err=True)
        fail(f"the protocol {name} cannot be used: {len(exc.problems)} problem"
             f"{'s' if len(exc.problems) != 1 else ''} (listed above; icans protocol check "
             f"{name})")


@app.command("grade", short_help="Grade exported assessments from CSV.")
def grade(
    file: str = typer.Argument(..., metavar="FILE|-", help="CSV file of assessments, or - for "
                               "standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write here instead of standard output."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f",
                                      help="csv (default when not a terminal), jsonl, json, "
                                           "or table (default on a terminal)."),
    protocol: str = PROTOCOL_OPTION,
    to_log: bool = typer.Option(False, "--log", help="Append each graded row to the assessment "
                                "log (source: batch). Invalid rows are never logged."),
    assessor: Optional[str] = typer.Option(None, "--assessor",
                                           help="Assessor for logged rows (default: "
                                                "$ICANS_ASSESSOR, else your user name)."),
    allow_id: bool = typer.Option(False, "--allow-id", help="Accept patient ids that look "
                                  "like a name, record number or date (for sites whose "
                                  "pseudonyms look like that)."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Grade exported assessments from CSV, one row at a time.

    Columns (case-insensitive, any order; unknown columns pass through): patient_id (required),
    assessed_at, age_years, weight_kg (children's doses are per kg), developmental_delay,
    ice_orientation, ice_naming, ice_commands, ice_writing, ice_attention, ice_score,
    capd_score, capd_baseline, consciousness, seizure, motor, icp_edema, excluded, sedated,
    crs_grade, product, weight_confirmed (a weight outside the usual range for the age);
    or, to grade the CRS from its findings instead of crs_grade: temperature_c, hypotension,
    vasopressors, vasopressin, oxygen, oxygen_flow_l_min, crs_treated, ventilation_reason
    (hypoxia or airway, with positive pressure).

    Exit status: 0 all rows valid, 1 some rows invalid (each says why), 2 the input cannot be used.

    Example: icans grade ward7.csv --format jsonl -o graded.jsonl
    """
    from icans_cli.batchrun import run_grade

    run_grade(file=file, output=output, fmt=fmt, protocol=_protocol(protocol), to_log=to_log,
              assessor=_assessor(assessor) if to_log else "",
              log_path=_log_path(log_file), allow_id=allow_id)


# --- due, export, protocols ---------------------------------------------------------------------

@app.command("due", short_help="The ward board: who is due or overdue, first.")
@_pipe_safe
def due(
    days: float = typer.Option(7, "--days", min=0.01, max=3650,
                               help="Patients with a record in the last N days (default 7)."),
    fmt: Optional[str] = TABLE_FORMAT_OPTION,
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """The ward board: who is due or overdue for the next ICE check, most overdue first.

    One row per patient assessed in the last N days: the last assessment, its grade, the
    trend, and when the next is due by the grade's cadence.

    Example: icans due --days 3
    """
    from icans_cli.history import due_board
    from icans_cli.log import utc_now

    if days != days:  # NaN passes every range check
        fail("--days must be a number of days from 0.01 to 3650")
    fmt = _pick_format(fmt, ("table", "jsonl", "csv"))
    path = _log_path(log_file)
    now = utc_now()
    rows = due_board(_records(path), now, days)
    if fmt == "table":
        _due_table(rows, now, days)
        return
    import csv
    import json

    from icans_cli.csvsafe import safe_cell

    from icans_cli.term import data_out

    flat = [_due_flat(d) for d in rows]
    stream = data_out()
    if fmt == "jsonl":
        for r in flat:
            stream.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    w = csv.writer(stream, lineterminator="\r\n")
    w.writerow(DUE_COLUMNS)
    for r in flat:
        w.writerow([safe_cell(r[c]) for c in DUE_COLUMNS])


DUE_COLUMNS = ("patient_id", "last_assessed_at", "record", "status", "icans_grade",
               "grade_at_least", "score_path", "score", "trend", "next_due_at", "overdue",
               "overdue_hours")


def _due_flat(d) -> dict:
    res = d.last.record.get("result") or {}
    return {"patient_id": d.patient_id,
            "last_assessed_at": d.last.assessed_at.isoformat(timespec="seconds"),
            "record": d.last.id, "status": d.last.status,
            "icans_grade": res.get("icans_grade"), "grade_at_least": res.get("grade_at_least"),
            "score_path": d.last.score_path, "score": d.last.score, "trend": d.trend,
            "next_due_at": d.due_at.isoformat(timespec="seconds") if d.due_at else None,
            "overdue": d.overdue, "overdue_hours": round(d.overdue_hours, 1)}


def _due_table(rows, now, days) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from icans_cli.history import score_words
    from icans_cli.render import GRADE_STYLE, plural, record_grade_text
    from icans_cli.term import out, plain

    if not rows:
        out().print(Text(f"No patient assessed in the last {days:g} days (now "
                         f"{now.astimezone().strftime('%H:%M')})."))
        return
    overdue = sum(1 for d in rows if d.overdue)
    today = now.astimezone().date()
    # Five columns that fit 80: the score column holds the trend ("ICE 10 → 8, worse").
    t = Table(title=Text(f"{plural(len(rows), 'patient')} assessed in the last {days:g} days; "
                         f"{overdue} overdue (now {now.astimezone().strftime('%H:%M')})"),
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True)
    t.add_column("patient", overflow="fold", max_width=14)
    t.add_column("last check", no_wrap=True)
    t.add_column("score, trend", min_width=17)
    t.add_column("grade", max_width=18)
    t.add_column("next due", no_wrap=True)
    for d in rows:
        res = d.last.record.get("result") or {}
        if d.due_at is None:
            due_text = Text("-")
        elif d.overdue:
            due_text = Text(f"OVERDUE {d.overdue_hours:.1f} h", style="bold white on red")
        else:
            due_text = Text(f"{d.due_at.astimezone().strftime('%H:%M')} "
                            f"(in {-d.overdue_hours:.1f} h)")
        if d.last.status == "graded":
            grade = Text(str(res.get("icans_grade")), style=GRADE_STYLE.get(d.last.grade, ""))
        else:
            floor = res.get("grade_at_least")
            grade = Text(f"≥{floor}, not assessable" if floor else "not assessable",
                         style="bold black on yellow")
        when = d.last.assessed_at.astimezone()
        score = score_words(d.last.score_path, d.last.score)
        trend = d.trend
        if trend == "first assessment":
            trend_text = f"{score}, first"
        elif "→" in trend and trend.startswith((d.last.score_path or "ice").upper()):
            trend_text = trend.replace(" (", ", ").rstrip(")")
        else:  # a score missing on one side: the grade then
            trend_text = f"{score}; was {trend.split(' → ')[0]}"
        t.add_row(Text(plain(d.patient_id)),
                  when.strftime("%H:%M" if when.date() == today else "%m-%d %H:%M"),
                  trend_text, grade, due_text)
    out().print(t)


@export_app.command("fhir", short_help="The log as a FHIR R4 Bundle (collection).")
@_pipe_safe
def export_fhir(
    patient: Optional[str] = typer.Option(None, "--patient", help="Only this pseudonym."),
    since: Optional[str] = typer.Option(None, "--since", help="Only assessments at or after "
                                        "this ISO date-time, or within a span: 24h, 7d."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write the Bundle here (a temporary file renamed "
                                               "when complete) instead of standard output."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """A FHIR R4 Bundle (type collection) of logged assessments: for each, a
    QuestionnaireResponse with the ICE (or CAPD) items, an Observation for the score and one
    for the ICANS grade (ICD-10-CM G92.01-G92.04), and a Provenance for a correction.

    Example: icans export fhir --patient PT-001 -o pt-001.fhir.json
    """
    import json

    from icans_cli import fhir
    from icans_cli.history import _time

    path = _log_path(log_file)
    if output is not None:
        from icans_cli.batchrun import check_paths

        check_paths("-", output, path, False)
    cutoff = _since(since)
    needle = json.dumps(patient, ensure_ascii=False) if patient else None
    recs = [r for _, r in _records(path, needle)
            if r.get("kind") != "practice_session"
            and (not patient or r.get("patient_id") == patient)
            and (not cutoff or _time(r.get("assessed_at")) >= cutoff)]
    text = json.dumps(fhir.bundle(recs), ensure_ascii=False, indent=1) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()  # a closed pipe is found here, before "exported" is said
    else:
        _write_file(output, text)
    from icans_cli.render import plural

    typer.echo(f"{plural(len(recs), 'assessment')} exported as a FHIR R4 Bundle"
               + (f" to {output}" if output else ""), err=True)


def _write_file(output: Path, text: str) -> None:
    """Through the same safe output as icans grade: a temporary file renamed when complete."""
    from icans_cli.batchrun import _Output, _write_error

    out = _Output(output)
    try:
        out.fh.write(text)
        out.commit()
    except OSError as exc:
        out.abort()
        fail(_write_error(exc, str(output)), ExitStatus.WRITE_FAILED)
    except BaseException:
        out.abort()
        raise


@protocol_app.command("list")
def protocol_list() -> None:
    """The built-in protocols, and which one is the default.

    Example: icans protocol list
    """
    from icans_cli.protocols import BUILTIN, default_name, load

    default = default_name()
    for name in BUILTIN:
        p = load(name)
        mark = "  (default)" if name == default else ""
        typer.echo(f"{p.id}  version {p.version}{mark}\n    {p.title}")
    if default not in BUILTIN:
        typer.echo(f"default from $ICANS_PROTOCOL: {default}")


@protocol_app.command("show", short_help="Print a protocol as JSON (to start your own).")
def protocol_show(
    name: str = typer.Argument(..., metavar="NAME|FILE", help="A built-in protocol, or a "
                               "protocol file."),
) -> None:
    """Print a protocol as JSON on standard output (to start a centre's own file from).

    Example: icans protocol show asco-2021 > our-protocol.json
    """
    from icans_cli.protocols import UnknownProtocol, builtin_bytes, is_file

    if is_file(name):
        _protocol(name)  # it must load
        data = Path(name).expanduser().read_bytes()
    else:
        try:
            data = builtin_bytes(name)
        except UnknownProtocol as exc:
            fail(str(exc))
    sys.stdout.write(data.decode("utf-8"))


@protocol_app.command("check", short_help="Check a protocol file: exit 0, or 2 naming each problem.")
def protocol_check(
    file: Path = typer.Argument(..., metavar="FILE", help="A protocol file (JSON)."),
) -> None:
    """Check a protocol file: exit 0 if it can be used, 2 naming each bad field.

    Checks every line's source and evidence level, that every dose is structured (no amount in
    free text), that a child never sees an adult fixed amount, the sections and conditions, and
    that every grade has a corticosteroid line.

    Example: icans protocol check our-protocol.json
    """
    from icans_cli.core.protocol import ProtocolError
    from icans_cli.protocols import parse

    try:
        data = file.expanduser().read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    try:
        p = parse(data, str(file))
    except ProtocolError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        fail(f"{file}: {len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}; "
             "it cannot be used")
    typer.echo(f"OK: {p.id} version {p.version}: {len(p.rules)} lines, "
               f"{len(p.disagreements)} disagreements; sha256 {p.sha256}")


# --- practice and explain -----------------------------------------------------------------------

@app.command("practice", short_help="Teaching cases with feedback (trainees).")
def practice(
    count: int = typer.Option(5, "--count", "-n", min=1, max=100, help="Cases this session."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Repeat a session exactly."),
    topic: Optional[str] = typer.Option(None, "--topic",
                                        help="adult, pediatric, crs or pitfalls."),
    case: Optional[list[str]] = typer.Option(None, "--case", help="Practise these case ids "
                                             "(repeatable), e.g. --case A15."),
    show_history: bool = typer.Option(False, "--history", help="Show progress across saved "
                                      "sessions and exit."),
    trainee: Optional[str] = typer.Option(None, "--trainee", help="Name on the saved session "
                                          "(default: $ICANS_ASSESSOR, else your user name)."),
    save: bool = typer.Option(True, "--save/--no-save", help="Save the session's results."),
) -> None:
    """Practise on teaching cases: score ICE or CAPD, grade ICANS, choose management, and get
    feedback after every answer. Results go to their own file (practice.jsonl), never to the
    patient log.

    Example: icans practice --count 5 --topic pitfalls --seed 7
    """
    from icans_cli.log import PRACTICE_FILENAME, data_dir
    from icans_cli.practice import TOPICS
    from icans_cli.term import err

    path = data_dir() / PRACTICE_FILENAME
    if show_history:
        from icans_cli.practice.quiz import history

        from icans_cli.term import out

        history(path, out())
        return
    if topic is not None and topic not in TOPICS:
        fail(f"--topic must be one of {', '.join(TOPICS)}")
    from icans_cli.assess import interactive_input_available, prompt_session

    if not interactive_input_available():
        fail("icans practice is interactive and needs a terminal (icans practice --history "
             "works anywhere).")
    import random

    from icans_cli.practice.quiz import pick_cases, render_summary, run_session, session_body

    seed = seed if seed is not None else random.SystemRandom().randrange(10**6)
    try:
        cases = pick_cases(count, seed, topic, case or ())
    except LookupError as exc:
        fail(str(exc))
    protocol = _protocol("asco-2021")
    con = err()
    con.print(f"icans practice · {len(cases)} cases · seed {seed} (repeat with --seed {seed}) "
              "· Ctrl-C stops without saving")
    try:
        with prompt_session():
            summary = run_session(cases, protocol, con)
    except (KeyboardInterrupt, EOFError):
        typer.echo("\nPractice stopped: this session was not saved.", err=True)
        raise typer.Exit(ExitStatus.INTERRUPTED)
    from icans_cli.term import out

    render_summary(summary, out())
    if save:
        from icans_cli import log
        from icans_cli.practice.quiz import save as save_session

        try:
            save_session(path, session_body(summary, seed=seed, topic=topic,
                                            protocol_id=protocol.id,
                                            trainee=_assessor(trainee)))
        except log.LogError as exc:
            fail(str(exc), ExitStatus.ERROR)
        con.print(f"Saved to {path} (see icans practice --history).")


@app.command("explain", short_help="The grading, the drugs and the biology, sourced.")
def explain(
    topic: Optional[str] = typer.Argument(None, help="A topic; none lists them."),
    csf_albumin: Optional[float] = typer.Option(None, "--csf-albumin", metavar="MG_L",
                                                help="qalb: CSF albumin in mg/L."),
    serum_albumin: Optional[float] = typer.Option(None, "--serum-albumin", metavar="G_L",
                                                  help="qalb: serum albumin in g/L."),
    age: Optional[float] = typer.Option(None, "--age", metavar="YEARS",
                                        help="qalb: age in years, for the reference limit."),
) -> None:
    """Explain the grading, the drugs and the biology, with sources and evidence levels.

    \b
    Examples:
      icans explain tocilizumab
      icans explain qalb --csf-albumin 450 --serum-albumin 40 --age 55
    """
    from icans_cli.explain import TOPICS, find_topic

    tp = None
    if topic is not None:
        tp, suggestion = find_topic(topic)
        if tp is None:
            hint = f" Did you mean {suggestion}?" if suggestion else ""
            fail(f"no topic {topic!r}.{hint} Topics: {', '.join(x.key for x in TOPICS)}")
    given = [name for name, v in (("--csf-albumin", csf_albumin),
                                  ("--serum-albumin", serum_albumin), ("--age", age))
             if v is not None]
    if given and (tp is None or tp.key != "qalb"):
        fail(f"{', '.join(given)} only go with the qalb topic: icans explain qalb "
             "--csf-albumin MG_L --serum-albumin G_L --age YEARS")
    q = None
    if given:
        if None in (csf_albumin, serum_albumin, age):
            fail("qalb needs all three: --csf-albumin MG_L --serum-albumin G_L --age YEARS")
        from icans_cli.core.errors import InvalidFinding
        from icans_cli.core.qalb import qalb

        try:
            q = qalb(csf_albumin, serum_albumin, age)  # type: ignore[arg-type]
        except InvalidFinding as exc:
            fail(str(exc))
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from icans_cli.term import out

    con = out()
    if tp is None:
        t = Table(title="icans explain TOPIC", title_justify="left")
        t.add_column("topic")
        t.add_column("what it covers")
        for x in TOPICS:
            t.add_row(x.key, x.title)
        con.print(t)
        return
    body = Text("\n\n".join(tp.paragraphs))
    con.print(Panel(body, title=tp.title, expand=True))
    if tp.key == "grading":
        con.print(_grading_table(con.width))
    src = Table(title="Sources", title_justify="left", show_header=True)
    src.add_column("source", ratio=1)
    src.add_column("evidence")
    for name, level in tp.sources:
        src.add_row(name, Text(level, style="yellow" if level == "UNVERIFIED" else ""))
    con.print(src)
    if q is not None:
        from icans_cli.core.qalb import LIMIT_NAME

        verdict = ("ABOVE the limit: consistent with blood-CSF barrier dysfunction"
                   if q.above else "within the limit")
        con.print(Text.assemble(
            ("Q_alb = ", "bold"), f"{csf_albumin:g} mg/L / {serum_albumin:g} g/L = ",
            (f"{q.qalb_e3:.2f} x10^-3", "bold"),
            f"; upper reference limit at age {age:g}: {q.limit_e3:.2f} x10^-3 ({LIMIT_NAME}). ",
            (verdict + ".", "bold red" if q.above else "bold green"),
            ("\nContext only: Q_alb is not part of ASTCT ICANS grading.", "italic")))


def _grading_table(width: int = 120):
    """The ASTCT table from the grading rules themselves: domains by grade when there is room,
    else one block per grade, so no cell is cut at 80 columns."""
    from rich.table import Table

    from icans_cli.core.grading import CONSCIOUSNESS, ICP_EDEMA, MOTOR, SEIZURE, ice_domain_grade

    rows: list[tuple[str, list[str]]] = []

    def row(name, table):
        cells = ["-"] * 5
        for value, (g, desc) in table.items():
            cells[g] = desc if cells[g] == "-" else cells[g] + "; " + desc
        rows.append((name, cells))

    ice = []
    for g in range(4):
        scores = [s for s in range(11) if ice_domain_grade(s) == g]
        ice.append(str(scores[0]) if len(scores) == 1 else f"{scores[0]}-{scores[-1]}")
    ice.append("not performed: unarousable")
    rows.append(("ICE (12 and over)", ice))
    rows.append(("CAPD (under 12)", ["0", "1-8", "1-8 (and awakens to voice)", "9 or more",
                                     "not performed: unarousable"]))
    row("consciousness", CONSCIOUSNESS)
    row("seizure", SEIZURE)
    row("motor", MOTOR)
    row("ICP / edema", {"none": (0, "none"), **ICP_EDEMA})
    title = "ASTCT 2019 ICANS grading (from the tool's own rules)"
    if width >= 140:
        t = Table(title=title, title_justify="left")
        t.add_column("domain")
        for g in range(5):
            t.add_column(f"grade {g}")
        for name, cells in rows:
            t.add_row(name, *cells)
        return t
    t = Table(title=title, title_justify="left", show_header=True)
    t.add_column("grade", no_wrap=True)
    t.add_column("domain", no_wrap=True)
    t.add_column("finding", ratio=1)
    for g in range(5):
        first = True
        for name, cells in rows:
            if cells[g] != "-":
                t.add_row(f"grade {g}" if first else "", name, cells[g],
                          end_section=False)
                first = False
        t.add_section()
    return t


def _sanitize(message: str) -> str:
    """A usage message without the values typed: they could be patient data (an id typed where
    an option was expected, a pseudonym in a wrong place)."""
    import re

    message = re.sub(r"No such command '[^']*'\.?",
                     "No such command (what was typed is not shown: it could be patient data). "
                     "Commands: assess, show, due, history, grade, export, log, protocol, "
                     "practice, explain.", message)
    message = re.sub(r"unexpected extra argument(?:s|\(s\))? \([^)]*\)",
                     "unexpected extra argument(s) (not shown: they could be patient data)",
                     message)
    return re.sub(r"'([^']*)'", lambda m: m.group(0) if m.group(1).startswith("-")
                  or m.group(1).startswith("icans") else "the value given", message)


def main() -> None:
    """Entry point: never a traceback for the user (ICANS_DEBUG=1 shows one), never a typed
    value echoed in a usage error."""
    import os

    # A console or pipe that is not UTF-8 (Windows cp1252, LANG=C): unprintable signs such as
    # "≥" become "?" instead of a UnicodeEncodeError halfway through a summary.
    for stream in (sys.stdout, sys.stderr):
        enc = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if enc != "utf8" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
    # click's exceptions, wherever this typer keeps click (its own copy from 0.26 on)
    mro = typer.BadParameter.__mro__
    usage_error = next(c for c in mro if c.__name__ == "UsageError")
    click_error = next(c for c in mro if c.__name__ == "ClickException")
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # the help itself, asked for by giving nothing
            raise SystemExit(int(ExitStatus.OK))
        usage_error(_sanitize(exc.format_message()), ctx=exc.ctx).show()
        raise SystemExit(int(ExitStatus.USAGE))
    except click_error as exc:
        click_error(_sanitize(exc.format_message())).show()
        raise SystemExit(exc.exit_code)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("\nInterrupted: nothing was saved.", err=True)
        raise SystemExit(int(ExitStatus.INTERRUPTED))
    except BrokenPipeError:
        from icans_cli.batchrun import _silence_stdout

        _silence_stdout()
        raise SystemExit(int(ExitStatus.PIPE))
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if os.environ.get("ICANS_DEBUG"):
            raise
        typer.echo(f"Internal error ({type(exc).__name__}); nothing was saved by the failing "
                   "step. Please report it; run with ICANS_DEBUG=1 for details.", err=True)
        raise SystemExit(int(ExitStatus.ERROR))
    raise SystemExit(code if isinstance(code, int) else 0)
