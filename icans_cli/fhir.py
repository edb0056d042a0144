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
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from json.encoder import encode_basestring as _encode_str  # as ensure_ascii=False writes
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, TextIO

from icans_cli import __version__

try:  # CPython's own SHA-1: for the 60 bytes of a uuid5 name, half the time of OpenSSL's
    from _sha1 import sha1
except ImportError:  # a Python built without it
    from hashlib import sha1

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


# RFC 4122 4.3: the variant bits 10 over the high bits of byte 8 (its first hex digit)
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _uuid5(name: str) -> str:
    """str(uuid.uuid5(_NS, name))."""
    return _uuid5_of(_NS_BYTES + name.encode("utf-8"))


def _uuid5_of(data: bytes) -> str:
    """The uuid5 of the namespace and name bytes in `data`, from the SHA-1's hex digits (no
    UUID objects: three per record): the version digit 5 in place of digit 12, the variant
    in digit 16."""
    x = sha1(data).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def _id(key: str, kind: str) -> str:
    """A stable resource id. R4 datatypes.html#id: [A-Za-z0-9\\-\\.]{1,64}; a UUID fits."""
    return _uuid5(f"{key}/{kind}")


@lru_cache(maxsize=4096)  # bounded: memory must not grow with the patients of a large log
def _patient_id(system: str, value: str) -> str:
    return _uuid5(f"{system}|{value}")


class _Style:
    """How entries and references are written: collection or transaction."""

    __slots__ = ("transaction", "patient_system", "templates", "encode")

    def __init__(self, transaction: bool, patient_system: str, streamed: bool = False) -> None:
        self.transaction = transaction
        self.patient_system = patient_system
        # one encoder for every entry; no circular check (the entries are trees built here)
        self.encode = json.JSONEncoder(ensure_ascii=False, check_circular=False,
                                       separators=(",", ":")).encode  # compact: no blanks
        # streamed: an assessment's entries are written from a template of its shape (below)
        self.templates: dict[Any, _Template] | None = {} if streamed else None

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

    def subject_value(self, pid: str) -> str:
        """What varies in the subject: the Patient entry's id, or the pseudonym."""
        return _patient_id(self.patient_system, pid) if self.transaction else pid

    def subject(self, value: str) -> dict[str, Any]:
        if self.transaction:
            # R4 http.html#trules: references to an entry's fullUrl are rewritten to the id the
            # server gives (here: the Patient's conditional create, see _patient_entry)
            return {"reference": f"urn:uuid:{value}"}
        # R4 references.html#logical: a logical reference by identifier (valid in any Bundle)
        return {"identifier": {"system": self.patient_system, "value": value}}


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


_LOGGED_TIME = re.compile(  # ASCII digits only (\d would take any script's)
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-5][0-9]").fullmatch


def _time(value: Any) -> str:
    """A FHIR dateTime (with a time zone; seconds and zone make it an instant too)."""
    if type(value) is str and _LOGGED_TIME(value) and not value.endswith("-00:00"):
        # the form the log writes, seconds and an offset, is already the one written here:
        # only checked to be a real date and time (no general parser)
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if 2000 <= t.year <= 2100:
                return value
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
    return {"value": score, "unit": "score", "system": UCUM, "code": "{score}"}


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

class _Shape(NamedTuple):
    """What decides the structure of an assessment's resources; the values that vary from
    record to record (ids, times, answers, names) are the facts' values beside it."""

    path: str  # "ice" | "capd"
    items: int  # item answers recorded (0: none)
    score: bool  # a total was taken
    weight: bool  # a weight was recorded
    grade: int | None  # the grade, when graded
    floor: int  # not assessable: the grade it is at least (0: unknown)
    note: bool  # the grade's drivers are named
    performer: bool  # an assessor is named
    amended: bool  # a correction


