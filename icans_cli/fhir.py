"""FHIR R4 (4.0.1) export of logged assessments: plain dicts and json, no FHIR library.

Per logged assessment the Bundle holds:
- a QuestionnaireResponse with the ICE items (or the CAPD items), against the ICE or CAPD
  Questionnaire of this module (canonical ``url|version``);
- an Observation for the ICE or CAPD total (when a score was taken), a UCUM ``{score}`` quantity;
- an Observation for the body weight (when one was recorded), LOINC 29463-7, UCUM ``kg``;
- an Observation for the ICANS grade: a local code for the grade and, for grades 1-4, the
  ICD-10-CM code G92.01-G92.04 (system http://hl7.org/fhir/sid/icd-10-cm). Grade 0 has no ICD
  code: G92.00 means "ICANS, grade unspecified", never grade 0; it is used only for a
  not-assessable result whose floor shows ICANS is present (at least grade 1);
- for a correction, a Provenance naming the record it corrects (activity UPDATE, entity role
  "revision"), and status ``amended`` on its resources.
Once per Bundle: the ICE and CAPD Questionnaires and the CodeSystem of the local codes.

Two kinds of Bundle:
- ``collection`` (the default): what the log holds, every record with its own resource ids,
  a correction next to the record it corrects; the subject is a logical reference (identifier).
- ``transaction``: what a server should hold. Every entry is a request; a correction updates
  (PUT) the resources of the assessment it corrects under the same ids, so a server holds one
  current grade per assessment; a record that a later correction in the same export replaces
  is left out (a score or weight it had and the correction has not is sent entered-in-error);
  the Patient is created only if none has the identifier (conditional create).

Ids are uuid5 of the record id (of the first record of a correction chain in a transaction):
exporting the same records twice gives the same ids, so sending a transaction again is
harmless. The export streams (``write_bundle``): memory holds the corrections and the patients
seen, never the records or the entries.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, TextIO

from icans_cli import __version__

# --- systems and canonical URLs -------------------------------------------------------------------
# Every local system and canonical is an http(s) URL under one base (R4 codesystem-definitions.html
# #CodeSystem.url: "urn:uuid: or urn:oid: ... but real http: addresses are preferred").
CANONICAL = "https://icans-cli.org/fhir"
CODES = f"{CANONICAL}/CodeSystem/icans"  # observation codes and ICANS grades (CodeSystem below)
CODES_VERSION = "1.0.0"
PSEUDONYM = f"{CANONICAL}/sid/pseudonym"  # default patient identifier system
RECORD = f"{CANONICAL}/sid/record"  # identifiers "<record id>/<kind>" of the exported resources
TAG_TOOL = f"{CANONICAL}/tag/tool"  # Bundle.meta.tag: the tool and its version
TAG_LOG_HEAD = f"{CANONICAL}/tag/log-head"  # Bundle.meta.tag: the log head ("SEQ:SHA256")
QUESTIONNAIRE_URL = {"ice": f"{CANONICAL}/Questionnaire/ice",
                     "capd": f"{CANONICAL}/Questionnaire/capd"}
# the instrument versions: ICE as published with the ASTCT consensus (Lee 2019), CAPD (Traube 2014)
QUESTIONNAIRE_VERSION = {"ice": "2019", "capd": "2014"}
# R4 questionnaire-definitions.html#Questionnaire.version: "[url]|[version]" pins the version
QUESTIONNAIRE = {k: f"{QUESTIONNAIRE_URL[k]}|{QUESTIONNAIRE_VERSION[k]}" for k in QUESTIONNAIRE_URL}

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
# LOINC 29463-7 "Body weight": the code the R4 body weight vital-signs profile fixes
# (observation-vitalsigns.html, bodyweight profile), with UCUM kg
BODY_WEIGHT = ("29463-7", "Body weight")

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
# the concepts of the local CodeSystem (code, display, definition)
CONCEPTS = (
    ("ice-score", "ICE score",
     "Immune Effector Cell-associated Encephalopathy score, 0-10 (ASTCT 2019); 10 is no "
     "impairment."),
    ("capd-score", "CAPD total",
     "Cornell Assessment of Pediatric Delirium total, 0-32 (Traube 2014); 9 or more suggests "
     "delirium."),
    ("icans-grade", "ICANS grade (ASTCT 2019)",
     "Immune effector cell-associated neurotoxicity syndrome grade by the ASTCT 2019 consensus."),
    *((f"grade-{g}", f"ICANS grade {g}", f"ICANS grade {g} by the ASTCT 2019 consensus"
       + (" (no ICANS)." if g == 0 else "."))
      for g in range(5)),
    ("not-assessable", "ICANS not assessable (another cause)",
     "The ICANS grade cannot be assigned: the findings have another cause (e.g. sedation)."),
)
_NS = uuid.UUID("6c2f3b1e-6a57-4c0e-9a43-2f6f1b0b9a10")
_LOG_HEAD = re.compile(r"\d+:[0-9a-f]{64}")


@dataclass
class ExportSummary:
    """What ``write_bundle`` wrote."""

    assessments: int = 0  # assessment records exported (the current versions, in a transaction)
    entries: int = 0  # Bundle entries written (Patients, Questionnaires, CodeSystem included)
    # the highest log seq of the records read (never a superseded one: its correction is later)
    last_seq: int | None = None
    # ids of records left out because a later correction in the same export replaces them
    # (transaction only: a collection keeps every record)
    superseded: list[str] = field(default_factory=list)


# --- ids, references, entries ---------------------------------------------------------------------

_NS_BYTES = _NS.bytes


def _uuid5(name: str) -> str:
    """str(uuid.uuid5(_NS, name)), without building UUID objects (two per record entry)."""
    from hashlib import sha1  # here: loading OpenSSL costs milliseconds at import

    h = bytearray(sha1(_NS_BYTES + name.encode("utf-8")).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5 (RFC 4122 4.3)
    h[8] = (h[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _id(key: str, kind: str) -> str:
    """A stable resource id. R4 datatypes.html#id: [A-Za-z0-9\\-\\.]{1,64}; a UUID fits."""
    return _uuid5(f"{key}/{kind}")


