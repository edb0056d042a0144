"""Batch grading: CSV rows <-> core findings and results, one row at a time.

The input contract is spec section 6. Bad rows never stop the run: each gets ``status: invalid``
and its errors ``{column, message}``; the other rows are still graded. Memory does not grow with
the file: rows stream through, and the only state kept is a bounded cache of results for
identical findings (grading is a pure function).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, Any, Iterator

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import (
    CONSCIOUSNESS, EXCLUDED, ICP_EDEMA, MOTOR, SEIZURE, Findings, IcansResult, grade_icans,
    score_path, score_path_reason,
)
from icans_cli.core.identifiers import parse_time, validate_patient_id
from icans_cli.core.protocol import PRODUCTS, Protocol, Recommendation, recommend
from icans_cli.core.scores import ICE_ITEMS, IceItems

ICE_ITEM_COLUMNS = tuple(f"ice_{i.key}" for i in ICE_ITEMS)
KNOWN_COLUMNS = ("patient_id", "assessed_at", "age_years", "developmental_delay",
                 *ICE_ITEM_COLUMNS, "ice_score", "capd_score", "consciousness", "seizure",
                 "motor", "icp_edema", "excluded", "sedated", "crs_grade", "product")
OUTPUT_COLUMNS = ("ice_score", "capd_score", "icans_grade", "grade_at_least", "status",
                  "drivers", "recommendation", "errors")
JSONL_KEYS = ("row", "patient_id", "assessed_at", "status", "score_path", "ice_score",
              "capd_score", "icans_grade", "grade_at_least", "drivers", "domains", "excluded",
              "not_assessable", "crs_grade", "product", "recommendation", "errors")
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0"}
YES_NO = "yes/no, y/n, true/false, 1/0"
MAX_CELL = 1000  # longer cells are refused (a patient id is at most 64)
_BAD_CHAR = re.compile("[\udc00-\udcff]")  # NUL (mapped below) or bytes that are not UTF-8
_INT = re.compile(r"^\s*[+]?\d+\s*$")
_NUM = re.compile(r"^\s*[+]?(\d+(\.\d*)?|\.\d+)\s*$")


class UsageProblem(Exception):
    """The input as a whole cannot be read as the contract's CSV (exit 2)."""


@dataclass
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

    @property
    def status(self) -> str:
        return "invalid" if self.errors or self.result is None else self.result.status


# --- reading ------------------------------------------------------------------------------------

def _text_lines(binary: IO[bytes]) -> Iterator[str]:
    """UTF-8 lines (BOM dropped); undecodable bytes and NULs become markers, never errors."""
    first = True
    for raw in binary:
        if first:
            first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        line = raw.decode("utf-8", "surrogateescape")
        yield line.replace("\x00", "\udc00") if "\x00" in line else line


def _clean(value: str) -> str:
    """For output: markers of bad bytes become U+FFFD so the output is valid UTF-8."""
    return _BAD_CHAR.sub("\ufffd", value) if _BAD_CHAR.search(value) else value


def read_rows(binary: IO[bytes]) -> tuple[list[str], Iterator[tuple[int, int, list[str] | str]]]:
    """(header as given, iterator of (row number, line number, cells | error message))."""
    lines = _text_lines(binary)
    reader = csv.reader(lines)
    header: list[str] | None = None
    while header is None:
        try:
            first = next(reader)
        except StopIteration:
            raise UsageProblem("the input is empty: a header row is needed, with at least "
                               "a patient_id column") from None
        except csv.Error as exc:
            raise UsageProblem(f"the header row cannot be read as CSV ({exc})") from None
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
        raise UsageProblem("no patient_id column in the header (columns: "
                           + ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") + ")")

    def rows() -> Iterator[tuple[int, int, list[str] | str]]:
        n = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                n += 1
                yield n, reader.line_num, f"the row cannot be read as CSV ({exc})"
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line is not a row
            n += 1
            yield n, reader.line_num, cells

    return header, rows()


# --- one row ------------------------------------------------------------------------------------

def _shown(value: str) -> str:
    v = _clean(value.strip())
    return repr(v if len(v) <= 40 else v[:37] + "...")


