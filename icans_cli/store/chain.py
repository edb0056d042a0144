"""The hash chain and the record format, the same for every store.

Each record is one line: canonical JSON (sorted keys, no spaces, UTF-8) ending with its own
``sha256`` (of the line without that key), and carrying ``seq`` (1, 2, 3...) and
``prev_sha256`` (the SHA-256 of the line before it, "" for the first). ``check_chain`` streams
lines into entries with a verdict:

- ``ok``;
- ``altered``: the record fails the chain: its content does not match its own hash, or the
  link between it and its neighbour is broken (an edit that recomputed the record's own hash
  breaks the next record's link, so both records of a broken link are flagged: which one was
  changed cannot be known);
- ``unparseable``: not a record this tool can read (corrupt, any depth of nesting, NaN, a
  field of the wrong kind);
- ``torn``: a write cut short at the end;
- ``acknowledged``: a torn or unparseable fragment that a later record names
  (``icans log acknowledge-tail``).

Memory stays flat: one line, and the previous record, at a time.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

SCHEMA_VERSION = 1
HASH_KEY = b',"sha256":"'
OK, ALTERED, UNPARSEABLE, TORN, ACKNOWLEDGED = ("ok", "altered", "unparseable", "torn",
                                                "acknowledged")
TAIL_ACK = "tail_acknowledgement"  # the kind of the record that names a torn fragment


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class RawLine:
    pos: int  # a file's 1-based line number; the database's seq
    data: bytes  # without its newline
    complete: bool = True
    prev: str | None = None  # the hash of the stored line before it, when the store knows it
    offset: int | None = None  # a file's byte offset of the line


@dataclass(frozen=True)
class Entry:
    line: int
    seq: int | None
    record: dict[str, Any] | None
    verdict: str
    sha256: str  # of the line
    note: str = ""
    data: bytes = b""  # the line as stored (to copy it out unchanged)

    @property
    def altered(self) -> bool:
        return self.verdict == ALTERED


@dataclass(frozen=True)
class Problem:
    line: int
    kind: str  # torn | unparseable | edited | missing | out_of_order | broken_chain | head
    message: str
    sha256: str = ""

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class Head:
    """The last record of a log: its sequence number and the SHA-256 of its line."""

    seq: int
    sha256: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.sha256}"

    @classmethod
    def parse(cls, text: str) -> "Head":
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("expected SEQ:HASH, as icans log head prints it (e.g. "
                             "42:3f5a...)")
        return cls(int(seq), digest)


@dataclass(frozen=True)
class Verified:
    records: int
    problems: list[Problem]
    head: Head | None  # the last intact record's, when the chain is intact
    acknowledged: list[Problem] = ()  # type: ignore[assignment]


# --- the record's bytes ------------------------------------------------------------------------

def canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode()


def encode_record(body: dict[str, Any]) -> bytes:
    """The line for a record body (without its newline), ending with its own hash."""
    if "sha256" in body:
        raise ValueError("the body must not carry its own hash")
    raw = canonical(body)
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:-1] + HASH_KEY + digest.encode() + b'"}'


def content_ok(line: bytes) -> bool:
    """Whether a line's content matches the hash it ends with."""
    i = line.rfind(HASH_KEY)
    if i < 0 or len(line) != i + len(HASH_KEY) + 64 + 2 or not line.endswith(b'"}'):
        return False
    claimed = line[i + len(HASH_KEY): i + len(HASH_KEY) + 64]
    return hashlib.sha256(line[:i] + b"}").hexdigest().encode() == claimed


def record_shape(line: bytes) -> bool:
    """A cheap check that a line has a record's shape: a JSON object ending with its own
    hash (not a full parse)."""
    return line[:1] == b"{" and line[-77:-66] == HASH_KEY and line[-2:] == b'"}'


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number a record holds")


def parse(line: bytes) -> dict[str, Any] | None:
    """The record a line holds, or None when it is not one this tool can read: not JSON, any
    depth of nesting (never a RecursionError), NaN or Infinity, a field of the wrong kind, an
    object with neither a sequence number nor its own hash."""
    try:
        rec = json.loads(line, parse_constant=_no_constants)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or record_problem(rec) is not None:
        return None
    if not isinstance(rec.get("seq"), int) and not record_shape(line):
        return None  # neither numbered nor hashed: not a record (e.g. "{}": a torn write's "{"
        # and a fragment after it), never counted as a record in the chain
    return rec


_INT_OR_NONE = ("icans_grade", "grade_at_least", "ice_score", "capd_score")