def _facts(rec: dict[str, Any], root: str, style: _Style) -> tuple[_Shape, dict[str, Any]]:
    """A logged assessment read once: the shape of its resources and the values that fill
    them, every value converted here (the builder below converts nothing)."""
    res = rec.get("result") or {}
    f = rec.get("findings") or {}
    path = "capd" if res.get("score_path") == "capd" else "ice"
    # lists, not tuple(generator): that leaves a resized tuple in CPython's free list per
    # record, up to 2,000 of them, which a memory measurement reads as growth
    items: list[int] = []
    if path == "ice" and f.get("ice_items"):
        items = [int(f["ice_items"][key]) for key, _ in ICE_ITEMS]
    elif path == "capd" and f.get("capd_items"):
        items = [int(points) for _, points in zip(_capd_texts(), f["capd_items"])]
    score = res.get("capd_score") if path == "capd" else res.get("ice_score")
    weight = f.get("weight_kg")
    if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight > 0
            and (isinstance(weight, int) or math.isfinite(weight))):
        weight = None  # a positive number, never Infinity (an int of any size is finite)
    graded = res.get("status") == "graded"
    drivers = res.get("drivers") or []
    assessor = str(rec.get("assessor") or "").strip()
    shape = _Shape(path, len(items), score is not None, weight is not None,
                   int(res.get("icans_grade") or 0) if graded else None,
                   0 if graded else int(res.get("grade_at_least") or 0),
                   bool(drivers), bool(assessor), bool(rec.get("amends")))
    ids = _NS_BYTES + root.encode("utf-8") + b"/"  # the resource ids: _id(root, kind)
    v: dict[str, Any] = {"rid": str(rec.get("id")), "when": _time(rec.get("assessed_at")),
                         "subject": style.subject_value(str(rec.get("patient_id", ""))),
                         "qr": _uuid5_of(ids + b"QuestionnaireResponse"),
                         "grade": _uuid5_of(ids + b"grade")}
    if assessor:
        v["assessor"] = assessor
    if drivers:
        v["note"] = "Driven by: " + ", ".join(drivers)
    for i, answer in enumerate(items):
        v[f"i{i}"] = answer
    if score is not None:
        v["score"], v["score_id"] = int(score), _uuid5_of(ids + b"score")
    if weight is not None:
        v["weight"], v["weight_id"] = weight, _uuid5_of(ids + b"weight")
    return shape, v


def _build(s: _Shape, v: Mapping[str, Any], style: _Style
           ) -> list[tuple[str, dict[str, Any]]]:
    """The resources of one logged assessment as (kind, resource): the structure from the
    shape, every value from ``v`` as it is."""
    when, rid = v["when"], v["rid"]
    # R4 observation-definitions.html#Observation.performer: Reference(Practitioner|...);
    # display-only is valid in R4 (no ref-2 until R5)
    performer = {"performer": [{"display": v["assessor"]}]} if s.performer else {}
    subject = style.subject(v["subject"])
    out: list[tuple[str, dict[str, Any]]] = []

    if s.path == "ice":
        questions = [(key, text) for key, text in ICE_ITEMS]
    else:
        questions = [(f"capd-{i}", text) for i, text in enumerate(_capd_texts(), 1)]
    items = [{"linkId": key, "text": text, "answer": [{"valueInteger": v[f"i{i}"]}]}
             for i, (key, text) in enumerate(questions[:s.items])]
    if s.score:
        items.append({"linkId": f"{s.path}-total", "text": f"{s.path.upper()} total",
                      "answer": [{"valueInteger": v["score"]}]})
    if not items:
        items.append({"linkId": "not-taken", "text": _not_taken_text(s.path),
                      "answer": [{"valueBoolean": True}]})
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "id": v["qr"],
        "identifier": _identifier(rid, "qr")[0],  # 0..1 in R4
        # R4 questionnaireresponse-definitions.html#QuestionnaireResponse.questionnaire:
        # canonical(Questionnaire), "url|version"; canonicals are not rewritten (http.html#trules)
        "questionnaire": QUESTIONNAIRE[s.path],
        # R4 QuestionnaireResponse.status (required binding): completed | amended
        "status": "amended" if s.amended else "completed",
        "subject": subject, "authored": when}
    if s.performer:
        qr["author"] = {"display": v["assessor"]}
    qr["item"] = items
    out.append(("QuestionnaireResponse", qr))
    qr_ref = style.ref("QuestionnaireResponse", v["qr"])
    obs_status = "amended" if s.amended else "final"  # R4 Observation.status: see above

    derived = [{"reference": qr_ref}]
    if s.score:
        obs = {"resourceType": "Observation", "id": v["score_id"],
               "identifier": _identifier(rid, "score"), "status": obs_status,
               "category": [{"coding": [{"system": OBS_CATEGORY, "code": "survey",
                                         "display": "Survey"}]}],
               "code": {"coding": [{"system": CODES, "code": f"{s.path}-score",
                                    "display": f"{s.path.upper()} total"}],
                        "text": "ICE score (0-10)" if s.path == "ice" else "CAPD total (0-32)"},
               "subject": subject, "effectiveDateTime": when, **performer,
               "valueQuantity": _score_quantity(v["score"]),
               "derivedFrom": [{"reference": qr_ref}]}
        out.append(("score", obs))
        derived.append({"reference": style.ref("Observation", v["score_id"])})

    out.append(("grade", _grade_observation(s, v, when, obs_status, subject, performer,
                                            derived)))

    if s.weight:
        out.append(("weight", {
            "resourceType": "Observation", "id": v["weight_id"],
            "identifier": _identifier(rid, "weight"), "status": obs_status,
            # R4 observation-vitalsigns.html: a body weight is a vital sign: category
            # vital-signs, LOINC 29463-7, a UCUM quantity (kg)
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs",
                                      "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": BODY_WEIGHT[0],
                                 "display": BODY_WEIGHT[1]}], "text": "Body weight"},
            "subject": subject, "effectiveDateTime": when, **performer,
            "valueQuantity": {"value": v["weight"], "unit": "kg", "system": UCUM,
                              "code": "kg"}}))
    return out


