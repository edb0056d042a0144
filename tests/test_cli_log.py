import pytest
import csv
import io
import json
from datetime import timedelta

from typer.testing import CliRunner

from icans_cli import log
from icans_cli.cli import app
from tests.helpers import body

runner = CliRunner()


def make_log(path, items):
    ids = []
    for kw in items:
        ids.append(log.append(path, body(**kw))["id"])
    return ids


def test_log_path_honours_data_dir_and_option(tmp_path, _isolated_data_dir):
    r = runner.invoke(app, ["log", "path"])
    assert r.exit_code == 0
    assert r.stdout.strip() == str(_isolated_data_dir / "assessments.jsonl")
    r = runner.invoke(app, ["log", "path", "--log-file", str(tmp_path / "x.jsonl")])
    assert r.stdout.strip() == str(tmp_path / "x.jsonl")


def test_log_verify_ok_and_broken(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=10), dict(ice=8), dict(ice=5)])
    r = runner.invoke(app, ["log", "verify", "--log-file", str(path)])
    assert r.exit_code == 0 and "3 records" in r.stdout
    ls = path.read_bytes().split(b"\n")
    del ls[1]
    path.write_bytes(b"\n".join(ls))
    r = runner.invoke(app, ["log", "verify", "--log-file", str(path)])
    assert r.exit_code == 1
    assert "line 2" in r.stderr and "deleted" in r.stderr


@pytest.mark.parametrize("command", [["log", "verify"], ["log", "head"], ["log", "show"],
                                     ["history", "PT-1"], ["due"], ["show"], ["show", "PT-1"],
                                     ["export", "fhir"], ["log", "acknowledge-tail"]])
def test_a_missing_log_is_named_by_every_reader(tmp_path, command):
    """A mistyped --log-file or ICANS_DATA_DIR is said, never an empty board with exit 0."""
    missing = tmp_path / "mistyped" / "none.jsonl"
    r = runner.invoke(app, [*command, "--log-file", str(missing)])
    assert r.exit_code == 1, r.output
    assert "no log at" in r.stderr and str(missing) in r.stderr.replace("\n", "")
    assert not missing.exists()


def test_log_show_filters_patient_and_min_grade_jsonl(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(patient="A", ice=10), dict(patient="B", ice=5), dict(patient="A", ice=2)])
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "--patient", "A",
                            "--min-grade", "1", "--format", "jsonl"])
    assert r.exit_code == 0
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["patient_id"], x["result"]["icans_grade"]) for x in recs] == [("A", 3)]


def test_log_show_since_filters_by_assessed_time(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=10, hours=0), dict(ice=9, hours=10)])
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "--since",
                            "2026-11-27T12:00:00+00:00", "-f", "jsonl"])
    assert [json.loads(x)["result"]["ice_score"] for x in r.stdout.splitlines()] == [9]


def test_log_show_bad_since_is_usage_error(tmp_path):
    r = runner.invoke(app, ["log", "show", "--since", "yesterday", "-f", "jsonl"])
    assert r.exit_code == 2 and "ISO 8601" in r.stderr


def test_log_show_csv_is_spreadsheet_safe(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(patient="=HYPERLINK(1)", ice=10)])
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[0]["patient_id"] == "'=HYPERLINK(1)"
    assert rows[0]["ice_score"] == "10"


def test_log_show_skips_corrupt_middle_line_with_warning(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=10), dict(ice=9), dict(ice=8)])
    ls = path.read_bytes().split(b"\n")
    ls[1] = b'{"broken'
    path.write_bytes(b"\n".join(ls))
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "-f", "jsonl"])
    assert r.exit_code == 0
    assert len(r.stdout.splitlines()) == 2
    assert "line 2" in r.stderr


def test_log_show_table_renders(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=10)])
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "-f", "table"])
    assert r.exit_code == 0 and "ICE 10" in r.stdout