def record_problem(rec: dict[str, Any]) -> str | None:
    """Why a parsed record cannot be read safely (a field of the wrong kind), or None."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if "seq" in rec and not (is_int(rec["seq"]) and rec["seq"] > 0):
        return "seq"
    for key in ("id", "recorded_at", "assessor", "source", "kind"):
        if key in rec and not isinstance(rec[key], str):
            return key
    if rec.get("kind"):
        return None  # a practice session or an acknowledgement: its own shape
    if "patient_id" in rec and not isinstance(rec["patient_id"], str):
        return "patient_id"
    if "assessed_at" in rec and not isinstance(rec["assessed_at"], str):
        return "assessed_at"
    if rec.get("amends") is not None and not isinstance(rec["amends"], str):
        return "amends"
    for key in ("findings", "result", "recommendation", "protocol"):
        if key in rec and rec[key] is not None and not isinstance(rec[key], dict):
            return key
    res = rec.get("result") or {}
    for key in _INT_OR_NONE:
        v = res.get(key)
        if v is not None and not is_int(v):
            return f"result.{key}"
    if res.get("drivers") is not None and not (isinstance(res["drivers"], list) and all(
            isinstance(d, str) for d in res["drivers"])):
        return "result.drivers"
    nxt = (rec.get("recommendation") or {}).get("next_assessment_hours")
    if nxt is not None and not (is_int(nxt) or isinstance(nxt, float)) or (
            isinstance(nxt, float) and nxt != nxt):
        return "recommendation.next_assessment_hours"
    return None


# --- the chain, streamed ------------------------------------------------------------------------

def acknowledged_fragments(lines: Iterable[RawLine]) -> set[str]:
    """The hashes of the fragments that acknowledgement records name."""
    out: set[str] = set()
    for raw in lines:
        if b'"' + TAIL_ACK.encode() + b'"' in raw.data:
            rec = parse(raw.data)
            frag = (rec or {}).get("fragment") or {}
            if isinstance(frag.get("sha256"), str):
                out.add(frag["sha256"])
    return out


_PREV_KEY = b'"prev_sha256":"'


def _claimed_prev(line: bytes) -> str | None:
    """The prev_sha256 a record's line claims, read from its bytes (no parse)."""
    i = line.find(_PREV_KEY)
    if i < 0:
        return None
    j = i + len(_PREV_KEY)
    end = line.find(b'"', j)
    return line[j:end].decode("ascii", "replace") if end >= 0 else None


def check_chain(lines: Iterable[RawLine], on_problem: Callable[[Problem], None] | None = None,
                acknowledged: set[str] | frozenset[str] = frozenset(),
                want: Callable[[bytes], bool] | None = None,
                report_skipped: bool = False) -> Iterator[Entry]:
    """Every line as an Entry with its verdict, in order, one record behind the stream (a
    broken link flags the record before it too).

    `want`: only the lines it accepts are parsed and given (a patient's, found by their
    bytes); the others are hashed and their link read from their bytes, so each given record's
    verdict is exactly what a full read gives. A line that is not a record's shape is always
    read (and named). `report_skipped`: a line not wanted that fails the chain (its own hash,
    or its link) is named through `on_problem` too, without being parsed (a whole-log check
    at the cost of hashing)."""
    def report(p: Problem) -> None:
        if on_problem is not None:
            on_problem(p)

    pending: Entry | None = None
    prev_hash = ""
    # The line before was a record edited without its hash: the next record's link to it is
    # broken by that edit alone, so the next record is judged by its own hash (as the last
    # record of a log is), and its successor's link vouches for it.
    prev_edited = False
    prev_skipped: tuple[int, str] | None = None  # the line before: a skipped intact record
    for raw in lines:
        h = hashlib.sha256(raw.data).hexdigest()
        edited_before, prev_edited = prev_edited, False
        skipped_before, prev_skipped = prev_skipped, None
        if (want is not None and raw.complete and not want(raw.data)
                and record_shape(raw.data)):
            # not wanted: only its link to the record before it matters
            linked = raw.prev if raw.prev is not None else prev_hash
            edited = not content_ok(raw.data)
            broken = not edited and not edited_before and _claimed_prev(raw.data) != linked
            if broken and (pending is not None and pending.record is not None
                           and pending.verdict == OK and pending.sha256 == linked):
                pending = Entry(pending.line, pending.seq, pending.record, ALTERED,
                                pending.sha256, "the record after it does not follow it",
                                pending.data)
                report(Problem(pending.line, "altered", "ALTERED: fails the chain (the record "
                               "after it does not follow it); flagged", pending.sha256))
            elif broken and report_skipped and skipped_before is not None:
                report(Problem(skipped_before[0], "altered", "ALTERED: fails the chain (the "
                               "record after it does not follow it); flagged",
                               skipped_before[1]))
            if report_skipped and (edited or broken):
                report(Problem(raw.pos, "altered", "ALTERED: fails the chain (" + (
                    "its content does not match its own hash" if edited else
                    "it does not follow the record before it") + "); flagged", h))
            if pending is not None:
                yield pending
                pending = None
            prev_hash = h
            prev_edited = edited
            prev_skipped = None if (edited or broken) else (raw.pos, h)
            continue
        if not raw.complete or (raw.data.strip() and not raw.data.strip(b"\x00").strip()):
            verdict = ACKNOWLEDGED if h in acknowledged else TORN
            if verdict == TORN:
                report(Problem(raw.pos, "torn", "torn: a write was cut short (the line has no "
                                                "end); skipped", h))
            entry = Entry(raw.pos, None, None, verdict, h, data=raw.data)
            prev_hash = h
        elif not raw.data.strip():
            continue
        else:
            rec = parse(raw.data)
            if rec is None:
                verdict = ACKNOWLEDGED if h in acknowledged else UNPARSEABLE
                if verdict == UNPARSEABLE:
                    report(Problem(raw.pos, "unparseable", "not a valid record (corrupted); "
                                                           "skipped", h))
                entry = Entry(raw.pos, None, None, verdict, h, data=raw.data)
            else:
                seq = rec.get("seq")
                linked = raw.prev if raw.prev is not None else prev_hash
                verdict, note = OK, ""
                if not content_ok(raw.data):
                    verdict, note = ALTERED, "its content does not match its own hash"
                    prev_edited = True
                elif rec.get("prev_sha256") != linked and not edited_before:
                    verdict, note = ALTERED, "it does not follow the record before it"
                    if report_skipped and skipped_before is not None:
                        report(Problem(skipped_before[0], "altered", "ALTERED: fails the "
                                       "chain (the record after it does not follow it); "
                                       "flagged", skipped_before[1]))
                    if pending is not None and pending.record is not None \
                            and pending.verdict == OK:
                        pending = Entry(pending.line, pending.seq, pending.record, ALTERED,
                                        pending.sha256, "the record after it does not follow "
                                        "it", pending.data)
                        report(Problem(pending.line, "altered", "ALTERED: fails the chain "
                                       "(the record after it does not follow it); flagged",
                                       pending.sha256))
                if verdict == ALTERED:
                    report(Problem(raw.pos, "altered", f"ALTERED: fails the chain ({note}); "
                                   "flagged", h))
                entry = Entry(raw.pos, seq if isinstance(seq, int) else None, rec, verdict, h,
                              note, raw.data)
            prev_hash = h
        if pending is not None:
            yield pending
        pending = entry
    if pending is not None:
        yield pending


