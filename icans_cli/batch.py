"""Batch grading: CSV rows <-> core findings and results, one row at a time.

The input contract is spec section 6. Bad rows never stop the run: each gets ``status: invalid``
and its errors ``{column, message}``; the other rows are still graded. Memory does not grow with
the file: rows stream through, and the only state kept is bounded caches keyed on the whole
input of what they cache (the advice on the whole Case; a row's output on every clinical cell),
so no row's answer depends on the rows before it.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import IO, Any, Iterator

from icans_cli.core.advice import Advice, Case, advise
from icans_cli.core.crs import (
    OXYGEN_DEVICES, TREATMENTS, VENTILATION_REASONS, CrsFindings, CrsResult, CrsState,
    grade_crs,
)
from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import (
    CONSCIOUSNESS, EXCLUDED, ICP_EDEMA, MOTOR, SEIZURE, Findings, IcansResult,
)
from icans_cli.core.growth import implausible
from icans_cli.core.identifiers import BLANKS, check_pseudonym, parse_time
from icans_cli.core.protocol import (
    HIGH_NEUROTOXICITY_PRODUCTS, PRODUCTS, Protocol, Recommendation,
)
from icans_cli.core.scores import ICE_ITEMS, IceItems

ICE_ITEM_COLUMNS = tuple(f"ice_{i.key}" for i in ICE_ITEMS)
CRS_FINDING_COLUMNS = ("temperature_c", "hypotension", "vasopressors", "vasopressin", "oxygen",
                       "oxygen_flow_l_min", "crs_treated", "ventilation_reason")
KNOWN_COLUMNS = ("patient_id", "assessed_at", "age_years", "developmental_delay",
                 *ICE_ITEM_COLUMNS, "ice_score", "capd_score", "consciousness", "seizure",
                 "motor", "icp_edema", "excluded", "sedated", "crs_grade", "product",
                 "weight_kg", "weight_confirmed", "capd_baseline", *CRS_FINDING_COLUMNS)
OUTPUT_COLUMNS = ("ice_score", "capd_score", "icans_grade", "grade_at_least", "status",
                  "drivers", "recommendation", "errors")
JSONL_KEYS = ("row", "patient_id", "assessed_at", "status", "score_path", "ice_score",
              "capd_score", "capd_baseline", "icans_grade", "grade_at_least", "drivers",
              "domains", "excluded", "not_assessable", "crs_grade", "crs", "product",
              "weight_kg", "recommendation", "errors")
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0"}
YES_NO = "yes/no, y/n, true/false, 1/0"
MAX_CELL = 1000  # longer cells are refused (a patient id is at most 64)
MAX_LINE = 1_000_000  # characters: a longer line is not a CSV export (e.g. /dev/zero)
_BAD_BYTES = re.compile("[\x00\udc80-\udcff]")  # NUL, or bytes that are not UTF-8
# Any control character (tab aside) or bad byte: never stripped, always an error in a clinical
# column (a value like "5\x1f" is not 5).
_BAD_CHAR = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\udc80-\udcff]")
_INT = re.compile(r"[+]?[0-9]+", re.ASCII)  # ASCII digits only: "٣" is not 3
_NUM = re.compile(r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", re.ASCII)


class UsageProblem(Exception):
    """The input as a whole cannot be read as the contract's CSV (exit 2)."""


@dataclass(slots=True)
class RowOutcome:
    row: int
    line: int
    cells: dict[str, str]  # the input, by original header name (for CSV passthrough)
    patient_id: str | None = None
    assessed_at: str | None = None
    case: Case | None = None  # everything the advice depends on (valid rows)
    crs: CrsResult | None = None  # the CRS graded from its findings, when they were given
    crs_findings: CrsFindings | None = None  # those findings
    crs_grade: int | None = None  # as given or graded; None: not known, or two readings
    errors: list[dict[str, str]] = field(default_factory=list)
    advice: Advice | None = None  # set by the Grader

    @property
    def findings(self) -> Findings | None:
        return self.case.findings if self.case is not None else None

    def real_findings(self) -> Findings:
        assert self.case is not None
        return self.case.findings

    @property
    def result(self) -> IcansResult | None:
        return self.advice.result if self.advice is not None else None

    @property
    def recommendation(self) -> Recommendation | None:
        return self.advice.recommendation if self.advice is not None else None

    @property
    def product(self) -> str | None:
        return self.case.product if self.case is not None else None

    @property
    def weight_kg(self) -> float | None:
        return self.case.weight_kg if self.case is not None else None

    @property
    def status(self) -> str:
        return "invalid" if self.errors or self.result is None else self.result.status


# --- reading ------------------------------------------------------------------------------------

def _clean(value: str) -> str:
    """For output: markers of bad bytes become U+FFFD so the output is valid UTF-8."""
    return _BAD_BYTES.sub("\ufffd", value) if _BAD_BYTES.search(value) else value


def _strip(value: str) -> str:
    """Blanks around a value, and nothing else (a control character stays, and is an
    error)."""
    return value.strip(BLANKS)


def csv_input(binary: IO[bytes]) -> IO[bytes]:
    """The input's bytes, checked to be UTF-8 (a UTF-16 file is refused) and past a BOM.
    read_runs decodes them: undecodable bytes become lone surrogates, never errors; a clinical
    cell holding one is reported invalid; a passed-through cell is written back as the same
    bytes."""
    if not hasattr(binary, "peek"):
        binary = io.BufferedReader(binary)  # type: ignore[arg-type]
    head = binary.peek(4)[:4]  # type: ignore[attr-defined]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) >= 4 and (
            head[1:2] == b"\x00" and head[3:4] == b"\x00" or
            head[0:1] == b"\x00" and head[2:3] == b"\x00")):
        raise UsageProblem("the input is UTF-16, not UTF-8: save it as CSV UTF-8 (in Excel: "
                           "Save As, CSV UTF-8)")
    if head[:3] == b"\xef\xbb\xbf":
        binary.read(3)  # the BOM
    return binary


