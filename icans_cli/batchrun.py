"""`icans grade`: the streaming run around batch.py (files, formats, progress, summary, log).

What it writes must be safe (spec section 8):
- `-o` only ever replaces a regular file, through a temporary file renamed at the end; a FIFO
  or a device is written into directly; `-o` equal to the log or to the input, and `--log-file`
  equal to the input, are refused before anything is read;
- the temporary file is removed on every failure: disk full, a file-size limit, Ctrl-C, SIGTERM,
  SIGHUP, a closed pipe;
- a batch interrupted while logging says how many rows were logged and which was the last;
  each logged row carries the SHA-256 of its source row, so logging the same file again skips
  the rows already in the log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Optional

import typer

from icans_cli import batchsplit
from icans_cli.batch import (
    CSV_READS, KNOWN_COLUMNS, OUTPUT_COLUMNS, RUN, Grader, RowOutcome, RowParser,
    UsageProblem, _clean, csv_input, csv_tail, items_from, jsonl_line, read_runs,
)
from icans_cli.csvsafe import safe_cell
from icans_cli.exit import ExitStatus, Stopped

FORMATS = ("csv", "jsonl", "json", "table")
PROGRESS_MIN_BYTES = 2_000_000
_OUTPUTS_MAX = 8192  # distinct CSV outputs kept (many canonical rows share one)


def _fail(message: str, code: ExitStatus = ExitStatus.USAGE):
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(int(code))


_CRITICAL: dict[str, int | None] = {"depth": 0, "pending": None}


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """A step a signal must not split (a record appended but not yet counted, which would make
    the summary under-report what was logged): a SIGTERM or SIGHUP arriving inside it stops
    the run just after it."""
    _CRITICAL["depth"] = (_CRITICAL["depth"] or 0) + 1
    try:
        yield
    finally:
        _CRITICAL["depth"] = (_CRITICAL["depth"] or 1) - 1
        pending = _CRITICAL["pending"]
        if pending is not None and not _CRITICAL["depth"]:
            _CRITICAL["pending"] = None
            if pending == signal.SIGINT:
                raise KeyboardInterrupt
            raise Stopped(pending)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped, so the temporary file is removed and the summary
    said, as for Ctrl-C."""
    names = [n for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n)]
    previous = {}

    def handler(signum, frame):  # noqa: ARG001
        if _CRITICAL["depth"]:  # a record is being appended and counted: stop right after
            _CRITICAL["pending"] = signum
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C: as Python's own handler does
        raise Stopped(signum)

    try:
        for n in names:
            previous[n] = signal.signal(getattr(signal, n), handler)
    except ValueError:  # not the main thread (a test runner): leave the signals alone
        previous = {}
    try:
        yield
    finally:
        # every handler put back, whatever arrives meanwhile: a signal then is taken after
        # (raised as the run's, once the handlers are back), never half-way through
        with _uninterrupted():
            for n, h in previous.items():
                signal.signal(getattr(signal, n), h)


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.expanduser().resolve() == b.expanduser().resolve()


def check_paths(file: str, output: Optional[Path], log_path: Path, to_log: bool) -> None:
    """Refuse, before anything is read, an output that is the log (the one named, or the
    default) or the input, and a log that is the input."""
    from icans_cli.log import resolve_path

    from icans_cli.log import PRACTICE_FILENAME

    source = None if file == "-" else Path(file)
    if output is not None:
        default = resolve_path(None)
        logs = (log_path, default, log_path.parent / PRACTICE_FILENAME,
                default.parent / PRACTICE_FILENAME)
        if any(_same(output, p) for p in logs) or _looks_like_a_log(output):
            _fail("-o names an assessment or practice log: refusing to overwrite it (write the "
                  "output elsewhere)")
        if source is not None and _same(output, source):
            _fail("-o names the input file: refusing to overwrite what is being read")
        if source is None and _is_stdin(output):
            _fail("-o names the file given on standard input: refusing to overwrite what is "
                  "being read")
    if to_log and source is not None and _same(log_path, source):
        _fail("--log-file names the input file: refusing to append records to what is being "
              "read")


def _looks_like_a_log(path: Path) -> bool:
    """A regular file whose first line is a hash-chained icans record (a log used elsewhere
    with --log-file, or a copy of one)."""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            first = fh.readline(65536)
    except OSError:
        return False
    return first.startswith(b"{") and b'"prev_sha256"' in first and b'"sha256"' in first


