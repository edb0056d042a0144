"""Patient pseudonyms and times. Messages never echo the identifier itself."""

from __future__ import annotations

from datetime import datetime

from icans_cli.core.errors import InvalidFinding

PATIENT_ID_MAX = 64


def validate_patient_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFinding("patient_id", "must be text", "1-64 printable characters")
    text = value.strip()
    if not text:
        raise InvalidFinding("patient_id", "is empty", "1-64 printable characters, a pseudonym")
    if len(text) > PATIENT_ID_MAX:
        raise InvalidFinding("patient_id", f"is {len(text)} characters long",
                             "1-64 printable characters, a pseudonym")
    if not text.isprintable():
        raise InvalidFinding("patient_id", "contains a control or non-printable character",
                             "1-64 printable characters, a pseudonym")
    return text


def parse_time(value: str, field: str = "assessed_at") -> datetime:
    """An ISO 8601 date-time; a time without offset is taken as local time."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFinding(field, "is not an ISO 8601 date-time",
                             "e.g. 2026-11-27T14:30 or 2026-11-27T14:30:00+01:00") from None
    if t.tzinfo is None:
        t = t.astimezone()  # local time
    return t