RUN = "run"  # the first item of a run of plain rows, from read_runs


def read_runs(binary: IO[bytes]) -> tuple[list[str], Iterator[tuple]]:
    """(header as given, iterator of items). An item is a row: (row number, line number, cells
    | error message, raw), `raw` being the line itself (without its line end) when it holds no
    quote, carriage return or over-long field (such a line is split on commas exactly as the
    csv module would, and an ordinary row can then be passed through untouched; any other line
    goes through the csv module, which may read further lines for a quoted field with line
    breaks). Or a run: a block of consecutive plain lines (no quote, no carriage return but in
    "\r\n" line ends, no blank line, no over-long field) as one item (RUN, its first row
    number, its first line number, the lines without their ends), row and line numbers
    counting up by one; its rows are raw.split(",") of each line."""
    cursor = _Cursor(_line_blocks(binary))
    header: list[str] | None = None
    lineno = 0
    while header is None:
        reader = csv.reader(cursor.lines())
        try:
            first = next(reader)
        except StopIteration:
            raise UsageProblem("the input is empty: a header row is needed, with at least "
                               "a patient_id column") from None
        except csv.Error as exc:
            raise UsageProblem(f"the header row cannot be read as CSV ({exc})") from None
        lineno += reader.line_num
        if first and any(c.strip() for c in first):
            header = first
    names = [_clean(h).strip().lower() for h in header]
    if "patient_id" not in names:
        # The names are not listed: a file without a header row would have a patient's data
        # in its first row. Checked first, so no message below repeats a cell of such a row.
        raise UsageProblem(f"no patient_id column in the first row ({len(names)} columns); the "
                           "first row must be a header naming the columns, with patient_id")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise UsageProblem(f"duplicate column {n!r} in the header (names are matched "
                               "case-insensitively)")
        seen.add(n)
    return header, _items(cursor, lineno, csv.field_size_limit())


def items_from(binary: IO[bytes], rows_before: int, lines_before: int) -> Iterator[tuple]:
    """The items of read_runs for input that starts at a row's first byte after `rows_before`
    rows in `lines_before` lines (the second half of a file split at a line end): numbered as
    in the whole file."""
    return _items(_Cursor(_line_blocks(binary, lines_before)), lines_before,
                  csv.field_size_limit(), rows_before)


def _items(cursor: "_Cursor", lineno: int, limit: int, rows_before: int = 0) -> Iterator[tuple]:
    n, ln = rows_before, lineno
    while True:
        block = cursor.next_block()
        if block is None:
            return
        lines, raws, _ = block
        if raws is not None:  # plain lines: a run
            if raws:
                yield RUN, n + 1, ln + 1, raws
                n += len(raws)
                ln += len(raws)
            continue
        cursor.rest = it = iter(lines)
        for line in it:
            ln += 1
            raw = line.rstrip("\r\n") if line.endswith("\n") else line
            if '"' not in raw and "\r" not in raw and len(raw) <= limit:
                if not raw or raw.isspace():
                    continue  # a blank line is not a row
                n += 1
                yield n, ln, raw.split(","), raw
                continue
            # the csv module may read on: the rest of this block, then the blocks after it
            reader = csv.reader(itertools.chain((line,), cursor.lines()))
            try:
                cells = next(reader)
            except csv.Error as exc:
                ln += reader.line_num - 1
                n += 1
                yield n, ln, f"the row cannot be read as CSV ({exc})", None
            except StopIteration:
                return
            else:
                ln += reader.line_num - 1
                if cells and not (len(cells) == 1 and not cells[0].strip()):
                    n += 1
                    yield n, ln, cells, None
            if cursor.rest is not it:
                break  # the row went on into a later block: go on where it stopped
        else:
            cursor.rest = None  # the block is read


class _Cursor:
    """Where reading is in the blocks of _line_blocks: a block not yet read, or the rest of a
    block (`rest`, an iterator over its lines) that a row read part of."""

    def __init__(self, blocks: Iterator[tuple]) -> None:
        self.blocks = blocks
        self.rest: Iterator[str] | None = None

    def lines(self) -> Iterator[str]:
        """The lines from here on, with their ends (a csv reader reads as many as a row
        takes); `rest` always holds the rest of the block it is in."""
        while True:
            if self.rest is None:
                block = next(self.blocks, None)
                if block is None:
                    return
                lines, raws, ending = block
                self.rest = iter(lines if lines is not None else [r + ending for r in raws])
            yield from self.rest
            self.rest = None

    def next_block(self) -> tuple | None:
        if self.rest is not None:
            lines, self.rest = list(self.rest), None
            return lines, None, None
        return next(self.blocks, None)


_BLOCK = 1 << 16  # bytes asked of the input at a time (a pipe gives what it has)


