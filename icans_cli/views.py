"""What the log shows: `log show`, `history` and `due`, as tables on a terminal and as JSON lines
or CSV for programs, all read through the store (the one reader).

Every record comes with its verdict: one that fails the chain is shown flagged ("ALTERED:
fails the chain") and never trusted for the ward board; a line that cannot be read is named
and skipped. Memory stays flat however long the log or one patient's history: records stream,
tables print in blocks, and a history in time order holds only the records that came out of
order. Output that cannot be written whole (a full disk, a file-size limit) raises
OutputFailed (the face exits 3).
"""

from __future__ import annotations

import csv
import errno
import json
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

from icans_cli.csvsafe import safe_cell
from icans_cli.store import ALTERED, Entry, Problem, Store

ALTERED_NOTE = "ALTERED: fails the chain"
FORMATS = ("table", "jsonl", "csv")
LOG_CSV_COLUMNS = ("seq", "id", "recorded_at", "assessed_at", "patient_id", "assessor", "source",
                   "score_path", "ice_score", "capd_score", "status", "icans_grade",
                   "grade_at_least", "drivers", "excluded", "crs_grade", "product",
                   "recommendation", "next_assessment_hours", "amends", "superseded_by",
                   "verdict")
DUE_COLUMNS = ("patient_id", "last_assessed_at", "record", "status", "icans_grade",
               "grade_at_least", "score_path", "score", "trend", "next_due_at", "overdue",
               "overdue_hours")
FUTURE_SKEW = timedelta(minutes=5)


class OutputFailed(Exception):
    """The output could not be written whole."""


def guard_write(exc: OSError, what: str = "the output") -> OutputFailed:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputFailed(f"the disk is full: {what} was not written whole")
    if exc.errno == errno.EFBIG:
        return OutputFailed(f"a file-size limit was reached: {what} was not written whole")
    return OutputFailed(f"writing {what} failed ({exc.strerror or exc}): it was not written "
                        "whole")


def _out():
    from icans_cli.term import data_out

    return data_out()


def eff_grade(rec: dict[str, Any]) -> int | None:
    res = rec.get("result") or {}
    g = res.get("icans_grade")
    return res.get("grade_at_least") if g is None else g


def flat(rec: dict[str, Any], superseded_by: str | None = None,
         verdict: str = "ok") -> dict[str, Any]:
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
        "amends": rec.get("amends"), "superseded_by": superseded_by, "verdict": verdict,
    }


def supersessions(store: Store, patient: str | None = None) -> dict[str, str]:
    """Which records a correction replaces (record id -> the correcting record's id); only
    intact corrections count (an altered record supersedes nothing)."""
    out: dict[str, str] = {}
    for e in store.assessments(patient, altered=False):
        target = e.record.get("amends")  # type: ignore[union-attr]
        if target:
            out[str(target)] = str(e.record.get("id"))  # type: ignore[union-attr]
    return out


def _write_data(fmt: str, rows: Iterable[Any], columns: tuple[str, ...],
                as_json: Callable[[Any], dict[str, Any]],
                as_csv: Callable[[Any], dict[str, Any]]) -> None:
    """Rows streamed to standard output as JSON lines or as CSV (the columns, each cell
    spreadsheet-safe); output that cannot be written whole raises OutputFailed."""
    out = _out()
    try:
        if fmt == "jsonl":
            for row in rows:
                out.write(json.dumps(as_json(row), ensure_ascii=False) + "\n")
        else:
            w = csv.writer(out, lineterminator="\r\n")
            w.writerow(columns)
            for row in rows:
                f = as_csv(row)
                w.writerow([safe_cell(f[c]) for c in columns])
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise guard_write(exc) from None


def write_machine(fmt: str, rows: Iterable[tuple[Entry, str | None]]) -> None:
    """JSON lines (the record as stored; a superseded or altered one with what is known of it
    added) or CSV (spreadsheet-safe), streamed."""
    def as_json(row: tuple[Entry, str | None]) -> dict[str, Any]:
        e, sup = row
        rec = dict(e.record or {})
        if sup is not None:
            rec["superseded_by"] = sup
        if e.verdict == ALTERED:
            rec["verdict"] = "altered"
        return rec

    _write_data(fmt, rows, LOG_CSV_COLUMNS, as_json,
                lambda row: flat(row[0].record or {}, row[1], row[0].verdict))


# --- log show -----------------------------------------------------------------------------------