def verify_lines(lines: Iterable[RawLine], expect: Head | None = None) -> Verified:
    """Check the whole chain, streaming: the records checked, the problems in line order, and
    the last record's head when the chain is intact. With `expect` (a head kept elsewhere), a
    log that no longer holds that record unchanged is a problem too. Fragments a later record
    acknowledges are listed apart, not as problems."""
    problems: list[Problem] = []
    prev_hash = ""
    expected_seq = 1
    count = 0
    last: Head | None = None
    found = expect is None
    acks: set[str] = set()
    prev_edited = False
    for raw in lines:
        count += 1
        this_hash = hashlib.sha256(raw.data).hexdigest()
        edited_before, prev_edited = prev_edited, False
        if not raw.complete:
            problems.append(Problem(raw.pos, "torn", "torn: the last line has no end (a write "
                                                     "was interrupted)", this_hash))
            break
        if not raw.data.strip():
            count -= 1
            continue
        rec = parse(raw.data)
        if rec is None:
            problems.append(Problem(raw.pos, "unparseable", "not a valid record: edited, or "
                                    "torn by an interrupted write", this_hash))
            prev_hash = this_hash  # a later append chains onto the fragment
            continue
        if rec.get("kind") == TAIL_ACK:
            frag = rec.get("fragment") or {}
            if isinstance(frag.get("sha256"), str):
                acks.add(frag["sha256"])
        seq = rec.get("seq")
        linked = raw.prev if raw.prev is not None else prev_hash
        if not content_ok(raw.data):
            problems.append(Problem(raw.pos, "edited", "its content does not match its own "
                                    "hash: the line was edited", this_hash))
            prev_edited = True
        elif not isinstance(seq, int):
            problems.append(Problem(raw.pos, "edited", "has no sequence number", this_hash))
        elif seq > expected_seq:
            problems.append(Problem(raw.pos, "missing", f"record #{expected_seq} expected, "
                                    f"#{seq} found: a line before it was deleted (or moved)",
                                    this_hash))
        elif seq < expected_seq:
            problems.append(Problem(raw.pos, "out_of_order", f"record #{seq} found where "
                                    f"#{expected_seq} belongs: a line was inserted, duplicated "
                                    "or reordered", this_hash))
        elif rec.get("prev_sha256") != linked and not edited_before:
            problems.append(Problem(raw.pos, "broken_chain", "does not follow the line before "
                                    "it: the previous line was changed or a line was inserted",
                                    this_hash))
        if isinstance(seq, int):
            last = Head(seq, this_hash)
            if expect is not None and seq == expect.seq:
                if this_hash != expect.sha256:
                    problems.append(Problem(raw.pos, "head", f"record #{seq} is not the one "
                                            "whose hash you kept: it, or the log, was "
                                            "rewritten", this_hash))
                found = True
        prev_hash = this_hash
        expected_seq = (max(expected_seq, seq) if isinstance(seq, int) else expected_seq) + 1
    if not found:
        problems.append(Problem(0, "head", f"record #{expect.seq} (the head you kept) is not "  # type: ignore[union-attr]
                                "in the log: records were cut off the end, or the log was "
                                "replaced"))
    acknowledged = [p for p in problems if p.kind in ("torn", "unparseable")
                    and p.sha256 in acks]
    problems = [p for p in problems if p not in acknowledged]
    return Verified(count, problems, last if not problems else None, acknowledged)