def _assessment(rec: dict[str, Any], root: str, style: _Style
                ) -> list[tuple[str, dict[str, Any]]]:
    """The resources of one logged assessment as (kind, resource), with the ids of ``root``."""
    shape, v = _facts(rec, root, style)
    return _build(shape, v, style)


def _grade_observation(s: _Shape, v: Mapping[str, Any], when: str, status: str,
                       subject: dict[str, Any], performer: dict[str, Any],
                       derived: list[dict[str, str]]) -> dict[str, Any]:
    if s.grade is not None:
        g = s.grade
        coding = [{"system": CODES, "code": f"grade-{g}", "display": f"ICANS grade {g}"}]
        if g in ICD_BY_GRADE:
            code, display = ICD_BY_GRADE[g]
            coding.append({"system": ICD10CM, "code": code, "display": display})
        text = f"ICANS grade {g} (ASTCT 2019)"
    else:
        floor = s.floor
        coding = [{"system": CODES, "code": "not-assessable",
                   "display": "ICANS not assessable (another cause)"}]
        if floor >= 1:
            coding.append({"system": ICD10CM, "code": ICD_UNSPECIFIED[0],
                           "display": ICD_UNSPECIFIED[1]})
        text = (f"ICANS not assessable: at least grade {floor}" if floor
                else "ICANS not assessable: grade unknown")
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": v["grade"],
        "identifier": _identifier(v["rid"], "grade"), "status": status,
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "exam", "display": "Exam"}]}],
        "code": {"coding": [{"system": CODES, "code": "icans-grade",
                             "display": "ICANS grade (ASTCT 2019)"}],
                 "text": "ICANS grade (ASTCT 2019)"},
        "subject": subject, "effectiveDateTime": when, **performer,
        "valueCodeableConcept": {"coding": coding, "text": text},
        "derivedFrom": derived,
    }
    if s.note:
        obs["note"] = [{"text": v["note"]}]
    return obs


# --- templates: the entries of an assessment written as text -------------------------------------
# Most of an assessment's entries is the same for every record of one shape (codes, systems,
# displays, the structure). The streamed Bundle builds each shape's entries once from the
# builder above, with a marker in place of each value, encodes them, and keeps the text as a
# function joining static text and values; a record then costs its values' encoding and one
# join, not a tree's. The
# dict path (``bundle``, corrections, withdrawn resources) and the text path share the builder;
# a test holds them equal.

# the values _facts gives as numbers (a finite int or float); every other value is a string
_NUMBERS = frozenset({"score", "weight", *(f"i{i}" for i in range(8))})  # i: item answers


