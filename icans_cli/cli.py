"""The typer app: parses options, calls the modules, maps exceptions to messages and exit codes.

Heavy or optional modules (questionary, the protocol data, the log, rich rendering) are imported
inside the commands that need them, so `icans --help` stays fast (a test guards this).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional

import typer

from icans_cli import __version__
from icans_cli.exit import ExitStatus, Stopped

from typer.core import TyperGroup  # noqa: E402

HELP = {"help_option_names": ["-h", "--help"]}
ORDER = ("assess", "show", "due", "history", "grade", "export", "log", "protocol", "practice",
         "explain", "db",
         # the log's and db's own commands
         "verify", "head", "acknowledge-tail", "sync", "import", "path", "init", "status")


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
log_app = typer.Typer(help="The assessment log: what it holds, whether it is intact, where "
                           "it is.", no_args_is_help=True, rich_markup_mode=None,
                      context_settings=HELP, cls=_InOrder)
app.add_typer(log_app, name="log", short_help="The log: show, verify, head, sync, path.")
protocol_app = typer.Typer(help="Management protocols: the built-in ones, and checking a "
                                "centre's own protocol file.", no_args_is_help=True,
                           rich_markup_mode=None, context_settings=HELP)
app.add_typer(protocol_app, name="protocol",
              short_help="Protocols: list, show, check a centre's own file.")
export_app = typer.Typer(help="Export logged assessments for other systems.",
                         no_args_is_help=True, rich_markup_mode=None, context_settings=HELP)
app.add_typer(export_app, name="export", short_help="The log for other systems (FHIR R4).")

def _complete(kind: str):
    """Shell completion of an option's values (the module is imported only when completing)."""
    def complete(incomplete: str) -> list[str]:
        from icans_cli import completion

        return getattr(completion, kind)(incomplete)
    return complete


LOG_FILE_OPTION = typer.Option(None, "--log-file", help="Log file to use instead of "
                               "$ICANS_DATA_DIR or the platform data directory.")
PROTOCOL_OPTION = typer.Option("asco-2021", "--protocol", "-p", envvar="ICANS_PROTOCOL",
                               metavar="NAME|FILE",
                               autocompletion=_complete("protocols"),
                               help="Management protocol: asco-2021, cartox-2018, or a protocol "
                                    "file (icans protocol check FILE). Default: "
                                    "$ICANS_PROTOCOL, else asco-2021.")


def echo_wrapped(text: str, err: bool = False) -> None:
    """A message wrapped at the terminal's width between words (a path or a word is never cut
    in two); as it is into a file or a pipe."""
    from icans_cli.term import is_terminal

    if is_terminal(sys.stderr if err else sys.stdout):
        import shutil
        import textwrap

        width = max(40, shutil.get_terminal_size().columns - 1)
        text = "\n".join(textwrap.fill(part, width=width, break_long_words=False,
                                       break_on_hyphens=False, subsequent_indent="  ")
                         for part in text.split("\n"))
    typer.echo(text, err=err)


def fail(message: str, code: ExitStatus = ExitStatus.USAGE) -> NoReturn:
    echo_wrapped(f"Error: {message}", err=True)
    raise typer.Exit(int(code))


def warn(message: str) -> None:
    echo_wrapped(f"warning: {message}", err=True)


def warn_plain(message: str) -> None:
    """A note on stderr that is not a warning (what an export did)."""
    echo_wrapped(message, err=True)


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


# --- the store: every command reads and writes through it ---------------------------------------

def _log_path(log_file: Optional[Path]) -> Path:
    """The log file a command uses when the store is a file; a log or data directory readable
    by others is said once, whichever command touches it (it holds patient data)."""
    from icans_cli.store.jsonl import permission_warnings, resolve_path

    path = resolve_path(log_file)
    for w in permission_warnings(path):
        warn(w)
    return path


def _send_outbox(store) -> None:
    """Records kept on this workstation (a bedside save the log could not take) are sent
    first, each once, whichever command runs next."""
    sent, left, problems = store.sync()
    if not (sent or left):
        return
    from icans_cli.render import plural

    if sent:
        warn(f"{plural(sent, 'assessment')} kept on this workstation "
             f"{'were' if sent != 1 else 'was'} now saved to the log ({store.where})")
    if left:
        warn(f"{plural(left, 'assessment')} still kept on this workstation, not yet on the "
             f"log ({problems[0] if problems else 'will be sent by the next command'}); "
             "icans log sync sends them")