def log_show(store: Store, fmt: str, *, patient: str | None = None,
             since: datetime | None = None, min_grade: int | None = None,
             on_problem: Callable[[Problem], None] | None = None) -> None:
    """Every assessment, oldest first (streamed: any size of log), each with its verdict."""
    from icans_cli.history import _time

    superseded = supersessions(store, patient)

    def selected() -> Iterator[tuple[Entry, str | None]]:
        for e in store.assessments(patient, on_problem=on_problem):
            rec = e.record or {}
            if since and _time(rec.get("assessed_at")) < since:
                continue
            g = eff_grade(rec)
            if min_grade is not None and (g is None or g < min_grade):
                continue
            yield e, superseded.get(str(rec.get("id")))

    if fmt == "jsonl" and not (patient or since or min_grade is not None):
        _raw_jsonl(selected())
    elif fmt != "table":
        write_machine(fmt, selected())
    else:
        _stream_table(selected(), store.where)


def _raw_jsonl(rows: Iterable[tuple[Entry, str | None]]) -> None:
    """Each intact record copied as stored (a line of the record's shape is not re-encoded);
    a superseded or altered one with that said: the fastest streaming reader."""
    import sys

    from icans_cli.term import is_terminal

    if is_terminal(sys.stdout):  # data on a terminal: controls shown, never obeyed
        write_machine("jsonl", rows)
        return
    out = sys.stdout.buffer
    try:
        for e, sup in rows:
            if sup is None and e.verdict != ALTERED and e.data:
                out.write(e.data + b"\n")
            else:
                rec = dict(e.record or {})
                if sup is not None:
                    rec["superseded_by"] = sup
                if e.verdict == ALTERED:
                    rec["verdict"] = "altered"
                out.write(json.dumps(rec, ensure_ascii=False).encode() + b"\n")
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise guard_write(exc) from None


def _print_blocks(con: Any, columns: Iterable[tuple[str, int]], last: str,
                  rows: Iterable[tuple[list[Any], str | None]], every: int = 500) -> int:
    """A table printed in blocks of `every` rows with fixed column widths and the header once,
    so a long log streams; `last` takes the rest of the width. Returns the rows printed."""
    from rich.table import Table

    columns = list(columns)
    shown = 0

    def block() -> Table:
        t = Table(show_header=not shown, box=None, pad_edge=False, padding=(0, 1))
        for c, w in columns:
            t.add_column(c, width=w, overflow="fold")
        t.add_column(last, ratio=1)
        return t

    t = block()
    for cells, style in rows:
        t.add_row(*cells, style=style)
        shown += 1
        if shown % every == 0:
            con.print(t)
            t = block()
    if t.row_count or not shown:
        con.print(t)
    return shown