class _Marks(dict):  # type: ignore[type-arg]
    """The values of a template: a marker for any name."""

    def __missing__(self, name: str) -> str:
        return f"\x01{name}\x02"


# a marker as a whole JSON value, or inside a string (as JSON encodes \x01 and \x02)
_MARK = re.compile(r'"\\u0001(\w+)\\u0002"|\\u0001(\w+)\\u0002')


class _Template:
    """The entries of one shape as text, an entry per line: a function of the values, made
    once per shape, the static text its constants and each value encoded once."""

    __slots__ = ("fill", "entries")

    def __init__(self, texts: list[str]) -> None:
        split = _MARK.split(",\n".join(texts))  # static, whole name, inner name, static, ...
        names = sorted({whole or inner for whole, inner in zip(split[1::3], split[2::3])})
        assert all(name.isidentifier() for name in names)  # the builder's own names
        code = ["def fill(v):"]
        for name in names:
            # a number as json writes a finite int or float (its repr); a string as JSON
            # encodes it (ensure_ascii=False), without its quotes: they are static text
            code.append(f"    x_{name} = " + (f"repr(v[{name!r}])" if name in _NUMBERS
                                               else f"_encode_str(v[{name!r}])[1:-1]"))
        statics, values = [split[0]], []  # static text, and the value after each piece
        for whole, inner, static in zip(split[1::3], split[2::3], split[3::3]):
            quote = '"' if whole and whole not in _NUMBERS else ""
            statics[-1] += quote
            values.append(f"x_{whole or inner}")
            statics.append(quote + static)
        parts = [repr(statics[0])]
        for value, static in zip(values, statics[1:]):
            parts += [value, repr(static)]
        code.append(f"    return ''.join(({', '.join(parts)}))")
        scope: dict[str, Any] = {"_encode_str": _encode_str}
        exec(compile("\n".join(code), "<fhir template>", "exec"), scope)  # noqa: S102
        self.fill: Callable[[Mapping[str, Any]], str] = scope["fill"]
        self.entries = len(texts)


def _record_entries(rec: dict[str, Any], style: _Style, root: str, replaced_in_bundle: bool,
                    withdrawn: dict[str, dict[str, Any]]) -> tuple[int, list[Any]]:
    """The entries of one record, and how many: as dicts, or (a streamed Bundle) as one text
    of an entry per line, from the template of the record's shape. ``withdrawn``: resources
    (by kind) an earlier version of the assessment had and this one has not; they are sent
    again as entered-in-error."""
    shape, v = _facts(rec, root, style)
    if style.templates is not None and not withdrawn and not shape.amended:
        template = style.templates.get(shape)
        if template is None:
            template = _Template([style.encode(style.entry(r))
                                  for _, r in _build(shape, _Marks(), style)])
            if len(style.templates) < 1024:  # bounded: shapes are few, a log's oddities not
                style.templates[shape] = template
        return template.entries, [template.fill(v)]
    kinds = _build(shape, v, style)
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
    return len(entries), entries


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
    return _record_entries(rec, style, root or str(rec.get("id")), replaced_in_bundle, {})[1]


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
             style: _Style) -> Iterator[Any]:
    """Every entry of the Bundle, one at a time (a dict; or text, an entry per line, of the
    entries of one assessment from a template), counted into ``summary``."""
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
            n, entries = _record_entries(rec, style, root, False, withdrawn.pop(root, {}))
        else:
            n, entries = _record_entries(rec, style, rid, str(rec.get("amends")) in shown, {})
            if rid in fixes.named:
                shown.add(rid)
        summary.assessments += 1
        summary.entries += n
        yield from entries
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
    style = _Style(transaction, patient_system or PSEUDONYM, streamed=True)
    summary = ExportSummary()
    encode = style.encode
    head = encode(_bundle_head(transaction, log_head, now))
    out.write(head[:-1] + ', "entry": [\n')  # the head object, still open
    sep = ""
    for entry in _entries(records, summary, style):  # text (from a template) or a dict
        out.write(sep + (entry if type(entry) is str else encode(entry)))
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