def _is_stdin(path: Path) -> bool:
    """Whether standard input is this very file (icans grade - -o in.csv < in.csv)."""
    try:
        a, b = os.fstat(sys.stdin.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISREG(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _open_input(file: str) -> tuple[IO[bytes], int | None]:
    if file == "-":
        if sys.stdin is None or sys.stdin.closed:
            _fail("standard input is closed")
        return sys.stdin.buffer, None
    p = Path(file)
    if p.is_dir():
        _fail(f"{file} is a directory, not a CSV file")
    try:
        fh = open(p, "rb")
    except FileNotFoundError:
        _fail(f"no such file: {file}")
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    try:
        st = os.fstat(fh.fileno())
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
    except OSError:
        size = None
    return fh, size


LEFTOVER_AGE = 3600  # seconds: an .icans-* temporary older than this was left by a killed run


def _alive(name: str, mtime: float) -> bool:
    """Whether the run that made the temporary file `name` (.icans-PID-...) may still be
    running: its process exists (POSIX). A name without a process number, or a system where
    a process cannot be asked after without acting on it (Windows), says no: age alone then
    decides."""
    import re

    m = re.match(r"\.icans-(\d+)-", name)
    if m is None or os.name != "posix":
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return False  # this run sweeps before it makes its own file: an earlier one's
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (OSError, OverflowError):
        # gone; another user's (the file is ours, so not the run that made it); or a number
        # no process here can have: age alone decides
        return False
    started = _started_at(pid)
    # a process that started after the file was last written did not write it (a number
    # used again: every run in a container is process 1)
    return started is None or started <= mtime + 2


def _started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), where the system says (Linux
    /proc); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, counted after the name's closing parenthesis
        with open("/proc/stat", "rb") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def sweep_leftovers(directory: Path) -> int:
    """Remove the temporary files of runs that were killed (SIGKILL, a power cut) in the
    output's folder: ours (.icans-*, regular, owned by this user), older than an hour and
    whose process is gone, so a run writing now is never touched, even one that has written
    nothing for an hour (a slow standard input). They hold patient rows. Returns how many."""
    import time

    removed = 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith(".icans-")]
    except OSError:
        return 0
    now = time.time()
    uid = getattr(os, "getuid", lambda: None)()
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < LEFTOVER_AGE:
                continue
            if uid is not None and st.st_uid != uid:
                continue
            if _alive(name, st.st_mtime):
                continue
            os.unlink(path)
            removed += 1
        except OSError:
            continue
    return removed


class _TempFile(io.FileIO):
    """The temporary output file. Where the system has posix_fadvise, every 32 MB written is
    handed to the kernel to write to disk now (POSIX_FADV_DONTNEED starts the writeback of
    the range without waiting, and drops its pages once written), so the fsync before the
    rename waits for the last few megabytes, not for the whole file."""

    STEP = 32 << 20
    ADVISE = hasattr(os, "posix_fadvise")

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "w")
        self._start = self._end = 0

    def write(self, b: Any) -> int | None:
        n = super().write(b)
        self._end += n or 0
        if self.ADVISE and self._end - self._start >= self.STEP:
            try:
                os.posix_fadvise(self.fileno(), self._start, self._end - self._start,
                                 os.POSIX_FADV_DONTNEED)
            except OSError:
                pass  # advice only: the fsync at commit writes what is left
            self._start = self._end
        return n