@lru_cache(maxsize=4096)  # bounded: memory must not grow with the patients of a large log
def _patient_id(system: str, value: str) -> str:
    return _uuid5(f"{system}|{value}")


class _Style:
    """How entries and references are written: collection or transaction."""

    __slots__ = ("transaction", "patient_system")

    def __init__(self, transaction: bool, patient_system: str) -> None:
        self.transaction = transaction
        self.patient_system = patient_system

    def ref(self, resource_type: str, rid: str) -> str:
        # Transaction: "Type/id", relative to the server base (references.html#literal). The
        # entries PUT those ids (http.html#update/#upsert), so the reference resolves with no
        # rewriting; should a server assign its own ids instead, it SHALL rewrite the matching
        # references (http.html#trules). Collection: the entry's fullUrl, resolved inside the
        # Bundle (bundle.html, "Resolving references in Bundles").
        return f"{resource_type}/{rid}" if self.transaction else f"urn:uuid:{rid}"

    def entry(self, resource: dict[str, Any]) -> dict[str, Any]:
        rid = resource["id"]
        # R4 bundle-definitions.html#Bundle.entry.fullUrl: SHALL have a value (except a POST);
        # a urn:uuid need not match a server URL; we use the resource's own id in it
        e: dict[str, Any] = {"fullUrl": f"urn:uuid:{rid}", "resource": resource}
        if self.transaction:
            # R4 http.html#transaction: every entry SHALL carry request (bdl-3).
            # R4 http.html#update: PUT [type]/[id], the body's id SHALL equal the [id] of the URL
            # (else 400); http.html#upsert: a server allowing client ids creates it if new.
            e["request"] = {"method": "PUT", "url": f"{resource['resourceType']}/{rid}"}
        return e

    def subject(self, rec: dict[str, Any]) -> dict[str, Any]:
        pid = str(rec.get("patient_id", ""))
        if self.transaction:
            # R4 http.html#trules: references to an entry's fullUrl are rewritten to the id the
            # server gives (here: the Patient's conditional create, see _patient_entry)
            return {"reference": f"urn:uuid:{_patient_id(self.patient_system, pid)}"}
        # R4 references.html#logical: a logical reference by identifier (valid in any Bundle)
        return {"identifier": {"system": self.patient_system, "value": pid}}


