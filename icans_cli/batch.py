"""Batch grading: CSV rows <-> core findings and results, one row at a time.

The input contract is spec section 6. Bad rows never stop the run: each gets ``status: invalid``
and its errors ``{column, message}``; the other rows are still graded. Memory does not grow with
the file: rows stream through, and the only state kept is a bounded cache of results for
identical findings (grading is a pure function).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import (
    CONSCIOUSNESS, EXCLUDED, ICP_EDEMA, MOTOR, SEIZURE, Findings, IcansResult, grade_icans,
    ICE_AGE_MIN, score_path,
)
from icans_cli.core.crs import OXYGEN_DEVICES, TREATMENTS, CrsFindings, CrsResult, grade_crs
from icans_cli.core.identifiers import BLANKS, parse_time, validate_patient_id
from icans_cli.core.protocol import (
    ADULT_AGE, HIGH_NEUROTOXICITY_PRODUCTS, PRODUCTS, RAISED_ICP, Protocol, Recommendation,
    recommend,
)
from icans_cli.core.scores import ICE_ITEMS, IceItems

ICE_ITEM_COLUMNS = tuple(f"ice_{i.key}" for i in ICE_ITEMS)
CRS_FINDING_COLUMNS = ("temperature_c", "hypotension", "vasopressors", "vasopressin", "oxygen",
                       "oxygen_flow_l_min", "crs_treated")
KNOWN_COLUMNS = ("patient_id", "assessed_at", "age_years", "developmental_delay",
                 *ICE_ITEM_COLUMNS, "ice_score", "capd_score", "consciousness", "seizure",
                 "motor", "icp_edema", "excluded", "sedated", "crs_grade", "product",
                 "weight_kg", "capd_baseline", *CRS_FINDING_COLUMNS)
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
    findings: Findings | None = None
    result: IcansResult | None = None
    recommendation: Recommendation | None = None
    crs_grade: int | None = None
    product: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    weight_kg: float | None = None
    crs: CrsResult | None = None  # the CRS graded from its findings, when they were given
    fast: tuple | None = None  # fast path: the normalised findings, to build Findings lazily
    fast_norm: int | None = None  # fast path: the cache id of the findings cells

    def real_findings(self) -> Findings:
        """The row's Findings (built on demand for rows graded through the cache)."""
        if self.findings is None:
            assert self.fast is not None
            self.findings = Findings(*self.fast)
        return self.findings

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


def text_input(binary: IO[bytes]) -> io.TextIOWrapper:
    """UTF-8 text (BOM dropped). Undecodable bytes become lone surrogates, never errors: a
    clinical cell holding one is reported invalid; a passed-through cell is written back as the
    same bytes."""
    if not hasattr(binary, "peek"):
        binary = io.BufferedReader(binary)  # type: ignore[arg-type]
    head = binary.peek(4)[:4]  # type: ignore[attr-defined]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) >= 4 and (
            head[1:2] == b"\x00" and head[3:4] == b"\x00" or
            head[0:1] == b"\x00" and head[2:3] == b"\x00")):
        raise UsageProblem("the input is UTF-16, not UTF-8: save it as CSV UTF-8 (in Excel: "
                           "Save As, CSV UTF-8)")
    if head[:3] == b"\xef\xbb\xbf":
        binary.read(3)  # the BOM; plain "utf-8" then decodes in C ("utf-8-sig" does not)
    return io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")


def read_rows(text: IO[str]) -> tuple[list[str], Iterator[tuple[int, int, list[str] | str,
                                                                  str | None]]]:
    """(header as given, iterator of (row number, line number, cells | error message, raw)).

    `raw` is the line itself (without its line end) when it holds no quote, carriage return or
    over-long field: such a line is split on commas exactly as the csv module would, and an
    ordinary row can then be passed through untouched. Any other line goes through the csv
    module (which may read further lines for a quoted field with line breaks)."""
    lines = _bounded_lines(text)
    header: list[str] | None = None
    lineno = 0
    while header is None:
        reader = csv.reader(itertools.chain(_first(lines), lines))
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
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise UsageProblem(f"duplicate column {n!r} in the header (names are matched "
                               "case-insensitively)")
        seen.add(n)
    if "patient_id" not in seen:
        # The names are not listed: a file without a header row would have a patient's data
        # in its first row.
        raise UsageProblem(f"no patient_id column in the first row ({len(names)} columns); the "
                           "first row must be a header naming the columns, with patient_id")
    limit = csv.field_size_limit()

    def rows() -> Iterator[tuple[int, int, list[str] | str, str | None]]:
        n, ln = 0, lineno
        for line in lines:
            ln += 1
            raw = line.rstrip("\r\n") if line.endswith("\n") else line
            if '"' not in raw and "\r" not in raw and len(raw) <= limit:
                if not raw or raw.isspace():
                    continue  # a blank line is not a row
                n += 1
                yield n, ln, raw.split(","), raw
                continue
            reader = csv.reader(itertools.chain((line,), lines))
            try:
                cells = next(reader)
            except csv.Error as exc:
                ln += reader.line_num - 1
                n += 1
                yield n, ln, f"the row cannot be read as CSV ({exc})", None
                continue
            except StopIteration:
                return
            ln += reader.line_num - 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            n += 1
            yield n, ln, cells, None

    return header, rows()