def _err(errors: list, column: str, message: str) -> None:
    errors.append({"column": column, "message": message})


def _int(errors, col, raw, low, high):
    if not _INT.match(raw):
        _err(errors, col, f"{_shown(raw)} is not a whole number; allowed: {low}-{high}")
        return None
    v = int(raw)
    if not low <= v <= high:
        _err(errors, col, f"{v} is outside {low}-{high}")
        return None
    return v


def _yes_no(errors, col, raw):
    v = raw.strip().lower()
    if v in YES:
        return True
    if v in NO:
        return False
    _err(errors, col, f"{_shown(raw)} is not yes or no; allowed: {YES_NO}")
    return None


def _choice(errors, col, raw, allowed):
    v = raw.strip().lower()
    if v in allowed:
        return v
    _err(errors, col, f"{_shown(raw)} is not allowed; allowed: {', '.join(allowed)}")
    return None


def _multi(errors, col, raw, allowed, none_ok):
    parts = [p.strip().lower() for p in raw.split(";") if p.strip()]
    bad = [p for p in parts if p not in allowed and not (none_ok and p == "none")]
    if bad:
        _err(errors, col, f"{_shown(bad[0])} is not allowed; allowed: "
             + ("none, or " if none_ok else "") + ", ".join(allowed) + ", separated by ;")
        return None
    if none_ok and "none" in parts:
        if len(parts) > 1:
            _err(errors, col, "'none' cannot be combined with findings")
            return None
        return frozenset()
    return frozenset(parts)


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
    values: dict[str, str] = {}
    for n, c in zip(names, cells):
        if n in KNOWN_COLUMNS:
            if len(c) > MAX_CELL:
                _err(errors, n, f"the cell is {len(c):,} characters long; at most {MAX_CELL}")
                continue
            if _BAD_CHAR.search(c):
                _err(errors, n, "contains a NUL byte or bytes that are not UTF-8")
                continue
            values[n] = c.strip()
    try:
        out.patient_id = validate_patient_id(values.get("patient_id", ""))
    except InvalidFinding as exc:
        _err(errors, "patient_id", exc.detail)
    v = values.get("assessed_at")
    if v:
        try:
            out.assessed_at = parse_time(v).isoformat(timespec="seconds")
        except InvalidFinding as exc:
            _err(errors, "assessed_at", f"{_shown(v)} {exc.detail}")
    age = None
    v = values.get("age_years")
    if v:
        if not _NUM.match(v):
            _err(errors, "age_years", f"{_shown(v)} is not a number; allowed: a number >= 0")
        else:
            age = float(v)
            if age > 130:
                _err(errors, "age_years", f"{v} is out of range; allowed: 0-130")
                age = None
            elif age.is_integer():
                age = int(age)
    delay = False
    v = values.get("developmental_delay")
    if v:
        delay = bool(_yes_no(errors, "developmental_delay", v))
    item_values = [values.get(c, "") for c in ICE_ITEM_COLUMNS]
    items = None
    if any(item_values):
        if not all(item_values):
            missing = [c for c, x in zip(ICE_ITEM_COLUMNS, item_values) if not x]
            _err(errors, missing[0], "blank while other ICE items are given; allowed: all five "
                 "ICE items, or none and ice_score")
        else:
            parsed = [_int(errors, c, x, 0, spec.max_points)
                      for c, x, spec in zip(ICE_ITEM_COLUMNS, item_values, ICE_ITEMS)]
            if None not in parsed:
                items = IceItems(*parsed)
    ice = _int(errors, "ice_score", values["ice_score"], 0, 10) if values.get("ice_score") \
        else None
    capd = _int(errors, "capd_score", values["capd_score"], 0, 32) if values.get("capd_score") \
        else None
    cons = _choice(errors, "consciousness", values["consciousness"], tuple(CONSCIOUSNESS)) \
        if values.get("consciousness") else "alert"
    seiz = _choice(errors, "seizure", values["seizure"], tuple(SEIZURE)) \
        if values.get("seizure") else "none"
    motor = _choice(errors, "motor", values["motor"], tuple(MOTOR)) \
        if values.get("motor") else "none"
    icp = _multi(errors, "icp_edema", values["icp_edema"], tuple(ICP_EDEMA), True) \
        if values.get("icp_edema") else frozenset()
    excl = _multi(errors, "excluded", values["excluded"], tuple(EXCLUDED), False) \
        if values.get("excluded") else frozenset()
    sedated = bool(_yes_no(errors, "sedated", values["sedated"])) if values.get("sedated") \
        else False
    crs = _int(errors, "crs_grade", values["crs_grade"], 0, 4) if values.get("crs_grade") \
        else None
    product = _choice(errors, "product", values["product"], PRODUCTS) \
        if values.get("product") else None
    out.crs_grade, out.product = crs, product
    if errors:
        return out
    try:
        out.findings = _findings(age, delay, items, ice, capd, cons, seiz, motor, icp, excl,
                                 sedated)
    except InvalidFinding as exc:
        _err(errors, exc.field, exc.detail)
    return out