def _search_token(system: str, value: str) -> str:
    """A token search value "system|value": R4 search.html#escaping ("\\" before "$", ",", "|"
    and itself in a value), then percent-encoded (http.html: RFC 3986)."""
    from urllib.parse import quote

    def esc(s: str) -> str:
        return re.sub(r"([\\$,|])", r"\\\1", s)

    return f"{quote(esc(system), safe=':/')}|{quote(esc(value), safe='')}"


def _patient_entry(pid: str, system: str) -> dict[str, Any]:
    """The Patient of a transaction: created only if no Patient has the identifier."""
    return {"fullUrl": f"urn:uuid:{_patient_id(system, pid)}",
            "resource": {"resourceType": "Patient",
                         "identifier": [{"system": system, "value": pid}]},
            # R4 http.html#ccreate + bundle-definitions.html#Bundle.entry.request.ifNoneExist:
            # the query part only; no match: created, one match: ignored (200), several: 412.
            # A POST may have a urn:uuid fullUrl as a temporary id (Bundle.entry.fullUrl).
            "request": {"method": "POST", "url": "Patient",
                        "ifNoneExist": f"identifier={_search_token(system, pid)}"}}


def _time(value: Any) -> str:
    """A FHIR dateTime (with a time zone; seconds and zone make it an instant too)."""
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_time

    try:
        return parse_time(str(value)).isoformat(timespec="seconds")
    except InvalidFinding:
        # a time outside 2000-2100, logged by an older version: exported as it was recorded
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")


def _identifier(rid: str, kind: str) -> list[dict[str, Any]]:
    return [{"system": RECORD, "value": f"{rid}/{kind}"}]


def _score_quantity(score: int) -> dict[str, Any]:
    # R4 datatypes.html#Quantity (qty-3: a code needs a system); UCUM {score} is an annotation
    # of the unity 1 (UCUM 2.1.4): a dimensionless score
    return {"value": int(score), "unit": "score", "system": UCUM, "code": "{score}"}


@lru_cache(maxsize=None)
def _capd_texts() -> tuple[str, ...]:
    from icans_cli.core.scores import CAPD_ITEMS

    return tuple(f"CAPD {s.number}. {s.question} (0-4: never {4 if s.reversed else 0}, "
                 f"always {0 if s.reversed else 4})" for s in CAPD_ITEMS)


def _not_taken_text(path: str) -> str:
    return f"{path.upper()} not taken (unarousable, or another cause)"


# --- the resources of one assessment --------------------------------------------------------------

