"""Batch grading: CSV rows <-> core findings and results, one row at a time.

The input contract is spec section 6. Bad rows never stop the run: each gets ``status: invalid``
and its errors ``{column, message}``; the other rows are still graded. Memory does not grow with
the file: rows stream through, and the only state kept is bounded caches keyed on the whole
input of what they cache (the advice on the whole Case; a row's output on every clinical cell),
so no row's answer depends on the rows before it.
"""

from __future__ import annotations

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
from icans_cli.core.protocol import PRODUCTS, Protocol, Recommendation
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


def _pid(raw: str, allow_id: bool) -> str | None:
    try:
        return check_pseudonym(raw, allow_id)
    except InvalidFinding:
        return None


def parse_row(names: list[str], cells: list[str], row: int, line: int,
              header: list[str], allow_id: bool = False,
              now: datetime | None = None) -> RowOutcome:
    """One row by the contract (spec section 6), every problem named with its column. `now`:
    the time of the run, against which an assessed_at in the future is refused."""
    by_name = dict(zip(header, cells))
    out = RowOutcome(row, line, by_name)
    errors = out.errors
    if len(cells) != len(names):
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
        out.patient_id = check_pseudonym(values.get("patient_id", ""), allow_id)
    except InvalidFinding as exc:
        _err(errors, "patient_id", exc.detail)
    v = values.get("assessed_at")
    if v:
        try:
            t = parse_time(v)
            if now is not None and t > now + FUTURE_SKEW:
                raise InvalidFinding("assessed_at", "is in the future", "a past date-time (5 "
                                     "minutes of clock difference allowed)")
            out.assessed_at = t.isoformat(timespec="seconds")
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
    weight = parsed.get("weight_kg")
    if weight is not None and not parsed.get("weight_confirmed"):
        band = implausible(age, weight)
        if band is not None:
            _err(errors, "weight_kg", f"is outside the usual range for age {age:g} "
                 f"({band[0]:g}-{band[1]:g} kg): check it (pounds? 1 kg = 2.2 lb), or confirm "
                 "it with weight_confirmed=yes")
    crs, product = parsed.get("crs_grade"), parsed.get("product")
    out.crs_grade = crs
    if any(c in parsed for c in CRS_FINDING_COLUMNS) and not errors:
        out.crs_findings, out.crs = crs_from_cells(parsed, crs, errors)
        if out.crs is not None:
            out.crs_grade = out.crs.grade
    if errors:
        return out
    try:
        findings = Findings(
            age_years=age, developmental_delay=delay, ice_items=items,
            ice_score=parsed.get("ice_score"), capd_score=parsed.get("capd_score"),
            consciousness=parsed.get("consciousness") or "alert",
            seizure=parsed.get("seizure") or "none", motor=parsed.get("motor") or "none",
            icp_edema=parsed.get("icp_edema") or frozenset(),
            excluded=parsed.get("excluded") or frozenset(),
            sedated=bool(parsed.get("sedated")), capd_baseline=parsed.get("capd_baseline"))
        out.case = Case(findings, CrsState.of(out.crs, crs), product, weight)
    except InvalidFinding as exc:
        _err(errors, exc.field, exc.detail)
    return out


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

_ADVICE_CACHE_MAX = 4096


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
        out.recommendation.id if out.recommendation else "",
        "; ".join(f"{e['column']}: {e['message']}" for e in out.errors),
    ]


CLINICAL_COLUMNS = tuple(c for c in KNOWN_COLUMNS if c not in ("patient_id", "assessed_at"))


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

_FAST_CACHE_MAX = 8192  # distinct rows' clinical cells (a tuple of short strings an entry)
_ID_CACHE_MAX = 16384  # distinct patient ids and times seen (a short string and a bool)


class RowParser:
    """Parses rows like parse_row, and remembers each valid row's computed output under the
    exact text of every cell its output can depend on: all the contract's clinical columns
    (derived from KNOWN_COLUMNS, so a new column is in the key at once) and any result column
    the input already has (this tool's own output graded again). The patient id and the time, which change
    from row to row, are checked on every row by the same rules as parse_row. A row whose cells
    were seen before is answered from the cache; anything else takes parse_row."""

    def __init__(self, header: list[str], names: list[str], allow_id: bool = False,
                 now: datetime | None = None) -> None:
        import operator

        self.header, self.names, self.n = header, names, len(names)
        self.allow_id, self.now = allow_id, now
        idx = {n: i for i, n in enumerate(names)}
        self.i_pid = idx["patient_id"]
        self.i_at = idx.get("assessed_at")
        positions = [i for i, n in enumerate(names)
                     if n in KNOWN_COLUMNS and n not in ("patient_id", "assessed_at")]
        # result columns that are also input columns (this tool's own output graded again):
        # an earlier verdict changes how a row is read, and the output overwrites them
        positions += [i for i, n in enumerate(names)
                      if n in OUTPUT_COLUMNS and n not in KNOWN_COLUMNS]
        if len(positions) >= 2:
            self.key = operator.itemgetter(*positions)
        elif positions:
            one = operator.itemgetter(positions[0])
            self.key = lambda cells: (one(cells),)
        else:
            self.key = lambda cells: ()
        self.cache: dict[tuple, Any] = {}
        self._pids: dict[str, bool] = {}
        self._times: dict[str, bool] = {}

    def slow(self, cells: list[str], row: int, line: int) -> RowOutcome:
        return parse_row(self.names, cells, row, line, self.header, self.allow_id, self.now)

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

    def cached(self, cells: list[str]) -> Any:
        """What was remembered for a row with these clinical cells, when its patient id and
        time are valid too; else None (the row takes the full path)."""
        if len(cells) != self.n:
            return None
        hit = self.cache.get(self.key(cells))
        if hit is None:
            return None
        if not self.pid_ok(cells[self.i_pid]):
            return None
        if self.i_at is not None and cells[self.i_at] and not self.time_ok(cells[self.i_at]):
            return None
        return hit

    def remember(self, cells: list[str], value: Any) -> None:
        """After the full path graded a valid row, keep its output for rows with the same
        clinical cells."""
        if len(cells) == self.n and len(self.cache) < _FAST_CACHE_MAX:
            self.cache[self.key(cells)] = value


def valid_time(text: str, now: datetime | None = None) -> bool:
    """Whether parse_row would accept the time (a test keeps the two in step)."""
    try:
        t = parse_time(text)
    except InvalidFinding:
        return False
    return now is None or t <= now + FUTURE_SKEW