def _bounded_lines(text: IO[str]) -> Iterator[str]:
    """The lines of the input, none longer than MAX_LINE characters (a file of one endless
    line, such as /dev/zero, is refused instead of filling memory)."""
    n = 0
    while True:
        line = text.readline(MAX_LINE + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE:
            raise UsageProblem(f"line {n:,} is longer than {MAX_LINE:,} characters: this is not "
                               "a CSV export")
        yield line


def _first(lines: Iterator[str]) -> Iterator[str]:
    """The next line only (so a csv reader over chain(_first(it), it) starts where it is)."""
    for line in lines:
        yield line
        return


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
    try:
        status, errors = cells[names.index("status")], cells[names.index("errors")]
    except (ValueError, IndexError):
        return None
    if status == "invalid" and errors.startswith(_SHAPE_PREFIX) and "; " not in errors:
        return errors[len("(row): "):]
    return None


def parse_row(names: list[str], cells: list[str], row: int, line: int,
              header: list[str]) -> RowOutcome:
    by_name = dict(zip(header, cells))
    out = RowOutcome(row, line, by_name)
    errors = out.errors
    if len(cells) != len(names):
        _err(errors, "(row)", f"the row has {len(cells)} cells but the header has {len(names)}"
             + (" (an unclosed quote?)" if len(cells) < len(names) else ""))
        pid = cells[names.index("patient_id")] if names.index("patient_id") < len(cells) else ""
        try:
            out.patient_id = validate_patient_id(pid)
        except InvalidFinding:
            pass
        return out
    shape = _earlier_shape_error(names, cells)
    if shape is not None:
        # This tool's own output, graded again: a row it refused for its shape (a shifted or
        # ragged row, its cells since cut or padded to the header) stays refused, never graded
        # from cells that may sit in the wrong columns.
        _err(errors, "(row)", shape)
        try:
            out.patient_id = validate_patient_id(cells[names.index("patient_id")])
        except InvalidFinding:
            pass
        return out
    values: dict[str, str] = {}
    for n, c in zip(names, cells):
        if n in KNOWN_COLUMNS:
            if len(c) > MAX_CELL:
                _err(errors, n, f"the cell is {len(c):,} characters long; at most {MAX_CELL}")
                continue
            if _BAD_CHAR.search(c):
                _err(errors, n, "contains a control character, a NUL byte or bytes that are "
                     "not UTF-8")
                continue
            values[n] = _strip(c)
    try:
        out.patient_id = validate_patient_id(values.get("patient_id", ""))
    except InvalidFinding as exc:
        _err(errors, "patient_id", exc.detail)
    v = values.get("assessed_at")
    if v:
        try:
            out.assessed_at = parse_time(v).isoformat(timespec="seconds")
        except InvalidFinding as exc:
            _err(errors, "assessed_at", exc.detail)
    parsed = {col: parse_cell(col, raw, errors) for col, raw in values.items()
              if col in CLINICAL_COLUMNS and raw}
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
            points = [parsed.get(c) for c in ICE_ITEM_COLUMNS]
            if None not in points:
                items = IceItems(*points)  # type: ignore[arg-type]
    ice, capd = parsed.get("ice_score"), parsed.get("capd_score")
    cons = parsed.get("consciousness") or "alert"
    seiz = parsed.get("seizure") or "none"
    motor = parsed.get("motor") or "none"
    icp = parsed.get("icp_edema") or frozenset()
    excl = parsed.get("excluded") or frozenset()
    sedated = bool(parsed.get("sedated"))
    crs, product = parsed.get("crs_grade"), parsed.get("product")
    out.crs_grade, out.product = crs, product
    out.weight_kg = parsed.get("weight_kg")
    if any(c in parsed for c in CRS_FINDING_COLUMNS) and not errors:
        out.crs = crs_from_cells(parsed, crs, errors)
        if out.crs is not None:
            out.crs_grade = out.crs.grade
    if errors:
        return out
    try:
        out.findings = _findings(age, delay, items, ice, capd, cons, seiz, motor, icp, excl,
                                 sedated, parsed.get("capd_baseline"))
    except InvalidFinding as exc:
        _err(errors, exc.field, exc.detail)
    return out


def crs_from_cells(parsed: dict[str, Any], crs_grade: int | None,
                   errors: list) -> CrsResult | None:
    """The ASTCT CRS grade from the CRS finding columns; a crs_grade that disagrees is an
    error. Temperature is needed unless treatment for CRS already waives the fever."""
    treatments = parsed.get("crs_treated") or frozenset()
    temp = parsed.get("temperature_c")
    if temp is None and not treatments:
        _err(errors, "temperature_c", "needed to grade CRS from its findings (fever is 38.0 C "
             "or more); allowed: 25.0-45.0")
        return None
    try:
        result = grade_crs(CrsFindings(
            fever=False if temp is None else None, temperature_c=temp,
            hypotension=bool(parsed.get("hypotension")),
            vasopressors=parsed.get("vasopressors") or 0,
            vasopressin=bool(parsed.get("vasopressin")),
            oxygen=parsed.get("oxygen") or "none",
            oxygen_flow_l_min=parsed.get("oxygen_flow_l_min"),
            treatments=treatments))
    except InvalidFinding as exc:
        _err(errors, exc.field, exc.detail)
        return None
    if crs_grade is not None and crs_grade != result.grade:
        _err(errors, "crs_grade", f"{crs_grade} disagrees with the CRS findings, which give "
             f"{result.label} ({result.explanation}); allowed: blank, or {result.grade}")
        return None
    return result


def _findings(age, delay, items, ice, capd, cons, seiz, motor, icp, excl, sedated,
              baseline=None) -> Findings:
    return Findings(age_years=age, developmental_delay=delay, ice_items=items, ice_score=ice,
                    capd_score=capd, consciousness=cons, seizure=seiz, motor=motor,
                    icp_edema=icp, excluded=excl, sedated=sedated, capd_baseline=baseline)


# --- grading with a bounded cache ---------------------------------------------------------------

class Grader:
    """Grades parsed rows under one protocol, caching advice per management situation."""

    def __init__(self, protocol: Protocol, want_json: bool = True) -> None:
        self.protocol = protocol
        self.want_json = want_json
        self._recs: dict[tuple, tuple[Recommendation, str | None]] = {}

    def recommendation(self, out: RowOutcome) -> tuple[Recommendation, str | None]:
        r = out.result
        assert r is not None
        age = out.fast[0] if out.fast is not None else out.findings.age_years  # type: ignore
        controlled = out.crs is not None and out.crs.controlled
        # Everything the advice depends on. The weight changes only the computed amounts in
        # the JSON lines; CSV output shows the recommendation id, which does not hold it.
        weight = out.weight_kg if self.want_json else None
        if self.want_json:
            icp = r.domain("icp_edema").value
            key: tuple = (r.effective_grade, r.status, out.crs_grade, controlled, out.product,
                          None if age is None else age < ADULT_AGE, weight,
                          r.domain("seizure").value, bool(RAISED_ICP & set(icp.split(";"))))
        else:
            # CSV, a table and the log keep only the recommendation's id (the log stores the
            # findings; `icans show` derives the advice again): key on what the id holds, so
            # the cache covers every row instead of overflowing on seizure x ICP x product.
            key = ("id", r.effective_grade, r.status, out.crs_grade, controlled,
                   out.product in HIGH_NEUROTOXICITY_PRODUCTS,
                   None if age is None else age < ADULT_AGE)
        hit = self._recs.get(key)
        if hit is None:
            rec = recommend(self.protocol, r, out.crs_grade, out.product, age, weight_kg=weight,
                            crs_controlled=controlled)
            hit = (rec, None)
            if len(self._recs) < 512:
                self._recs[key] = hit
        if self.want_json and hit[1] is None:
            hit = (hit[0], json.dumps(hit[0].as_dict(), ensure_ascii=False))
            if len(self._recs) < 512:
                self._recs[key] = hit
        return hit

    def grade(self, out: RowOutcome) -> str | None:
        """Grade a parsed row in place; return the recommendation's JSON (cached; None when
        the grader was made without want_json)."""
        if out.errors or (out.findings is None and out.fast is None):
            return None
        if out.result is None:
            out.result = grade_icans(out.real_findings())
        rec, rec_json = self.recommendation(out)
        out.recommendation = rec
        return rec_json


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
    return {"grade": crs.grade, "label": crs.label, "controlled": crs.controlled,
            "fever_waived": crs.fever_waived, "explanation": crs.explanation,
            "disagreement": crs.disagreement}


def csv_tail(out: RowOutcome) -> list[object]:
    r = out.result
    return [
        r.ice_score if r else None,
        r.capd_score if r else None,
        r.grade if r else None,
        r.grade_at_least if r else None,
        out.status,
        ";".join(r.drivers) if r else "",
        out.recommendation.id if out.recommendation else "",
        "; ".join(f"{e['column']}: {e['message']}" for e in out.errors),
    ]


# --- the fast path ------------------------------------------------------------------------------

CLINICAL_COLUMNS = tuple(c for c in KNOWN_COLUMNS if c not in ("patient_id", "assessed_at"))
# Bounded caches: memory must not grow with the file (peak RSS at 1M rows within 1.3x of 10k).
_CACHE_MAX = 2048
_GRADE_CACHE_MAX = 512  # a graded result is the largest entry
_FIND_CACHE_MAX = 8192  # a short string and (id, bool) an entry


def parse_cell(col: str, raw: str, errors: list) -> Any:
    """One clinical cell by its column's grammar: the value, or None with an error appended.
    The single statement of what each column accepts (both parse paths use it)."""
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
            _err(errors, col, f"{v} is out of range; allowed: 0-130")
            return None
        return int(a) if a.is_integer() else a
    if col in ("developmental_delay", "sedated", "hypotension", "vasopressin"):
        return _yes_no(errors, col, v)
    if col in _NUM_RANGES:
        low, high, allowed = _NUM_RANGES[col]
        if not _NUM.fullmatch(v):
            _err(errors, col, ("is negative" if _negative(v) else "is not a number")
                 + f"; allowed: {allowed}")
            return None
        x = float(v)
        if not (low < x <= high if col == "oxygen_flow_l_min" else low <= x <= high):
            _err(errors, col, f"{v} is out of range; allowed: {allowed}")
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
            "motor": tuple(MOTOR), "product": PRODUCTS, "oxygen": tuple(OXYGEN_DEVICES)}