def _findings(age, delay, items, ice, capd, cons, seiz, motor, icp, excl, sedated) -> Findings:
    return Findings(age_years=age, developmental_delay=delay, ice_items=items, ice_score=ice,
                    capd_score=capd, consciousness=cons, seizure=seiz, motor=motor,
                    icp_edema=icp, excluded=excl, sedated=sedated)


# --- grading with a bounded cache ---------------------------------------------------------------

def _age_class(f: Findings) -> tuple:
    """What of the age matters to the grade and the advice (not the reason text)."""
    age = f.age_years
    return (score_path(age, f.developmental_delay), age is not None and age < 18)


@lru_cache(maxsize=4096)
def _grade_cached(key: tuple) -> IcansResult:
    (path, _child), delay, ice, capd, cons, seiz, motor, icp, excl, sedated = key
    age = 5 if path == "capd" and not delay else None
    return grade_icans(Findings(age_years=age, developmental_delay=delay and path == "capd",
                                ice_score=ice, capd_score=capd, consciousness=cons, seizure=seiz,
                                motor=motor, icp_edema=icp, excluded=excl, sedated=sedated))


def grade_findings(f: Findings) -> IcansResult:
    key = (_age_class(f), f.developmental_delay, f.ice_score, f.capd_score, f.consciousness,
           f.seizure, f.motor, f.icp_edema, f.excluded, f.sedated)
    r = _grade_cached(key)
    reason = score_path_reason(f.age_years, f.developmental_delay)
    if r.score_path_reason != reason:
        from dataclasses import replace

        r = replace(r, score_path_reason=reason)
    return r


class Grader:
    """Grades parsed rows under one protocol, caching advice per management situation."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._recs: dict[tuple, tuple[Recommendation, str]] = {}

    def recommendation(self, out: RowOutcome) -> tuple[Recommendation, str]:
        r = out.result
        assert r is not None and out.findings is not None
        child = out.findings.age_years is not None and out.findings.age_years < 18
        key = (r.effective_grade, r.status, out.crs_grade, out.product, child,
               r.domain("seizure").value != "none")
        hit = self._recs.get(key)
        if hit is None:
            rec = recommend(self.protocol, r, out.crs_grade, out.product, out.findings.age_years)
            hit = (rec, json.dumps(rec.as_dict(), ensure_ascii=False))
            if len(self._recs) < 4096:
                self._recs[key] = hit
        return hit

    def grade(self, out: RowOutcome) -> str | None:
        """Grade a parsed row in place; return the recommendation's JSON (cached)."""
        if out.findings is None or out.errors:
            return None
        out.result = grade_findings(out.findings)
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
        "icans_grade": r.grade if r else None,
        "grade_at_least": r.grade_at_least if r else None,
        "drivers": list(r.drivers) if r else [],
        "domains": {d.domain: d.grade for d in r.domains} if r else {},
        "excluded": list(r.excluded) if r else [],
        "not_assessable": list(r.not_assessable) if r else [],
        "crs_grade": out.crs_grade,
        "product": out.product,
        "errors": out.errors,
    }
    if passthrough:
        head["passthrough"] = {k: _clean(v) for k, v in passthrough.items()}
    text = json.dumps(head, ensure_ascii=False)
    return text[:-1] + ', "recommendation": ' + (rec_json or "null") + "}\n"


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