def _line_blocks(binary: IO[bytes], lines_before: int = 0) -> Iterator[
        tuple[list[str] | None, list[str] | None, str | None]]:
    """The lines of the input decoded as UTF-8 (undecodable bytes as lone surrogates), split
    where a text file opened with newline="" splits them (at "\n", "\r\n" or a lone "\r"),
    none longer than MAX_LINE characters (a file of one endless line, such as /dev/zero, is
    refused instead of filling memory), in blocks: (lines with their ends, None, None), or for
    a block of plain lines, all ending alike, (None, the lines without their ends, the end).
    Read with read1, so rows from a pipe are graded as they arrive; split in C."""
    decode = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode
    read = getattr(binary, "read1", binary.read)
    limit = csv.field_size_limit()
    carry, n = "", lines_before
    while True:
        data = read(_BLOCK)
        final = not data
        text = carry + decode(data, final) if carry else decode(data, final)
        cut = text.rfind("\n") + 1
        body, carry = text[:cut], text[cut:]
        blocks: list[tuple] = []
        if body:
            blocks.append(_split_body(body, limit))
        if carry and (final or "\r" in carry):
            # lines a lone "\r" ends; the last piece waits for more (its "\n" may follow)
            more = io.StringIO(carry, newline="").readlines()
            carry = "" if final else more.pop()
            if more:
                blocks.append((more, None, None))
        for lines, raws, ending in blocks:
            count = len(lines if lines is not None else raws)
            if len(text) > MAX_LINE:  # only then can a line be too long
                sizes = [len(x) for x in lines] if lines is not None else \
                    [len(x) + len(ending) for x in raws]
                for i, size in enumerate(sizes):
                    if size > MAX_LINE:
                        raise UsageProblem(f"line {n + i + 1:,} is longer than {MAX_LINE:,} "
                                           "characters: this is not a CSV export")
            n += count
        if len(carry) > MAX_LINE:
            raise UsageProblem(f"line {n + 1:,} is longer than {MAX_LINE:,} characters: this "
                               "is not a CSV export")
        yield from blocks
        if final:
            return


def _split_body(body: str, limit: int) -> tuple[list[str] | None, list[str] | None, str | None]:
    """Whole lines (the text ends with "\n") as a block of _line_blocks."""
    ending = None
    if '"' not in body:
        if "\r" not in body:
            ending = "\n"
        elif body.count("\r") == body.count("\r\n") == body.count("\n"):
            ending = "\r\n"
    if ending is not None:
        raws = body.split(ending)
        raws.pop()  # after the last line end
        if not ("" in raws or any(map(str.isspace, raws))
                or (len(body) > limit and max(map(len, raws)) > limit)):
            return None, raws, ending
    if "\r" not in body:
        lines = [p + "\n" for p in body.split("\n")]
        lines.pop()
        return lines, None, None
    return io.StringIO(body, newline="").readlines(), None, None


# --- one row ------------------------------------------------------------------------------------

def _err(errors: list, column: str, message: str) -> None:
    errors.append({"column": column, "message": message})


def _int(errors, col, raw, low, high):
    if not _INT.fullmatch(raw):
        # The value is not repeated: a cell that is not a number may hold anything, a patient
        # identifier from a shifted row among them.
        _err(errors, col, f"is not a whole number; allowed: {low}-{high}")
        return None
    v = int(raw)
    if not low <= v <= high:
        # a short number is repeated (it helps the fix); a long one may be a record number
        _err(errors, col, f"{v} is outside {low}-{high}" if len(raw) <= 4
             else f"is outside {low}-{high}")
        return None
    return v


def _yes_no(errors, col, raw):
    v = _strip(raw).lower()
    if v in YES:
        return True
    if v in NO:
        return False
    _err(errors, col, f"is not yes or no; allowed: {YES_NO}")
    return None


def _choice(errors, col, raw, allowed):
    v = _strip(raw).lower()
    if v in allowed:
        return v
    _err(errors, col, f"is not one of the allowed values; allowed: {', '.join(allowed)}")
    return None


def _multi(errors, col, raw, allowed, none_ok):
    parts = [_strip(p).lower() for p in raw.split(";") if _strip(p)]
    bad = [p for p in parts if p not in allowed and not (none_ok and p == "none")]
    if bad:
        _err(errors, col, f"has {'a value' if len(bad) == 1 else f'{len(bad)} values'} not "
             "allowed; allowed: " + ("none, or " if none_ok else "") + ", ".join(allowed)
             + ", separated by ;")
        return None
    if none_ok and "none" in parts:
        if len(parts) > 1:
            _err(errors, col, "'none' cannot be combined with findings")
            return None
        return frozenset()
    return frozenset(parts)


_SHAPE_PREFIX = "(row): the row has "


def _earlier_shape_error(names: list[str], cells: list[str]) -> str | None:
    """The shape error an earlier run gave this row, when the input is that run's output."""
    if "status" not in names or "errors" not in names:
        return None
    try:
        status, errors = cells[names.index("status")], cells[names.index("errors")]
    except IndexError:
        return None
    if status == "invalid" and errors.startswith(_SHAPE_PREFIX) and "; " not in errors:
        return errors[len("(row): "):]
    return None


def _pid(raw: str, allow_id: bool) -> str | None:
    try:
        return check_pseudonym(raw, allow_id)
    except InvalidFinding:
        return None


class Memo:
    """Pure steps of reading a row, remembered on their whole input: a cell's parse on (column,
    text), a patient id's check on its text, a time on its text, Findings on every argument.
    Bounded, so memory stays flat over any file."""

    MAX = 4096
    IDS_MAX = 8192  # patient ids and times: a ward's file has thousands of ids

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], tuple[Any, tuple]] = {}
        self.pids: dict[tuple[str, bool], tuple[str | None, str | None]] = {}
        self.times: dict[str, Any] = {}
        self.findings: dict[tuple, Any] = {}

    def put(self, table: dict, key: Any, value: Any) -> Any:
        if len(table) < self.MAX:
            table[key] = value
        return value


