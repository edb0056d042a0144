"""`icans export fhir`: the log, read through the store, as a FHIR R4 Bundle.

Only records that pass the chain are exported. A log that fails it (an altered record, an
unparseable or torn line not acknowledged) is refused before anything is written, unless
``allow_broken``: then the intact records are exported and what was left out is named. The
Bundle states the log head it was made from when the whole log is intact.

Two passes over the store, memory flat: the first checks the chain and keeps the corrections
(the FHIR writer's first pass needs only those) and the records left out; the second streams
the records into the Bundle. The output is a temporary file renamed when complete (``-o``) or
standard output as UTF-8 with one line ending; output that cannot be written whole raises
``OutputFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator, TextIO

from icans_cli.store import ALTERED, Store

PATIENT_SYSTEM_ENV = "ICANS_PATIENT_SYSTEM"


class Refused(Exception):
    """The log fails its chain and --allow-broken was not given: nothing was written."""


@dataclass
class Plan:
    corrections: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # what is left out, said line by line
    altered_lines: set[int] = field(default_factory=set)
    problems: int = 0
    log_head: str | None = None
    # what the check read: the second pass exports nothing after it (a record appended while
    # the export runs is for the next export, never exported unchecked)
    last_line: int | None = None
    upto_seq: int | None = None  # the head's seq, when the log is intact


def _chooser(patient: str | None, since: datetime | None, after_seq: int | None
             ) -> Callable[[Any], bool]:
    """Whether an entry is an assessment the export selects."""
    from icans_cli.core.identifiers import patient_key
    from icans_cli.history import _time

    key = patient_key(patient) if patient is not None else None
    if key is None and since is None and after_seq is None:  # every assessment
        return lambda e: e.record is not None and not e.record.get("kind")

    def chosen(e: Any) -> bool:
        rec = e.record
        if rec is None or rec.get("kind"):
            return False
        if after_seq is not None and (e.seq is None or e.seq <= after_seq):
            return False
        if key is not None:
            pid = rec.get("patient_id")
            if not isinstance(pid, str) or patient_key(pid) != key:
                return False
        return since is None or _time(rec.get("recorded_at")) >= since
    return chosen


_CORRECTION = b'"amends":"'  # a record naming the one it corrects (others hold null)


def plan(store: Store, *, patient: str | None = None, since: datetime | None = None,
         after_seq: int | None = None, allow_broken: bool = False) -> Plan:
    """The first pass: the chain over the whole log (each line hashed and linked; only the
    corrections parsed), the corrections of the selection, and what a broken log leaves out.
    Raises Refused before anything is written."""
    from icans_cli.store.chain import check_chain

    p = Plan()
    chosen = _chooser(patient, since, after_seq)

    def problem(pr: Any) -> None:
        p.problems += 1
        if pr.kind == "altered":
            p.altered_lines.add(pr.line)
        if len(p.left_out) < 20:
            p.left_out.append(f"line {pr.line}: {pr.message}")

    acks = store.acknowledged() if hasattr(store, "acknowledged") else frozenset()
    head = store.head()  # taken first: the check reads it and anything appended after it

    def read() -> Iterator[Any]:
        for raw in store.lines():
            p.last_line = raw.pos
            yield raw

    for e in check_chain(read(), problem, acks,
                         want=lambda data: _CORRECTION in data, report_skipped=True):
        if e.record is not None and e.verdict != ALTERED and chosen(e) \
                and e.record.get("amends"):
            p.corrections.append(e.record)
    if p.problems == 0 and head is not None:
        p.log_head, p.upto_seq = str(head), head.seq
    if p.problems and not allow_broken:
        raise Refused(
            f"the log fails its chain ({p.problems} problem{'s' if p.problems != 1 else ''}; "
            f"first: {p.left_out[0] if p.left_out else 'see icans log verify'}): nothing was "
            "exported. `icans log verify` names every problem; --allow-broken exports the "
            "records that pass and names what it leaves out")
    return p


def _records(store: Store, p: Plan, patient: str | None, after_seq: int | None,
             chosen: Callable[[Any], bool], left_out: Callable[[str], None]
             ) -> Iterator[dict[str, Any]]:
    """The second pass: the selected intact records, in log order. The chain was checked by
    the first pass: here a file's lines are only parsed (a database reads its rows by index);
    a line the first pass did not parse that is not a record after all is left out, named."""
    from icans_cli.store.chain import parse

    upto = p.upto_seq
    if store.kind != "file":
        for e in store.entries(patient, after_seq):
            if upto is not None and e.seq is not None and e.seq > upto:
                return  # appended after the check (a database gives seq order)
            if e.record is not None and e.verdict != ALTERED and chosen(e):
                yield e.record
        return

    class _E:  # what chosen() reads of an entry
        __slots__ = ("record", "seq")

    one = _E()
    from icans_cli.store import holds_patient

    wanted = holds_patient(store.spellings(patient)) if patient is not None else None
    for raw in store.lines():
        if p.last_line is not None and raw.pos > p.last_line:
            return  # appended after the check
        if not raw.complete or raw.pos in p.altered_lines or not raw.data or \
                raw.data.isspace():
            continue
        if wanted is not None and not wanted(raw.data):
            continue
        rec = parse(raw.data)
        if rec is None:
            if raw.data.strip(b"\x00").strip():
                left_out(f"line {raw.pos}: not a valid record; left out")
            continue
        seq = rec.get("seq")
        one.record, one.seq = rec, seq if isinstance(seq, int) else None
        if upto is not None and one.seq is not None and one.seq > upto:
            return  # past the head the check vouched for
        if chosen(one):
            yield rec


def export_fhir(store: Store, out: TextIO, p: Plan, *, patient: str | None = None,
                since: datetime | None = None, after_seq: int | None = None,
                transaction: bool = False, patient_system: str | None = None,
                left_out: Callable[[str], None] = lambda _: None):
    """The second pass: write the Bundle; returns fhir.ExportSummary."""
    from icans_cli import fhir

    chosen = _chooser(patient, since, after_seq)
    calls = {"n": 0}

    def records() -> Iterator[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:  # the writer's first pass reads only the corrections
            return iter(p.corrections)
        return _records(store, p, patient, after_seq, chosen, left_out)

    return fhir.write_bundle(records, out, transaction=transaction,
                             patient_system=patient_system, log_head=p.log_head)


def check_patient_system(value: str) -> str:
    """An absolute URI (R4 Identifier.system is a uri; a hospital's is usually a URL or an
    OID as urn:oid:...); ValueError otherwise."""
    import re

    if not re.fullmatch(r"(https?://[^\s/]+(/\S*)?|urn:(oid:[0-2](\.\d+)+|uuid:[0-9a-f-]{36}"
                        r"|[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+))", value):
        raise ValueError("--patient-system must be an absolute URI: http(s)://... or "
                         "urn:oid:1.2.3... (R4 Identifier.system)")
    return value


def run(store: Store, output: Any, *, patient: str | None = None,
        since: datetime | None = None, after_seq: int | None = None,
        allow_broken: bool = False, transaction: bool = False,
        patient_system: str | None = None,
        left_out: Callable[[str], None] = lambda _: None) -> tuple[Any, Plan]:
    """The whole export: the first pass (Refused before anything is written), then the Bundle
    into `output` (a temporary file renamed when complete) or standard output. Raises
    views.OutputFailed when it cannot be written whole; returns (the summary, the plan)."""
    from pathlib import Path

    from icans_cli.batchrun import _Output, _stop_on_signals, check_paths
    from icans_cli.exit import Stopped
    from icans_cli.views import guard_write

    if output is not None and store.kind == "file":
        check_paths("-", output, Path(store.where), False)
    p = plan(store, patient=patient, since=since, after_seq=after_seq,
             allow_broken=allow_broken)
    for line in p.left_out:
        left_out(line)
    if p.problems > len(p.left_out):
        left_out(f"... and {p.problems - len(p.left_out)} more (icans log verify)")
    # Under the same signal handlers as `icans grade`: a SIGTERM or SIGHUP stops the export
    # as Ctrl-C does (batchrun.Stopped), and the temporary file goes with it.
    out = None
    try:
        with _stop_on_signals():
            out = _Output(output, raw_stdout=True)
            summary = export_fhir(store, out.fh, p, patient=patient, since=since,
                                  after_seq=after_seq, transaction=transaction,
                                  patient_system=patient_system, left_out=left_out)
            out.commit()
    except BaseException as exc:
        if out is not None and out.committed and isinstance(exc, (KeyboardInterrupt, Stopped)):
            return summary, p  # the signal came once the Bundle was written: it is done
        if out is not None:
            out.abort()
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise guard_write(exc, f"the Bundle ({output or 'standard output'})") from None
        raise
    return summary, p
