import csv
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from icans_cli import log
from icans_cli.batch import JSONL_KEYS, OUTPUT_COLUMNS
from icans_cli.cli import app

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "batch_golden.csv"
runner = CliRunner()


def grade(args, input=None):
    return runner.invoke(app, ["grade", *args], input=input, catch_exceptions=False)


def jsonl(stdout):
    return [json.loads(x) for x in stdout.splitlines()]


# --- golden file --------------------------------------------------------------------------------

def test_golden_rows_match_hand_written_expectations():
    r = grade([str(GOLDEN), "-f", "jsonl"])
    assert r.exit_code == 1  # the file has invalid rows on purpose
    out = jsonl(r.stdout)
    assert [o["row"] for o in out] == list(range(1, 46))
    for o in out[:44]:
        p = o["passthrough"]
        assert o["status"] == p["expect_status"], (o["row"], p["note"], o["errors"])
        if p["expect_grade"]:
            assert o["icans_grade"] == int(p["expect_grade"]), (o["row"], p["note"])
        if o["status"] == "invalid":
            assert o["errors"] and all(e["column"] and e["message"] for e in o["errors"])
            assert o["recommendation"] is None
        else:
            assert o["errors"] == [] and o["recommendation"]["id"]
    ragged = out[44]
    assert ragged["status"] == "invalid" and ragged["errors"][0]["column"] == "(row)"
    assert "15 of 45 rows invalid; first: row 30 (line 31), ice_score: 11 is outside 0-10" in r.stderr


def test_golden_output_snapshot():
    """Full JSONL output pinned; regenerate with UPDATE_GOLDEN=1 after reviewing a change."""
    r = grade([str(GOLDEN), "-f", "jsonl"])
    expected = DATA / "batch_golden.expected.jsonl"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(r.stdout, encoding="utf-8")
    assert r.stdout == expected.read_text(encoding="utf-8")


def test_golden_specific_rows():
    out = {o["patient_id"]: o for o in jsonl(grade([str(GOLDEN), "-f", "jsonl"]).stdout)}
    assert out["G13"]["drivers"] == ["seizure"]
    assert out["G22"]["grade_at_least"] == 3
    assert out["G22"]["not_assessable"] == ["ice", "consciousness"]
    assert out["G19"]["excluded"] == ["myoclonus", "tremor"]
    assert out["G09"]["recommendation"]["crs"] == "yes"
    assert out["G01"]["recommendation"]["crs"] == "no"
    assert out["G03"]["recommendation"]["crs"] == "unknown"
    assert len(out["G03"]["recommendation"]["branches"]) == 2
    assert out["G30"]["errors"] == [{"column": "ice_score", "message": "11 is outside 0-10"}]
    assert out["G31"]["errors"][0]["column"] == "ice_score"
    assert "under 12" in out["G31"]["errors"][0]["message"]
    assert out["G39"]["errors"][0]["column"] == "product"
    assert "axi-cel" in out["G39"]["errors"][0]["message"]


def test_isolated_icans_rows_never_get_tocilizumab_and_crs_rows_do():
    out = {o["patient_id"]: o for o in jsonl(grade([str(GOLDEN), "-f", "jsonl"]).stdout)}
    no_crs = out["G13"]["recommendation"]["branches"][0]
    assert not any("tocilizumab 8 mg/kg" in line["text"] for line in no_crs["lines"])
    crs = out["G09"]["recommendation"]["branches"][0]
    assert any("tocilizumab 8 mg/kg" in line["text"] for line in crs["lines"])
    for line in crs["lines"]:
        if line["dose"]:
            assert line["source"] and line["protocol"] == "asco-2021"
            assert line["dose"]["drug"] and "computed_amount" in line["dose"]


# --- contract -----------------------------------------------------------------------------------

def test_contract_jsonl_keys_are_pinned():
    out = jsonl(grade([str(GOLDEN), "-f", "jsonl"]).stdout)
    assert set(JSONL_KEYS) == {"row", "patient_id", "assessed_at", "status", "score_path",
                               "ice_score", "capd_score", "capd_baseline", "icans_grade",
                               "grade_at_least", "drivers", "domains", "excluded",
                               "not_assessable", "crs_grade", "crs", "product", "weight_kg",
                               "recommendation", "errors"}
    for o in out:
        assert set(o) - {"passthrough"} == set(JSONL_KEYS)
    rec = out[0]["recommendation"]
    assert {"id", "protocol", "branches", "disagreements", "next_assessment_hours",
            "decision"} <= set(rec)