def _read_cell(col: str, raw: str) -> tuple[str | None, Any, tuple, tuple]:
    """One known column's cell: (the text stripped of blanks, or None when the cell itself is
    refused; the clinical value or None; the cell's own errors; its grammar's errors), each
    error a (column, message) pair: the length and control-character checks, then the
    column's grammar (parse_cell)."""
    if len(raw) > MAX_CELL:
        return None, None, ((col, f"the cell is {len(raw):,} characters long; at most "
                                  f"{MAX_CELL}"),), ()
    if _BAD_CHAR.search(raw):
        return None, None, ((col, "contains a control character, a NUL byte or bytes that "
                                  "are not UTF-8"),), ()
    text = _strip(raw)
    if col not in _CLINICAL or not text:
        return text, None, (), ()
    errors: list = []
    value = parse_cell(col, text, errors)
    return text, value, (), tuple((e["column"], e["message"]) for e in errors)


def _pid_checked(memo: Memo | None, raw: str, allow_id: bool) -> tuple[str | None, str | None]:
    """(the normalised pseudonym, or None; the problem, or None)."""
    hit = memo.pids.get((raw, allow_id)) if memo is not None else None
    if hit is None:
        try:
            hit = (check_pseudonym(raw, allow_id), None)
        except InvalidFinding as exc:
            hit = (None, exc.detail)
        if memo is not None:
            if len(memo.pids) < memo.IDS_MAX:
                memo.pids[(raw, allow_id)] = hit
    return hit


def _time_checked(memo: Memo | None, raw: str, now: datetime | None) -> tuple[Any, str | None]:
    """(the ISO time, or None; the problem, or None)."""
    hit = memo.times.get(raw) if memo is not None else None
    if hit is None:
        try:
            t = parse_time(raw)
            if now is not None and t > now + FUTURE_SKEW:
                raise InvalidFinding("assessed_at", "is in the future", "a past date-time (5 "
                                     "minutes of clock difference allowed)")
            hit = (t.isoformat(timespec="seconds"), None)
        except InvalidFinding as exc:
            hit = (None, exc.detail)
        if memo is not None:
            if len(memo.times) < memo.IDS_MAX:
                memo.times[raw] = hit
    return hit


_KNOWN = frozenset(KNOWN_COLUMNS)
# What a blank cell means, for the columns where a blank and that value are read alike in
# every use (spec section 6: "blank: alert", "blank: none", "blank: no"). The CRS finding
# columns are not here: a CRS finding given at all grades the CRS from its findings.
BLANK_MEANS: dict[str, Any] = {
    "consciousness": "alert", "seizure": "none", "motor": "none", "icp_edema": frozenset(),
    "excluded": frozenset(), "sedated": False, "developmental_delay": False,
    "weight_confirmed": False,
}


def parse_row(names: list[str], cells: list[str], row: int, line: int,
              header: list[str], allow_id: bool = False,
              now: datetime | None = None, memo: Memo | None = None) -> RowOutcome:
    """One row by the contract (spec section 6), every problem named with its column. `now`:
    the time of the run, against which an assessed_at in the future is refused. `memo`: the
    pure steps remembered across rows (the answer is the same with or without it)."""
    out = RowOutcome(row, line, {})
    errors = out.errors
    if len(cells) != len(names):
        out.cells = dict(zip(header, cells))
        _err(errors, "(row)", f"the row has {len(cells)} cells but the header has {len(names)}"
             + (" (an unclosed quote?)" if len(cells) < len(names) else ""))
        i = names.index("patient_id")
        out.patient_id = _pid(cells[i], allow_id) if i < len(cells) else None
        return out
    shape = _earlier_shape_error(names, cells)
    if shape is not None:
        # This tool's own output, graded again: a row it refused for its shape (a shifted or
        # ragged row, its cells since cut or padded to the header) stays refused, never graded
        # from cells that may sit in the wrong columns.
        _err(errors, "(row)", shape)
        out.patient_id = _pid(cells[names.index("patient_id")], allow_id)
        return out
    # errors are named in this order: each refused cell in column order, the patient id, the
    # time, then each clinical value refused by its column's grammar, in column order
    values: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    grammar: list = []
    remembered = memo.cells if memo is not None else None
    for n, c in zip(names, cells):
        if n in _KNOWN:
            hit = remembered.get((n, c)) if remembered is not None else None
            if hit is None:
                hit = _read_cell(n, c)
                if memo is not None:
                    memo.put(memo.cells, (n, c), hit)
            text, value, refused, wrong = hit
            if refused:
                for col, message in refused:
                    _err(errors, col, message)
                continue
            values[n] = text  # type: ignore[assignment]
            if wrong:
                grammar.extend(wrong)
            elif value is not None:
                parsed[n] = value
    pid, problem = _pid_checked(memo, values.get("patient_id", ""), allow_id)
    out.patient_id = pid
    if problem:
        _err(errors, "patient_id", problem)
    v = values.get("assessed_at")
    if v:
        out.assessed_at, problem = _time_checked(memo, v, now)
        if problem:
            _err(errors, "assessed_at", problem)
    for col, message in grammar:
        _err(errors, col, message)
    age = parsed.get("age_years")
    delay = bool(parsed.get("developmental_delay"))
    item_values = [values.get(c, "") for c in ICE_ITEM_COLUMNS]
    items = None
    if any(item_values):
        if not all(item_values):
            missing = [c for c, x in zip(ICE_ITEM_COLUMNS, item_values) if not x]
            _err(errors, missing[0], "blank while other ICE items are given; allowed: all five "
                 "ICE items, or none and ice_score")
        else:
            points = tuple(parsed.get(c) for c in ICE_ITEM_COLUMNS)
            if None not in points:
                items = points
    weight = parsed.get("weight_kg")
    if weight is not None and not parsed.get("weight_confirmed"):
        band = implausible(age, weight)
        if band is not None:
            _err(errors, "weight_kg", f"is outside the usual range for age {age:g} "
                 f"({band[0]:g}-{band[1]:g} kg): check it (pounds? 1 kg = 2.2 lb), or confirm "
                 "it with weight_confirmed=yes")
    crs, product = parsed.get("crs_grade"), parsed.get("product")
    out.crs_grade = crs
    if not parsed.keys().isdisjoint(CRS_FINDING_COLUMNS) and not errors:
        out.crs_findings, out.crs = crs_from_cells(parsed, crs, errors)
        if out.crs is not None:
            out.crs_grade = out.crs.grade
    if errors:
        return out
    d = BLANK_MEANS
    args = (age, delay, items, parsed.get("ice_score"), parsed.get("capd_score"),
            parsed.get("consciousness") or d["consciousness"],
            parsed.get("seizure") or d["seizure"], parsed.get("motor") or d["motor"],
            parsed.get("icp_edema") or d["icp_edema"], parsed.get("excluded") or d["excluded"],
            bool(parsed.get("sedated")), parsed.get("capd_baseline"))
    try:
        findings = memo.findings.get(args) if memo is not None else None
        if findings is None:
            findings = _findings(*args)
            if memo is not None:
                memo.put(memo.findings, args, findings)
        out.case = Case(findings, CrsState.of(out.crs, crs), product, weight)
    except InvalidFinding as exc:
        _err(errors, exc.field, exc.detail)
    return out


