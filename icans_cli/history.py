"""A patient's assessments over time: ordering, corrections, trend and flags. No printing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from icans_cli.core.identifiers import parse_time


@dataclass
class Entry:
    line: int
    record: dict[str, Any]
    assessed_at: datetime
    score_path: str | None
    score: int | None
    grade: int | None  # the effective grade (the floor when not assessable)
    status: str
    superseded_by: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.record.get("id", ""))


def _time(value: Any) -> datetime:
    try:
        return parse_time(str(value))
    except Exception:  # noqa: BLE001 - an unreadable time sorts first rather than crashing
        # (a time far from datetime.min: a local-time conversion of it must not overflow)
        return datetime(2000, 1, 1, tzinfo=timezone.utc)


def entry_from(line: int, rec: dict[str, Any]) -> Entry:
    res = rec.get("result") or {}
    path = res.get("score_path")
    score = res.get("capd_score") if path == "capd" else res.get("ice_score")
    grade = res.get("icans_grade")
    if grade is None:
        grade = res.get("grade_at_least")
    return Entry(line, rec, _time(rec.get("assessed_at")), path, score, grade,
                 str(res.get("status", "")))


def patient_entries(records: Iterable[tuple[int, dict[str, Any]]],
                    patient_id: str | None) -> list[Entry]:
    """One patient's entries in time order, corrected ones marked (`patient_id` None: the
    records are that patient's already, under any spelling)."""
    entries = [entry_from(n, r) for n, r in records
               if patient_id is None or r.get("patient_id") == patient_id]
    by_id = {e.id: e for e in entries}
    for e in entries:
        target = e.record.get("amends")
        if target and target in by_id:
            by_id[target].superseded_by = e.id
    entries.sort(key=lambda e: (e.assessed_at, str(e.record.get("recorded_at", "")), e.line))
    return entries


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


def worsening(prev: Entry, path: str | None, score: int | None, grade: int | None) -> list[str]:
    """What got worse since `prev`: the ICE fell, the CAPD rose, the grade (or floor) rose."""
    flags = []
    if prev.score is not None and score is not None and prev.score_path == path:
        if path == "ice" and score < prev.score:
            flags.append(f"ICE fell {prev.score} → {score} (-{prev.score - score})")
        if path == "capd" and score > prev.score:
            flags.append(f"CAPD rose {prev.score} → {score} (+{score - prev.score}, worse)")
    if prev.grade is not None and grade is not None and grade > prev.grade:
        flags.append(f"grade rose {prev.grade} → {grade}")
    return flags


def annotate(entries: list[Entry], now: datetime) -> list[str]:
    """Mark each current entry with its change flags; return patient-level flags (overdue)."""
    current = [e for e in entries if not e.superseded_by]
    for prev, cur in zip(current, current[1:]):
        h = _hours(prev.assessed_at, cur.assessed_at)
        cur.flags.extend(f"{flag} over {h:.1f} h"
                         for flag in worsening(prev, cur.score_path, cur.score, cur.grade))
    patient_flags = []
    if current:
        last = current[-1]
        cadence = (last.record.get("recommendation") or {}).get("next_assessment_hours")
        if isinstance(cadence, (int, float)):
            since = _hours(last.assessed_at, now)
            if since > cadence:
                patient_flags.append(
                    f"next assessment OVERDUE by {since - cadence:.1f} h (last {since:.1f} h "
                    f"ago; at grade {last.grade} reassess every {cadence:g} h)")
    return patient_flags


def score_words(path: str | None, score: int | None) -> str:
    name = (path or "ice").upper()
    return f"{name} not taken" if score is None else f"{name} {score}"


def grade_words(res: dict[str, Any]) -> str:
    if res.get("status") == "graded":
        return f"grade {res.get('icans_grade')}"
    return f"not assessable (at least grade {res.get('grade_at_least')})"