class _Output:
    """Standard output; or for -o a temporary file renamed onto it only when the run completes
    (so a run that stops never clobbers an existing file); or, when -o names a FIFO or a device,
    that file itself, written into and never renamed over."""

    def __init__(self, output: Optional[Path], raw_stdout: bool = False) -> None:
        self.output = output
        self.tmp: str | None = None
        self.wrapped = False
        self.committed = False  # complete and in place: a signal after it stops nothing
        self.directory: Path | None = None  # where -o's file is written (its own folder)
        if output is None:
            if sys.stdout is None or sys.stdout.closed:
                _fail("standard output is closed: give -o FILE")
            from icans_cli.term import data_out, is_terminal

            if is_terminal(sys.stdout):  # data on a terminal: controls shown, never obeyed
                self.fh = data_out()
            elif raw_stdout and hasattr(sys.stdout, "buffer"):
                # Undecodable input bytes in passed-through cells go back out as the same bytes.
                sys.stdout.flush()
                self.fh = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8",
                                           errors="surrogateescape", newline="")
                self.wrapped = True
            else:
                self.fh = sys.stdout
            return
        try:
            st = os.stat(output)  # what the name leads to (a link followed)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            _fail(f"cannot use -o {output}: {exc.strerror}")
        if output.is_symlink() and (st is None or stat.S_ISREG(st.st_mode)):
            # write to the file the link points to; renaming over the link would replace the
            # link itself with a regular file (a link to a pipe or a device, such as
            # /dev/stdout, is opened as it is named, below)
            output = self.output = Path(os.path.realpath(output))
        if st is not None and stat.S_ISDIR(st.st_mode):
            _fail(f"-o {output} is a directory: give a file name")
        if st is not None and not stat.S_ISREG(st.st_mode):
            try:  # a FIFO, a terminal, /dev/stdout: write into it, never rename over it
                self.fh = open(output, "w", encoding="utf-8", errors="surrogateescape",
                               newline="")
            except OSError as exc:
                _fail(f"cannot write to {output}: {exc.strerror}")
            return
        directory = output.expanduser().resolve().parent
        if not directory.is_dir():
            _fail(f"the output directory {directory} does not exist")
        sweep_leftovers(directory)
        self.directory = directory
        # A signal arriving while the file is made and named is taken once it is named (the
        # run's deferral, whichever thread the system gave the signal to: a signal mask would
        # hold it in one thread only), and the file is then removed below.
        try:
            with _uninterrupted():
                try:
                    # named with this process's number: never swept while this run lives
                    fd, self.tmp = tempfile.mkstemp(prefix=f".icans-{os.getpid()}-",
                                                    dir=directory)
                except OSError as exc:
                    _fail(f"cannot write in {directory}: {exc.strerror}")
                # a large buffer: a big output goes out in 1 MB writes, not 8 kB ones
                self.fh = io.TextIOWrapper(io.BufferedWriter(_TempFile(fd), 1 << 20),
                                           encoding="utf-8", errors="surrogateescape",
                                           newline="")
        except BaseException:
            if getattr(self, "fh", None) is not None:
                try:
                    self.fh.close()
                except OSError:
                    pass
            if self.tmp is not None:
                try:
                    os.unlink(self.tmp)
                except OSError:
                    pass
            raise

    def commit(self) -> None:
        """The output complete and in place (`committed`); a signal meanwhile is taken after,
        and then stops nothing: the caller sees `committed` and reports the run done."""
        with _uninterrupted():
            self._commit()
            self.committed = True

    def _commit(self) -> None:
        if self.wrapped:
            self.fh.flush()
            self.fh.detach()
            self.wrapped = False
            return
        if self.output is None:
            self.fh.flush()
            return
        if self.tmp is None:
            self.fh.close()
            return
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        if self.output.exists():
            try:
                os.chmod(self.tmp, stat.S_IMODE(os.stat(self.output).st_mode))
            except OSError:
                pass
        os.replace(self.tmp, self.output)
        self.tmp = None

    def abort(self) -> None:
        if self.wrapped:
            try:
                self.fh.detach()
            except ValueError:
                pass
            self.wrapped = False
        if self.output is not None:
            try:
                self.fh.close()
            except OSError:
                pass  # a full disk fails the final flush too; the file goes either way
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def _stopped_by(exc: BaseException, where: str, output: Optional[Path]) \
        -> tuple[int, str] | None:
    """The exit status and the message of a run stopped by `exc` (its output already
    abandoned); None for an exception that is not a way a run stops (it goes on up)."""
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return ExitStatus.PIPE, "the output was closed early (a pipe)"
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED, "interrupted"
    if isinstance(exc, Stopped):
        return 128 + exc.signum, f"stopped by signal {exc.signum}"
    if isinstance(exc, UsageProblem):
        return ExitStatus.USAGE, f"{where}: {exc}"
    if isinstance(exc, _LogFailed):
        return ExitStatus.WRITE_FAILED, str(exc)
    if isinstance(exc, OSError):
        what = str(output) if output is not None else "the output"
        return ExitStatus.WRITE_FAILED, _write_error(exc, what)
    return None


def _write_error(exc: OSError, what: str) -> str:
    from icans_cli.views import guard_write

    return str(guard_write(exc, what))