def _findings(age, delay, items, ice, capd, cons, seiz, motor, icp, excl, sedated,
              baseline) -> Findings:
    return Findings(age_years=age, developmental_delay=delay,
                    ice_items=IceItems(*items) if items else None, ice_score=ice,
                    capd_score=capd, consciousness=cons, seizure=seiz, motor=motor,
                    icp_edema=icp, excluded=excl, sedated=sedated, capd_baseline=baseline)


FUTURE_SKEW = timedelta(minutes=5)


def crs_from_cells(parsed: dict[str, Any], crs_grade: int | None,
                   errors: list) -> tuple[CrsFindings | None, CrsResult | None]:
    """The ASTCT CRS grade from the CRS finding columns; a crs_grade that disagrees is an
    error. Temperature is needed unless treatment for CRS already waives the fever. Positive
    pressure without its reason gives two readings; a crs_grade equal to one of them picks
    it."""
    treatments = parsed.get("crs_treated") or frozenset()
    temp = parsed.get("temperature_c")
    if temp is None and not treatments:
        _err(errors, "temperature_c", "needed to grade CRS from its findings (fever is 38.0 C "
             "or more); allowed: 25.0-45.0")
        return None, None
    try:
        findings = CrsFindings(
            fever=False if temp is None else None, temperature_c=temp,
            hypotension=bool(parsed.get("hypotension")),
            vasopressors=parsed.get("vasopressors") or 0,
            vasopressin=bool(parsed.get("vasopressin")),
            oxygen=parsed.get("oxygen") or "none",
            oxygen_flow_l_min=parsed.get("oxygen_flow_l_min"),
            treatments=treatments, ventilation_reason=parsed.get("ventilation_reason"))
        result = grade_crs(findings)
    except InvalidFinding as exc:
        _err(errors, exc.field, exc.detail)
        return None, None
    if crs_grade is not None and result.readings is not None:
        for reason, reading in zip(("airway", "hypoxia"), result.readings):
            if reading.grade == crs_grade:  # the grade given says which reading
                findings = replace(findings, ventilation_reason=reason)
                return findings, grade_crs(findings)
        airway, hypoxia = result.readings
        _err(errors, "crs_grade", f"{crs_grade} is neither reading of the CRS findings "
             f"({hypoxia.grade} if the positive pressure is for hypoxia, {airway.grade} if "
             "only for the airway); allowed: blank, or give ventilation_reason")
        return None, None
    if crs_grade is not None and crs_grade != result.grade:
        _err(errors, "crs_grade", f"{crs_grade} disagrees with the CRS findings, which give "
             f"{result.label} ({result.explanation}); allowed: blank, or {result.grade}")
        return None, None
    return findings, result


# --- advice, cached on the whole case --------------------------------------------------------

_ADVICE_CACHE_MAX = 1024


class Grader:
    """Advice for parsed rows under one protocol. The cache keys on the whole Case (a frozen
    value: every field the advice depends on is in the key), so a row's advice never depends on
    the rows before it."""

    def __init__(self, protocol: Protocol, want_json: bool = True) -> None:
        self.protocol = protocol
        self.want_json = want_json
        self._cache: dict[Case, tuple[Advice, list[str | None]]] = {}

    def advise(self, case: Case) -> tuple[Advice, list[str | None]]:
        hit = self._cache.get(case)
        if hit is None:
            hit = (advise(self.protocol, case), [None])
            if len(self._cache) < _ADVICE_CACHE_MAX:
                self._cache[case] = hit
        return hit

    def grade(self, out: RowOutcome) -> str | None:
        """Grade a parsed row in place; return the recommendation's JSON (None for an invalid
        row, or when the grader was made without want_json)."""
        if out.errors or out.case is None:
            return None
        advice, text = self.advise(out.case)
        out.advice = advice
        if not self.want_json:
            return None
        if text[0] is None:
            text[0] = json.dumps(advice.recommendation.as_dict(), ensure_ascii=False)
        return text[0]


