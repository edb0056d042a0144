"""Plain-data shapes of findings, results and assessment records (for JSON, CSV and the log).

The record shape is versioned by ``log.SCHEMA_VERSION``; a contract test pins its keys.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from icans_cli import __version__
from icans_cli.core.grading import RULES_VERSION, Findings, IcansResult
from icans_cli.core.protocol import Recommendation


def findings_dict(f: Findings, crs_grade: int | None, product: str | None,
                  crs_detail: dict[str, Any] | None = None,
                  weight_kg: float | None = None) -> dict[str, Any]:
    return {
        "age_years": f.age_years,
        "weight_kg": weight_kg,
        "developmental_delay": f.developmental_delay,
        "ice_items": f.ice_items.as_dict() if f.ice_items else None,
        "ice_score": f.ice_score,
        "capd_items": list(f.capd_points) if f.capd_points else None,
        "capd_score": f.capd_score,
        "capd_baseline": f.capd_baseline,
        "consciousness": f.consciousness,
        "seizure": f.seizure,
        "motor": f.motor,
        "icp_edema": sorted(f.icp_edema),
        "excluded": sorted(f.excluded),
        "sedated": f.sedated,
        "crs_grade": crs_grade,
        "crs_detail": crs_detail,
        "product": product,
    }


def crs_findings_from_detail(detail: dict[str, Any] | None) -> Any:
    """The CRS findings a record was graded from (an interview's answers, or a batch row's
    cells), or None when the record holds only a grade."""
    from icans_cli.core.crs import CrsFindings

    if not isinstance(detail, dict):
        return None
    if isinstance(detail.get("findings"), dict):  # a batch row
        f = dict(detail["findings"])
        f["treatments"] = frozenset(f.get("treatments") or ())
        return CrsFindings(**f)
    if isinstance(detail.get("hypotension"), str):  # the interview's answers
        h = detail["hypotension"]
        treatments = list(detail.get("treatments") or [])
        if detail.get("treated_for_crs") and not treatments:
            treatments = ["tocilizumab"]  # older records: "tocilizumab or corticosteroids"
        return CrsFindings(fever=bool(detail.get("fever")), hypotension=h != "none",
                           vasopressors={"one": 1, "several": 2}.get(h, 0),
                           oxygen=detail.get("oxygen") or "none",
                           oxygen_flow_l_min=detail.get("oxygen_flow_l_min"),
                           treatments=frozenset(treatments),
                           ventilation_reason=detail.get("ventilation_reason"))
    return None


def crs_findings_dict(f: Any) -> dict[str, Any]:
    """CRS findings as a batch record keeps them (to grade them again exactly)."""
    return {"fever": f.fever, "temperature_c": f.temperature_c, "hypotension": f.hypotension,
            "vasopressors": f.vasopressors, "vasopressin": f.vasopressin, "oxygen": f.oxygen,
            "oxygen_flow_l_min": f.oxygen_flow_l_min, "treatments": sorted(f.treatments),
            "ventilation_reason": f.ventilation_reason}


def case_from_record(rec: dict[str, Any], last_assessable: Any = None,
                     log_checked: bool = False) -> Any:
    """The Case a logged record was advised on: its findings, weight, product, CRS (graded
    again from its findings when the record holds them) and treatment times. Raises
    InvalidFinding (or TypeError/ValueError) on a record that no longer makes a valid case."""
    from icans_cli.core.advice import Case
    from icans_cli.core.crs import CrsState, grade_crs

    findings, m = findings_from_record(rec)
    detail = (rec.get("findings") or {}).get("crs_detail")
    crs_f = crs_findings_from_detail(detail)
    state = CrsState.of(grade_crs(crs_f)) if crs_f is not None else CrsState(
        0 if m["crs_controlled"] else m["crs_grade"], m["crs_controlled"])
    return Case(findings, state, m["product"], m["weight_kg"],
                tocilizumab_hours(detail, rec.get("assessed_at")), last_assessable, log_checked)


def tocilizumab_hours(detail: Any, assessed_at: Any) -> float | None:
    """Hours from the last tocilizumab dose a record names to its assessment."""
    from icans_cli.core.errors import InvalidFinding
    from icans_cli.core.identifiers import parse_time

    given = detail.get("tocilizumab_at") if isinstance(detail, dict) else None
    if not given or not assessed_at:
        return None
    try:
        return (parse_time(str(assessed_at)) - parse_time(str(given))).total_seconds() / 3600
    except InvalidFinding:
        return None


def findings_from_record(rec: dict[str, Any]) -> tuple[Findings, dict[str, Any]]:
    """The Findings a logged record was graded from, and the management context: crs_grade,
    crs_controlled, product, age_years, weight_kg. Raises InvalidFinding on a record that no
    longer makes valid findings."""
    from icans_cli.core.scores import IceItems

    f = rec.get("findings") or {}
    items = f.get("ice_items")
    capd = f.get("capd_items")
    findings = Findings(
        age_years=f.get("age_years"), developmental_delay=bool(f.get("developmental_delay")),
        ice_items=IceItems(**items) if items else None,
        ice_score=None if items else f.get("ice_score"),
        capd_points=tuple(capd) if capd else None,
        capd_score=None if capd else f.get("capd_score"),
        consciousness=f.get("consciousness", "alert"), seizure=f.get("seizure", "none"),
        motor=f.get("motor", "none"), icp_edema=frozenset(f.get("icp_edema") or ()),
        excluded=frozenset(f.get("excluded") or ()), sedated=bool(f.get("sedated")),
        capd_baseline=f.get("capd_baseline"))
    detail = f.get("crs_detail") or {}
    controlled = bool(detail.get("controlled")) or \
        (rec.get("recommendation") or {}).get("crs") == "controlled"
    return findings, {"crs_grade": f.get("crs_grade"), "crs_controlled": controlled,
                      "product": f.get("product"), "age_years": f.get("age_years"),
                      "weight_kg": f.get("weight_kg")}


def assessment_key(body: dict[str, Any]) -> str:
    """What makes two records the same assessment: the same patient (matched case- and
    separator-insensitively), the same time assessed (as an instant: "Z" and "+00:00" alike)
    and the same normalised findings. Cells, their order and pass-through columns do not
    count. A batch rerun is recognised by it."""
    import hashlib
    import json

    from icans_cli.core.identifiers import parse_time, patient_key

    when = parse_time(str(body["assessed_at"])).astimezone(timezone.utc)
    key = {"patient": patient_key(str(body["patient_id"])),
           "assessed_at": when.isoformat(timespec="seconds"), "findings": body["findings"]}
    data = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "assessment:" + hashlib.sha256(data.encode()).hexdigest()


def result_dict(r: IcansResult) -> dict[str, Any]:
    return {
        "status": r.status,
        "icans_grade": r.grade,
        "grade_at_least": r.grade_at_least,
        "drivers": list(r.drivers),
        "excluded": list(r.excluded),
        "not_assessable": list(r.not_assessable),
        "score_path": r.score_path,
        "score_path_reason": r.score_path_reason,
        "ice_score": r.ice_score,
        "capd_score": r.capd_score,
        "domains": {d.domain: {"finding": d.value, "grade": d.grade} for d in r.domains},
    }


def assessment_record(
    *,
    patient_id: str,
    assessor: str,
    source: str,
    assessed_at: datetime,
    findings: Findings,
    result: IcansResult,
    recommendation: Recommendation,
    crs_grade: int | None,
    product: str | None,
    crs_detail: dict[str, Any] | None = None,
    amends: str | None = None,
    extra: dict[str, Any] | None = None,
    weight_kg: float | None = None,
) -> dict[str, Any]:
    """The body of a log record (``log.append`` adds id, seq, times and hashes)."""
    body: dict[str, Any] = {
        "assessed_at": assessed_at.isoformat(timespec="seconds"),
        "patient_id": patient_id,
        "assessor": assessor,
        "source": source,
        "tool_version": __version__,
        "rules_version": RULES_VERSION,
        "protocol": {"id": recommendation.protocol_id,
                     "version": recommendation.protocol_version,
                     "sha256": recommendation.protocol_sha256,
                     "file": recommendation.protocol_file},
        "findings": findings_dict(findings, crs_grade, product, crs_detail, weight_kg),
        "result": result_dict(result),
        "recommendation": {"id": recommendation.id,
                           "next_assessment_hours": recommendation.cadence.hours,
                           "crs": recommendation.crs},
        "amends": amends,
    }
    if extra:
        body["extra"] = extra
    return body
