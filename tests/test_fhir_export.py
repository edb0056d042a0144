"""FHIR R4 export: the streaming writer, transaction Bundles, corrections, and what the codes mean.

Each test is named after the R4 rule (or the export's own rule) it checks. The R4 (4.0.1) models
of fhirclient parse every Bundle strictly (types, required elements, unknown keys); the rules
those models do not check (bdl-3, bdl-7, ids, code sets) are asserted here directly.
"""

import gc
import io
import json
import re
import tracemalloc
from datetime import datetime, timezone

import pytest
from fhirclient.models.bundle import Bundle

from icans_cli import fhir, log
from tests.helpers import body

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
HEAD = "5:" + "ab" * 32
HOSPITAL = "https://hospital.example/fhir/sid/mrn"
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # R4 datatypes.html#id


def append(path, b):
    return log.append(path, b)["id"]


def records(path):
    return [r for _, r in log.iter_records(path)]


@pytest.fixture
def amended_log(tmp_path):
    """PT-001: A (ICE 3, grade 2) corrected by B (ICE 9, weight 70.5 kg), corrected by C
    (ICE 8, grade 1, weight 71 kg); D a later assessment of PT-001; E a CAPD record of PT-2."""
    from icans_cli.core.scores import IceItems

    path = tmp_path / "l.jsonl"
    a = append(path, body(ice=3))
    b_body = body(ice=9, amends=a)
    b_body["findings"]["weight_kg"] = 70.5
    b = append(path, b_body)
    c_body = body(ice=None, ice_items=IceItems(4, 3, 1, 0, 0), amends=b)
    c_body["findings"]["weight_kg"] = 71
    c = append(path, c_body)
    d = append(path, body(ice=10, hours=8))
    e = append(path, body(patient="PT-2", ice=None, age_years=4,
                          capd_points=(1, 1, 1, 1, 0, 0, 1, 1), hours=2))
    return path, dict(a=a, b=b, c=c, d=d, e=e)


def export(recs, **kw):
    """write_bundle into a string; the Bundle parsed back, and the summary."""
    out = io.StringIO()
    summary = fhir.write_bundle(lambda: iter(recs), out, **{"now": NOW, **kw})
    return json.loads(out.getvalue()), summary


def resources(b, rtype=None):
    return [e["resource"] for e in b["entry"]
            if rtype is None or e["resource"]["resourceType"] == rtype]


def grade_obs(b):
    return [r for r in resources(b, "Observation")
            if r["code"]["coding"][0]["code"] == "icans-grade"]


def record_of(resource):
    ident = resource["identifier"]
    return (ident if isinstance(ident, dict) else ident[0])["value"].split("/")[0]


def grade_code(resource):
    return resource["valueCodeableConcept"]["coding"][0]["code"]


# --- the must-show: a transaction with an amendment -----------------------------------------------