# --- output -------------------------------------------------------------------------------------

def jsonl_line(out: RowOutcome, rec_json: str | None, passthrough: dict[str, str]) -> str:
    r = out.result
    head: dict[str, Any] = {
        "row": out.row,
        "patient_id": _clean(out.patient_id) if out.patient_id else None,
        "assessed_at": out.assessed_at,
        "status": out.status,
        "score_path": r.score_path if r else None,
        "ice_score": r.ice_score if r else None,
        "capd_score": r.capd_score if r else None,
        "capd_baseline": r.capd_baseline if r else None,
        "icans_grade": r.grade if r else None,
        "grade_at_least": r.grade_at_least if r else None,
        "drivers": list(r.drivers) if r else [],
        "domains": {d.domain: d.grade for d in r.domains} if r else {},
        "excluded": list(r.excluded) if r else [],
        "not_assessable": list(r.not_assessable) if r else [],
        "crs_grade": out.crs_grade,
        "crs": crs_dict(out.crs),
        "product": out.product,
        "weight_kg": out.weight_kg,
        "errors": out.errors,
    }
    if passthrough:
        head["passthrough"] = {k: _clean(v) for k, v in passthrough.items()}
    text = json.dumps(head, ensure_ascii=False)
    return text[:-1] + ', "recommendation": ' + (rec_json or "null") + "}\n"


def crs_dict(crs: CrsResult | None) -> dict[str, Any] | None:
    """The CRS graded from its findings (None when only a grade, or nothing, was given)."""
    if crs is None:
        return None
    out = {"grade": crs.grade, "label": crs.label, "controlled": crs.controlled,
           "fever_waived": crs.fever_waived, "explanation": crs.explanation,
           "disagreement": crs.disagreement}
    if crs.readings is not None:
        out["readings"] = {"if_airway": crs.readings[0].grade,
                           "if_hypoxia": crs.readings[1].grade}
    return out


def csv_tail(out: RowOutcome) -> list[object]:
    r = out.result
    return [
        r.ice_score if r else None,
        r.capd_score if r else None,
        r.grade if r else None,
        r.grade_at_least if r else None,
        out.status,
        ";".join(r.drivers) if r else "",
        out.advice.id if out.advice is not None else "",
        "; ".join(f"{e['column']}: {e['message']}" for e in out.errors),
    ]


CLINICAL_COLUMNS = tuple(c for c in KNOWN_COLUMNS if c not in ("patient_id", "assessed_at"))
_CLINICAL = frozenset(CLINICAL_COLUMNS)


def parse_cell(col: str, raw: str, errors: list) -> Any:
    """One clinical cell by its column's grammar: the value, or None with an error appended.
    The single statement of what each column accepts."""
    if _BAD_CHAR.search(raw):
        _err(errors, col, "contains a control character, a NUL byte or bytes that are not "
             "UTF-8")
        return None
    v = _strip(raw)
    if not v:
        return None
    if col == "age_years":
        if not _NUM.fullmatch(v):
            _err(errors, col, ("is negative" if _negative(v) else "is not a number")
                 + "; allowed: a number from 0 to 130")
            return None
        a = float(v)
        if a > 130:
            _err(errors, col, (f"{v} is out of range" if _short(v) else "is out of range")
                 + "; allowed: 0-130")
            return None
        return int(a) if a.is_integer() else a
    if col in ("developmental_delay", "sedated", "hypotension", "vasopressin",
               "weight_confirmed"):
        return _yes_no(errors, col, v)
    if col in _NUM_RANGES:
        low, high, allowed = _NUM_RANGES[col]
        if not _NUM.fullmatch(v):
            _err(errors, col, ("is negative" if _negative(v) else "is not a number")
                 + f"; allowed: {allowed}")
            return None
        x = float(v)
        if not (low < x <= high if col == "oxygen_flow_l_min" else low <= x <= high):
            # a short number helps the fix; a long one may be a record number or a date
            _err(errors, col, (f"{v} is out of range" if _short(v) else "is out of range")
                 + f"; allowed: {allowed}")
            return None
        return int(x) if x.is_integer() else x
    if col == "crs_treated":
        if v.lower() in ("none", "no"):
            return frozenset()
        return _multi(errors, col, v, TREATMENTS, False)
    if col in ICE_ITEM_COLUMNS:
        return _int(errors, col, v, 0, ICE_ITEMS[ICE_ITEM_COLUMNS.index(col)].max_points)
    if col in _INT_RANGES:
        return _int(errors, col, v, 0, _INT_RANGES[col])
    if col in _CHOICES:
        return _choice(errors, col, v, _CHOICES[col])
    if col == "icp_edema":
        return _multi(errors, col, v, tuple(ICP_EDEMA), True)
    if col == "excluded":
        return _multi(errors, col, v, tuple(EXCLUDED), False)
    raise KeyError(col)


_INT_RANGES = {"ice_score": 10, "capd_score": 32, "crs_grade": 4, "capd_baseline": 32,
               "vasopressors": 10}
_NUM_RANGES = {"weight_kg": (1.0, 350.0, "1-350 (kg)"),
               "temperature_c": (25.0, 45.0, "25.0-45.0 (degrees C)"),
               "oxygen_flow_l_min": (0.0, 80.0, "a number > 0 and <= 80 (L/min)")}
