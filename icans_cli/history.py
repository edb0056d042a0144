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
        return datetime.min.replace(tzinfo=timezone.utc)


def entry_from(line: int, rec: dict[str, Any]) -> Entry:
    res = rec.get("result") or {}
    path = res.get("score_path")
    score = res.get("capd_score") if path == "capd" else res.get("ice_score")
    grade = res.get("icans_grade")
    if grade is None:
        grade = res.get("grade_at_least")
    return Entry(line, rec, _time(rec.get("assessed_at")), path, score, grade,
                 str(res.get("status", "")))


def patient_entries(records: Iterable[tuple[int, dict[str, Any]]], patient_id: str) -> list[Entry]:
    entries = [entry_from(n, r) for n, r in records if r.get("patient_id") == patient_id]
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
    if flags:
        return text + ": WORSE (" + "; ".join(flags) + ")", True
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
                f"not assessable now ({now_words}): compare when it can be assessed", False)
    return change_since(prev, result.score_path, score, result.effective_grade, now)