def test_contract_csv_columns_are_input_then_results():
    r = grade([str(GOLDEN), "-f", "csv"])
    rows = list(csv.reader(io.StringIO(r.stdout)))
    header = next(csv.reader(io.StringIO(GOLDEN.read_text())))
    assert OUTPUT_COLUMNS == ("ice_score", "capd_score", "icans_grade", "grade_at_least",
                              "status", "drivers", "recommendation", "errors")
    # each column once: the input's ice_score and capd_score keep their places
    assert rows[0] == header + [c for c in OUTPUT_COLUMNS if c not in header]
    assert len(rows[0]) == len(set(c.strip().lower() for c in rows[0]))
    assert len(rows) == 46
    assert all(len(x) == len(rows[0]) for x in rows)
    g13 = next(x for x in rows if x[0] == "G13")
    assert g13[-4:-1] == ["graded", "seizure",
                          "asco-2021@2026.12/grade3/crs-no/standard/adult"]


def test_json_format_is_one_array():
    out = json.loads(grade([str(GOLDEN), "-f", "json"]).stdout)
    assert len(out) == 45 and out[0]["row"] == 1


def test_table_format_renders():
    r = grade([str(GOLDEN), "-f", "table"])
    assert "INVALID" in r.stdout and "G13" in r.stdout


def test_default_format_off_terminal_is_csv():
    r = grade([str(GOLDEN)])
    assert r.stdout.startswith("Patient_ID ,")


# --- usage problems: exit 2 ---------------------------------------------------------------------

@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"name,ice_score\nx,10\n", "no patient_id column"),
    (b"\xff\xfep\x00a\x00", "UTF-16, not UTF-8"),
    (b"patient_id,ICE_SCORE,ice_score\nx,1,1\n", "duplicate column"),
])
def test_usage_problems_exit_2_with_message(tmp_path, content, needle):
    f = tmp_path / "in.csv"
    f.write_bytes(content)
    r = grade([str(f)])
    assert r.exit_code == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_missing_file_exit_2(tmp_path):
    r = grade([str(tmp_path / "nope.csv")])
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_directory_exit_2(tmp_path):
    r = grade([str(tmp_path)])
    assert r.exit_code == 2 and "directory" in r.stderr


def test_unknown_protocol_exit_2():
    r = grade([str(GOLDEN), "--protocol", "nccn"])
    assert r.exit_code == 2 and "asco-2021" in r.stderr


def test_usage_error_never_clobbers_existing_output(tmp_path):
    f = tmp_path / "in.csv"
    f.write_bytes(b"")
    o = tmp_path / "out.csv"
    o.write_text("precious")
    assert grade([str(f), "-o", str(o)]).exit_code == 2
    assert o.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] != [] and not any(
        p.name.startswith(".icans-") for p in tmp_path.iterdir())


def test_output_file_written(tmp_path):
    o = tmp_path / "out.jsonl"
    r = grade([str(GOLDEN), "-f", "jsonl", "-o", str(o)])
    assert r.exit_code == 1 and r.stdout == ""
    assert len(o.read_text().splitlines()) == 45


# --- input handling -----------------------------------------------------------------------------

def test_stdin_dash_with_bom_and_messy_headers():
    data = "\ufeff Patient_Id ,ICE_Score\nA,9\n".encode()
    r = grade(["-", "-f", "jsonl"], input=data)
    assert r.exit_code == 0
    assert jsonl(r.stdout)[0]["icans_grade"] == 1


def test_all_valid_exits_0_with_summary():
    r = grade(["-", "-f", "jsonl"], input=b"patient_id,ice_score\nA,10\nB,3\n")
    assert r.exit_code == 0
    assert "2 rows: 2 graded" in r.stderr


def test_undecodable_bytes_nul_ragged_blank_lines_never_traceback():
    data = (b"patient_id,ice_score,ward\n"
            b"A,\xff\xfe,x\n"          # not UTF-8
            b"B,1\x000,x\n"            # NUL byte
            b"\n"                      # blank line: not a row
            b"C,5\n"                   # ragged
            b"D,5,x,extra\n"           # ragged the other way
            b"E,5,x\n")
    r = grade(["-", "-f", "jsonl"], input=data)
    assert r.exit_code == 1
    out = jsonl(r.stdout)
    assert [o["row"] for o in out] == [1, 2, 3, 4, 5]
    assert [o["status"] for o in out] == ["invalid"] * 4 + ["graded"]
    assert "not UTF-8" in out[0]["errors"][0]["message"]
    assert "NUL" in out[1]["errors"][0]["message"]
    assert "2 cells" in out[2]["errors"][0]["message"]
    assert "4 cells" in out[3]["errors"][0]["message"]