def row_sha(cells: list[str] | str) -> str:
    """The SHA-256 of a source row (its cells, as read), carried by each logged record."""
    data = json.dumps(cells, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()


def run_grade(*, file: str, output: Optional[Path], fmt: Optional[str], protocol, to_log: bool,
              assessor: str, log_file: Optional[Path] = None, allow_id: bool = False,
              assessed_now: bool = False, jobs: int = 2) -> None:
    from icans_cli import store as st
    from icans_cli.store.chain import utc_now
    from icans_cli.store.jsonl import resolve_path

    log_store = None
    if to_log:
        try:
            log_store = st.open_store(log_file)
        except st.StoreError as exc:
            _fail(str(exc))
    log_path = (Path(log_store.where) if log_store is not None and log_store.kind == "file"
                else resolve_path(log_file))

    now = utc_now()  # the time of the run: an assessed_at after it (5 min aside) is refused
    from icans_cli.term import is_terminal

    if fmt is None:
        fmt = "table" if output is None and is_terminal() else "csv"
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)} (what was typed is not shown: "
              "it could be patient data)")
    check_paths(file, output, log_path, to_log and (log_store is None
                                                    or log_store.kind == "file"))
    binary, size = _open_input(file)

    def release() -> None:
        if binary is sys.stdin.buffer:
            try:
                if source is not binary:  # a reader put around it: never close stdin
                    source.detach()
            except (NameError, ValueError):
                pass
        else:
            binary.close()

    where = "standard input" if file == "-" else file
    try:
        source = csv_input(binary)
        upto = batchsplit.Upto(source)
        header, items = read_runs(upto)  # type: ignore[arg-type]
    except UsageProblem as exc:
        release()
        _fail(f"{where}: {exc}")
    names = [_clean(h).strip().lower() for h in header]
    passthrough_idx = [i for i, n in enumerate(names) if n not in KNOWN_COLUMNS]
    # A result column that is also an input column keeps the input's place (so the tool can
    # read its own output, and grading it again gives the same output).
    overlap = {n: i for i, n in enumerate(names) if n in OUTPUT_COLUMNS}
    tail_names = [c for c in OUTPUT_COLUMNS if c not in overlap]
    grader = Grader(protocol, want_json=fmt in ("jsonl", "json"))
    # The output (and -o's temporary file) is made under the run's signal handlers, inside the
    # try below: a SIGTERM or SIGHUP just after the file is made stops the run and removes it.
    out: _Output | None = None
    from collections import Counter

    counts = Counter({"graded": 0, "not_assessable": 0, "invalid": 0})
    first_invalid: RowOutcome | None = None
    progress = None
    if size and size >= PROGRESS_MIN_BYTES and is_terminal(sys.stderr) and file != "-":
        progress = _progress(size)
    table_rows: list[RowOutcome] = []
    logger = None
    if log_store is not None:
        logger = _Logger(log_store, assessor, now, assessed_now)
        st.stop_requested = lambda: _CRITICAL["pending"] is not None
    outcome_code: ExitStatus | None = None
    message = None
    halves = None
    import gc

    # The caches hold tens of thousands of small objects with no cycles among them: the cyclic
    # collector would walk them again and again (a second in 200,000 rows). The run makes
    # almost no cycles, so the collector is off while it runs and on again after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with _stop_on_signals():
            out = _Output(output, raw_stdout=fmt != "table")
            writer = None
            # CSV goes out through one list of texts, written a few thousand rows at a time
            buf: list[str] = []
            if fmt == "csv":
                writer = csv.writer(_Appender(buf), lineterminator="\r\n")
                writer.writerow([safe_cell(_clean(h)) for h in header] + tail_names)
            elif fmt == "json":
                out.fh.write("[")
            n = 0
            # A large plain file, graded to CSV and not logged, on a machine with two
            # processors: the second half by a second process (batchsplit); no progress bar
            # then (it is a thread, and a process is never forked beside a thread).
            if fmt == "csv" and logger is None and progress is None and file != "-" and size \
                    and jobs > 1 and batchsplit.processors() > 1:
                halves = batchsplit.plan(binary.fileno(), size, upto.tell(),
                                         str(out.directory) if out.directory else None)
                if halves is not None:
                    upto.end = halves.split
            parser = RowParser(header, names, allow_id, now, protocol, CSV_READS)
            fast_csv = fmt == "csv" and logger is None
            lookup, put = parser.lookup, buf.append
            outputs: dict[tuple, tuple] = {}

            def fill(how: tuple) -> tuple | None:
                """The output of a key not remembered yet: its canonical row graded, and the
                output remembered and returned when the row is valid; None when it is not
                (the row is then graded on its own, and named with its number, by `one`)."""
                outcome = parser.slow(how[0], 0, 0)
                if outcome.errors:
                    return None
                grader.grade(outcome)
                if outcome.status == "invalid":
                    return None
                tail = csv_tail(outcome)
                tail[-1] = safe_cell(tail[-1])
                # many keys share one output: it is made once (a pure function of its whole
                # input, the status and the result columns) and shared
                whole = (outcome.status, *tail)
                value = outputs.get(whole)
                if value is None:
                    value = _cached_output(outcome.status, tail, overlap)
                    if len(outputs) < _OUTPUTS_MAX:
                        outputs[whole] = value
                parser.remember(how, value)
                return value

            def one(row: int, line: int, cells: list[str] | str, raw: str | None,
                    key: tuple | None = None) -> None:
                """One row, on its own (`key`: its key, when worked out already)."""
                nonlocal n, first_invalid
                how = None
                if isinstance(cells, str):
                    outcome = RowOutcome(row, line, {})
                    outcome.errors.append({"column": "(row)", "message": cells})
                    raw_cells: list[str] = []
                else:
                    raw_cells = cells
                    if fast_csv:
                        hit, how = lookup(cells, key)
                        if hit is None and how is not None and how[1] is not None \
                                and key is None:  # (with a key, the caller has tried fill)
                            hit = fill(how)  # not remembered yet: remembered now
                        if hit is not None:  # this row, or its canonical row, was graded
                            status, tail_text, tail, results, _ = hit
                            counts[status] += 1
                            if raw is None or _dangerous(raw):
                                writer.writerow(_merge(cells, tail, overlap,  # type: ignore[union-attr]
                                                       valid=True))
                            elif not results:  # the input line untouched, the results
                                put(raw + tail_text)
                            else:  # result columns the input has, put in place
                                merged = list(cells)  # a quote-free line: no quoting needed
                                for i, v in results:
                                    merged[i] = v
                                put(",".join(merged) + tail_text)
                            n += 1
                            return
                        # the output is computed from the canonical row: a function of its key
                        outcome = parser.slow(how[0] if how else cells, row, line)
                        if outcome.errors and how:  # invalid: its messages name its own
                            outcome = parser.slow(cells, row, line)  # cells (the age as given)
                    else:
                        outcome = parser.slow(cells, row, line)
                rec_json = grader.grade(outcome)
                counts[outcome.status] += 1
                if outcome.status == "invalid" and first_invalid is None:
                    first_invalid = outcome
                if logger and outcome.status != "invalid":
                    logger.append(outcome, row_sha(cells))
                if fmt == "csv":
                    tail = csv_tail(outcome)
                    tail[-1] = safe_cell(tail[-1])
                    valid = outcome.status != "invalid"
                    if len(raw_cells) != len(header) or not valid:
                        raw_cells = (raw_cells + [""] * len(header))[:len(header)]
                        cells_out = [safe_cell(_clean(c)) for c in raw_cells]
                    else:
                        cells_out = raw_cells
                    writer.writerow(_merge(cells_out, tail, overlap,  # type: ignore[union-attr]
                                           valid=valid))
                elif fmt in ("jsonl", "json"):
                    if len(raw_cells) == len(header):
                        extra = {header[i]: raw_cells[i] for i in passthrough_idx}
                    else:
                        extra = {header[i]: outcome.cells.get(header[i], "")
                                 for i in passthrough_idx}
                    line_out = jsonl_line(outcome, rec_json, extra)
                    if fmt == "json":
                        line_out = ("\n  " if n == 0 else ",\n  ") + line_out[:-1]
                    out.fh.write(line_out)
                else:
                    table_rows.append(outcome)
                n += 1

            # a run of plain rows whose outputs are remembered goes out a column at a time
            # (_FastRuns); any other row, one at a time (one)
            runs = _FastRuns(parser, one, fill, buf, counts, sorted(overlap.values())) \
                if fast_csv else None
            def drive(items: Any, fh: IO[str]) -> None:
                """Grade the rows of `items`, in order, writing into `fh`."""
                nonlocal n
                flush_at = n + 2000
                for item in items:
                    if item[0] is RUN:
                        _, row0, line0, raws = item
                        if runs is not None:
                            # (not `n += runs(...)`: that would read n before the rows that
                            # runs hands to `one`, each counted there, and lose them)
                            wrote = runs(row0, line0, raws)
                            n += wrote
                        else:
                            for i, raw in enumerate(raws):
                                one(row0 + i, line0 + i, raw.split(","), raw)
                    else:
                        one(*item)
                    if n >= flush_at:
                        flush_at = n + 2000
                        if buf:
                            fh.write("".join(buf))
                            buf.clear()
                        if progress is not None:
                            progress.update(binary.tell() if binary.seekable() else 0)
                if buf:
                    fh.write("".join(buf))
                    buf.clear()

            def second_half(fh: IO[str]) -> dict[str, Any]:
                """In the second process: the rows after the split, numbered from 0 (this
                process adds the first half's rows and lines to the first invalid row)."""
                nonlocal n, first_invalid
                buf.clear()  # the header is the first process's to write
                counts.clear()
                n, first_invalid = 0, None
                drive(items_from(batchsplit.PRead(binary.fileno(), halves.split),  # type: ignore[arg-type, union-attr]
                                 0, 0), fh)
                bad = None
                if first_invalid is not None:
                    e = first_invalid.errors[0]
                    bad = [first_invalid.row, first_invalid.line, e["column"], e["message"]]
                return {"counts": dict(counts), "rows": n, "first_invalid": bad}

            second = None
            if halves is not None:
                second = batchsplit.Second(second_half, str(out.directory) if out.directory
                                           else None)
            try:
                if second is not None:
                    try:
                        second.start()
                    except OSError:  # no process, file or descriptor for it: graded here
                        second.close()
                        second = None
                drive(items, out.fh)
                if halves is not None:
                    said = second.result() if second is not None else None
                    if said is None:  # the second half graded here, after freeing its file
                        if second is not None:
                            second.close()
                        drive(items_from(batchsplit.PRead(binary.fileno(), halves.split),  # type: ignore[arg-type]
                                         n, halves.lines_before), out.fh)
                    else:
                        second.copy_to(out.fh.write)  # type: ignore[union-attr]
                        counts.update(said["counts"])
                        if first_invalid is None and said["first_invalid"]:
                            row, line, column, text = said["first_invalid"]
                            first_invalid = RowOutcome(row + n, line + halves.lines_before, {})
                            first_invalid.errors.append({"column": column, "message": text})
                        n += said["rows"]
            finally:
                if second is not None:
                    second.close()
            if fmt == "json":
                out.fh.write("\n]\n" if n else "]\n")
            if fmt == "table":
                _table(table_rows)
            out.commit()
    except BaseException as exc:
        if out is not None and out.committed and isinstance(exc, (KeyboardInterrupt, Stopped)):
            pass  # the signal came once the output was complete: the run is done, and said so
        else:
            if out is not None:
                out.abort()
            stopped = _stopped_by(exc, where, output)
            if stopped is None:
                raise
            outcome_code, message = stopped
    finally:
        if collecting:
            gc.enable()
        if logger is not None:
            from icans_cli import store as st

            st.stop_requested = st._never
            logger.store.close()
        if progress is not None:
            progress.close()
        release()
    total = sum(counts.values())
    if outcome_code is not None:
        said = f"Stopped: {message}; {total:,} row{'' if total == 1 else 's'} read"
        if output is not None and "was not written" not in message:
            said += f"; {output} was not written"
        if logger is not None:
            said += "; " + logger.report()
        typer.echo(said + ".", err=True)
        raise typer.Exit(int(outcome_code))
    summary = (f"{total:,} row{'' if total == 1 else 's'}: {counts['graded']:,} graded, {counts['not_assessable']:,} not "
               f"assessable, {counts['invalid']:,} invalid")
    if logger:
        summary += "; " + logger.report()
    typer.echo(summary, err=True)
    if first_invalid is not None:
        e = first_invalid.errors[0]
        typer.echo(f"{counts['invalid']:,} of {total:,} rows invalid; first: row "
                   f"{first_invalid.row} (line {first_invalid.line}), {e['column']}: "
                   f"{e['message']}", err=True)
        raise typer.Exit(ExitStatus.ERROR)


