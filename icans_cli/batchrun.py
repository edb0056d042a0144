"""`icans grade`: the streaming run around batch.py (files, formats, progress, summary, log)."""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Optional

import typer

from icans_cli.batch import (
    KNOWN_COLUMNS, OUTPUT_COLUMNS, Grader, RowOutcome, RowParser, UsageProblem,
    _clean, csv_tail, jsonl_line, read_rows, text_input,
)
from icans_cli.csvsafe import safe_cell
from icans_cli.exit import ExitStatus

FORMATS = ("csv", "jsonl", "json", "table")
PROGRESS_MIN_BYTES = 2_000_000


def _fail(message: str, code: ExitStatus = ExitStatus.USAGE):
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(int(code))


def _open_input(file: str) -> tuple[IO[bytes], int | None]:
    if file == "-":
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
        size = os.fstat(fh.fileno()).st_size
    except OSError:
        size = None
    return fh, size


class _Output:
    """Standard output, or a temporary file renamed onto -o only when the run completes, so a
    run that stops with a usage error never clobbers an existing file."""

    def __init__(self, output: Optional[Path], raw_stdout: bool = False) -> None:
        self.output = output
        self.tmp: str | None = None
        self.wrapped = False
        if output is None and raw_stdout and hasattr(sys.stdout, "buffer"):
            # Undecodable input bytes in passed-through cells go back out as the same bytes.
            sys.stdout.flush()
            self.fh = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8",
                                       errors="surrogateescape", newline="")
            self.wrapped = True
        elif output is None:
            self.fh = sys.stdout
        else:
            directory = output.resolve().parent
            if not directory.is_dir():
                _fail(f"the output directory {directory} does not exist")
            fd, self.tmp = tempfile.mkstemp(prefix=".icans-", dir=directory)
            self.fh = io.open(fd, "w", encoding="utf-8", errors="surrogateescape", newline="")

    def commit(self) -> None:
        if self.wrapped:
            self.fh.flush()
            self.fh.detach()
            self.wrapped = False
        if self.tmp is not None:
            self.fh.close()
            os.replace(self.tmp, self.output)  # type: ignore[arg-type]
            self.tmp = None

    def abort(self) -> None:
        if self.wrapped:
            try:
                self.fh.detach()
            except ValueError:
                pass
            self.wrapped = False
        if self.tmp is not None:
            self.fh.close()
            os.unlink(self.tmp)
            self.tmp = None