def test_history_orders_by_time_and_flags_fall_and_rise(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=6, hours=12), dict(ice=10, hours=0), dict(ice=9, hours=6)])
    r = runner.invoke(app, ["history", "PT-001", "--log-file", str(path), "-f", "jsonl"])
    assert r.exit_code == 0
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["result"]["ice_score"] for x in recs] == [10, 9, 6]
    assert recs[2]["flags"] == ["ICE fell 9 → 6 (-3) over 6.0 h", "grade rose 1 → 2 over 6.0 h"]


def test_history_shows_superseded_record_and_trend(tmp_path):
    path = tmp_path / "l.jsonl"
    ids = make_log(path, [dict(ice=10, hours=0), dict(ice=3, hours=4)])
    log.append(path, body(ice=4, hours=4, amends=ids[1]))
    r = runner.invoke(app, ["history", "PT-001", "--log-file", str(path), "-f", "table"])
    assert r.exit_code == 0
    assert "SUPERSEDED by" in r.stdout
    assert "ICE trend" in r.stdout and "10 → 4" in r.stdout
    r = runner.invoke(app, ["history", "PT-001", "--log-file", str(path), "-f", "jsonl"])
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert recs[1]["superseded_by"] == recs[2]["id"]


def test_history_flags_overdue_assessment(tmp_path):
    path = tmp_path / "l.jsonl"
    b = body(ice=5)
    b["assessed_at"] = (log.utc_now() - timedelta(hours=11)).isoformat()
    log.append(path, b)
    r = runner.invoke(app, ["history", "PT-001", "--log-file", str(path), "-f", "table"])
    assert "OVERDUE by 3.0 h" in r.stdout


def test_history_not_overdue_within_cadence(tmp_path):
    path = tmp_path / "l.jsonl"
    b = body(ice=5)
    b["assessed_at"] = (log.utc_now() - timedelta(hours=2)).isoformat()
    log.append(path, b)
    r = runner.invoke(app, ["history", "PT-001", "--log-file", str(path), "-f", "table"])
    assert "OVERDUE" not in r.stdout


def test_history_skips_corrupt_line_with_warning(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=10), dict(ice=9), dict(ice=8)])
    ls = path.read_bytes().split(b"\n")
    ls[1] = ls[1][:40]
    path.write_bytes(b"\n".join(ls))
    r = runner.invoke(app, ["history", "PT-001", "--log-file", str(path), "-f", "jsonl"])
    assert r.exit_code == 0
    assert len(r.stdout.splitlines()) == 2
    assert "line 2" in r.stderr


def test_history_unknown_patient_exit_1_without_echoing_id(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=10)])
    r = runner.invoke(app, ["history", "NOBODY-42", "--log-file", str(path)])
    assert r.exit_code == 1
    assert "NOBODY-42" not in r.stderr


def test_history_leaves_superseded_records_out_of_the_count_and_trend(tmp_path):
    path = tmp_path / "l.jsonl"
    ids = make_log(path, [dict(ice=10, hours=0), dict(ice=3, hours=4)])
    log.append(path, body(ice=9, hours=4, amends=ids[1]))
    r = runner.invoke(app, ["history", "PT-001", "--log-file", str(path), "-f", "table"],
                      env={"COLUMNS": "120"})
    assert "Patient PT-001: 2 assessments (1 corrected record shown struck through" in r.stdout
    assert "10 → 9" in r.stdout  # the trend uses the correction, not the superseded 3


def test_log_show_counts_in_plain_english_and_shows_no_raw_recommendation_ids(tmp_path):
    path = tmp_path / "l.jsonl"
    make_log(path, [dict(ice=10, hours=0)])
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "-f", "table"],
                      env={"COLUMNS": "120"})
    assert "1 assessment ·" in r.stdout and "1 assessments" not in r.stdout
    assert "asco-2021@" not in r.stdout and "ICE None" not in r.stdout


def test_log_show_jsonl_marks_superseded_records_in_the_fast_path(tmp_path):
    path = tmp_path / "l.jsonl"
    ids = make_log(path, [dict(ice=10, hours=0), dict(ice=3, hours=4)])
    log.append(path, body(ice=4, hours=4, amends=ids[1]))
    r = runner.invoke(app, ["log", "show", "--log-file", str(path), "-f", "jsonl"])
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x.get("superseded_by") for x in recs] == [None, recs[2]["id"], None]