def test_cell_past_csv_field_size_limit_is_an_invalid_row():
    big = b"x" * 200_000
    data = b"patient_id,ice_score\nA," + big + b"\nB,10\n"
    r = grade(["-", "-f", "jsonl"], input=data)
    out = jsonl(r.stdout)
    assert [o["status"] for o in out] == ["invalid", "graded"]
    assert out[0]["errors"][0]["column"] == "(row)"


def test_patient_id_never_echoed_in_errors():
    long_id = "SECRET" + "x" * 70
    r = grade(["-", "-f", "jsonl"], input=f"patient_id,ice_score\n{long_id},10\n".encode())
    assert long_id not in r.stdout + r.stderr
    assert "76 characters" in r.stdout


@pytest.mark.parametrize("value,expected", [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-cmd", "'-cmd"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("-5", "-5"), ("+3.5", "+3.5"), ("7B", "7B"),
])
def test_csv_output_is_spreadsheet_safe(value, expected):
    data = "patient_id,ice_score,ward\nA,10,\"" + value + "\"\n"
    r = grade(["-", "-f", "csv"], input=data.encode())
    rows = list(csv.reader(io.StringIO(r.stdout_bytes.decode(), newline="")))
    assert rows[1][2] == expected


def test_no_progress_bar_or_escape_codes_on_a_pipe():
    r = grade([str(GOLDEN), "-f", "csv"])
    assert "\x1b[" not in r.stdout + r.stderr
    assert "grading" not in r.stderr


# --- --log --------------------------------------------------------------------------------------

def test_log_option_appends_graded_rows_only(tmp_path):
    path = tmp_path / "l.jsonl"
    r = grade([str(GOLDEN), "-f", "csv", "--log", "--assessed-now", "--log-file", str(path),
               "--assessor", "script"])
    assert r.exit_code == 1
    recs = [rec for _, rec in log.iter_records(path)]
    assert len(recs) == 30  # 28 graded + 2 not assessable; invalid rows never logged
    assert {rec["source"] for rec in recs} == {"batch"}
    assert {rec["assessor"] for rec in recs} == {"script"}
    assert (log.verify(path).records, log.verify(path).problems) == (30, [])
    g01 = next(rec for rec in recs if rec["patient_id"] == "G01")
    assert g01["assessed_at"] == "2026-11-27T08:00:00+00:00"
    assert "30 appended to the log" in r.stderr


# --- fuzz ---------------------------------------------------------------------------------------

COLUMNS = ["patient_id", "age_years", "ice_score", "capd_score", "consciousness", "seizure",
           "icp_edema", "sedated", "crs_grade", "product", "ice_naming", "weight_kg",
           "capd_baseline", "temperature_c"]
cell = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "0", "9", "10", "11", "-1", "unarousable", "voice", "yes", "no", "focal_edema;none",
     "axi-cel", "3", "8.5", "=1", "2026-11-27T08:00", "", "", "20", "38.5", "351"]))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cell, min_size=len(COLUMNS), max_size=len(COLUMNS)), min_size=1,
                max_size=8))
def test_fuzz_random_cells_one_output_per_row_in_order(rows):
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for row in rows:
        row[0] = row[0] if row[0].strip() else "P"  # never a blank line: one row each
        w.writerow(row)
    data = buf.getvalue().encode("utf-8", "surrogatepass")
    expected = len(rows)
    r = grade(["-", "-f", "jsonl"], input=data)
    assert r.exit_code in (0, 1)
    out = jsonl(r.stdout)
    assert [o["row"] for o in out] == list(range(1, len(out) + 1))
    assert len(out) == expected


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(data):
    r = runner.invoke(app, ["grade", "-", "-f", "jsonl"], input=b"patient_id,ice_score\n" + data)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 1, 2)


# --- the cached fast path must agree with the plain path ----------------------------------------
# (the property over any list of rows is in test_one_advice.py)