def run_grade(*, file: str, output: Optional[Path], fmt: Optional[str], protocol, to_log: bool,
              assessor: str, log_path: Optional[Path]) -> None:
    from icans_cli.term import is_terminal

    if fmt is None:
        fmt = "table" if output is None and is_terminal() else "csv"
    if fmt not in FORMATS:
        _fail(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    binary, size = _open_input(file)
    source = text_input(binary)

    def release() -> None:
        if binary is sys.stdin.buffer:
            source.detach()  # never close the caller's standard input
        else:
            source.close()

    try:
        header, rows = read_rows(source)
    except UsageProblem as exc:
        release()
        _fail(f"{'standard input' if file == '-' else file}: {exc}")
    names = [_clean(h).strip().lower() for h in header]
    passthrough_names = [h for h, n in zip(header, names) if n not in KNOWN_COLUMNS]
    passthrough_idx = [i for i, n in enumerate(names) if n not in KNOWN_COLUMNS]
    grader = Grader(protocol, want_json=fmt in ("jsonl", "json"))
    try:
        out = _Output(output, raw_stdout=fmt != "table")
    except BaseException:
        release()
        raise
    counts = {"graded": 0, "not_assessable": 0, "invalid": 0}
    first_invalid: RowOutcome | None = None
    progress = None
    if size and size >= PROGRESS_MIN_BYTES and is_terminal(sys.stderr) and file != "-":
        progress = _progress(size)
    table_rows: list[RowOutcome] = []
    logger = _Logger(log_path, assessor) if to_log else None
    try:
        writer = None
        if fmt == "csv":
            writer = csv.writer(out.fh, lineterminator="\r\n")
            writer.writerow([safe_cell(_clean(h)) for h in header] + list(OUTPUT_COLUMNS))
        elif fmt == "json":
            out.fh.write("[\n")
        n = 0
        parser = RowParser(header, names)
        fast_csv = fmt == "csv" and logger is None
        write = out.fh.write
        for row, line, cells, raw in rows:
            if isinstance(cells, str):
                outcome = RowOutcome(row, line, {})
                outcome.errors.append({"column": "(row)", "message": cells})
                raw_cells: list[str] = []
            else:
                raw_cells = cells
                if fast_csv:
                    hit = parser.fast_tail(cells)
                    if hit is not None:  # an ordinary row seen before: straight out
                        counts[hit[0]] += 1
                        if raw is not None and not _dangerous(raw):
                            write(raw + hit[1])  # the input line untouched, then the results
                        else:
                            writer.writerow([c if not c or c[0] not in _DANGER else  # type: ignore[union-attr]
                                             safe_cell(c) for c in cells] + hit[2])
                        n += 1
                        if progress is not None and n % 2000 == 0:
                            progress.update(binary.tell() if binary.seekable() else 0)
                        continue
                outcome = parser.parse(cells, row, line)
            rec_json = grader.grade(outcome)
            counts[outcome.status] += 1
            if outcome.status == "invalid" and first_invalid is None:
                first_invalid = outcome
            if logger and outcome.status != "invalid":
                logger.append(outcome)
            if fmt == "csv":
                tail = csv_tail(outcome)
                tail[-1] = safe_cell(tail[-1])
                if len(raw_cells) != len(header) or outcome.fast is None:
                    raw_cells = (raw_cells + [""] * len(header))[:len(header)]
                    cells_out = [safe_cell(_clean(c)) for c in raw_cells]
                else:
                    cells_out = [c if not c or c[0] not in _DANGER else safe_cell(c)
                                 for c in raw_cells]
                    parser.remember_tail(outcome, tail)
                writer.writerow(cells_out + tail)  # type: ignore[union-attr]
            elif fmt in ("jsonl", "json"):
                if len(raw_cells) == len(header):
                    extra = {header[i]: raw_cells[i] for i in passthrough_idx}
                else:
                    extra = {h: outcome.cells.get(h, "") for h in passthrough_names}
                line_out = jsonl_line(outcome, rec_json, extra)
                if fmt == "json":
                    line_out = ("  " if n == 0 else ",\n  ") + line_out[:-1]
                out.fh.write(line_out)
            else:
                table_rows.append(outcome)
            n += 1
            if progress is not None and n % 2000 == 0:
                progress.update(binary.tell() if binary.seekable() else 0)
        if fmt == "json":
            out.fh.write("\n]\n")
        if fmt == "table":
            _table(table_rows)
        out.fh.flush()
        out.commit()
    except BrokenPipeError:
        out.abort()
        sys.stderr.close()
        raise typer.Exit(ExitStatus.OK)
    except BaseException:
        out.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
        release()
    total = sum(counts.values())
    if total == 0:
        _fail("the input has a header but no data rows")
    summary = (f"{total:,} rows: {counts['graded']:,} graded, {counts['not_assessable']:,} not "
               f"assessable, {counts['invalid']:,} invalid")
    if logger:
        summary += f"; {logger.count:,} appended to the log"
    typer.echo(summary, err=True)
    if first_invalid is not None:
        e = first_invalid.errors[0]
        typer.echo(f"{counts['invalid']:,} of {total:,} rows invalid; first: row "
                   f"{first_invalid.row} (line {first_invalid.line}), {e['column']}: "
                   f"{e['message']}", err=True)
        raise typer.Exit(ExitStatus.ERROR)


_DANGER = frozenset("=+-@\t\r")


def _dangerous(raw: str) -> bool:
    """Whether any cell of a quote-free line starts like a spreadsheet formula (cheap)."""
    return (raw[:1] in _DANGER or ",=" in raw or ",+" in raw or ",-" in raw or ",@" in raw
            or ",\t" in raw)


class _Logger:
    def __init__(self, path: Optional[Path], assessor: str) -> None:
        self.path = path
        self.assessor = assessor
        self.count = 0

    def append(self, o: RowOutcome) -> None:
        from icans_cli import log
        from icans_cli.core.grading import grade_icans
        from icans_cli.core.identifiers import parse_time
        from icans_cli.records import assessment_record

        assert o.result and o.recommendation and o.patient_id
        findings = o.real_findings()
        result = grade_icans(findings)  # exact, with this row's own score-path reason
        when = parse_time(o.assessed_at) if o.assessed_at else log.utc_now()
        from icans_cli.batch import crs_dict

        body = assessment_record(patient_id=o.patient_id, assessor=self.assessor,
                                 source="batch", assessed_at=when, findings=findings,
                                 result=result, recommendation=o.recommendation,
                                 crs_grade=o.crs_grade, product=o.product,
                                 crs_detail=crs_dict(o.crs), weight_kg=o.weight_kg,
                                 extra={"input_row": o.row})
        try:
            log.append(self.path, body)  # type: ignore[arg-type]
        except log.LogError as exc:
            _fail(f"{exc} (stopped at row {o.row}; rows before it were logged)",
                  ExitStatus.ERROR)
        self.count += 1


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

    from icans_cli.render import GRADE_STYLE
    from icans_cli.term import out

    t = Table(title=f"{len(rows)} rows", title_justify="left")
    for col in ("row", "patient", "score", "grade", "status", "drivers", "recommendation / errors"):
        t.add_column(col)
    for o in rows:
        r = o.result
        if r is None:
            t.add_row(str(o.row), _clean(o.patient_id or "?"), "", "", Text("INVALID", "bold red"),
                      "", "; ".join(f"{e['column']}: {e['message']}" for e in o.errors))
            continue
        score = f"ICE {r.ice_score}" if r.score_path == "ice" else f"CAPD {r.capd_score}"
        if (r.ice_score if r.score_path == "ice" else r.capd_score) is None:
            score = "-"
        g = str(r.grade) if r.grade is not None else f">={r.grade_at_least}"
        t.add_row(str(o.row), _clean(o.patient_id or ""), score,
                  Text(g, GRADE_STYLE[r.effective_grade]), r.status,
                  ", ".join(r.drivers) or "-", o.recommendation.id if o.recommendation else "")
    out().print(t)