def _stream_table(rows: Iterable[tuple[Entry, str | None]], where: str) -> None:
    """A table printed in blocks with fixed column widths, so a long log streams."""
    from rich.text import Text

    from icans_cli.history import _time, score_words
    from icans_cli.render import plural, record_grade_text
    from icans_cli.term import out, plain

    con = out()
    spare = max(0, con.width - 80)
    widths = (8, 16, 14 + spare * 2 // 3, 10 + spare // 3, 11, 12)
    cols = ("record", "assessed", "patient", "assessor", "score", "grade")
    altered = 0

    def cells() -> Iterator[tuple[list[Any], str | None]]:
        nonlocal altered
        for e, sup in rows:
            f = flat(e.record or {}, sup)
            if e.verdict == ALTERED:
                note, style = ALTERED_NOTE, "bold red"
                altered += 1
            else:
                note = (f"superseded by {plain(sup)[:8]}" if sup else
                        (f"corrects {plain(f['amends'])[:8]}" if f["amends"] else ""))
                style = "dim strike" if sup else None
            yield [Text(plain(f["id"])[:8]),
                   _time(f["assessed_at"]).astimezone().strftime("%Y-%m-%d %H:%M"),
                   Text(plain(f["patient_id"])), Text(plain(f["assessor"])),
                   score_words(f["score_path"], f["ice_score"] if f["score_path"] != "capd"
                               else f["capd_score"]),
                   record_grade_text((e.record or {}).get("result") or {}), Text(note)], style

    shown = _print_blocks(con, zip(cols, widths), "note", cells())
    tail = f"{plural(shown, 'assessment')} · {plain(where)}"
    if altered:
        tail += f" · {plural(altered, 'record')} ALTERED (icans log verify)"
    con.print(Text(tail, style="bold red" if altered else "dim"))


# --- history ------------------------------------------------------------------------------------

@dataclass
class _Row:
    entry: Entry
    when: datetime
    superseded_by: str | None
    flags: list[str]


def in_time_order(store: Store, patient: str, superseded: dict[str, str],
                  on_problem: Callable[[Problem], None] | None = None
                  ) -> tuple[Iterator[Entry], dict[str, Any]]:
    """One patient's assessments in time assessed order, streamed with memory flat however
    long the history: a first pass (made now) counts them and finds the records that came out
    of order (entered late, or corrections keeping the original time): only those are held,
    read by a second pass, and merged into the third, which streams the rest as they come."""
    from icans_cli.history import _time

    def key(e: Entry) -> tuple[datetime, str, int]:
        rec = e.record or {}
        return (_time(rec.get("assessed_at")), str(rec.get("recorded_at", "")), e.line)

    top = None
    late: dict[int, tuple[datetime, str, int]] = {}
    seen = {"records": 0, "current": 0, "corrected": 0, "altered": 0}
    for e in store.assessments(patient):
        seen["records"] += 1
        if e.verdict == ALTERED:
            seen["altered"] += 1
        elif str((e.record or {}).get("id")) in superseded:
            seen["corrected"] += 1
        else:
            seen["current"] += 1
        k = key(e)
        if top is not None and k < top:
            late[e.line] = k
        else:
            top = k

    def merged() -> Iterator[Entry]:
        held: list[tuple[tuple[datetime, str, int], Entry]] = []
        if late:
            held = sorted((late[e.line], e) for e in store.assessments(patient)
                          if e.line in late)
        i = 0
        for e in store.assessments(patient, on_problem=on_problem):
            if e.line in late:
                continue
            k = key(e)
            while i < len(held) and held[i][0] < k:
                yield held[i][1]
                i += 1
            yield e
        for _, e in held[i:]:
            yield e

    return merged(), seen


def history_rows(store: Store, patient: str, now: datetime,
                 on_problem: Callable[[Problem], None] | None = None
                 ) -> tuple[Iterator[_Row], Callable[[], dict[str, Any]]]:
    """(the rows in time order with their flags, streamed; then the summary: counts, the trend
    and the patient-level flags, once the rows are consumed)."""
    from icans_cli.history import _time, entry_from, worsening

    superseded = supersessions(store, patient)
    ordered, seen = in_time_order(store, patient, superseded, on_problem)
    summary: dict[str, Any] = {"current": 0, "corrected": 0, "altered": 0,
                               "trend": {"ice": deque(maxlen=60), "capd": deque(maxlen=60)},
                               "first": {}, "flags": [], "last": None, "expect": seen}

    def rows() -> Iterator[_Row]:
        prev = None
        for e in ordered:
            rec = e.record or {}
            sup = superseded.get(str(rec.get("id")))
            cur = entry_from(e.line, rec)
            flags: list[str] = []
            if e.verdict == ALTERED:
                summary["altered"] += 1
            elif sup:
                summary["corrected"] += 1
            else:
                summary["current"] += 1
                if prev is not None:
                    h = (cur.assessed_at - prev.assessed_at).total_seconds() / 3600
                    flags = [f"{flag} over {h:.1f} h" for flag in
                             worsening(prev, cur.score_path, cur.score, cur.grade)]
                prev = cur
                summary["last"] = cur
                if cur.score_path in ("ice", "capd"):
                    summary["trend"][cur.score_path].append(cur.score)
                    summary["first"].setdefault(cur.score_path, cur.score)
            yield _Row(e, _time(rec.get("assessed_at")), sup, flags)
        last = summary["last"]
        if last is not None:
            cadence = (last.record.get("recommendation") or {}).get("next_assessment_hours")
            if isinstance(cadence, (int, float)):
                since = (now - last.assessed_at).total_seconds() / 3600
                if since > cadence:
                    summary["flags"].append(
                        f"next assessment OVERDUE by {since - cadence:.1f} h (last "
                        f"{since:.1f} h ago; at grade {last.grade} reassess every "
                        f"{cadence:g} h)")

    return rows(), lambda: summary


def history(store: Store, patient: str, fmt: str, now: datetime,
            on_problem: Callable[[Problem], None] | None = None,
            warn: Callable[[str], None] = lambda _: None) -> bool:
    """One patient's assessments in time order, with falls and rises flagged; False when the
    log holds none of that patient."""
    rows, summary = history_rows(store, patient, now, on_problem)
    first = next(rows, None)
    if first is None:
        return False

    def all_rows() -> Iterator[_Row]:
        yield first
        yield from rows

    if fmt != "table":
        out = _out()
        try:
            if fmt == "jsonl":
                for r in all_rows():
                    rec = dict(r.entry.record or {})
                    rec["superseded_by"] = r.superseded_by
                    rec["flags"] = r.flags
                    if r.entry.verdict == ALTERED:
                        rec["verdict"] = "altered"
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                out.flush()
            else:
                write_machine(fmt, ((r.entry, r.superseded_by) for r in all_rows()))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise guard_write(exc) from None
        for f in summary()["flags"]:
            warn(f)
        return True
    _history_table(patient, all_rows(), summary)
    return True


def _history_table(patient: str, rows: Iterator[_Row],
                   summary: Callable[[], dict[str, Any]]) -> None:
    from rich.text import Text

    from icans_cli.history import score_words
    from icans_cli.render import GRADE_STYLE, plural, record_grade_text, sparkline
    from icans_cli.term import out, plain

    con = out()
    expect = summary()["expect"]  # known before the rows: the first pass counted them
    title = f"Patient {plain(patient)}: {plural(expect['current'], 'assessment')}"
    if expect["corrected"]:
        title += (f" ({plural(expect['corrected'], 'corrected record')} shown struck through, "
                  "not counted)")
    if expect["altered"]:
        title += (f"; {plural(expect['altered'], 'record')} ALTERED: fails the chain (shown "
                  "flagged, not counted)")
    con.print(Text(title, style="bold red" if expect["altered"] else "bold"))
    # At 80 columns the flags (a fall, a rise) matter more than the assessor and the drivers
    # (both in icans show): narrow screens leave those out, never the flags.
    wide = con.width >= 110
    widths = (16, 8, 10, 9, 16, 16) if wide else (11, 8, 8, 14)
    cols = (("assessed", "record", "assessor", "score", "grade", "drivers") if wide
            else ("assessed", "record", "score", "grade"))

    def cells() -> Iterator[tuple[list[Any], str | None]]:
        for r in rows:
            e = r.entry
            rec = e.record or {}
            res = rec.get("result") or {}
            status = res.get("status")
            g = res.get("icans_grade") if status == "graded" else res.get("grade_at_least")
            grade = Text(record_grade_text(res), style=GRADE_STYLE.get(g, "")
                         if status == "graded" else "bold black on yellow")
            note, style = "; ".join(r.flags), None
            if e.verdict == ALTERED:
                note, style = ALTERED_NOTE, "bold red"
            elif r.superseded_by:
                note, style = f"SUPERSEDED by {plain(r.superseded_by)[:8]}", "dim strike"
            elif rec.get("amends"):
                note = f"corrects {plain(rec['amends'])[:8]}" + ("; " + note if note else "")
            path = res.get("score_path")
            score = res.get("capd_score") if path == "capd" else res.get("ice_score")
            row = [r.when.astimezone().strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M"),
                   Text(plain(rec.get("id"))[:8])]
            if wide:
                row.append(Text(plain(rec.get("assessor", ""))))
            row += [score_words(path, score), grade]
            if wide:
                row.append(", ".join(res.get("drivers") or []) or "-")
            yield [*row, Text(note, style="bold red" if r.flags else "dim")], style

    _print_blocks(con, zip(cols, widths), "flags", cells())
    s = summary()
    for name, low, high in (("ice", 0, 10), ("capd", 0, 32)):
        vals = list(s["trend"][name])
        if vals:
            shown_vals = [v for v in vals if v is not None]
            trend = f"{name.upper()} trend (oldest → newest, {low}-{high}" + \
                (", higher is better" if name == "ice" else ", higher is worse") + "): "
            con.print(Text(trend + sparkline(vals, low, high) +
                           (f"  {shown_vals[0]} → {shown_vals[-1]}" if shown_vals else "")))
    for f in s["flags"]:
        con.print(Text("FLAG: " + f, style="bold red"))


# --- due -----------------------------------------------------------------------------------------

def due_rows(store: Store, now: datetime, days: float,
             on_problem: Callable[[Problem], None] | None = None,
             warn: Callable[[str], None] = lambda _: None) -> list[Any]:
    """The ward board from intact records only: an altered record, or one dated in the future,
    never becomes a patient's latest (each is said)."""
    from icans_cli.history import _time, due_board

    skipped = {"altered": 0, "future": 0}

    def trusted() -> Iterator[tuple[int, dict[str, Any]]]:
        for e in store.recent(now - timedelta(days=days), on_problem):
            rec = e.record or {}
            if e.verdict == ALTERED:
                skipped["altered"] += 1
                continue
            if _time(rec.get("assessed_at")) > now + FUTURE_SKEW:
                skipped["future"] += 1
                continue
            yield e.line, rec

    rows = due_board(trusted(), now, days)
    if skipped["altered"]:
        warn(f"{skipped['altered']} record(s) ALTERED: they fail the chain and are left off "
             "the board (icans log verify)")
    if skipped["future"]:
        warn(f"{skipped['future']} record(s) dated in the future are left off the board (a "
             "clock or typing error: icans log show lists them)")
    return rows


def due_flat(d: Any) -> dict[str, Any]:
    res = d.last.record.get("result") or {}
    return {"patient_id": d.patient_id,
            "last_assessed_at": d.last.assessed_at.isoformat(timespec="seconds"),
            "record": d.last.id, "status": d.last.status,
            "icans_grade": res.get("icans_grade"), "grade_at_least": res.get("grade_at_least"),
            "score_path": d.last.score_path, "score": d.last.score, "trend": d.trend,
            "next_due_at": d.due_at.isoformat(timespec="seconds") if d.due_at else None,
            "overdue": d.overdue, "overdue_hours": round(d.overdue_hours, 1)}


def due(store: Store, now: datetime, days: float, fmt: str,
        on_problem: Callable[[Problem], None] | None = None,
        warn: Callable[[str], None] = lambda _: None) -> None:
    rows = due_rows(store, now, days, on_problem, warn)
    if fmt == "table":
        due_table(rows, now, days)
        return
    _write_data(fmt, rows, DUE_COLUMNS, due_flat, due_flat)


def due_table(rows: list[Any], now: datetime, days: float) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from icans_cli.history import score_words
    from icans_cli.render import GRADE_STYLE, plural
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
                  when.strftime("%H:%M" if when.date() == today else
                                "%a %H:%M" if (today - when.date()).days < 6 else "%m-%d %H:%M"),
                  trend_text, grade, due_text)
    out().print(t)