def _cached_output(status: str, tail: list,
                   overlap: dict[str, int]) -> tuple[str, str, list, tuple, tuple]:
    """What a later row with the same key writes: (status, the result columns after the input
    line as CSV text, the result columns, the result columns the input has: (index, value),
    written over the input's cells, and those values alone, in the order of their columns)."""
    rest = [v for name, v in zip(OUTPUT_COLUMNS, tail) if name not in overlap]
    results = tuple(sorted((overlap[name], "" if v is None else str(v))
                           for name, v in zip(OUTPUT_COLUMNS, tail) if name in overlap))
    return status, _csv_text(["", *rest]), tail, results, tuple(v for _, v in results)


_NEEDS_QUOTES = frozenset(',"\r\n')


def _csv_text(values: list) -> str:
    """One CSV line, as csv.writer with its default (minimal) quoting writes it."""
    out = []
    for v in values:
        t = "" if v is None else str(v)
        if _NEEDS_QUOTES.intersection(t):
            t = '"' + t.replace('"', '""') + '"'
        out.append(t)
    return ",".join(out) + "\r\n"


def _merge(cells: list[str], tail: list, overlap: dict[str, int], valid: bool) -> list:
    """The input cells with the result columns put in place: an input column that is also a
    result column holds the computed value (the input's own value on an invalid row, for the
    score columns the input gives), the other result columns follow."""
    out = [c if not c or c[0] not in _DANGER else safe_cell(c) for c in cells]
    if not overlap:
        return out + list(tail)
    rest = []
    for name, value in zip(OUTPUT_COLUMNS, tail):
        i = overlap.get(name)
        if i is None:
            rest.append(value)
        elif valid or name not in KNOWN_COLUMNS:
            out[i] = "" if value is None else value
    return out + rest


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at the null device so the interpreter's last flush
    does not fail again."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