def _negative(v: str) -> bool:
    return v[:1] == "-" and bool(_NUM.fullmatch(v[1:]))


def _parse_one(col: str, raw: str) -> tuple[Any, bool]:
    """(value, ok) for the caches of the fast path."""
    errors: list = []
    value = parse_cell(col, raw, errors)
    return value, not errors


_FINDING_COLUMNS = tuple(c for c in CLINICAL_COLUMNS
                         if c not in ("age_years", "crs_grade", "product", "weight_kg",
                                      *CRS_FINDING_COLUMNS))


class RowParser:
    """Parses rows like parse_row, but fast: the cells that describe the findings are looked up
    as one tuple in a cache of their normalised values, and each distinct set of findings is
    graded once (grading is pure). Anything unusual (a bad cell, a ragged row, bad bytes, a
    contradiction) falls back to parse_row, which collects every error with its message."""

    def __init__(self, header: list[str], names: list[str]) -> None:
        import operator

        self.header, self.names, self.n = header, names, len(names)
        idx = {n: i for i, n in enumerate(names)}
        self.i_pid = idx["patient_id"]
        self.i_at = idx.get("assessed_at")
        self.i_age = idx.get("age_years")
        self.i_crs = idx.get("crs_grade")
        self.i_product = idx.get("product")
        self.i_weight = idx.get("weight_kg")
        # CRS findings (vitals) take the full path: they grade the CRS, and may contradict it.
        self.i_crs_findings = tuple(idx[c] for c in CRS_FINDING_COLUMNS if c in idx)
        # this tool's own output as input: a row it refused takes the full path (which keeps
        # a refusal for the row's shape)
        self.i_status = idx.get("status") if "errors" in idx else None
        self.find_cols = tuple(c for c in _FINDING_COLUMNS if c in idx)
        positions = [idx[c] for c in self.find_cols]
        if len(positions) >= 2:
            self.get_find = operator.itemgetter(*positions)
        elif positions:
            one = operator.itemgetter(positions[0])
            self.get_find = lambda cells: (one(cells),)
        else:
            self.get_find = lambda cells: ()
        self.find_cache: dict[tuple, Any] = {}
        self.cell_cache: dict[str, dict[str, tuple]] = {c: {} for c in CLINICAL_COLUMNS}
        self.grade_cache: dict[tuple, IcansResult] = {}
        self.tail_cache: dict[tuple, tuple[str, str, list]] = {}
        self.grade_ids: dict[tuple, int] = {}
        self.fast_tail = self._make_fast_tail()

    def _make_fast_tail(self) -> Callable[[list[str]], tuple[str, str, list] | None]:
        """Build fast_tail(cells) -> (status, the result columns as CSV text after a comma, the
        same as a list) for an ordinary valid row, from the caches; None when the row needs the
        full path (anything unusual, or the first time a situation is seen). It is the hot
        loop, so everything it touches is bound once here."""
        n, get_find = self.n, self.get_find
        find_get, tail_get = self.find_cache.get, self.tail_cache.get
        i_age, i_crs, i_product, i_pid, i_at = (self.i_age, self.i_crs, self.i_product,
                                                self.i_pid, self.i_at)
        i_weight, i_crs_findings = self.i_weight, self.i_crs_findings
        i_status = self.i_status
        age_get = self.cell_cache["age_years"].get
        crs_get = self.cell_cache["crs_grade"].get
        product_get = self.cell_cache["product"].get
        weight_get = self.cell_cache["weight_kg"].get
        high_products = HIGH_NEUROTOXICITY_PRODUCTS

        def fast_tail(cells: list[str]) -> tuple[str, str, list] | None:
            if len(cells) != n:
                return None
            if i_status is not None and cells[i_status] == "invalid":
                return None
            hit = find_get(get_find(cells))
            if not hit:
                return None
            under12 = high = child = False
            crs_key = -1
            if i_age is not None and cells[i_age]:
                a = age_get(cells[i_age])
                if a is None or not a[1]:
                    return None
                under12 = a[0] is not None and a[0] < ICE_AGE_MIN
                child = a[0] is not None and a[0] < ADULT_AGE
            if i_crs is not None and cells[i_crs]:
                c = crs_get(cells[i_crs])
                if c is None or not c[1]:
                    return None
                crs_key = c[0]
            for i in i_crs_findings:
                if cells[i]:
                    return None
            if i_weight is not None and cells[i_weight]:
                w = weight_get(cells[i_weight])
                if w is None or not w[1]:
                    return None
            if i_product is not None and cells[i_product]:
                p = product_get(cells[i_product])
                if p is None or not p[1]:
                    return None
                high = p[0] in high_products
            pid = cells[i_pid]
            if not (0 < len(pid) <= 64 and pid.isprintable() and pid == pid.strip(BLANKS)
                    and pid):
                return None
            if i_at is not None and cells[i_at] and not valid_time(cells[i_at]):
                return None
            return tail_get((under12 or hit[1], hit[0], crs_key, high, child))

        return fast_tail

    def remember_tail(self, out: RowOutcome, tail: list) -> None:
        """After the full path graded an ordinary row, cache its CSV result columns."""
        if out.fast is None or out.errors or len(self.tail_cache) >= _CACHE_MAX:
            return
        age, delay = out.fast[0], out.fast[1]
        if out.fast_norm is None:
            return
        under12 = age is not None and age < ICE_AGE_MIN
        child = age is not None and age < ADULT_AGE
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(["", *tail])
        key = (under12 or delay, out.fast_norm, -1 if out.crs_grade is None else out.crs_grade,
               out.product in HIGH_NEUROTOXICITY_PRODUCTS, child)
        self.tail_cache[key] = (tail[4], buf.getvalue(), tail)

    def slow(self, cells, row, line) -> RowOutcome:
        return parse_row(self.names, cells, row, line, self.header)

    def _cell(self, col: str, raw: str):
        cache = self.cell_cache[col]
        hit = cache.get(raw)
        if hit is None:
            hit = _parse_one(col, raw) if len(raw) <= MAX_CELL else (None, False)
            if len(cache) < _CACHE_MAX:
                cache[raw] = hit
        return hit

    def _findings(self, raw: tuple) -> Any:
        """Normalised (delay, items, ice, capd, cons, seizure, motor, icp, excluded, sedated,
        capd baseline), or False when a cell is bad (the slow path then reports it)."""
        v: dict[str, Any] = {}
        for col, cell in zip(self.find_cols, raw):
            if not cell:
                continue
            value, ok = self._cell(col, cell)
            if not ok:
                return False
            if value is not None:
                v[col] = value
        items_raw = [v.get(c) for c in ICE_ITEM_COLUMNS]
        ice = v.get("ice_score")
        items = None
        if any(x is not None for x in items_raw):
            if None in items_raw:
                return False
            items = IceItems(*items_raw)  # type: ignore[arg-type]
            if ice is not None and ice != items.total:
                return False
            ice = items.total
        return (bool(v.get("developmental_delay", False)), items, ice, v.get("capd_score"),
                v.get("consciousness", "alert"), v.get("seizure", "none"),
                v.get("motor", "none"), v.get("icp_edema", frozenset()),
                v.get("excluded", frozenset()), bool(v.get("sedated", False)),
                v.get("capd_baseline"))

    def parse(self, cells: list[str], row: int, line: int) -> RowOutcome:
        """Every clinical column rejects anything outside its grammar (and so any NUL or
        undecodable byte), sending such rows to the slow path, which names the problem."""
        if len(cells) != self.n:
            return self.slow(cells, row, line)
        raw = self.get_find(cells)  # the tuple of the finding cells is the cache key
        norm = self._findings(raw)  # cheap: every cell's parse is cached
        if norm is False:
            if len(self.find_cache) < _FIND_CACHE_MAX:
                self.find_cache[raw] = False
            return self.slow(cells, row, line)
        # Findings that differ only in the ICE items share a grade: one id for them. The fast
        # path's cache keeps just (id, developmental delay), a few bytes an entry.
        no_items = norm[:1] + norm[2:]
        norm_id = self.grade_ids.setdefault(no_items, len(self.grade_ids))
        if len(self.find_cache) < _FIND_CACHE_MAX:
            self.find_cache[raw] = (norm_id, norm[0])
        age = crs = product = None
        if self.i_age is not None and cells[self.i_age]:
            age, ok = self._cell("age_years", cells[self.i_age])
            if not ok:
                return self.slow(cells, row, line)
        if self.i_crs is not None and cells[self.i_crs]:
            crs, ok = self._cell("crs_grade", cells[self.i_crs])
            if not ok:
                return self.slow(cells, row, line)
        if self.i_product is not None and cells[self.i_product]:
            product, ok = self._cell("product", cells[self.i_product])
            if not ok:
                return self.slow(cells, row, line)
        if any(cells[i] for i in self.i_crs_findings):
            return self.slow(cells, row, line)
        weight = None
        if self.i_weight is not None and cells[self.i_weight]:
            weight, ok = self._cell("weight_kg", cells[self.i_weight])
            if not ok:
                return self.slow(cells, row, line)
        pid = _strip(cells[self.i_pid])
        if not (0 < len(pid) <= 64 and pid.isprintable()):
            return self.slow(cells, row, line)
        assessed = None
        if self.i_at is not None and cells[self.i_at]:
            try:
                assessed = parse_time(cells[self.i_at]).isoformat(timespec="seconds")
            except InvalidFinding:
                return self.slow(cells, row, line)
        delay, items, ice, capd, cons, seiz, motor, icp, excl, sedated, baseline = norm
        key = (score_path(age, delay), norm_id)
        result = self.grade_cache.get(key)
        if result is None:
            try:
                result = grade_icans(Findings(age, delay, None, ice, None, capd, cons, seiz,
                                              motor, icp, excl, sedated, baseline))
            except InvalidFinding:
                return self.slow(cells, row, line)
            if len(self.grade_cache) < _GRADE_CACHE_MAX:
                self.grade_cache[key] = result
        out = RowOutcome(row, line, {}, pid, assessed, None, result, None, crs, product, [],
                         weight_kg=weight,
                         fast=(age, delay, items, None if items else ice, None, capd, cons,
                               seiz, motor, icp, excl, sedated, baseline),
                         fast_norm=norm_id)
        return out


def valid_time(text: str) -> bool:
    """Whether parse_time would accept the text (the fast path's cheap check; a test keeps the
    two in step)."""
    try:
        parse_time(text)
    except InvalidFinding:
        return False
    return True