@contextmanager
def _opened(log_file: Optional[Path], *, must_exist: bool = False,
            send: bool = True) -> Iterator[Any]:
    """The store (the ward's database with ICANS_DATABASE_URL, else the file), its errors as
    messages and exit codes: a store that cannot be used 2, one that cannot be reached or stays
    locked 1, output that could not be written whole 3."""
    from icans_cli import store as st
    from icans_cli.views import OutputFailed

    try:
        s = st.open_store(log_file)
    except st.Unavailable as exc:
        fail(str(exc), ExitStatus.ERROR)
    except st.StoreError as exc:
        fail(str(exc))
    if s.kind == "file":
        _log_path(log_file)
    try:
        with s:
            if must_exist and not s.exists():
                fail(f"no log at {s.where}: nothing has been saved there (icans log path "
                     "shows the log in use; --log-file or ICANS_DATA_DIR may be mistyped)",
                     ExitStatus.ERROR)
            if send:
                _send_outbox(s)
            yield s
    except (st.Unavailable, st.LockTimeout) as exc:
        fail(str(exc), ExitStatus.ERROR)
    except st.StoreError as exc:
        fail(str(exc))
    except OutputFailed as exc:
        fail(str(exc), ExitStatus.WRITE_FAILED)


def _problems():
    """How a reader names a line it skips (and an altered record it flags): on stderr."""
    def report(p) -> None:
        warn(f"log {p}")
    return report


@log_app.command("path", short_help="Print the log in use.")
def log_path(log_file: Optional[Path] = LOG_FILE_OPTION) -> None:
    """Print the log in use: the file (--log-file, else $ICANS_DATA_DIR, else the platform
    default), or the ward's database when ICANS_DATABASE_URL is set (without its password).

    Example: icans log path
    """
    import os

    from icans_cli.store import DATABASE_URL_ENV

    if os.environ.get(DATABASE_URL_ENV) and not log_file:
        with _opened(None, send=False) as s:
            typer.echo(s.where)
        return
    typer.echo(str(_log_path(log_file)))


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
    from icans_cli.store import Head
    from icans_cli.views import verify_report

    expect = None
    if head is not None:
        try:
            expect = Head.parse(head)
        except ValueError as exc:
            fail(f"--head {exc}")
    with _opened(log_file, must_exist=True) as s:
        said, errs, intact = verify_report(s.verify(expect), expect, s.where)
    for line in said:
        echo_wrapped(line)
    for line in errs:
        echo_wrapped(line, err=True)
    raise typer.Exit(ExitStatus.OK if intact else ExitStatus.ERROR)


@log_app.command("head", short_help="Print SEQ:HASH of the last record, to keep.")
def log_head(log_file: Optional[Path] = LOG_FILE_OPTION) -> None:
    """Print SEQ:HASH of the last record, to keep elsewhere and check with verify --head.

    Example: icans log head
    """
    with _opened(log_file, must_exist=True) as s:
        h = s.head()
        if h is None:
            fail(f"the log at {s.where} holds no records", ExitStatus.ERROR)
    typer.echo(str(h))


@log_app.command("acknowledge-tail", short_help="Record that a torn line holds no record.")
def log_acknowledge_tail(log_file: Optional[Path] = LOG_FILE_OPTION) -> None:
    """After a write was cut short (a crash, a full disk), append a record naming each torn or
    unreadable fragment (its line, byte range and SHA-256). `icans log verify` then reports it
    as acknowledged instead of BROKEN. Look at the fragment first: it is never removed.

    Example: icans log acknowledge-tail
    """
    with _opened(log_file, must_exist=True) as s:
        rec = s.acknowledge_tail()
    if rec is None:
        typer.echo("Nothing to acknowledge: no torn or unreadable line.")
        return
    frag = rec.get("fragment") or {}
    typer.echo(f"Acknowledged: line {frag.get('line')} (bytes {frag.get('bytes')}, sha256 "
               f"{str(frag.get('sha256'))[:16]}...) in record #{rec.get('seq')}; "
               "icans log verify now reports it as acknowledged.")


