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


def _chooser(patient: str | None, since: datetime | None, after_seq: int | None
             ) -> Callable[[Any], bool]:
    """Whether an entry is an assessment the export selects."""
    from icans_cli.core.identifiers import patient_key
    from icans_cli.history import _time

    key = patient_key(patient) if patient is not None else None

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


def _candidates(store: Store, patient: str | None, after_seq: int | None) -> Iterator[Any]:
    """The entries to choose from: a database reads the patient's rows by index; the file is
    read once, whole (its patient filter would read it twice)."""
    if store.kind == "file":
        return store.entries()
    return store.entries(patient, after_seq)


def plan(store: Store, *, patient: str | None = None, since: datetime | None = None,
         after_seq: int | None = None, allow_broken: bool = False) -> Plan:
    """The first pass: the chain over the whole log, the corrections of the selection, and
    what a broken log leaves out. Raises Refused before anything is written."""
    p = Plan()
    chosen = _chooser(patient, since, after_seq)

    def problem(pr: Any) -> None:
        p.problems += 1
        if len(p.left_out) < 20:
            p.left_out.append(f"line {pr.line}: {pr.message}")

    last = None
    for e in store.entries(on_problem=problem):
        if e.record is None or e.seq is None:
            continue
        if e.verdict != ALTERED:
            last = e
        if not chosen(e):
            continue
        if e.verdict == ALTERED:
            p.altered_lines.add(e.line)
        elif e.record.get("amends"):
            p.corrections.append(e.record)
    if p.problems == 0 and last is not None:
        p.log_head = f"{last.seq}:{last.sha256}"
    if p.problems and not allow_broken:
        raise Refused(
            f"the log fails its chain ({p.problems} problem{'s' if p.problems != 1 else ''}; "
            f"first: {p.left_out[0] if p.left_out else 'see icans log verify'}): nothing was "
            "exported. `icans log verify` names every problem; --allow-broken exports the "
            "records that pass and names what it leaves out")
    return p


def export_fhir(store: Store, out: TextIO, p: Plan, *, patient: str | None = None,
                since: datetime | None = None, after_seq: int | None = None,
                transaction: bool = False, patient_system: str | None = None):
    """The second pass: write the Bundle; returns fhir.ExportSummary."""
    from icans_cli import fhir

    chosen = _chooser(patient, since, after_seq)
    calls = {"n": 0}

    def records() -> Iterator[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:  # the writer's first pass reads only the corrections
            return iter(p.corrections)
        return (e.record for e in _candidates(store, patient, after_seq)
                if e.verdict != ALTERED and e.line not in p.altered_lines and chosen(e))

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