_DANGER = frozenset("=+-@\t\r")


def _dangerous(raw: str) -> bool:
    """Whether any cell of a quote-free line starts like a spreadsheet formula (cheap)."""
    return (raw[:1] in _DANGER or ",=" in raw or ",+" in raw or ",-" in raw or ",@" in raw
            or ",\t" in raw)


class _FastRuns:
    """A run of plain rows (read_runs), graded a column at a time: the keys of all its rows
    at once (RowParser.keys, the one key rule), their remembered outputs, the patient id and
    time checks; each row whose output is remembered and whose checks pass is written as
    `one` writes it: its line, with the result columns the input has put in place, then the
    other result columns. Any other row (not remembered yet, an id or time not yet checked, a
    cell that starts like a formula) goes to `one`, in its place. Returns how many rows it
    wrote itself."""

    def __init__(self, parser: RowParser, one: Any, fill: Any, buf: list[str], counts: dict,
                 overlap: list[int]) -> None:
        import operator

        self.fill, self.canonical_row = fill, parser.canonical_row
        self.pid_ok, self.time_ok = parser.pid_ok, parser.time_ok
        self.keys, self.cache_get = parser.keys, parser.cache.get
        self.pids_get, self.times_get = parser._pids.get, parser._times.get
        self.i_pid, self.i_at = parser.i_pid, parser.i_at
        self.width, self.one, self.buf, self.put = parser.n, one, buf, buf.append
        self.counts, self.overlap = counts, overlap
        self.status_of, self.text_of = operator.itemgetter(0), operator.itemgetter(1)
        self.values_of = operator.itemgetter(4)
        # stands in for a row written on its own (its text is put in its place)
        self.blank = ("", "", [], (), ("",) * len(overlap))

    def __call__(self, row0: int, line0: int, raws: list[str]) -> int:
        import operator

        one, buf = self.one, self.buf
        rows = [r.split(",") for r in raws]
        if set(map(len, rows)) != {self.width}:  # a ragged row: each row on its own
            for i, (cells, raw) in enumerate(zip(rows, raws)):
                one(row0 + i, line0 + i, cells, raw)
            return 0
        columns = list(zip(*rows))
        keys = self.keys(rows, columns)
        hits = list(map(self.cache_get, keys))
        pids = list(map(self.pids_get, columns[self.i_pid]))
        times = list(map(self.times_get, columns[self.i_at])) if self.i_at is not None \
            else pids
        alone = [i for i, h in enumerate(hits) if h is None]
        if None in pids or False in pids or None in times or False in times:
            alone = sorted(set(alone).union(i for i, p, t in zip(range(len(rows)), pids, times)
                                            if not p or not t))
        if alone:  # a key not remembered yet, an id or a time not checked yet
            alone = self._resolve(alone, rows, keys, hits)
        if self._dangerous(raws):
            alone = sorted(set(alone).union(i for i, r in enumerate(raws) if _dangerous(r)))
        # the rows on their own first, in order, each one's text taken from where it wrote it
        texts = []
        for i in alone:
            at = len(buf)
            one(row0 + i, line0 + i, rows[i], raws[i], keys[i])
            texts.append("".join(buf[at:]))
            del buf[at:]
            hits[i] = None
        self.counts.update(map(self.status_of, filter(None, hits)))
        for i in alone:
            hits[i] = self.blank
        if self.overlap:  # the result columns the input has, put in place
            for j, i in enumerate(self.overlap):
                columns[i] = tuple(map(operator.itemgetter(j), map(self.values_of, hits)))
            lines = map(",".join, zip(*columns))  # quote-free lines: no quoting needed
        else:
            lines = iter(raws)
        out = list(map(operator.add, lines, map(self.text_of, hits)))
        for i, text in zip(alone, texts):
            out[i] = text
        self.put("".join(out))
        return len(rows) - len(alone)

    def _resolve(self, alone: list[int], rows: list[list[str]], keys: list[tuple],
                 hits: list) -> list[int]:
        """The rows of `alone` whose output is remembered now (graded by `fill`, or by a row
        before them) and whose id and time pass the checks join the others; the rest (an
        invalid row) stay to be graded on their own. Returns those."""
        still = []
        cache_get, fill, canonical_row = self.cache_get, self.fill, self.canonical_row
        for i in alone:
            cells, k = rows[i], keys[i]
            hit = hits[i] or cache_get(k) or fill((canonical_row(cells, k), k))
            if hit is not None and self.pid_ok(cells[self.i_pid]) and (
                    self.i_at is None or self.time_ok(cells[self.i_at])):
                hits[i] = hit
            else:
                still.append(i)
        return still

    _RARE = ("=", "@", "\t")

    def _dangerous(self, raws: list[str]) -> bool:
        """Whether any line of the run may have a cell that starts like a formula (a run of
        lines joined: a cell starts after a comma or a line break)."""
        text = "\n" + "\n".join(raws)
        return any(c in text for c in self._RARE) or any(
            c in text and (f",{c}" in text or f"\n{c}" in text) for c in "+-")