_CHOICES = {"consciousness": tuple(CONSCIOUSNESS), "seizure": tuple(SEIZURE),
            "motor": tuple(MOTOR), "product": PRODUCTS, "oxygen": tuple(OXYGEN_DEVICES),
            "ventilation_reason": VENTILATION_REASONS}


def _short(v: str) -> bool:
    """A number short enough to repeat in a message (at most four significant digits): a
    longer one may be a record number or a date from a shifted row."""
    return len(re.sub(r"\D", "", v).lstrip("0")) <= 4


def _negative(v: str) -> bool:
    return v[:1] == "-" and bool(_NUM.fullmatch(v[1:]))


# --- the fast path ------------------------------------------------------------------------------

_FAST_CACHE_MAX = 8192  # distinct canonical rows (a tuple of shared short strings an entry)
_ID_CACHE_MAX = 8192  # distinct patient ids, times and cell texts seen (short strings)


class _Texts(dict):
    """One column's canonical texts: a cell seen before is a C-speed lookup, a new one is
    worked out once (bounded: past the bound it is worked out each time, never wrong)."""

    def __init__(self, make: Any) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, raw: str) -> str:
        text = self.make(raw)
        if len(self) < _ID_CACHE_MAX:
            self[raw] = text
        return text


_getitem = dict.__getitem__


# What the CSV output reads of a column, where it reads less than the column's value: the
# recommendation id reads the product only as high-neurotoxicity or not, and no CSV result
# column reads the excluded findings (recorded, never graded). A property test holds the CSV
# output of every row equal to the same row computed without any cache.
CSV_READS: dict[str, Any] = {
    "product": lambda p: None if p is None else (
        "axi-cel" if p in HIGH_NEUROTOXICITY_PRODUCTS else "tisa-cel"),
    "excluded": lambda e: None,
}