# A correction's status: Observation "amended" rather than "corrected". R4
# codesystem-observation-status.html: amended = "modified subsequent [to final]. This includes
# updates/new information and corrections"; corrected = "modified to correct an error in the test
# result". A logged correction may fix an error or add what was learnt later, and the log does
# not say which: amended is true of both. QuestionnaireResponse has no "corrected"
# (codesystem-questionnaire-answers-status.html), so amended keeps a correction's resources in
# step.
def _assessment(rec: dict[str, Any], root: str, style: _Style
                ) -> list[tuple[str, dict[str, Any]]]:
    """The resources of one logged assessment as (kind, resource), with the ids of ``root``."""
    rid = str(rec.get("id"))
    res = rec.get("result") or {}
    f = rec.get("findings") or {}
    amended = bool(rec.get("amends"))
    when = _time(rec.get("assessed_at"))
    path = "capd" if res.get("score_path") == "capd" else "ice"
    assessor = str(rec.get("assessor") or "").strip()
    # R4 observation-definitions.html#Observation.performer: Reference(Practitioner|...);
    # display-only is valid in R4 (no ref-2 until R5)
    performer = {"performer": [{"display": assessor}]} if assessor else {}
    subject = style.subject(rec)
    out: list[tuple[str, dict[str, Any]]] = []

    items: list[dict[str, Any]] = []
    if path == "ice" and f.get("ice_items"):
        for key, text in ICE_ITEMS:
            items.append({"linkId": key, "text": text,
                          "answer": [{"valueInteger": int(f["ice_items"][key])}]})
    elif path == "capd" and f.get("capd_items"):
        for text, (i, points) in zip(_capd_texts(), enumerate(f["capd_items"], 1)):
            items.append({"linkId": f"capd-{i}", "text": text,
                          "answer": [{"valueInteger": int(points)}]})
    score = res.get("capd_score") if path == "capd" else res.get("ice_score")
    if score is not None:
        items.append({"linkId": f"{path}-total", "text": f"{path.upper()} total",
                      "answer": [{"valueInteger": int(score)}]})
    if not items:
        items.append({"linkId": "not-taken", "text": _not_taken_text(path),
                      "answer": [{"valueBoolean": True}]})
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "id": _id(root, "QuestionnaireResponse"),
        "identifier": _identifier(rid, "qr")[0],  # 0..1 in R4
        # R4 questionnaireresponse-definitions.html#QuestionnaireResponse.questionnaire:
        # canonical(Questionnaire), "url|version"; canonicals are not rewritten (http.html#trules)
        "questionnaire": QUESTIONNAIRE[path],
        # R4 QuestionnaireResponse.status (required binding): completed | amended
        "status": "amended" if amended else "completed",
        "subject": subject, "authored": when}
    if assessor:
        qr["author"] = {"display": assessor}
    qr["item"] = items
    out.append(("QuestionnaireResponse", qr))
    qr_ref = style.ref("QuestionnaireResponse", qr["id"])
    obs_status = "amended" if amended else "final"  # R4 Observation.status: see above

    derived = [{"reference": qr_ref}]
    if score is not None:
        obs = {"resourceType": "Observation", "id": _id(root, "score"),
               "identifier": _identifier(rid, "score"), "status": obs_status,
               "category": [{"coding": [{"system": OBS_CATEGORY, "code": "survey",
                                         "display": "Survey"}]}],
               "code": {"coding": [{"system": CODES, "code": f"{path}-score",
                                    "display": f"{path.upper()} total"}],
                        "text": "ICE score (0-10)" if path == "ice" else "CAPD total (0-32)"},
               "subject": subject, "effectiveDateTime": when, **performer,
               "valueQuantity": _score_quantity(score), "derivedFrom": [{"reference": qr_ref}]}
        out.append(("score", obs))
        derived.append({"reference": style.ref("Observation", obs["id"])})

    out.append(("grade", _grade_observation(rec, res, root, when, obs_status, subject, performer,
                                            derived)))

    weight = f.get("weight_kg")
    if isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight > 0:
        out.append(("weight", {
            "resourceType": "Observation", "id": _id(root, "weight"),
            "identifier": _identifier(rid, "weight"), "status": obs_status,
            # R4 observation-vitalsigns.html: a body weight is a vital sign: category
            # vital-signs, LOINC 29463-7, a UCUM quantity (kg)
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs",
                                      "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": BODY_WEIGHT[0],
                                 "display": BODY_WEIGHT[1]}], "text": "Body weight"},
            "subject": subject, "effectiveDateTime": when, **performer,
            "valueQuantity": {"value": weight, "unit": "kg", "system": UCUM, "code": "kg"}}))
    return out