# --- log verify, --since ------------------------------------------------------------------------

VERIFY_PROVES = ("A hash chain shows an edited, deleted, inserted or reordered line before the "
                 "last record checked. It cannot show that records were cut off the end, or a "
                 "log rewritten whole by someone who can write it: keep the output of "
                 "`icans log head` elsewhere (the EHR note, the handover) and check it with "
                 "`icans log verify --head SEQ:HASH`.")


def verify_report(v: Any, expect: Any, where: str) -> tuple[list[str], list[str], bool]:
    """What `log verify` says: (lines for stdout, lines for stderr, intact?)."""
    from icans_cli.render import plural

    said: list[str] = []
    for p in v.acknowledged:
        said.append(f"acknowledged: line {p.line}: a fragment that holds no record "
                    "(icans log acknowledge-tail named it); not a problem")
    if v.problems:
        errs = [f"BROKEN: {v.problems[0]}"]
        errs += [f"  also {p}" for p in v.problems[1:10]]
        if len(v.problems) > 10:
            errs.append(f"  ... and {len(v.problems) - 10} more")
        if any(p.kind == "torn" for p in v.problems):
            errs.append("A torn line is a write that was cut short (a crash, a full disk): "
                        "once you have looked at it, `icans log acknowledge-tail` records that "
                        "it holds no record, and verify then passes.")
        return said, errs, False
    if v.records == 0:
        said.append(f"EMPTY: the log at {where} holds no records. If it held records before, "
                    "they are gone: compare with a head you kept (icans log head).")
        return said, [], expect is None
    line = f"OK: {plural(v.records, 'record')}; the chain is intact up to record #{v.head.seq}"
    if expect is not None:
        line += (f", and record #{expect.seq} is the one whose hash you kept: the log holds it "
                 "and everything before it unchanged")
        later = v.head.seq - expect.seq
        if later > 0:
            line += (f"; the {plural(later, 'record')} after it "
                     f"{'are' if later != 1 else 'is'} chained to it but not covered by the "
                     "kept head (keep a new head to cover them)")
    said += [line + f" ({where}).", VERIFY_PROVES]
    return said, [], True


def parse_since(value: str, option: str = "--since") -> datetime:
    """An ISO date-time, HH:MM today, or a span back from now (24h, 7d, 90m); ValueError with
    what is allowed (never the value typed)."""
    import re

    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_time
    from icans_cli.store.chain import utc_now

    m = re.fullmatch(r"\s*(\d{1,9})\s*([mhd])\s*", value)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        span = timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})
        if span > timedelta(days=36500):
            raise ValueError(f"{option} spans more than 100 years; give a date, e.g. "
                             "2026-01-01")
        return utc_now() - span
    try:
        return parse_time(value, option)
    except InvalidFinding as exc:
        raise ValueError(f"{option} {exc.detail}; or a span such as 24h, 7d, 90m") from None