def test_transaction_bundle_with_an_amendment_parses_as_r4_and_holds_one_current_grade(amended_log):
    path, ids = amended_log
    recs = records(path)
    b, summary = export(recs, transaction=True, patient_system=HOSPITAL, log_head=HEAD)
    Bundle(b)  # R4 4.0.1 models, strict: raise on a wrong type, a missing 1..1, an unknown key
    assert b["type"] == "transaction"

    # every entry a request; PUT Type/id with resource.id == id; fullUrl urn:uuid:<id>
    for e in b["entry"]:
        req = e["request"]
        if req["method"] == "PUT":
            rtype, rid = req["url"].split("/")
            assert (e["resource"]["resourceType"], e["resource"]["id"]) == (rtype, rid)
            assert e["fullUrl"] == f"urn:uuid:{rid}" and ID_RE.fullmatch(rid)
        else:
            assert (req["method"], req["url"]) == ("POST", "Patient")
    urls = [e["fullUrl"] for e in b["entry"]]
    assert len(urls) == len(set(urls))

    # ids stable across two exports
    again, _ = export(recs, transaction=True, patient_system=HOSPITAL, log_head=HEAD)
    assert [e["fullUrl"] for e in again["entry"]] == urls

    # one current grade per assessment: A and B left out, C under A's ids, amended
    assert summary.superseded == [ids["a"], ids["b"]]
    grades = grade_obs(b)
    assert sorted(record_of(g) for g in grades) == sorted([ids["c"], ids["d"], ids["e"]])
    (c_grade,) = [g for g in grades if record_of(g) == ids["c"]]
    a_only, _ = export(recs[:1], transaction=True, patient_system=HOSPITAL)
    (a_grade,) = grade_obs(a_only)
    assert c_grade["id"] == a_grade["id"] and c_grade["status"] == "amended"
    assert grade_code(a_grade) == "grade-2" and grade_code(c_grade) == "grade-1"

    # the Provenance names the corrected record (B) and targets the updated resources
    (prov,) = resources(b, "Provenance")
    assert prov["entity"] == [{"role": "revision", "what": {
        "identifier": {"system": fhir.RECORD, "value": f"{ids['b']}/grade"}}}]
    assert {"reference": f"Observation/{a_grade['id']}"} in prov["target"]
    assert prov["activity"]["coding"][0]["code"] == "UPDATE"
    assert prov["agent"][0]["who"] == {"display": "nurse-a"}

    # the Patient: a conditional create, every subject points at its fullUrl
    patients = [e for e in b["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [p["request"]["ifNoneExist"] for p in patients] == [
        f"identifier={HOSPITAL}|PT-001", f"identifier={HOSPITAL}|PT-2"]
    patient_urls = {p["fullUrl"] for p in patients}
    subjects = {r["subject"]["reference"] for r in resources(b) if "subject" in r}
    assert subjects == patient_urls

    # Questionnaire canonical + version, UCUM, performer, CodeSystem, meta log head
    qs = {q["url"]: q for q in resources(b, "Questionnaire")}
    for qr in resources(b, "QuestionnaireResponse"):
        url, version = qr["questionnaire"].split("|")
        assert qs[url]["version"] == version and qs[url]["status"] == "active"
    units = {(r["valueQuantity"]["system"], r["valueQuantity"]["code"])
             for r in resources(b, "Observation") if "valueQuantity" in r}
    assert units == {("http://unitsofmeasure.org", "{score}"), ("http://unitsofmeasure.org", "kg")}
    assert all(r["performer"] == [{"display": "nurse-a"}] for r in resources(b, "Observation"))
    (cs,) = resources(b, "CodeSystem")
    assert cs["url"] == fhir.CODES and cs["content"] == "complete"
    assert {"system": fhir.TAG_LOG_HEAD, "code": HEAD} in [
        {k: t[k] for k in ("system", "code")} for t in b["meta"]["tag"]]


# --- transaction rules ----------------------------------------------------------------------------

def test_bdl_3_every_transaction_entry_carries_a_request_and_a_collection_none(amended_log):
    path, _ = amended_log
    tx, _ = export(records(path), transaction=True)
    coll, _ = export(records(path))
    assert all({"method", "url"} <= set(e["request"]) for e in tx["entry"])
    assert coll["type"] == "collection" and not any("request" in e for e in coll["entry"])
    Bundle(coll)


def test_http_update_put_url_id_equals_resource_id(amended_log):
    path, _ = amended_log
    b, _ = export(records(path), transaction=True)
    puts = [e for e in b["entry"] if e["request"]["method"] == "PUT"]
    assert puts and all(e["request"]["url"] == f"{e['resource']['resourceType']}/"
                                               f"{e['resource']['id']}" for e in puts)


def test_bdl_7_and_bdl_8_full_urls_unique_and_version_independent(amended_log):
    path, _ = amended_log
    for kw in ({}, {"transaction": True}):
        b, _ = export(records(path), **kw)
        urls = [e["fullUrl"] for e in b["entry"]]
        assert len(urls) == len(set(urls)) and not any("/_history/" in u for u in urls)


def test_ids_are_uuid5_of_the_record_so_exports_repeat_them(amended_log):
    path, _ = amended_log
    recs = records(path)
    first, _ = export(recs, transaction=True)
    second, _ = export(recs, transaction=True)
    assert first["entry"] == second["entry"]
    # and they do not depend on the other records of the export
    alone, _ = export([r for r in recs if r["patient_id"] == "PT-2"], transaction=True)
    ids = {e["fullUrl"] for e in first["entry"]}
    assert {e["fullUrl"] for e in alone["entry"]} <= ids


def test_trules_a_resource_appears_once_superseded_records_left_out(amended_log):
    path, ids = amended_log
    b, summary = export(records(path), transaction=True)
    urls = [e["request"]["url"] for e in b["entry"] if e["request"]["method"] == "PUT"]
    assert len(urls) == len(set(urls))
    recorded = {record_of(r) for r in resources(b) if "identifier" in r
                and r["resourceType"] != "Patient"}
    assert ids["a"] not in recorded and ids["b"] not in recorded
    assert summary.superseded == [ids["a"], ids["b"]] and summary.assessments == 3


def test_a_correction_chain_takes_the_ids_of_its_first_record(amended_log):
    path, ids = amended_log
    recs = records(path)
    b, _ = export(recs, transaction=True)
    by_record = {record_of(r): r["id"] for r in resources(b, "QuestionnaireResponse")}
    assert by_record[ids["c"]] == fhir.record_entries(recs[0], transaction=True)[0][
        "resource"]["id"]
    assert by_record[ids["c"]] == fhir.record_entries(recs[2], transaction=True,
                                                      root=ids["a"])[0]["resource"]["id"]


def test_a_correction_is_amended_not_corrected_on_every_updated_resource(amended_log):
    path, ids = amended_log
    b, _ = export(records(path), transaction=True)
    mine = [r for r in resources(b) if r["resourceType"] in ("Observation",
                                                             "QuestionnaireResponse")
            and record_of(r) == ids["c"]]
    assert len(mine) == 4  # QR, ICE score, grade, weight
    assert {r["status"] for r in mine} == {"amended"}
    others = [r for r in resources(b, "Observation") if record_of(r) == ids["d"]]
    assert others and {r["status"] for r in others} == {"final"}


def simulate_server(server, b):
    """Apply a transaction as an R4 server would: PUT stores under Type/id (update as create);
    POST Patient with ifNoneExist creates only when no Patient has the identifier."""
    for e in b["entry"]:
        req, res = e["request"], e["resource"]
        if req["method"] == "PUT":
            assert res["id"] == req["url"].split("/", 1)[1]
            server[req["url"]] = res
        else:
            system, value = req["ifNoneExist"].removeprefix("identifier=").split("|")
            if not any(k.startswith("Patient/") and v["identifier"][0] == {
                    "system": system, "value": value} for k, v in server.items()):
                server[f"Patient/{len(server)}"] = res


def test_a_server_applying_the_exports_holds_one_current_grade_per_assessment(amended_log):
    path, ids = amended_log
    recs = records(path)
    server = {}
    simulate_server(server, export(recs[:1], transaction=True)[0])  # A sent alone first
    simulate_server(server, export(recs, transaction=True)[0])  # then the whole log
    simulate_server(server, export(recs, transaction=True)[0])  # sent again: harmless
    grades = [r for r in server.values() if r["resourceType"] == "Observation"
              and r["code"]["coding"][0]["code"] == "icans-grade"]
    assert sorted(record_of(g) for g in grades) == sorted([ids["c"], ids["d"], ids["e"]])
    assert len([k for k in server if k.startswith("Patient/")]) == 2
    assert len([k for k in server if k.startswith("Provenance/")]) == 1


def test_a_score_the_correction_no_longer_has_is_withdrawn_as_entered_in_error(tmp_path):
    path = tmp_path / "l.jsonl"
    a = append(path, body(ice=3))
    append(path, body(ice=None, consciousness="unarousable", amends=a))
    b, _ = export(records(path), transaction=True)
    scores = [r for r in resources(b, "Observation")
              if r["code"]["coding"][0]["code"] == "ice-score"]
    assert [(record_of(s), s["status"]) for s in scores] == [(a, "entered-in-error")]
    (prov,) = resources(b, "Provenance")
    assert {"reference": f"Observation/{scores[0]['id']}"} in prov["target"]
    Bundle(b)


def test_provenance_targets_resolve_to_entries_of_the_bundle(amended_log):
    path, _ = amended_log
    for kw in ({}, {"transaction": True}):
        b, _ = export(records(path), **kw)
        if kw:
            inside = {e["request"]["url"] for e in b["entry"] if e["request"]["method"] == "PUT"}
        else:
            inside = {e["fullUrl"] for e in b["entry"]}
        refs = [t["reference"] for p in resources(b, "Provenance") for t in p["target"]]
        refs += [d["reference"] for o in resources(b, "Observation")
                 for d in o.get("derivedFrom", [])]
        assert refs and set(refs) <= inside


def test_ccreate_patient_once_per_patient_with_if_none_exist(amended_log):
    path, _ = amended_log
    b, _ = export(records(path), transaction=True)
    patients = [e for e in b["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 2
    for p in patients:
        ident = p["resource"]["identifier"][0]
        assert p["request"] == {"method": "POST", "url": "Patient", "ifNoneExist":
                                f"identifier={fhir.PSEUDONYM}|{ident['value']}"}
        assert "id" not in p["resource"] and p["fullUrl"].startswith("urn:uuid:")


def test_search_escaping_in_if_none_exist(tmp_path):
    path = tmp_path / "l.jsonl"
    append(path, body(patient="PT|1,2 x"))
    b, _ = export(records(path), transaction=True)
    (patient,) = [e for e in b["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["request"]["ifNoneExist"] == f"identifier={fhir.PSEUDONYM}|PT%5C%7C1%5C%2C2%20x"
    assert patient["resource"]["identifier"][0]["value"] == "PT|1,2 x"


# --- meaning: systems, questionnaires, code system, units, performer, meta ------------------------

def test_patient_system_is_the_hospital_uri_and_defaults_to_the_pseudonym(amended_log):
    path, _ = amended_log
    coll, _ = export(records(path), patient_system=HOSPITAL)
    assert {o["subject"]["identifier"]["system"] for o in grade_obs(coll)} == {HOSPITAL}
    default, _ = export(records(path))
    assert {o["subject"]["identifier"]["system"] for o in grade_obs(default)} == {fhir.PSEUDONYM}


def test_every_system_is_canonical_http_no_urn_icans_cli(amended_log):
    path, _ = amended_log
    for kw in ({}, {"transaction": True}):
        b, _ = export(records(path), log_head=HEAD, **kw)
        text = json.dumps(b)
        assert "urn:icans-cli" not in text
        systems = set(re.findall(r'"system": "([^"]+)"', text))
        assert systems and all(s.startswith(("http://", "https://")) for s in systems)
    assert all(v.startswith(fhir.CANONICAL) for v in (fhir.CODES, fhir.PSEUDONYM, fhir.RECORD))


def test_questionnaire_response_items_are_items_of_its_questionnaire(amended_log):
    path, _ = amended_log
    b, _ = export(records(path))
    qs = {f"{q['url']}|{q['version']}": q for q in resources(b, "Questionnaire")}
    assert set(qs) == set(fhir.QUESTIONNAIRE.values())
    value_type = {"integer": "valueInteger", "boolean": "valueBoolean"}
    for qr in resources(b, "QuestionnaireResponse"):
        items = {i["linkId"]: i for i in qs[qr["questionnaire"]]["item"]}
        for item in qr["item"]:
            (answer,) = item["answer"]
            assert list(answer) == [value_type[items[item["linkId"]]["type"]]]
    for q in qs.values():  # que-2: linkIds unique; each item has a type
        link_ids = [i["linkId"] for i in q["item"]]
        assert len(link_ids) == len(set(link_ids)) and all(i["type"] for i in q["item"])
        assert re.fullmatch(r"[A-Z]([A-Za-z0-9_]){0,254}", q["name"])  # que-0


def test_not_taken_is_a_boolean_answer(tmp_path):
    path = tmp_path / "l.jsonl"
    append(path, body(ice=None, sedated=True))
    b, _ = export(records(path))
    (qr,) = resources(b, "QuestionnaireResponse")
    assert qr["item"] == [{"linkId": "not-taken", "text": "ICE not taken (unarousable, or "
                           "another cause)", "answer": [{"valueBoolean": True}]}]


def test_codesystem_defines_every_local_code_used_once(amended_log):
    path, _ = amended_log
    b, _ = export(records(path), transaction=True)
    (cs,) = resources(b, "CodeSystem")
    concepts = [c["code"] for c in cs["concept"]]
    assert len(concepts) == len(set(concepts)) == cs["count"]  # csd-1
    assert {"ice-score", "capd-score", "icans-grade", "grade-0", "grade-4",
            "not-assessable"} <= set(concepts)
    used = set(re.findall(r'"system": "' + re.escape(fhir.CODES) + r'", "code": "([^"]+)"',
                          json.dumps(b["entry"])))
    assert used and used <= set(concepts)
    assert cs["status"] == "active" and cs["version"] == fhir.CODES_VERSION


def test_scores_are_ucum_score_quantities_and_weight_is_loinc_in_kg(amended_log):
    path, _ = amended_log
    b, _ = export(records(path))
    obs = {r["code"]["coding"][0]["code"]: r for r in resources(b, "Observation")}
    assert obs["ice-score"]["valueQuantity"] == {"value": 10, "unit": "score",
                                                 "system": fhir.UCUM, "code": "{score}"}
    assert obs["capd-score"]["valueQuantity"]["value"] == 6
    weight = obs["29463-7"]
    assert weight["code"]["coding"][0]["system"] == fhir.LOINC
    assert weight["valueQuantity"] == {"value": 71, "unit": "kg", "system": fhir.UCUM,
                                       "code": "kg"}
    assert weight["category"][0]["coding"][0]["code"] == "vital-signs"


def test_no_weight_observation_without_a_weight(tmp_path):
    path = tmp_path / "l.jsonl"
    append(path, body(ice=7))
    b, _ = export(records(path))
    assert [r["code"]["coding"][0]["code"] for r in resources(b, "Observation")] == [
        "ice-score", "icans-grade"]


def test_performer_is_the_assessor_and_questionnaire_response_author(amended_log):
    path, _ = amended_log
    b, _ = export(records(path))
    assert all(o["performer"] == [{"display": "nurse-a"}] for o in resources(b, "Observation"))
    assert all(q["author"] == {"display": "nurse-a"}
               for q in resources(b, "QuestionnaireResponse"))


def test_log_head_is_a_bundle_meta_tag_and_a_malformed_one_is_refused(amended_log):
    path, _ = amended_log
    b, _ = export(records(path), log_head=HEAD)
    tags = {t["system"]: t["code"] for t in b["meta"]["tag"]}
    assert tags[fhir.TAG_LOG_HEAD] == HEAD and fhir.TAG_TOOL in tags
    without, _ = export(records(path))
    assert fhir.TAG_LOG_HEAD not in {t["system"] for t in without["meta"]["tag"]}
    out = io.StringIO()
    with pytest.raises(ValueError):
        fhir.write_bundle(lambda: iter(records(path)), out, log_head="5:not-a-hash")
    assert out.getvalue() == ""


def test_timestamp_is_an_instant_with_a_zone():
    naive, _ = export([], now=datetime(2026, 11, 28, 9, 0))
    assert naive["timestamp"] == "2026-11-28T09:00:00+00:00"
    Bundle(naive)


# --- the collection (today's export, kept compatible) ---------------------------------------------

def test_collection_keeps_every_record_and_links_a_correction_to_what_it_corrects(amended_log):
    path, ids = amended_log
    b, summary = export(records(path))
    Bundle(b)
    assert summary.superseded == [] and summary.assessments == 5
    grades = {record_of(g): g for g in grade_obs(b)}
    assert set(grades) == set(ids.values())
    assert grades[ids["a"]]["status"] == "final" and grades[ids["c"]]["status"] == "amended"
    provs = {p["entity"][0]["what"]["identifier"]["value"]: p for p in resources(b, "Provenance")}
    c_prov = provs[f"{ids['b']}/grade"]
    b_grade_url = next(e["fullUrl"] for e in b["entry"] if e["resource"] is grades[ids["b"]])
    assert c_prov["entity"][0]["what"]["reference"] == b_grade_url
    assert b["entry"][0]["resource"]["resourceType"] == "QuestionnaireResponse"


def test_bundle_dict_and_the_streamed_bundle_are_the_same(amended_log):
    path, _ = amended_log
    recs = records(path)
    for kw in ({}, {"transaction": True, "patient_system": HOSPITAL, "log_head": HEAD}):
        streamed, _ = export(recs, **kw)
        assert fhir.bundle(iter(recs), NOW, **kw) == streamed


# --- the streaming writer -------------------------------------------------------------------------

def test_write_bundle_writes_an_entry_per_line_and_sums_up(amended_log):
    path, ids = amended_log
    recs = records(path)
    out = io.StringIO()
    calls = []

    def again():
        calls.append(1)
        return iter(recs)

    summary = fhir.write_bundle(again, out, transaction=True, now=NOW)
    lines = out.getvalue().splitlines()
    b = json.loads(out.getvalue())
    assert len(calls) == 2  # pass 1 (corrections), pass 2 (entries)
    assert len(lines) == len(b["entry"]) + 2  # the head line, an entry a line, the close
    assert summary.entries == len(b["entry"]) and summary.assessments == 3
    assert summary.last_seq == max(r["seq"] for r in recs) == 5
    empty, none = export([])
    assert none.last_seq is None and none.assessments == 0
    assert [r["resourceType"] for r in resources(empty)] == ["Questionnaire", "Questionnaire",
                                                              "CodeSystem"]


class _Counter:
    """A text sink that keeps only the number of characters written."""

    def __init__(self):
        self.n = 0

    def write(self, s):
        self.n += len(s)


def _generated(n):
    """n small records made on the fly, 20 patients; records 10, 20, ... 100 each correct the
    record before them (a fixed number of corrections: what the writer may keep grows with
    the corrections and the patients, never with the records)."""
    def gen():
        for i in range(1, n + 1):
            yield {"id": f"rec-{i:07d}", "seq": i, "recorded_at": "2026-11-27T08:00:00+00:00",
                   "assessed_at": "2026-11-27T08:00:00+00:00", "patient_id": f"PT-{i % 20}",
                   "assessor": "nurse-a", "source": "batch",
                   "findings": {"weight_kg": 70.0, "ice_items": {
                       "orientation": 4, "naming": 3, "commands": 1, "writing": 1,
                       "attention": 0}, "capd_items": None},
                   "result": {"status": "graded", "icans_grade": 1, "grade_at_least": 1,
                              "drivers": ["ice"], "ice_score": 9, "capd_score": None,
                              "score_path": "ice"},
                   "amends": f"rec-{i - 1:07d}" if i % 10 == 0 and i <= 100 else None}
    return gen


def _peak(n, transaction):
    sink = _Counter()
    gc.collect()
    tracemalloc.start()
    try:
        summary = fhir.write_bundle(_generated(n), sink, transaction=transaction, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.n > 0 and summary.last_seq == n
    return peak, summary


@pytest.mark.slow
@pytest.mark.parametrize("transaction", [False, True])
def test_write_bundle_memory_stays_flat_with_the_number_of_records(transaction):
    # 10x the records, within 1.3x the peak. Sizes: tracemalloc costs about 1 ms a record
    # here; 1,800 more records held at even 8 bytes each would pass the 1.3x of a ~45 kB peak.
    _peak(200, transaction)  # warm up (imports, caches) under tracing
    small, _ = _peak(200, transaction)
    large, summary = _peak(2_000, transaction)
    assert summary.assessments == 2_000 - (10 if transaction else 0)
    assert large <= 1.3 * small, (small, large)


# --- the streamed text and the dicts are one Bundle ----------------------------------------------
# The streamed Bundle writes an assessment's entries from a template of its shape (the builder's
# entries encoded once with markers); bundle() builds every entry as a dict. For any records,
# both must be the same Bundle, entry for entry, and the text must keep an entry per line.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# text with what JSON and the templates must escape or leave alone: quotes, backslashes, the
# markers' own control characters, %, braces, line separators, non-ASCII
_TEXT = st.text(alphabet=st.sampled_from(list('ab"\\%{}\x01\x02\n\u2028é日 /|$,')), max_size=12)
_TIMES = st.sampled_from(["2026-11-27T08:00:00+00:00", "2026-11-27T08:00:00Z",
                          "2026-11-27T09:30:00.123456+01:00", "2031-02-03T04:05:06-05:30",
                          "2026-W48-5T08:00:00+00:00", "2026-11-27T08:00",
                          "2026-11-27T08:00:00+00:60", "2026-11-27T08:00:00-00:00"])


@st.composite
def _record(draw, i):
    path = draw(st.sampled_from(["ice", "capd"]))
    graded = draw(st.booleans())
    ice_items = draw(st.none() | st.fixed_dictionaries(
        {k: st.integers(0, 4) for k, _ in fhir.ICE_ITEMS}))
    capd_items = draw(st.none() | st.lists(st.integers(0, 4), min_size=8, max_size=8))
    return {
        "id": draw(st.sampled_from([f"rec-{i}", f"r\"{i}%s{{}}", f"日-{i}\\"])),
        "seq": i + 1, "recorded_at": "2026-11-27T08:00:00+00:00",
        "assessed_at": draw(_TIMES), "patient_id": draw(_TEXT), "source": "batch",
        "assessor": draw(st.none() | _TEXT),
        "findings": {"ice_items": ice_items, "capd_items": capd_items,
                     "weight_kg": draw(st.none() | st.sampled_from(
                         [70, 70.5, 0, -3, 12.25, 1e-3, True, 1e308, 10 ** 400]))},
        "result": {"status": "graded" if graded else "not_assessable",
                   "icans_grade": draw(st.integers(0, 4)) if graded else None,
                   "grade_at_least": draw(st.none() | st.integers(0, 4)),
                   "drivers": draw(st.lists(_TEXT, max_size=3)),
                   "ice_score": draw(st.none() | st.integers(0, 10)),
                   "capd_score": draw(st.none() | st.integers(0, 32)),
                   "score_path": path},
        "amends": None}


@st.composite
def _records(draw):
    recs = [draw(_record(i)) for i in range(draw(st.integers(1, 6)))]
    for i in range(1, len(recs)):  # some records correct the one before them
        if draw(st.booleans()) and draw(st.booleans()):
            recs[i]["amends"] = recs[i - 1]["id"]
    ids = [r["id"] for r in recs]
    if len(set(ids)) != len(ids):  # ids are unique in a log
        for i, r in enumerate(recs):
            r["id"] = f"rec-{i}"
        for i in range(1, len(recs)):
            if recs[i]["amends"]:
                recs[i]["amends"] = f"rec-{i - 1}"
    return recs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=_records(), transaction=st.booleans(),
       system=st.sampled_from([None, HOSPITAL, "urn:oid:1.2.3"]))
def test_streamed_text_and_dicts_are_the_same_bundle_for_any_records(recs, transaction, system):
    out = io.StringIO()
    summary = fhir.write_bundle(lambda: iter(recs), out, transaction=transaction,
                                patient_system=system, now=NOW)
    text = out.getvalue()
    streamed = json.loads(text)
    as_dicts = fhir.bundle(iter(recs), NOW, transaction=transaction, patient_system=system)
    assert streamed == as_dicts
    # and the same text, character for character (parsed JSON would take 1 for 1.0 or True)
    compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    assert text.split("\n")[1:-2] == [compact(e) + "," for e in as_dicts["entry"][:-1]] + \
        [compact(as_dicts["entry"][-1])]
    # an entry per line (a string's newline is escaped; U+2028 may stay raw in JSON), and the
    # summary counts what was written
    assert text.count("\n") == len(streamed["entry"]) + 2 == summary.entries + 2
    assert "Infinity" not in text and "NaN" not in text


@pytest.mark.parametrize("value", [
    "2026-11-27T08:00:00+00:00", "2026-11-27T08:00:00-05:30", "2026-11-27T23:59:59+14:00",
    "2026-11-27T08:00:00+00:60",  # minutes past 59 roll into the hour: +01:00
    "2026-11-27T08:00:00-00:00",  # written +00:00
    "2026-11-27T08:00:00Z", "2026-11-27T08:00:00.5+00:00", "2100-12-31T23:59:59+00:00"])
def test_a_logged_time_is_written_as_the_general_parser_writes_it(value):
    # the fast path for the form the log writes gives what the general parser gives
    from icans_cli.core.identifiers import parse_time

    assert fhir._time(value) == parse_time(value).isoformat(timespec="seconds")


def test_a_weight_of_any_size_is_exported_and_one_that_is_not_finite_is_not():
    from tests.helpers import body as make_body

    def weights(w):
        rec = make_body(ice=7)
        rec.update(id="r1", seq=1, findings={**rec["findings"], "weight_kg": w})
        b = fhir.bundle([rec], NOW)
        return [e["resource"]["valueQuantity"]["value"] for e in b["entry"]
                if e["resource"].get("code", {}).get("text") == "Body weight"]

    assert weights(10 ** 400) == [10 ** 400]  # a JSON integer; float() of it overflows
    assert weights(70.5) == [70.5]
    assert weights(float("inf")) == [] and weights(float("nan")) == []