class RowParser:
    """Parses rows like parse_row, and remembers each valid row's output under its canonical
    row: every cell its output can depend on (all the contract's clinical columns, derived from
    KNOWN_COLUMNS so a new column is in the key at once, and any result column the input
    already has: this tool's own output graded again), each in the canonical text of what its
    column's grammar reads in it ("Alert " and "" are "alert"; "07" is 7), the age as its
    canonical_age (the age band every rule reads; as given beside a weight, whose plausibility
    reads the exact age), the five ICE items as their total spread in one fixed way, and for
    CSV output (`reads`) what the CSV result columns read of a column (CSV_READS). A refused
    cell stays as given, so its message is the row's own.

    The output is always computed from the canonical row, so it is a function of the key by
    construction. The patient id and the time, which change from row to row, are checked on
    every row by the same rules as parse_row."""

    def __init__(self, header: list[str], names: list[str], allow_id: bool = False,
                 now: datetime | None = None, protocol: Protocol | None = None,
                 reads: dict[str, Any] | None = None) -> None:
        import operator

        from icans_cli.core.advice import age_landmarks

        self.header, self.names, self.n = header, names, len(names)
        self.allow_id, self.now = allow_id, now
        idx = {n: i for i, n in enumerate(names)}
        self.i_pid = idx["patient_id"]
        self.i_at = idx.get("assessed_at")
        self.i_age = idx.get("age_years")
        self.i_weight = idx.get("weight_kg")
        self.i_items = [idx[c] for c in ICE_ITEM_COLUMNS] if all(
            c in idx for c in ICE_ITEM_COLUMNS) else None
        self.landmarks = age_landmarks(protocol) if protocol is not None else None
        items = set(self.i_items or ())
        positions = [i for i, n in enumerate(names) if i not in items and (
            (n in KNOWN_COLUMNS and n not in ("patient_id", "assessed_at"))
            # result columns that are also input columns (this tool's own output graded
            # again): an earlier verdict changes how a row is read, and the output
            # overwrites them
            or (n in OUTPUT_COLUMNS and n not in KNOWN_COLUMNS))]
        self.positions = positions
        self.cells_at = (operator.itemgetter(*positions) if len(positions) >= 2 else
                         (lambda cells, i=positions[0]: (cells[i],)) if positions else
                         (lambda cells: ()))
        reads = reads or {}
        self.tables: list[dict] = []
        for i in positions:
            n = names[i]
            if i == self.i_age and self.landmarks is not None:
                self.tables.append(_Texts(self._canonical_age))
            elif n in _CLINICAL:
                self.tables.append(_Texts(
                    lambda raw, n=n: _canonical_text(n, raw, reads.get(n))))
            else:
                self.tables.append(_Texts(lambda raw: raw))
        self.age_at = positions.index(self.i_age) if self.i_age in positions else None
        self.get_items = operator.itemgetter(*self.i_items) if self.i_items else None
        self.spreads = _Texts(self._spread)
        self.cache: dict[tuple, Any] = {}  # canonical row's key -> output
        self.memo = Memo()
        self._pids: dict[str, bool] = {}
        self._times: dict[str, bool] = {}
        self._times[""] = True  # no time given: nothing to check
        self.keys, self.lookup = self._make_lookup()

    def _make_lookup(self) -> tuple[Any, Any]:
        """(keys, lookup): closures over the parser's tables (every row calls them)."""
        tables, positions, spreads = self.tables, self.positions, self.spreads
        age_at, i_age, i_weight, i_items = self.age_at, self.i_age, self.i_weight, self.i_items
        weighed = age_at is not None and i_weight is not None
        cache_get, pids_get, times_get = self.cache.get, self._pids.get, self._times.get
        pid_ok, time_ok, canonical_row = self.pid_ok, self.time_ok, self.canonical_row
        i_pid, i_at, n = self.i_pid, self.i_at, self.n

        def keys(rows: list[list[str]], columns: list[tuple] | None = None) -> list[tuple]:
            """The canonical row's key of each row (every row of the header's width): every
            cell its output can depend on, canonical. Worked out a column at a time (the
            columns of the rows may be given: list(zip(*rows)))."""
            if columns is None:
                columns = list(zip(*rows))
            canon = [list(map(t.__getitem__, columns[i])) for t, i in zip(tables, positions)]
            if weighed:
                # a weight's plausibility reads the exact age: beside a weight the age stays
                # as given
                canon[age_at] = [a if w else c for a, c, w in zip(  # type: ignore[index]
                    columns[i_age], canon[age_at], columns[i_weight])]  # type: ignore
            base = list(zip(*canon)) if canon else [()] * len(rows)
            if i_items is None:
                return base
            return list(zip(base, map(spreads.__getitem__, zip(*(columns[i] for i in i_items)))))

        def lookup(cells: list[str], k: tuple | None = None) -> tuple[Any, Any]:
            """(the remembered output or None, and when None: (the canonical row, its key) for
            parse and remember; the key is None when the output must not be remembered). The
            patient id and the time are checked on every row, by parse_row's rules. `k`: the
            row's key, when keys() has given it already."""
            if len(cells) != n:
                return None, None
            if k is None:
                k = keys([cells])[0]
            hit = cache_get(k)
            if hit is None:
                return None, (canonical_row(cells, k), k)
            pid = cells[i_pid]
            if not (pids_get(pid) or pid_ok(pid)):
                return None, (canonical_row(cells, k), None)
            if i_at is not None:
                at = cells[i_at]
                if not (times_get(at) or time_ok(at)):
                    return None, (canonical_row(cells, k), None)
            return hit, None

        return keys, lookup

    def canonical_row(self, cells: list[str], key: tuple) -> list[str]:
        """The row the key stands for: the cells as given, with the key's canonical texts."""
        canon = list(cells)
        base = key if self.get_items is None else key[0]
        for i, text in zip(self.positions, base):
            canon[i] = text
        if self.get_items is not None:
            for i, text in zip(self.i_items, key[1]):  # type: ignore[arg-type]
                canon[i] = text
        return canon

    def slow(self, cells: list[str], row: int, line: int) -> RowOutcome:
        return parse_row(self.names, cells, row, line, self.header, self.allow_id, self.now,
                         self.memo)

    def remember(self, how: Any, value: Any) -> None:
        """After the full path graded a valid canonical row, keep its output under its key."""
        _canon, key = how
        if key is not None and len(self.cache) < _FAST_CACHE_MAX:
            self.cache[key] = value

    def _canonical_age(self, raw: str) -> str:
        from icans_cli.core.advice import canonical_age

        if not raw:
            return raw
        errors: list = []
        age = parse_cell("age_years", raw, errors) if not _BAD_CHAR.search(raw) and \
            len(raw) <= MAX_CELL else None
        if errors or age is None:
            return raw  # refused as given: the message is the row's own
        return _number_text(canonical_age(float(age), self.landmarks))  # type: ignore[arg-type]

    @staticmethod
    def _spread(raw: tuple) -> tuple:
        """The ICE items as their total spread in one fixed way (the grade reads the total),
        or as given when a cell is blank or refused."""
        if any(_BAD_CHAR.search(v) or len(v) > MAX_CELL for v in raw):
            return raw
        errors: list = []
        points = [parse_cell(c, v, errors) for c, v in zip(ICE_ITEM_COLUMNS, raw)]
        if errors or None in points:
            return raw
        left, out = sum(points), []  # type: ignore[arg-type]
        for spec in ICE_ITEMS:
            p = min(spec.max_points, left)
            left -= p
            out.append(str(p))
        return tuple(out)

    def pid_ok(self, raw: str) -> bool:
        ok = self._pids.get(raw)
        if ok is None:
            ok = len(raw) <= MAX_CELL and not _BAD_CHAR.search(raw) \
                and _pid(_strip(raw), self.allow_id) is not None
            if len(self._pids) < _ID_CACHE_MAX:
                self._pids[raw] = ok
        return ok

    def time_ok(self, raw: str) -> bool:
        ok = self._times.get(raw)
        if ok is None:
            ok = len(raw) <= MAX_CELL and not _BAD_CHAR.search(raw) \
                and valid_time(_strip(raw), self.now)
            if len(self._times) < _ID_CACHE_MAX:
                self._times[raw] = ok
        return ok


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _canonical_text(col: str, raw: str, reads: Any = None) -> str:
    """The canonical text of what a clinical column's grammar reads in a cell: parse_cell
    reads the same value in it (a property test holds this); `reads`, what an output reads of
    the value (CSV_READS). A refused cell stays as given."""
    if not raw:
        return raw
    text, value, refused, wrong = _read_cell(col, raw)
    if refused or wrong or text is None:
        return raw
    if reads is not None:
        value = reads(value)
    if value is None:
        return ""
    if col in BLANK_MEANS and value == BLANK_MEANS[col]:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, frozenset):
        return ";".join(sorted(value)) if value else "none"
    if isinstance(value, (int, float)):
        return _number_text(value)
    return str(value)


def valid_time(text: str, now: datetime | None = None) -> bool:
    """Whether parse_row would accept the time (a test keeps the two in step)."""
    try:
        t = parse_time(text)
    except InvalidFinding:
        return False
    return now is None or t <= now + FUTURE_SKEW