def _grade_observation(rec: dict[str, Any], res: dict[str, Any], root: str, when: str,
                       status: str, subject: dict[str, Any], performer: dict[str, Any],
                       derived: list[dict[str, str]]) -> dict[str, Any]:
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
        "resourceType": "Observation", "id": _id(root, "grade"),
        "identifier": _identifier(str(rec.get("id")), "grade"), "status": status,
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "exam", "display": "Exam"}]}],
        "code": {"coding": [{"system": CODES, "code": "icans-grade",
                             "display": "ICANS grade (ASTCT 2019)"}],
                 "text": "ICANS grade (ASTCT 2019)"},
        "subject": subject, "effectiveDateTime": when, **performer,
        "valueCodeableConcept": {"coding": coding, "text": text},
        "derivedFrom": derived,
    }
    drivers = res.get("drivers") or []
    if drivers:
        obs["note"] = [{"text": "Driven by: " + ", ".join(drivers)}]
    return obs


def _record_entries(rec: dict[str, Any], style: _Style, root: str, replaced_in_bundle: bool,
                    withdrawn: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of one record. ``withdrawn``: resources (by kind) an earlier version of the
    assessment had and this one has not; they are sent again as entered-in-error."""
    kinds = _assessment(rec, root, style)
    resources = [r for _, r in kinds]
    have = {k for k, _ in kinds}
    for kind, old in withdrawn.items():
        if kind not in have:
            # R4 codesystem-observation-status.html, entered-in-error: "withdrawn following
            # previous final release"; the correction says this value should never have existed
            old["status"] = "entered-in-error"
            old["subject"] = resources[0]["subject"]  # the patient of the current version
            resources.append(old)
    entries = [style.entry(r) for r in resources]
    old_id = rec.get("amends")
    if old_id:
        entries.append(style.entry(_provenance(rec, str(old_id), resources, style,
                                               replaced_in_bundle)))
    return entries


def _provenance(rec: dict[str, Any], old: str, targets: list[dict[str, Any]], style: _Style,
                replaced_in_bundle: bool) -> dict[str, Any]:
    """R4 provenance-definitions.html: target 1..*, recorded 1..1 (instant), agent 1..* with
    who 1..1; entity.role (required binding) "revision": "a revised version of some original"
    (codesystem-provenance-entity-role.html); activity v3-DataOperation UPDATE (extensible)."""
    # the corrected record, by the identifier its grade Observation carried
    what: dict[str, Any] = {"identifier": {"system": RECORD, "value": f"{old}/grade"}}
    if replaced_in_bundle:  # a collection holding the corrected record: its entry too
        what["reference"] = style.ref("Observation", _id(old, "grade"))
    assessor = str(rec.get("assessor") or "").strip()
    return {"resourceType": "Provenance", "id": _id(str(rec.get("id")), "Provenance"),
            "target": [{"reference": style.ref(t["resourceType"], t["id"])} for t in targets],
            "recorded": _time(rec.get("recorded_at") or rec.get("assessed_at")),
            "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE",
                                     "display": "revise"}]},
            "agent": [{"who": {"display": assessor or "unknown assessor"}}],
            "entity": [{"role": "revision", "what": what}]}


def record_entries(rec: dict[str, Any], replaced_in_bundle: bool = False, *,
                   transaction: bool = False, root: str | None = None,
                   patient_system: str | None = None) -> list[dict[str, Any]]:
    """The Bundle entries of one logged assessment (without its Patient entry). ``root``: the
    record whose resource ids a correction takes in a transaction (default: its own id).
    A correction names the record it corrects by identifier, and by reference too when
    ``replaced_in_bundle`` (a collection that holds that record)."""
    style = _Style(transaction, patient_system or PSEUDONYM)
    return _record_entries(rec, style, root or str(rec.get("id")), replaced_in_bundle, {})


# --- the definitions: Questionnaires and the CodeSystem -------------------------------------------

def _questionnaire(path: str) -> dict[str, Any]:
    """R4 questionnaire-definitions.html: status 1..1; url and version give the canonical;
    item.linkId (unique, que-2) and item.type 1..1; "name" matches [A-Z]([A-Za-z0-9_]){0,254}."""
    # no item is "required": a record may hold the total alone, or neither (not taken)
    if path == "ice":
        items = [{"linkId": key, "text": text, "type": "integer"} for key, text in ICE_ITEMS]
        name, title = ("ICE", "Immune Effector Cell-associated Encephalopathy (ICE) score")
    else:
        items = [{"linkId": f"capd-{i}", "text": text, "type": "integer"}
                 for i, text in enumerate(_capd_texts(), 1)]
        name, title = ("CAPD", "Cornell Assessment of Pediatric Delirium (CAPD)")
    items.append({"linkId": f"{path}-total", "text": f"{path.upper()} total",
                  "type": "integer", "readOnly": True})
    items.append({"linkId": "not-taken", "text": _not_taken_text(path), "type": "boolean"})
    url, version = QUESTIONNAIRE_URL[path], QUESTIONNAIRE_VERSION[path]
    return {"resourceType": "Questionnaire", "id": _id(f"{url}|{version}", "Questionnaire"),
            "url": url, "version": version, "name": name, "title": title, "status": "active",
            "subjectType": ["Patient"], "item": items}


def _code_system() -> dict[str, Any]:
    """R4 codesystem-definitions.html: status and content 1..1; concept.code unique (csd-1)."""
    return {"resourceType": "CodeSystem", "id": _id(f"{CODES}|{CODES_VERSION}", "CodeSystem"),
            "url": CODES, "version": CODES_VERSION, "name": "IcansCli",
            "title": "icans-cli observation codes and ICANS grades", "status": "active",
            "caseSensitive": True, "content": "complete", "count": len(CONCEPTS),
            "concept": [{"code": c, "display": d, "definition": text}
                        for c, d, text in CONCEPTS]}


def _definitions(style: _Style) -> list[dict[str, Any]]:
    # in a transaction PUT Questionnaire/<id>, CodeSystem/<id> (http.html#update): the ids are
    # uuid5 of "url|version", so each version is its own resource and re-sending changes nothing
    return [style.entry(_questionnaire("ice")), style.entry(_questionnaire("capd")),
            style.entry(_code_system())]


# --- corrections ----------------------------------------------------------------------------------

class _Corrections:
    """The corrections of an export (pass 1): memory grows with corrections only."""

    __slots__ = ("root", "latest", "named")

    def __init__(self) -> None:
        self.root: dict[str, str] = {}  # correction id -> the first id of its chain
        self.latest: dict[str, str] = {}  # a chain's first id -> its last id in the export
        self.named: set[str] = set()  # every id a correction names in amends

    @classmethod
    def of(cls, records: Iterable[dict[str, Any]]) -> "_Corrections":
        c = cls()
        for rec in records:  # log order: a correction comes after the record it corrects
            old = rec.get("amends")
            if not old:
                continue
            rid, old = str(rec.get("id")), str(old)
            first = c.root.get(old, old)
            c.root[rid] = first
            c.latest[first] = rid
            c.named.add(old)
        return c

    def root_of(self, rid: str) -> str:
        return self.root.get(rid, rid)

    def superseded(self, rid: str) -> bool:
        last = self.latest.get(self.root_of(rid))
        return last is not None and last != rid


# --- the Bundle -----------------------------------------------------------------------------------

def _bundle_head(transaction: bool, log_head: str | None, now: datetime | None
                 ) -> dict[str, Any]:
    tags = [{"system": TAG_TOOL, "code": f"icans-cli-{__version__}"}]
    if log_head is not None:
        if not _LOG_HEAD.fullmatch(log_head):
            raise ValueError(f"log head {log_head!r}: expected SEQ:HASH (SHA-256, 64 hex digits)")
        # The log head goes in Bundle.meta.tag (a Coding: system under CANONICAL, the head as
        # the code; R4 resource.html#Meta: tags relate a resource to process and workflow);
        # a tag needs no StructureDefinition, as an extension would. A server acts on a
        # transaction's entries, not on its Bundle (bundle-definitions.html#Bundle.identifier:
        # "servers ignore Bundle.identifier when processing batches and transactions"): the
        # head documents the file, not what the server stores.
        tags.append({"system": TAG_LOG_HEAD, "code": log_head,
                     "display": "icans log head (SEQ:SHA-256) the export was made from"})
    t = now or datetime.now(timezone.utc)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    # R4 Bundle.timestamp is an instant: seconds and a time zone (bundle-definitions.html)
    return {"resourceType": "Bundle", "meta": {"tag": tags},
            "type": "transaction" if transaction else "collection",
            "timestamp": t.isoformat(timespec="seconds")}


def _entries(records: Callable[[], Iterable[dict[str, Any]]], summary: ExportSummary,
             style: _Style) -> Iterator[dict[str, Any]]:
    """Every entry of the Bundle, one at a time, counted into ``summary``."""
    fixes = _Corrections.of(records())  # pass 1
    patients: set[str] = set()  # transaction: one Patient entry per patient (bdl-7, #trules)
    shown: set[str] = set()  # collection: the corrected records already written
    withdrawn: dict[str, dict[str, dict[str, Any]]] = {}  # chain -> resources of left-out ones
    for rec in records():  # pass 2
        rid = str(rec.get("id"))
        seq = rec.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and (
                summary.last_seq is None or seq > summary.last_seq):
            summary.last_seq = seq
        if style.transaction:
            root = fixes.root_of(rid)
            if fixes.superseded(rid):
                # R4 http.html#trules: "A resource can only appear in a transaction once (by
                # identity)": only the last version of an assessment is sent. Its score or
                # weight, if the last version has none, is withdrawn (see _record_entries).
                summary.superseded.append(rid)
                kept = withdrawn.setdefault(root, {})
                for kind, resource in _assessment(rec, root, style):
                    if kind in ("score", "weight"):
                        kept[kind] = resource
                continue
            pid = str(rec.get("patient_id", ""))
            if pid not in patients:
                patients.add(pid)
                summary.entries += 1
                yield _patient_entry(pid, style.patient_system)
            entries = _record_entries(rec, style, root, False, withdrawn.pop(root, {}))
        else:
            entries = _record_entries(rec, style, rid, str(rec.get("amends")) in shown, {})
            if rid in fixes.named:
                shown.add(rid)
        summary.assessments += 1
        for e in entries:
            summary.entries += 1
            yield e
    # the definitions last (a collection's first entry stays the first QuestionnaireResponse);
    # they also keep "entry" from being an empty array, which FHIR JSON does not allow
    # (R4 json.html)
    for e in _definitions(style):
        summary.entries += 1
        yield e


def write_bundle(records: Callable[[], Iterable[dict[str, Any]]], out: TextIO, *,
                 transaction: bool = False, patient_system: str | None = None,
                 log_head: str | None = None, now: datetime | None = None) -> ExportSummary:
    """Write a FHIR R4 Bundle (collection, or transaction) of the records to ``out``, an entry
    per line, holding neither the records nor the entries.

    ``records()`` returns a fresh iterator over the records in log (seq) order each time; it is
    called twice (pass 1 reads only the corrections). ``patient_system``: the URI of the
    patient identifiers (default ``PSEUDONYM``). ``log_head``: "SEQ:HASH" of the log, stated in
    Bundle.meta.tag. Raises ValueError on a malformed ``log_head`` (before writing anything).
    """
    style = _Style(transaction, patient_system or PSEUDONYM)
    summary = ExportSummary()
    # one encoder for every entry; no circular check (the entries are trees built here)
    encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
    head = encode(_bundle_head(transaction, log_head, now))
    out.write(head[:-1] + ', "entry": [\n')  # the head object, still open
    sep = ""
    for entry in _entries(records, summary, style):
        out.write(sep + encode(entry))
        sep = ",\n"
    out.write("\n]}\n")
    return summary


def bundle(records: Iterable[dict[str, Any]], now: datetime | None = None, *,
           transaction: bool = False, patient_system: str | None = None,
           log_head: str | None = None) -> dict[str, Any]:
    """The Bundle of the given records (in log order) as a dict: for small, in-memory use.
    The same entries as ``write_bundle``."""
    recs = list(records)
    style = _Style(transaction, patient_system or PSEUDONYM)
    b = _bundle_head(transaction, log_head, now)
    b["entry"] = list(_entries(lambda: recs, ExportSummary(), style))
    return b