@log_app.command("sync", short_help="Send the assessments kept on this workstation.")
def log_sync(log_file: Optional[Path] = LOG_FILE_OPTION) -> None:
    """Send the bedside assessments this workstation kept because the log could not take them
    (a lock held too long, the ward's server away), each exactly once. Every command does this
    first anyway; this says what happened.

    Example: icans log sync
    """
    from icans_cli.render import plural

    with _opened(log_file, send=False) as s:
        sent, left, problems = s.sync()
        if not (sent or left):
            typer.echo(f"Nothing kept on this workstation for {s.where}.")
            return
    typer.echo(f"{plural(sent, 'assessment')} sent to {s.where}"
               + (f"; {left} still kept on this workstation ({problems[0]})" if left else "."))
    if left:
        raise typer.Exit(ExitStatus.ERROR)


@log_app.command("import", short_help="Copy a local log's records into the log, once each.")
def log_import(
    file: Path = typer.Argument(..., metavar="FILE", help="A local icans log (JSON Lines)."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Copy the records of a local log (a workstation's file) into the log in use, usually
    the ward's database (ICANS_DATABASE_URL), each exactly once: importing the same file again
    copies nothing. A line that cannot be read, or a record that fails the file's chain, is
    not copied and is named.

    Example: ICANS_DATABASE_URL=postgresql://... icans log import ~/.local/share/icans/assessments.jsonl
    """
    from icans_cli.dbcmd import log_import as copy_in
    from icans_cli.render import plural

    done = {"imported": 0, "already": 0}
    try:
        with _opened(log_file) as s:
            if s.kind == "file" and Path(s.where).expanduser().resolve() == \
                    file.expanduser().resolve():
                fail("FILE is the log in use: nothing to import")
            r = copy_in(s, file, done)
    except (KeyboardInterrupt, typer.Exit) as exc:
        if done["imported"] or done["already"]:  # stopped midway: how far it got
            warn(f"stopped after {plural(done['imported'], 'record')} imported and "
                 f"{done['already']:,} found already there; importing the same file again "
                 "copies the rest, each once")
        if isinstance(exc, KeyboardInterrupt):
            typer.echo(f"\n{INTERRUPTED_SAID}", err=True)
            raise typer.Exit(ExitStatus.INTERRUPTED) from None
        raise
    for line in r.skipped[:20]:
        warn(f"{file}: {line}")
    if len(r.skipped) > 20:
        warn(f"{file}: ... and {len(r.skipped) - 20} more not copied")
    typer.echo(f"{plural(r.imported, 'record')} imported into {s.where}; "
               f"{r.already:,} already there; {len(r.skipped):,} not copied.")
    if r.skipped:
        raise typer.Exit(ExitStatus.ERROR)


FORMATS_LOG = ("table", "jsonl", "csv")


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


def _since(value: Optional[str], option: str = "--since"):
    if not value:
        return None
    from icans_cli.views import parse_since

    try:
        return parse_since(value, option)
    except ValueError as exc:
        fail(str(exc))


TABLE_FORMAT_OPTION = typer.Option(None, "--format", "-f", autocompletion=_complete("formats"),
                                   help="table (default on a terminal), jsonl (default "
                                        "otherwise) or csv.")


@log_app.command("show", short_help="The assessments, oldest first; ALTERED flagged.")
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
    """List logged assessments, oldest first (streamed: any size of log). A record that
    fails the chain is shown flagged "ALTERED"; a line that cannot be read is named on stderr.

    Example: icans log show --patient PT-001 --since 24h --format csv
    """
    from icans_cli import views

    fmt = _pick_format(fmt, FORMATS_LOG)
    cutoff = _since(since)
    with _opened(log_file, must_exist=True) as s:
        views.log_show(s, fmt, patient=patient, since=cutoff, min_grade=min_grade,
                       on_problem=_problems())


@app.command("history", short_help="One patient's assessments, trend, falls and rises.")
@_pipe_safe
def history(
    patient: str = typer.Argument(..., metavar="PATIENT", help="The patient's pseudonym.",
                                  autocompletion=_complete("patients")),
    fmt: Optional[str] = TABLE_FORMAT_OPTION,
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Every assessment of one patient in time order, with the score trend and flags.

    Flags: the score fell since the previous assessment, the grade rose, the next assessment is
    overdue for the grade's reassessment cadence. Corrected records show as superseded; a
    record that fails the chain shows as ALTERED and is not counted.

    Example: icans history PT-001
    """
    from icans_cli import views
    from icans_cli.store.chain import utc_now

    from contextlib import nullcontext

    from icans_cli.term import paging

    fmt = _pick_format(fmt, FORMATS_LOG)
    with _opened(log_file, must_exist=True) as s:
        with paging() if fmt == "table" else nullcontext():
            found = views.history(s, patient, fmt, utc_now(), _problems(), warn)
        if not found:
            fail("no assessments of that patient in the log", ExitStatus.ERROR)


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

    who, proto = _assessor(assessor), _protocol(protocol)
    with _opened(log_file) as s:
        run_assess(patient=patient, assessor=who, age=age, weight=weight,
                   capd_baseline=capd_baseline, protocol=proto, store=s, save=save,
                   as_json=as_json, amends=amends, allow_id=allow_id, full=full,
                   assessed_at=assessed_at)


@app.command("show", short_help="A patient's latest summary, or a record's (handover).")
def show(
    what: Optional[str] = typer.Argument(None, metavar="[PATIENT|RECORD_ID]",
                                         help="A pseudonym (the patient's latest assessment), "
                                              "or a record id or its first characters; none: "
                                              "the last assessment saved.",
                                         autocompletion=_complete("patients_and_records")),
    full: bool = typer.Option(False, "--full", help="Also print the details: all advice, "
                              "where guidelines disagree, why, sources."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """Print the summary of a saved assessment as assess showed it, for the handover: a
    patient's latest (with how long ago, and OVERDUE when the next check is late), a given
    record, or the last one saved.

    \b
    Examples:
      icans show PT-001
      icans show 0b881c63 --full
    """
    from icans_cli.assess import run_show

    with _opened(log_file, must_exist=True) as s:
        run_show(what=what, store=s, full=full)


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
                                      autocompletion=_complete("grade_formats"),
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
    assessed_now: bool = typer.Option(False, "--assessed-now", help="With --log: log rows "
                                      "without an assessed_at at the time of this run "
                                      "(without it they are graded, not logged)."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
    jobs: int = typer.Option(2, "--jobs", min=1, max=2,
                             help="Processes for a large plain CSV file graded to CSV (2: the "
                                  "second half by a second process, when the machine has two "
                                  "processors; the output is the same)."),
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
    import os

    from icans_cli.batchrun import run_grade
    from icans_cli.store import DATABASE_URL_ENV

    if to_log and (log_file or not os.environ.get(DATABASE_URL_ENV)):
        _log_path(log_file)  # a log readable by others is said

    run_grade(file=file, output=output, fmt=fmt, protocol=_protocol(protocol), to_log=to_log,
              assessor=_assessor(assessor) if to_log else "",
              log_file=log_file, allow_id=allow_id, assessed_now=assessed_now, jobs=jobs)


# --- the ward's database ------------------------------------------------------------------------

db_app = typer.Typer(help="The ward's shared log on PostgreSQL (ICANS_DATABASE_URL): set it "
                          "up, see how it stands.", no_args_is_help=True,
                     rich_markup_mode=None, context_settings=HELP, cls=_InOrder)
app.add_typer(db_app, name="db", short_help="The ward's shared log on PostgreSQL.")


def _database_url() -> str:
    import os

    from icans_cli.store import DATABASE_URL_ENV

    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        fail(f"{DATABASE_URL_ENV} is not set: give the ward log's libpq URL, e.g. "
             "postgresql://icans@dbhost/icans?sslmode=verify-full")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        fail("the ward log needs psycopg: pip install 'icans-cli[postgres]'")
    return url


@db_app.command("init", short_help="Create the ward log (idempotent).")
def db_init(
    writer_role: Optional[str] = typer.Option(None, "--writer-role", metavar="ROLE",
                                              help="An existing role the workstations use: "
                                                   "granted SELECT and INSERT only."),
) -> None:
    """Create the ward log in the database ICANS_DATABASE_URL names, as its owner: schema
    icans, the table, its indexes and the triggers that refuse UPDATE, DELETE and TRUNCATE to
    every role. Running it again changes nothing (and turns the triggers back on).

    Example: icans db init --writer-role icans_ward
    """
    import re

    from icans_cli import store as st
    from icans_cli.dbcmd import db_init as init

    url = _database_url()
    if writer_role is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}",
                                                    writer_role):
        fail("--writer-role must be a role name: letters, digits and _ (at most 63)")
    try:
        typer.echo(init(url, writer_role))
    except st.Unavailable as exc:
        fail(str(exc), ExitStatus.ERROR)
    except st.StoreError as exc:
        fail(str(exc))


@db_app.command("status", short_help="The server, the schema, the rows, what waits here.")
def db_status() -> None:
    """How the ward log stands from this workstation: reachable or not, the server and schema
    versions, the records and the head, whether the append-only triggers are on, and the
    assessments this workstation keeps that are not yet on it. Exit 1 when it cannot be
    reached or is not set up.

    Example: icans db status
    """
    from icans_cli.dbcmd import db_status as status
    from icans_cli.dbcmd import status_lines
    from icans_cli.store import outbox_for
    from icans_cli.store.postgres import PostgresStore

    url = _database_url()
    s = status(url, outbox_for(PostgresStore(url)))
    for line in status_lines(s):
        typer.echo(line)
    if s.get("error"):
        echo_wrapped(f"Error: {s['error']}", err=True)
        raise typer.Exit(ExitStatus.ERROR)


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
    trend, and when the next is due by the grade's cadence. A record that fails the chain, or
    one dated in the future, never becomes a patient's latest (each is said).

    Example: icans due --days 3
    """
    from icans_cli import views
    from icans_cli.store.chain import utc_now

    if days != days:  # NaN passes every range check
        fail("--days must be a number of days from 0.01 to 3650")
    fmt = _pick_format(fmt, FORMATS_LOG)
    with _opened(log_file, must_exist=True) as s:
        views.due(s, utc_now(), days, fmt, _problems(), warn)


@export_app.command("fhir", short_help="The log as a FHIR R4 Bundle (collection or "
                                       "transaction).")
@_pipe_safe
def export_fhir(
    patient: Optional[str] = typer.Option(None, "--patient", help="Only this pseudonym.",
                                          autocompletion=_complete("patients")),
    since: Optional[str] = typer.Option(None, "--since", help="Only records RECORDED (saved) "
                                        "at or after this ISO date-time, or within a span: "
                                        "24h, 7d; a correction saved today of yesterday's "
                                        "assessment is included."),
    after_seq: Optional[int] = typer.Option(None, "--after-seq", min=0, metavar="N",
                                            help="Only records after log sequence number N "
                                                 "(the last one exported is printed on "
                                                 "stderr: resume from it)."),
    transaction: bool = typer.Option(False, "--transaction", help="A transaction Bundle to "
                                     "POST to a FHIR server's base URL: every entry a PUT on "
                                     "stable ids (sending again is harmless); a correction "
                                     "replaces what it corrects."),
    patient_system: Optional[str] = typer.Option(None, "--patient-system", metavar="URI",
                                                 envvar="ICANS_PATIENT_SYSTEM",
                                                 help="The identifier system of the "
                                                      "pseudonyms (your hospital's; default "
                                                      "$ICANS_PATIENT_SYSTEM, else icans-cli's)."),
    allow_broken: bool = typer.Option(False, "--allow-broken", help="Export from a log that "
                                      "fails its chain: the records that pass, naming what is "
                                      "left out (without it, such a log is refused)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write the Bundle here (a temporary file renamed "
                                               "when complete) instead of standard output."),
    log_file: Optional[Path] = LOG_FILE_OPTION,
) -> None:
    """A FHIR R4 Bundle of logged assessments: for each, a QuestionnaireResponse with the ICE
    (or CAPD) items, an Observation for the score and one for the ICANS grade (ICD-10-CM
    G92.01-G92.04), the weight, and a Provenance for a correction; the Questionnaires and the
    CodeSystem they use. Only a log that passes its chain is exported; the Bundle names the
    log head it was made from. UTF-8, one line ending, whatever the console.

    \b
    Examples:
      icans export fhir --patient PT-001 -o pt-001.fhir.json
      icans export fhir --transaction --after-seq 1200 -o batch.json
    """
    from icans_cli import exporting
    from icans_cli.render import plural

    cutoff = _since(since)
    if patient_system is not None:
        try:
            exporting.check_patient_system(patient_system)
        except ValueError as exc:
            fail(str(exc))
    with _opened(log_file, must_exist=True) as s:
        try:
            summary, p = exporting.run(s, output, patient=patient, since=cutoff,
                                       after_seq=after_seq, allow_broken=allow_broken,
                                       transaction=transaction, patient_system=patient_system,
                                       left_out=lambda m: warn(f"left out: {m}"))
        except exporting.Refused as exc:
            fail(str(exc), ExitStatus.ERROR)
    said = f"{plural(summary.assessments, 'assessment')} exported as a FHIR R4 " + \
        ("transaction" if transaction else "collection") + " Bundle" + \
        (f" to {output}" if output else "")
    if summary.superseded:
        said += f" ({plural(len(summary.superseded), 'corrected record')} replaced by " \
                "their corrections)"
    if p.altered_lines:
        said += f"; {plural(len(p.altered_lines), 'ALTERED record')} left out"
    warn_plain(said)
    if summary.last_seq is not None:
        warn_plain(f"last sequence number exported: {summary.last_seq} (resume with "
                   f"--after-seq {summary.last_seq})")


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
        from icans_cli.protocols import read_file

        _protocol(name)  # it must load
        data = read_file(Path(name).expanduser())
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
    from icans_cli.protocols import parse, read_file

    try:
        data = read_file(file.expanduser())
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

    from icans_cli.term import paging

    with paging():
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
    topic: Optional[str] = typer.Argument(None, metavar="[TOPIC]", help="A topic; none lists "
                                          "them.", autocompletion=_complete("topics")),
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
    from icans_cli.explain import render
    from icans_cli.term import out, paging

    with paging():
        render(out(), tp, q, csf_albumin, serum_albumin, age)


KNOWN_WORDS = frozenset(ORDER) | {"fhir", "list", "check", "show", "path",
                                  # the arguments' own names (metavars)
                                  "PATIENT", "RECORD_ID", "FILE", "FILE|-", "NAME|FILE",
                                  "[PATIENT|RECORD_ID]", "TOPIC", "[TOPIC]"}


def _sanitize(message: str) -> str:
    """A usage message without the values typed: they could be patient data (an id typed where
    an option was expected, a pseudonym in a wrong place). Command and option names, which are
    ours, are named back; the message is wrapped at the terminal's width between words."""
    import re

    message = re.sub(r"No such command '[^']*'\.?",
                     "No such command (what was typed is not shown: it could be patient data). "
                     "Commands: " + ", ".join(n for n in ORDER if n in KNOWN_WORDS
                                                and n not in ("verify", "head", "sync", "import",
                                                              "path", "init", "status",
                                                              "acknowledge-tail")) + ".",
                     message)
    message = re.sub(r"unexpected extra argument(?:s|\(s\))? \([^)]*\)",
                     "unexpected extra argument(s) (not shown: they could be patient data)",
                     message)
    message = re.sub(r"'([^']*)'", lambda m: m.group(0) if m.group(1).startswith("-")
                     or m.group(1).startswith("icans") or m.group(1) in KNOWN_WORDS
                     else "(not shown)", message)
    from icans_cli.term import is_terminal

    if is_terminal(sys.stderr):
        import shutil
        import textwrap

        width = max(40, shutil.get_terminal_size().columns - 1)
        message = "\n".join(textwrap.fill(part, width=width, break_long_words=False,
                                          break_on_hyphens=False)
                             for part in message.split("\n"))
    return message


def _stops_said(fn):
    """Ctrl-C, SIGTERM or SIGHUP that a command does not handle itself (the interview, grade
    and practice say their own): said on stderr with its exit status. Here, because typer
    (from 0.2x) turns a KeyboardInterrupt into a silent exit 130 before main() sees it."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo(f"\n{INTERRUPTED_SAID}", err=True)
            raise typer.Exit(ExitStatus.INTERRUPTED)
        except Stopped as exc:
            typer.echo(f"\nStopped by signal {exc.signum}: {NOTHING_MORE}", err=True)
            raise typer.Exit(128 + exc.signum)
    return wrapper


NOTHING_MORE = "nothing more was done (what a command finished before it is kept; an output " \
    "file given with -o is not written)."
INTERRUPTED_SAID = f"Interrupted: {NOTHING_MORE}"
for _typer in (app, log_app, protocol_app, export_app, db_app):
    for _info in _typer.registered_commands:
        _info.callback = _stops_said(_info.callback)


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
    # Past a file-size limit (ulimit -f) a write then fails with EFBIG, which is said (exit 3),
    # instead of the process being killed by SIGXFSZ with the output cut short.
    import signal

    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
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
    except (KeyboardInterrupt, typer.Abort):  # outside a command (an older typer)
        typer.echo(f"\n{INTERRUPTED_SAID}", err=True)
        raise SystemExit(int(ExitStatus.INTERRUPTED))
    except Stopped as exc:
        typer.echo(f"\nStopped by signal {exc.signum}: {NOTHING_MORE}", err=True)
        raise SystemExit(128 + exc.signum)
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
