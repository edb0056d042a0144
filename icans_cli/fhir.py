"""FHIR R4 export of logged assessments: plain dicts, no FHIR library in the product.

For each record a Bundle (type ``collection``) holds:
- a QuestionnaireResponse with the ICE items (or the CAPD items), against a local questionnaire;
- an Observation for the ICE or CAPD total (when a score was taken);
- an Observation for the ICANS grade: a local code for the grade and, for grades 1-4, the
  ICD-10-CM code G92.01-G92.04 (system http://hl7.org/fhir/sid/icd-10-cm). Grade 0 has no ICD
  code: G92.00 means "ICANS, grade unspecified", never grade 0; it is used only for a
  not-assessable result whose floor shows ICANS is present (at least grade 1);
- for a correction, a Provenance naming the record it replaces (activity "UPDATE", entity role
  "revision"), and status ``amended`` on its resources.

The patient is referenced by the pseudonym as an identifier; no LOINC or SNOMED code is used
(none was verified for ICE or CAPD): every code is in a local code system, or ICD-10-CM.
Resource ids are derived from the record id, so an export is stable and references resolve.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

from icans_cli import __version__

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOCAL = "urn:icans-cli"
CODES = f"{LOCAL}:CodeSystem:icans"  # observation codes and ICANS grades
PSEUDONYM = f"{LOCAL}:pseudonym"
RECORD = f"{LOCAL}:record"
QUESTIONNAIRE = {"ice": f"{LOCAL}:Questionnaire:ice|2019", "capd": f"{LOCAL}:Questionnaire:capd"}
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ICD_BY_GRADE = {1: ("G92.01", "Immune effector cell-associated neurotoxicity syndrome, grade 1"),
                2: ("G92.02", "Immune effector cell-associated neurotoxicity syndrome, grade 2"),
                3: ("G92.03", "Immune effector cell-associated neurotoxicity syndrome, grade 3"),
                4: ("G92.04", "Immune effector cell-associated neurotoxicity syndrome, grade 4")}
ICD_UNSPECIFIED = ("G92.00", "Immune effector cell-associated neurotoxicity syndrome, grade "
                             "unspecified")
ICE_ITEMS = (("orientation", "Orientation: year, month, city, hospital (0-4)"),
             ("naming", "Naming three objects (0-3)"),
             ("commands", "Following a simple command (0-1)"),
             ("writing", "Writing a standard sentence (0-1)"),
             ("attention", "Counting backwards from 100 by 10 (0-1)"))
_NS = uuid.UUID("6c2f3b1e-6a57-4c0e-9a43-2f6f1b0b9a10")


def _uuid(record_id: str, kind: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{record_id}/{kind}')}"


def _time(value: Any) -> str:
    """A FHIR dateTime (with a time zone)."""
    from datetime import datetime, timezone

    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_time

    try:
        return parse_time(str(value)).isoformat(timespec="seconds")
    except InvalidFinding:
        # a time outside 2000-2100, logged by an older version: exported as it was recorded
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")


def _subject(rec: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": {"system": PSEUDONYM, "value": str(rec.get("patient_id", ""))}}


def _identifier(rec: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [{"system": RECORD, "value": f"{rec.get('id')}/{kind}"}]


def record_entries(rec: dict[str, Any], replaced_in_bundle: bool = False
                   ) -> list[dict[str, Any]]:
    """The Bundle entries for one logged assessment. A correction names the record it replaces
    by identifier, and by reference too when that record is in the same bundle."""
    rid = str(rec.get("id"))
    res = rec.get("result") or {}
    f = rec.get("findings") or {}
    amended = bool(rec.get("amends"))
    when = _time(rec.get("assessed_at"))
    path = res.get("score_path") or "ice"
    entries: list[dict[str, Any]] = []
    qr_url = _uuid(rid, "QuestionnaireResponse")
    items: list[dict[str, Any]] = []
    if path == "ice" and f.get("ice_items"):
        for key, text in ICE_ITEMS:
            items.append({"linkId": key, "text": text,
                          "answer": [{"valueInteger": int(f["ice_items"][key])}]})
    elif path == "capd" and f.get("capd_items"):
        for i, points in enumerate(f["capd_items"], 1):
            items.append({"linkId": f"capd-{i}", "text": f"CAPD item {i} (0-4)",
                          "answer": [{"valueInteger": int(points)}]})
    score = res.get("capd_score") if path == "capd" else res.get("ice_score")
    if score is not None:
        items.append({"linkId": f"{path}-total", "text": f"{path.upper()} total",
                      "answer": [{"valueInteger": int(score)}]})
    qr = {"resourceType": "QuestionnaireResponse", "identifier": _identifier(rec, "qr")[0],  # 0..1
          "questionnaire": QUESTIONNAIRE[path],
          "status": "amended" if amended else "completed", "subject": _subject(rec),
          "authored": when, "author": {"display": str(rec.get("assessor", ""))},
          "item": items or [{"linkId": "not-taken", "text": f"{path.upper()} not taken "
                             "(unarousable, or another cause)"}]}
    entries.append({"fullUrl": qr_url, "resource": qr})
    targets = [qr_url]
    if score is not None:
        obs_url = _uuid(rid, "score")
        entries.append({"fullUrl": obs_url, "resource": {
            "resourceType": "Observation", "identifier": _identifier(rec, "score"),
            "status": "amended" if amended else "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "survey",
                                      "display": "Survey"}]}],
            "code": {"coding": [{"system": CODES, "code": f"{path}-score",
                                 "display": f"{path.upper()} total"}],
                     "text": "ICE score (0-10)" if path == "ice" else "CAPD total (0-32)"},
            "subject": _subject(rec), "effectiveDateTime": when,
            "valueInteger": int(score), "derivedFrom": [{"reference": qr_url}]}})
        targets.append(obs_url)
    grade_url = _uuid(rid, "grade")
    entries.append({"fullUrl": grade_url, "resource": _grade_observation(
        rec, res, when, amended, [qr_url] + targets[1:])})
    targets.append(grade_url)
    if amended:
        old = str(rec.get("amends"))
        what: dict[str, Any] = {"identifier": {"system": RECORD, "value": f"{old}/grade"}}
        if replaced_in_bundle:
            what["reference"] = _uuid(old, "grade")
        entries.append({"fullUrl": _uuid(rid, "Provenance"), "resource": {
            "resourceType": "Provenance", "target": [{"reference": t} for t in targets],
            "recorded": _time(rec.get("recorded_at") or rec.get("assessed_at")),
            "activity": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                "code": "UPDATE", "display": "revise"}]},
            "agent": [{"who": {"display": str(rec.get("assessor", ""))}}],
            "entity": [{"role": "revision", "what": what}]}})
    return entries


def _grade_observation(rec: dict[str, Any], res: dict[str, Any], when: str, amended: bool,
                       derived: list[str]) -> dict[str, Any]:
    graded = res.get("status") == "graded"
    if graded:
        g = int(res.get("icans_grade") or 0)
        coding = [{"system": CODES, "code": f"grade-{g}", "display": f"ICANS grade {g}"}]
        if g in ICD_BY_GRADE:
            code, display = ICD_BY_GRADE[g]
            coding.append({"system": ICD10CM, "code": code, "display": display})
        text = f"ICANS grade {g} (ASTCT 2019)"
    else:
        floor = int(res.get("grade_at_least") or 0)
        coding = [{"system": CODES, "code": "not-assessable",
                   "display": "ICANS not assessable (another cause)"}]
        if floor >= 1:
            coding.append({"system": ICD10CM, "code": ICD_UNSPECIFIED[0],
                           "display": ICD_UNSPECIFIED[1]})
        text = (f"ICANS not assessable: at least grade {floor}" if floor
                else "ICANS not assessable: grade unknown")
    obs: dict[str, Any] = {
        "resourceType": "Observation", "identifier": _identifier(rec, "grade"),
        "status": "amended" if amended else "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "exam", "display": "Exam"}]}],
        "code": {"coding": [{"system": CODES, "code": "icans-grade",
                             "display": "ICANS grade (ASTCT 2019)"}],
                 "text": "ICANS grade (ASTCT 2019)"},
        "subject": _subject(rec), "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": coding, "text": text},
        "derivedFrom": [{"reference": u} for u in derived],
    }
    drivers = res.get("drivers") or []
    if drivers:
        obs["note"] = [{"text": "Driven by: " + ", ".join(drivers)}]
    return obs


def bundle(records: Iterable[dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
    """A collection Bundle of the given records, in log order."""
    records = list(records)
    ids = {str(r.get("id")) for r in records}
    entries: list[dict[str, Any]] = []
    for rec in records:
        entries.extend(record_entries(rec, str(rec.get("amends")) in ids))
    return {"resourceType": "Bundle", "type": "collection",
            "timestamp": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
            "meta": {"tag": [{"system": LOCAL, "code": f"icans-cli-{__version__}"}]},
            "entry": entries}