class _Appender:
    """What csv.writer writes into: a list of texts (written out by the run in blocks)."""

    def __init__(self, parts: list[str]) -> None:
        self.write = parts.append


class _LogFailed(Exception):
    """The log could not be written (its message says what was logged before)."""


class _Logger:
    """Appends graded rows to the log through the store, each assessment once: a rerun is
    recognised by what a row means (the same patient, the same time assessed, the same
    normalised findings: assessment_key), checked under the log's lock, so concurrent reruns
    log each assessment once. Rows without an assessed_at are graded, not logged, unless
    --assessed-now stamps them with the time of the run (never skipped as reruns)."""

    def __init__(self, store: Any, assessor: str, now: Any, assessed_now: bool) -> None:
        self.store = store
        self.assessor = assessor
        self.now = now
        self.assessed_now = assessed_now
        self.count = 0
        self.skipped = 0
        self.untimed = 0
        self.stamped = 0  # appended with the time of the run (--assessed-now)
        self.last_row: int | None = None
        self.said_wait = False

    def report(self) -> str:
        text = f"{self.count:,} appended to the log"
        if self.last_row is not None:
            text += f" (the last was row {self.last_row:,})"
        if self.skipped:
            text += f", {self.skipped:,} already in the log skipped"
        if self.untimed:
            text += (f"; {self.untimed:,} without assessed_at graded but not logged (give "
                     "--assessed-now to log them at the time of this run)")
        if self.stamped:  # no time of their own: a rerun cannot know them again
            text += (f"; {self.stamped:,} stamped with the time of this run (--assessed-now): "
                     "running the same file again logs those again")
        elif self.count or self.skipped:
            text += "; running the same file with --log again logs each assessment once"
        return text

    def _waiting(self, message: str) -> None:
        if not self.said_wait:
            typer.echo(message, err=True)
            self.said_wait = True

    def append(self, o: RowOutcome, source_sha: str) -> None:
        from icans_cli import store as st
        from icans_cli.batch import crs_dict
        from icans_cli.core.identifiers import parse_time
        from icans_cli.records import assessment_key, assessment_record, crs_findings_dict

        assert o.result and o.recommendation and o.patient_id
        if o.assessed_at is None and not self.assessed_now:
            self.untimed += 1
            return
        findings = o.real_findings()
        when = parse_time(o.assessed_at) if o.assessed_at else self.now
        detail = crs_dict(o.crs)
        if detail is not None and o.crs_findings is not None:
            detail["findings"] = crs_findings_dict(o.crs_findings)  # to grade them again
        body = assessment_record(patient_id=o.patient_id, assessor=self.assessor,
                                 source="batch", assessed_at=when, findings=findings,
                                 result=o.result, recommendation=o.recommendation,
                                 crs_grade=o.crs_grade, product=o.product,
                                 crs_detail=detail, weight_kg=o.weight_kg,
                                 extra={"input_row": o.row, "source_row_sha256": source_sha})
        unique = assessment_key(body) if o.assessed_at else None
        with _uninterrupted():
            try:
                stored = self.store.append(body, unique, on_wait=self._waiting)
            except st.Interrupted:
                raise  # a signal while waiting for the lock: nothing was appended
            except st.InDoubt as exc:
                again = ("running the same file with --log again logs it once either way"
                         if unique is not None else "it was stamped with the time of this "
                         "run, so running the file again logs it again: look with icans log "
                         "show first")
                raise _LogFailed(f"{exc}: row {o.row:,} may or may not be in the log "
                                 f"({again}); the rows after it were not logged") from None
            except st.StoreError as exc:
                raise _LogFailed(f"{exc}: row {o.row:,} and the rows after it were not "
                                 "logged") from None
            if stored is None:
                self.skipped += 1
                return
            self.count += 1
            self.stamped += unique is None
            self.last_row = o.row