def test_fast_path_agrees_on_the_golden_file():
    """Every row of the golden file, graded after every other row, equals it graded alone."""
    rows = [r for r in csv.reader(io.StringIO(GOLDEN.read_text())) if any(c.strip()
                                                                          for c in r)]
    together = list(csv.reader(io.StringIO(grade([str(GOLDEN), "-f", "csv"]).stdout)))[1:]
    assert len(together) == len(rows) - 1
    for i, row in enumerate(rows[1:]):
        buf = io.StringIO()
        csv.writer(buf).writerows([rows[0], row])
        alone = runner.invoke(app, ["grade", "-", "-f", "csv"], input=buf.getvalue())
        assert list(csv.reader(io.StringIO(alone.stdout)))[1] == together[i], row


@pytest.mark.slow
def test_csv_and_log_recommendation_matches_the_full_json_path_row_by_row(tmp_path):
    """CSV output and the log keep only the recommendation's id and cadence, cached on what
    the id holds; for every row of a ward-like export they must equal what the full JSON path
    derives for that row."""
    from benchmarks.bench_grade import generate

    src, logf = tmp_path / "ward.csv", tmp_path / "assessments.jsonl"
    generate(src, 3000, seed=11)
    r = runner.invoke(app, ["grade", str(src), "-f", "csv", "-o", str(tmp_path / "o.csv"),
                            "--log", "--log-file", str(logf)])
    assert r.exit_code == 1, r.output  # the generator writes a few bad rows
    assert "already in the log" not in r.stderr
    j = runner.invoke(app, ["grade", str(src), "-f", "jsonl"])
    full = {row["row"]: row["recommendation"] for row in map(json.loads, j.stdout.splitlines())
            if row["status"] != "invalid"}
    logged = [json.loads(x) for x in logf.read_text().splitlines()]
    assert len(logged) == len(full) > 2900
    for rec in logged:
        want = full[rec["extra"]["input_row"]]
        got = rec["recommendation"]
        assert (got["id"], got["next_assessment_hours"], got["crs"]) == \
            (want["id"], want["next_assessment_hours"], want["crs"]), rec["extra"]["input_row"]
    with open(tmp_path / "o.csv", newline="") as fh:
        ids = {int(i): row["recommendation"] for i, row in enumerate(csv.DictReader(fh), 1)
               if row["status"] != "invalid"}
    assert ids == {k: v["id"] for k, v in full.items()}


# --- reading lines in blocks ---------------------------------------------------------------------

_LINE_BYTES = st.lists(st.sampled_from([b"a", b",", b"\r", b"\n", b"\r\n", b'"', b"\xc3\xa9",
                                        b"\xc3", b"\xff", b"\x00", b"PT-1,8"]), max_size=60)


@settings(max_examples=400, deadline=None)
@given(parts=_LINE_BYTES, block=st.integers(1, 9))
def test_lines_read_in_blocks_are_the_lines_readline_gives(parts, block):
    """Block reading splits exactly where a text file opened with newline="" splits (lone
    "\\r", "\\n", "\\r\\n", a "\\r\\n" or a UTF-8 character cut by a block edge), and decodes
    undecodable bytes as the same lone surrogates."""
    import icans_cli.batch as b

    data = b"".join(parts)
    want = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape",
                            newline="").readlines()
    old = b._BLOCK
    b._BLOCK = block
    try:
        got = [line for lines, raws, end in b._line_blocks(io.BufferedReader(io.BytesIO(data)))
               for line in (lines if lines is not None else [r + end for r in raws])]
    finally:
        b._BLOCK = old
    assert got == want


def test_an_endless_line_is_refused_naming_its_line(tmp_path):
    f = tmp_path / "zeros"
    f.write_bytes(b"patient_id,ice_score\r\nPT-1,8\r\n" + b"\0" * 1_200_000)
    r = runner.invoke(app, ["grade", str(f), "-f", "csv"])
    assert r.exit_code == 2 and "line 3 is longer than 1,000,000 characters" in r.stderr


