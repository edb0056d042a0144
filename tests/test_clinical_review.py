"""Fixes from this session's independent clinical read, each named after its rule."""

import json

from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from tests.helpers import body

runner = CliRunner()


def grade_csv(tmp_path, header, *rows, fmt="jsonl", columns="100"):
    f = tmp_path / "a.csv"
    f.write_text(header + "\n" + "\n".join(rows) + "\n")
    return runner.invoke(app, ["grade", str(f), "-f", fmt], env={"COLUMNS": columns})


def bedside(tmp_path, header, row):
    """The bedside screen of one CSV row, logged and shown at 80 columns."""
    f = tmp_path / "a.csv"
    f.write_text(header + "\n" + row + "\n")
    logf = tmp_path / "l.jsonl"
    r = runner.invoke(app, ["grade", str(f), "--log", "--assessed-now", "--assessor", "n",
                            "--log-file", str(logf), "-f", "jsonl"])
    assert r.exit_code in (0, 1), r.output
    pid = row.split(",")[0]
    r = runner.invoke(app, ["show", pid, "--log-file", str(logf)], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    return " ".join(r.stdout.split())


def test_a_post_ictal_patient_without_an_ice_is_graded_3_not_refused(tmp_path):
    r = grade_csv(tmp_path, "patient_id,age_years,seizure", "PT-1,60,self_limited")
    row = json.loads(r.stdout)
    assert row["status"] == "graded" and row["icans_grade"] == 3 and row["ice_score"] is None


def test_not_assessable_never_reads_as_a_number_in_the_batch_table(tmp_path):
    r = grade_csv(tmp_path, "patient_id,age_years,sedated", "PT-1,60,yes", fmt="table",
                  columns="120")
    assert r.exit_code == 0
    line = next(x for x in r.stdout.splitlines() if "PT-1" in x)
    assert "unknown" in line and "at least 0" not in line and " 0 " not in line


def test_ventilation_for_a_reason_not_given_shows_both_crs_grades_never_none(tmp_path):
    out = bedside(tmp_path, "patient_id,age_years,weight_kg,consciousness,temperature_c,oxygen",
                  "PT-2,60,80,unarousable,38.5,mechanical_ventilation")
    assert "CRS grade None" not in out
    assert "(why ventilated?)" in out


def test_a_ventilated_patient_is_not_told_simply_to_consider_ventilation(tmp_path):
    out = bedside(tmp_path, "patient_id,age_years,weight_kg,consciousness,temperature_c,oxygen,"
                  "ventilation_reason", "PT-3,60,80,unarousable,38.5,mechanical_ventilation,"
                  "airway")
    assert "consider ventilation to protect the airway." not in out


def test_fosphenytoin_carries_its_hypotension_warning_on_the_bedside_screen(tmp_path):
    out = bedside(tmp_path, "patient_id,age_years,weight_kg,seizure,temperature_c,hypotension,"
                  "vasopressors", "PT-4,60,80,prolonged,39,yes,1")
    assert "fosphenytoin" in out
    assert "(hypotension, arrhythmia: monitor)" in out


def test_raised_icp_lowering_names_where_its_targets_come_from(tmp_path):
    out = bedside(tmp_path, "patient_id,age_years,weight_kg,ice_score,icp_edema",
                  "PT-5,60,80,6,diffuse_edema")
    assert "Lower ICP: hyperventilation, mannitol or hypertonic saline (targets: " \
        "neurocritical care)" in out
