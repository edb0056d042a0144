"""Patient pseudonyms and times. Messages never echo the identifier itself."""

from __future__ import annotations

from datetime import datetime

from icans_cli.core.errors import InvalidFinding

PATIENT_ID_MAX = 64
ASSESSOR_MAX = 64
BLANKS = " \t"  # the only characters stripped around a value: never control characters


def validate_patient_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFinding("patient_id", "must be text", "1-64 printable characters")
    text = value.strip(BLANKS)
    if not text:
        raise InvalidFinding("patient_id", "is empty", "1-64 printable characters, a pseudonym")
    if len(text) > PATIENT_ID_MAX:
        raise InvalidFinding("patient_id", f"is {len(text)} characters long",
                             "1-64 printable characters, a pseudonym")
    if not text.isprintable():
        raise InvalidFinding("patient_id", "contains a control or non-printable character",
                             "1-64 printable characters, a pseudonym")
    return text


def normalize_patient_id(value: object) -> str:
    """A pseudonym as it is stored: validated (printable, 1-64 characters), in Unicode NFKC
    form (a full-width "ＰＴ－１" is "PT-1"), and in one script: "PТ-1" with a Cyrillic "Т" looks
    like "PT-1" and would be a second patient, so mixed scripts are refused."""
    import unicodedata

    text = validate_patient_id(value)
    text = unicodedata.normalize("NFKC", text).strip(BLANKS)
    text = validate_patient_id(text)
    scripts = set()
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            scripts.add(name.split(" ")[0] if name else "?")
    if len(scripts) > 1:
        raise InvalidFinding("patient_id", "mixes letters of several scripts ("
                             + ", ".join(sorted(s.title() for s in scripts)) + "): a letter "
                             "that looks Latin may not be", "letters of one script")
    return text


_SEPARATORS = None


def patient_key(value: str) -> str:
    """How pseudonyms are matched: case- and separator-insensitively ("PT 0042", "pt-0042" and
    "PT_0042" are one patient), after NFKC."""
    import re
    import unicodedata

    global _SEPARATORS
    if _SEPARATORS is None:
        _SEPARATORS = re.compile(r"[\s\-_./:]+")
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).casefold()


def check_pseudonym(value: object, allow_id: bool = False) -> str:
    """The interview's and batch's one rule for a patient id: normalized as stored, and never
    a name, a date or a long run of digits (unless the site allows ids that look so)."""
    text = normalize_patient_id(value)
    reason = None if allow_id else identifying_reason(text)
    if reason:
        raise InvalidFinding("patient_id", reason, "the ward's pseudonym, never a name, record "
                             "number or birth date (--allow-id for a site whose pseudonyms "
                             "look like that)")
    return text


def validate_assessor(value: object) -> str:
    """Who assessed: printable, 1-64 characters (it reaches the log and every listing)."""
    if not isinstance(value, str) or not value.strip(BLANKS):
        raise InvalidFinding("assessor", "is empty", "1-64 printable characters")
    text = value.strip(BLANKS)
    if len(text) > ASSESSOR_MAX:
        raise InvalidFinding("assessor", f"is {len(text)} characters long",
                             "1-64 printable characters")
    if not text.isprintable():
        raise InvalidFinding("assessor", "contains a control or non-printable character (an "
                             "escape sequence?)", "1-64 printable characters")
    return text


_NAME = None
_DIGITS = None
_DATE = None


def identifying_reason(text: str) -> str | None:
    """Why a pseudonym looks like something that identifies a person, or None.

    A name (two or more capitalised words of letters), a record number (a run of six or more
    digits) or a date (a birth date is never entered). Sites whose pseudonyms look like this can
    turn the check off (`--allow-id`). The message never repeats the text itself."""
    import re

    global _NAME, _DIGITS, _DATE
    if _NAME is None:
        _NAME = re.compile(r"^[A-Z][a-z][A-Za-z'\-]*(?:\s+[A-Z][A-Za-z'\-]*\.?)+$"
                           r"|^[A-Z][a-z][A-Za-z'\-]*,\s*[A-Z]")
        _DIGITS = re.compile(r"\d{6,}")
        _DATE = re.compile(r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})\b")
    t = text.strip()
    if _DATE.search(t):  # type: ignore[union-attr]
        return "looks like a date: birth dates are never entered"
    if _DIGITS.search(t):  # type: ignore[union-attr]
        return "looks like a record number (six or more digits in a row)"
    if _NAME.match(t):  # type: ignore[union-attr]
        return "looks like a person's name"
    return None


def parse_time(value: str, field: str = "assessed_at") -> datetime:
    """An ISO 8601 date-time; a time without offset is taken as local time."""
    text = value.strip(BLANKS)
    if not text.isascii():
        raise InvalidFinding(field, "is not an ISO 8601 date-time (only ASCII digits)",
                             "e.g. 2026-11-27T14:30 or 2026-11-27T14:30:00+01:00")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFinding(field, "is not an ISO 8601 date-time",
                             "e.g. 2026-11-27T14:30 or 2026-11-27T14:30:00+01:00") from None
    if not 2000 <= t.year <= 2100:
        # CAR-T began in 2017; a year outside this is a typing or export error, and dates near
        # the calendar's ends break the arithmetic of every later reader of the log
        raise InvalidFinding(field, f"has the year {t.year}", "a date from 2000 to 2100")
    if t.tzinfo is None:
        t = t.astimezone()  # local time
    return t


LATE_ENTRY_HOURS = 24


def parse_assessed_at(value: str, now: datetime, field: str = "--assessed-at",
                      max_hours: float = LATE_ENTRY_HOURS) -> datetime:
    """When something already done was done (an assessment entered later, a dose given):
    "HH:MM" (today, local time) or an ISO date-time; never in the future (5 minutes of clock
    difference allowed) and at most `max_hours` before `now` (an aware datetime)."""
    import re
    from datetime import timedelta

    text = value.strip(BLANKS)
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        hh, mm = (int(x) for x in text.split(":"))
        if hh > 23 or mm > 59:
            raise InvalidFinding(field, "is not a time of day", "HH:MM, e.g. 14:30")
        t = now.astimezone().replace(hour=hh, minute=mm, second=0, microsecond=0)
    else:
        t = parse_time(text, field)
    if t > now + timedelta(minutes=5):
        raise InvalidFinding(field, "is in the future",
                             "a past time; for yesterday, the date too, e.g. "
                             f"{(now - timedelta(days=1)).astimezone():%Y-%m-%d}T23:30")
    if t < now - timedelta(hours=max_hours):
        raise InvalidFinding(field, f"is more than {max_hours:g} hours ago",
                             f"a time in the last {max_hours:g} hours"
                             + ("; an older assessment belongs in the record of its day"
                                if max_hours == LATE_ENTRY_HOURS else ""))
    return t