def change_since(prev: dict[str, Any], path: str, score: int | None, grade: int,
                 now: datetime) -> tuple[str, bool]:
    """What changed since the previous assessment: (text, worse?)."""
    e = entry_from(0, prev)
    hours = _hours(e.assessed_at, now)
    fmt = "%H:%M" if abs(hours) < 20 else "%Y-%m-%d %H:%M"
    text = (f"{score_words(e.score_path, e.score)} → {score_words(path, score)}, grade "
            f"{e.grade} → {grade} since {e.assessed_at.astimezone().strftime(fmt)} "
            f"({hours:.1f} h ago)")
    flags = worsening(e, path, score, grade)
    if flags:  # the text already says how much and since when: one word for the verdict
        return text + ": WORSE", True
    return text + ": no fall in score or rise in grade", False


def change_since_result(prev: dict[str, Any], result: Any, now: datetime) -> tuple[str, bool]:
    """change_since for a graded (or not-assessable) result."""
    score = result.ice_score if result.score_path == "ice" else result.capd_score
    if result.status != "graded":
        e = entry_from(0, prev)
        hours = _hours(e.assessed_at, now)
        now_words = (f"at least grade {result.grade_at_least}" if result.grade_at_least
                     else "grade unknown")
        return (f"{score_words(e.score_path, e.score)}, grade {e.grade} {hours:.1f} h ago → "
                f"not assessable now ({now_words})", False)
    return change_since(prev, result.score_path, score, result.effective_grade, now)


@dataclass
class Due:
    """One patient on the ward board."""

    patient_id: str
    last: Entry
    previous: Entry | None
    due_at: datetime | None
    overdue_hours: float  # > 0: overdue by that much; <= 0: due in -that

    @property
    def overdue(self) -> bool:
        return self.overdue_hours > 0

    @property
    def trend(self) -> str:
        """'ICE 9 → 8 (worse)', 'ICE 8 → 10 (better)', 'first assessment'."""
        if self.previous is None:
            return "first assessment"
        p, last = self.previous, self.last
        if last.score_path != p.score_path or last.score is None or p.score is None:
            def g(e: Entry) -> str:
                return f"grade {e.grade}" if e.status == "graded" else "not assessable"
            return f"{g(p)} → {g(last)}"
        name = (last.score_path or "ice").upper()
        better = (last.score > p.score) if last.score_path == "ice" else (last.score < p.score)
        same = last.score == p.score
        word = "same" if same else ("better" if better else "worse")
        return f"{name} {p.score} → {last.score} ({word})"


def due_board(records: Iterable[tuple[int, dict[str, Any]]], now: datetime,
              days: float = 7) -> list[Due]:
    """One row per patient with a current record assessed in the last `days` days: the last
    assessment, the trend, and when the next is due by its grade's cadence; most overdue
    first. `now` is passed in (a test's clock, or the real one)."""
    from datetime import timedelta

    import heapq

    cutoff = now - timedelta(days=days)
    keep = 4  # the last few records of each patient: memory stays flat over a long log
    by_patient: dict[str, list[tuple[datetime, int, Entry]]] = {}
    amended: set[str] = set()
    for n, rec in records:
        if rec.get("kind") == "practice_session":
            continue
        if rec.get("amends"):
            amended.add(str(rec["amends"]))
        e = entry_from(n, rec)
        heap = by_patient.setdefault(str(rec.get("patient_id")), [])
        item = (e.assessed_at, n, e)
        if len(heap) < keep:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    rows = []
    for pid, heap in by_patient.items():
        current = [e for _, _, e in sorted(heap, key=lambda x: x[:2]) if e.id not in amended]
        if not current or current[-1].assessed_at < cutoff:
            continue
        last = current[-1]
        cadence = (last.record.get("recommendation") or {}).get("next_assessment_hours")
        due_at = None
        overdue = 0.0
        if isinstance(cadence, (int, float)):
            due_at = last.assessed_at + timedelta(hours=cadence)
            overdue = _hours(due_at, now)
        rows.append(Due(pid, last, current[-2] if len(current) > 1 else None, due_at, overdue))
    rows.sort(key=lambda d: (-d.overdue_hours, d.patient_id))
    return rows