def test_a_line_of_exactly_the_limit_is_read(tmp_path):
    f = tmp_path / "wide.csv"
    notes = ",".join(["x" * 99_999] * 10)  # ten cells under the csv module's field limit
    line = f"PT-1,8,{notes}\n"
    line = line[:999_999] + "\n"
    assert len(line) == 1_000_000
    head = ",".join(["patient_id", "ice_score"] + [f"note{i}" for i in range(10)])
    f.write_bytes(f"{head}\n{line}".encode())
    r = runner.invoke(app, ["grade", str(f), "-f", "jsonl"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["icans_grade"] == 1


def _rows_read_a_line_at_a_time(data: bytes) -> tuple[list, list]:
    """The reader as it was before block reading (a line at a time through readline), kept
    here as the reference the block reader must equal."""
    import csv as _csv
    import itertools

    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape",
                            newline="")
    lines = iter(text.readline, "")
    header = None
    lineno = 0
    while header is None:
        reader = _csv.reader(lines)
        try:
            first = next(reader)
        except (StopIteration, _csv.Error) as exc:
            return type(exc).__name__, []
        lineno += reader.line_num
        if first and any(c.strip() for c in first):
            header = first
    limit = _csv.field_size_limit()
    rows, n, ln = [], 0, lineno
    for line in lines:
        ln += 1
        raw = line.rstrip("\r\n") if line.endswith("\n") else line
        if '"' not in raw and "\r" not in raw and len(raw) <= limit:
            if not raw or raw.isspace():
                continue
            n += 1
            rows.append((n, ln, raw.split(","), raw))
            continue
        reader = _csv.reader(itertools.chain((line,), lines))
        try:
            cells = next(reader)
        except _csv.Error as exc:
            ln += reader.line_num - 1
            n += 1
            rows.append((n, ln, f"the row cannot be read as CSV ({exc})", None))
            continue
        except StopIteration:
            break
        ln += reader.line_num - 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        n += 1
        rows.append((n, ln, cells, None))
    return header, rows


_CSV_BYTES = st.lists(st.sampled_from([b"a", b"7", b",", b"\r", b"\n", b"\r\n", b"\n\n", b'"',
                                       b'""', b" ", b"\t", b"\xc3\xa9", b"\xff", b"\x00",
                                       b"PT-1,8\n", b"PT-2,9\r\n", b'"x\ny"']), max_size=80)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=_CSV_BYTES, block=st.integers(1, 12))
def test_rows_read_in_blocks_and_runs_are_the_rows_read_a_line_at_a_time(parts, block):
    """Row numbers, line numbers, cells, the raw line and the CSV errors are those of the
    line-at-a-time reader, for any bytes (quoted fields over block edges, blank lines, lone
    carriage returns, "\\r\\n" cut by a block edge), read twice (the reader holds no state
    between reads)."""
    import icans_cli.batch as b

    data = b"patient_id,ice_score\n" + b"".join(parts)
    want_header, want = _rows_read_a_line_at_a_time(data)
    old = b._BLOCK
    b._BLOCK = block
    try:
        header, items = b.read_runs(io.BufferedReader(io.BytesIO(data)))
        got = [row for item in items for row in (
            [(item[1] + i, item[2] + i, r.split(","), r) for i, r in enumerate(item[3])]
            if item[0] is b.RUN else [item])]
        _, items = b.read_runs(io.BufferedReader(io.BytesIO(data)))
        runs = []
        for item in items:
            if item[0] is b.RUN:
                runs += [(item[1] + i, item[2] + i, r.split(","), r)
                         for i, r in enumerate(item[3])]
            else:
                runs.append(item)
    finally:
        b._BLOCK = old
    assert header == want_header
    assert got == want
    assert runs == want


def test_a_plain_file_comes_in_runs_of_many_rows(tmp_path):
    import icans_cli.batch as b

    data = b"patient_id,ice_score\r\n" + b"".join(b"PT-%d,8\r\n" % i for i in range(50_000))
    _, items = b.read_runs(io.BufferedReader(io.BytesIO(data)))
    items = list(items)
    assert sum(len(i[3]) for i in items if i[0] is b.RUN) >= 40_000  # all but the first block
    assert sum(1 for i in items if i[0] is b.RUN) < 20


def test_an_invalid_rows_message_names_the_age_as_given_not_its_band():
    """An invalid row is named by its own cells: the CSV errors column and the summary say
    "age 11.5", as the JSONL does (the canonical row, with the age band, is for valid rows)."""
    text = ("patient_id,age_years,ice_score,capd_score\nPT-1,11.5,7,\nPT-2,11.5,7,\n"
            "PT-3,17.9,,5\nPT-4,40,,5\n")
    csv_out = runner.invoke(app, ["grade", "-", "-f", "csv"], input=text)
    jsonl = runner.invoke(app, ["grade", "-", "-f", "jsonl"], input=text)
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    want = ["; ".join(f"{e['column']}: {e['message']}" for e in json.loads(x)["errors"])
            for x in jsonl.stdout.splitlines()]
    assert [r["errors"] for r in rows] == want
    assert "age 11.5 is under 12" in rows[1]["errors"] and "age 40" in rows[3]["errors"]
    assert "first: row 1 (line 2), ice_score: not used for this patient: age 11.5" in \
        csv_out.stderr
