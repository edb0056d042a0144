"""Advice that fits the patient, through `icans grade` (spec sections 4 and 6)."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from icans_cli.cli import app

runner = CliRunner()


def grade_rows(header, *rows, protocol="asco-2021", fmt="jsonl"):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    r = runner.invoke(app, ["grade", "-", "-f", fmt, "-p", protocol], input=buf.getvalue(),
                      catch_exceptions=False)
    if fmt != "jsonl":
        return r, None
    return r, [json.loads(x) for x in r.stdout.splitlines()]


def all_text(row):
    rec = row["recommendation"]
    return "\n".join(x["text"] for b in rec["branches"] for x in b["lines"]) + "\n" + \
        "\n".join(x["text"] for x in rec["disagreements"])


def dose_lines(row):
    return [x for b in row["recommendation"]["branches"] for x in b["lines"] if x["dose"]]


@pytest.mark.parametrize("protocol", ["asco-2021", "cartox-2018"])
def test_batch_unarousable_6_year_old_20_kg_gets_no_adult_doses(protocol):
    _, (row,) = grade_rows(["patient_id", "age_years", "weight_kg", "consciousness",
                            "crs_grade"], ["PT-C", "6", "20", "unarousable", "0"],
                           protocol=protocol)
    assert row["icans_grade"] == 4 and row["capd_score"] is None and row["weight_kg"] == 20
    t = all_text(row)
    assert "1,000 mg/day" not in t and "10 mg" not in t
    assert "institutional" in t and "UNVERIFIED" in t
    for line in dose_lines(row):
        assert line["dose"]["per_kg"] is True
        assert line["dose"]["computed_amount"] is not None


def test_batch_child_with_crs_gets_tocilizumab_computed_for_weight():
    _, (row,) = grade_rows(["patient_id", "age_years", "weight_kg", "capd_score", "crs_grade"],
                           ["PT-C", "6", "20", "4", "2"])
    toci = next(x for x in dose_lines(row) if x["dose"]["drug"] == "tocilizumab")
    assert toci["dose"] == {**toci["dose"], "amount": 12, "per_kg": True,
                            "computed_amount": 240}
    assert "12 mg/kg → 240 mg at 20 kg" in toci["text"]


def test_batch_adult_ice_2_crs_grade_3_axi_cel_gets_dexamethasone_from_the_crs_table():
    _, (row,) = grade_rows(["patient_id", "age_years", "weight_kg", "ice_score", "crs_grade",
                            "product"], ["PT-A", "55", "80", "2", "3", "axi-cel"])
    (branch,) = row["recommendation"]["branches"]
    steroids = [x for x in branch["lines"] if x["section"] == "corticosteroids"]
    assert steroids[0]["table"] == "crs" and steroids[0]["start"] == "now"
    assert steroids[0]["text"].startswith("Dexamethasone 10 mg IV every 6 h, with tocilizumab")
    assert steroids[0]["dose"]["every_hours"] == 6
    # the ICANS table's lines, axi-cel's earlier steroids among them, are covered by it
    assert all("not in addition" in x["text"] for x in steroids[1:] if x["table"] == "icans")


CRS_HEADER = ["patient_id", "age_years", "ice_score", "temperature_c", "hypotension",
              "vasopressors", "vasopressin", "oxygen", "oxygen_flow_l_min", "crs_treated",
              "crs_grade"]


def crs_row(**kw):
    base = dict(patient_id="PT-V", age_years="50", ice_score="8", temperature_c="",
                hypotension="", vasopressors="", vasopressin="", oxygen="",
                oxygen_flow_l_min="", crs_treated="", crs_grade="")
    base.update(kw)
    return [base[c] for c in CRS_HEADER]


def test_batch_crs_graded_from_vitals_one_vasopressor_is_grade_3():
    _, (row,) = grade_rows(CRS_HEADER, crs_row(temperature_c="39.1", hypotension="yes",
                                               vasopressors="1"))
    assert row["status"] == "graded" and row["crs_grade"] == 3
    assert row["crs"]["label"] == "CRS grade 3"
    assert row["recommendation"]["crs_grade"] == 3


def test_batch_crs_exactly_6_l_min_is_low_flow_grade_2():
    _, (row,) = grade_rows(CRS_HEADER, crs_row(temperature_c="38.4", oxygen="nasal_cannula",
                                               oxygen_flow_l_min="6"))
    assert row["crs_grade"] == 2


def test_batch_crs_grade_that_disagrees_with_the_vitals_is_an_error_naming_crs_grade():
    r, (row,) = grade_rows(CRS_HEADER, crs_row(temperature_c="39", vasopressors="1",
                                               crs_grade="1"))
    assert r.exit_code == 1 and row["status"] == "invalid"
    (err,) = row["errors"]
    assert err["column"] == "crs_grade" and "disagrees with the CRS findings" in err["message"]


def test_batch_crs_vitals_without_temperature_need_it():
    r, (row,) = grade_rows(CRS_HEADER, crs_row(hypotension="yes"))
    assert row["errors"][0]["column"] == "temperature_c"


def test_batch_treated_crs_without_hypotension_or_hypoxia_is_controlled():
    _, (row,) = grade_rows(CRS_HEADER, crs_row(temperature_c="37.0",
                                               crs_treated="tocilizumab"))
    assert row["crs_grade"] == 0 and row["crs"]["controlled"] is True
    assert row["recommendation"]["crs"] == "controlled"
    (branch,) = row["recommendation"]["branches"]
    assert "controlled" in branch["label"]
    assert not any(x["section"] == "anti_cytokine" and x["dose"] for x in branch["lines"])


def test_batch_antipyretic_only_shows_the_source_disagreement():
    _, (row,) = grade_rows(CRS_HEADER, crs_row(temperature_c="37.2", hypotension="yes",
                                               crs_treated="antipyretic"))
    assert row["crs_grade"] == 2
    assert "Sources differ on an antipyretic alone" in row["crs"]["disagreement"]


def test_batch_crs_treated_rejects_an_unknown_treatment_naming_the_column():
    _, (row,) = grade_rows(CRS_HEADER, crs_row(temperature_c="39", crs_treated="aspirin"))
    assert row["errors"][0]["column"] == "crs_treated"
    assert "antipyretic" in row["errors"][0]["message"]


def test_batch_prolonged_seizure_gets_status_epilepticus_algorithm_with_weight():
    _, (row,) = grade_rows(["patient_id", "age_years", "weight_kg", "ice_score", "seizure",
                            "crs_grade"], ["PT-S", "40", "70", "7", "prolonged", "0"])
    t = all_text(row)
    assert "STATUS EPILEPTICUS" in t and "lorazepam 0.1 mg/kg → 4 mg at 70 kg" in t
    assert "lorazepam 0.5 mg" not in t  # one lorazepam regimen: not the non-convulsive one


def test_batch_posturing_turns_lumbar_puncture_into_a_warning():
    _, (row,) = grade_rows(["patient_id", "ice_score", "icp_edema", "crs_grade"],
                           ["PT-P", "8", "posturing", "0"])
    t = all_text(row)
    assert "Do NOT do a lumbar puncture" in t
    assert "Lumbar puncture, if there is no contraindication" not in t


def test_batch_sedated_row_is_not_all_clear():
    _, (row,) = grade_rows(["patient_id", "sedated", "consciousness", "crs_grade"],
                           ["PT-I", "yes", "unarousable", "0"])
    assert row["status"] == "not_assessable"
    t = all_text(row)
    assert 'not "all clear"' in t and "No ICANS treatment at grade 0" not in t
    assert row["recommendation"]["next_assessment_hours"] <= 8


def test_batch_capd_baseline_column_is_carried_and_never_changes_the_grade():
    _, rows = grade_rows(["patient_id", "age_years", "capd_score", "capd_baseline"],
                         ["PT-B", "2", "10", "6"], ["PT-B2", "2", "10", ""])
    assert rows[0]["icans_grade"] == rows[1]["icans_grade"] == 3
    assert rows[0]["capd_baseline"] == 6 and rows[1]["capd_baseline"] is None


def test_batch_capd_baseline_for_an_ice_patient_is_an_error():
    _, (row,) = grade_rows(["patient_id", "age_years", "ice_score", "capd_baseline"],
                           ["PT-B", "40", "8", "3"])
    assert row["errors"][0]["column"] == "capd_baseline"


@pytest.mark.parametrize("value", ["0", "-3", "351", "heavy"])
def test_batch_weight_out_of_range_is_an_error_naming_the_column(value):
    _, (row,) = grade_rows(["patient_id", "ice_score", "weight_kg"], ["PT-W", "8", value])
    err = row["errors"][0]
    assert err["column"] == "weight_kg" and "350" in err["message"]


def test_batch_unarousable_child_capd_0_is_refused():
    _, (row,) = grade_rows(["patient_id", "age_years", "capd_score", "consciousness"],
                           ["PT-U", "6", "0", "unarousable"])
    assert row["errors"][0]["column"] == "capd_score"
    assert "normal child" in row["errors"][0]["message"]


def test_batch_csv_output_recommendation_id_names_crs_grade_and_patient_group():
    r, _ = grade_rows(["patient_id", "age_years", "weight_kg", "ice_score", "crs_grade"],
                      ["PT-1", "40", "70", "2", "3"], ["PT-2", "40", "", "2", "3"],
                      ["PT-3", "15", "50", "2", "3"], fmt="csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[0]["recommendation"].endswith("/grade3/crs-3/standard/adult")
    assert rows[1]["recommendation"] == rows[0]["recommendation"]  # weight: JSON only
    assert rows[2]["recommendation"].endswith("/child")