class _progress:
    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        from icans_cli.term import err

        self.p = Progress("grading", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                          console=err(), transient=True)
        self.task = self.p.add_task("grading", total=total)
        self.p.start()

    def update(self, pos: int) -> None:
        self.p.update(self.task, completed=pos)

    def close(self) -> None:
        self.p.stop()


def _table(rows: list[RowOutcome]) -> None:
    from rich.table import Table
    from rich.text import Text

    from icans_cli.history import score_words
    from icans_cli.render import GRADE_STYLE, plural
    from icans_cli.term import out, plain

    t = Table(title=plural(len(rows), "row"), title_justify="left")
    for col in ("row", "patient", "score", "grade", "status"):
        t.add_column(col, no_wrap=True)
    t.add_column("drivers, or the problem", ratio=1)
    for o in rows:
        r = o.result
        if r is None:
            t.add_row(str(o.row), Text(plain(_clean(o.patient_id or "?"))), "", "",
                      Text("INVALID", "bold red"),
                      Text("; ".join(f"{e['column']}: {e['message']}" for e in o.errors)))
            continue
        score = score_words(r.score_path, r.ice_score if r.score_path == "ice" else
                            r.capd_score)
        from icans_cli.render import NOT_ASSESSABLE_STYLE

        if r.grade is not None:
            g = Text(str(r.grade), GRADE_STYLE[r.effective_grade])
        else:  # never a bare number that reads as a grade: "at least 0" read as all clear
            g = Text(f"≥{r.grade_at_least}, unknown" if r.grade_at_least else "unknown",
                     NOT_ASSESSABLE_STYLE)
        t.add_row(str(o.row), Text(plain(_clean(o.patient_id or ""))), score,
                  g, r.status.replace("_", " "),
                  ", ".join(r.drivers) or "-")
    out().print(t)
