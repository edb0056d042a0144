"""A centre's protocol file checked like a prescription (spec section 4): every typo the
clinical review found is refused by `icans protocol check`, naming the field, and no command
starts with it (--protocol or ICANS_PROTOCOL)."""

import copy
import json

import pytest
from typer.testing import CliRunner

from icans_cli.cli import app
from icans_cli.core.protocol import Protocol, ProtocolError
from icans_cli.protocols import builtin_bytes

runner = CliRunner()


def base():
    d = json.loads(builtin_bytes("asco-2021"))
    d["id"] = "asco-2021-ward7"
    return d


def line_with(d, drug, section=None):
    """(index, line, dose name) of the first line holding a dose of this drug."""
    for i, line in enumerate(d["lines"]):
        for name, dose in (line.get("doses") or {}).items():
            if dose["drug"] == drug and (section is None or line["section"] == section):
                return i, line, name
    raise LookupError(drug)


def dex_line(d):
    return line_with(d, "dexamethasone", "corticosteroids")


def mutate_dex_100_mg(d):
    i, line, name = dex_line(d)
    line["doses"][name]["amount"] = 100
    return f"lines[{i}].doses.{name}.amount"


def mutate_methylpred_1000_g(d):
    i, line, name = next((i, x, n) for i, x in enumerate(d["lines"])
                         for n, dose in (x.get("doses") or {}).items()
                         if dose["drug"] == "methylprednisolone" and dose.get("per_day"))
    line["doses"][name]["unit"] = "g"
    return f"lines[{i}].doses.{name}.amount"


def mutate_methylpred_100_mg_kg(d):
    i, line, name = next((i, x, n) for i, x in enumerate(d["lines"])
                         for n, dose in (x.get("doses") or {}).items()
                         if dose["drug"] == "methylprednisolone" and dose.get("per_kg"))
    line["doses"][name]["amount"] = 100
    return f"lines[{i}].doses.{name}.amount"


def mutate_lorazepam_1_mg_kg(d):
    i, line, name = next((i, x, n) for i, x in enumerate(d["lines"])
                         for n, dose in (x.get("doses") or {}).items()
                         if dose["drug"] == "lorazepam" and dose.get("per_kg"))
    line["doses"][name]["amount"] = 1
    return f"lines[{i}].doses.{name}.amount"


def mutate_every_0_01_h(d):
    i, line, name = dex_line(d)
    line["doses"][name]["every_hours"] = 0.01
    return f"lines[{i}].doses.{name}.every_hours"


def mutate_dex_in_ml(d):
    i, line, name = dex_line(d)
    line["doses"][name]["unit"] = "mL"
    return f"lines[{i}].doses.{name}.unit"


def mutate_infinite(d):
    i, line, name = dex_line(d)
    line["doses"][name]["amount"] = "__INF__"  # written as 1e309, which JSON reads as inf
    return f"lines[{i}].doses.{name}"


def mutate_tocilizumab_band_round_the_cap(d):
    i, line, name = next((i, x, n) for i, x in enumerate(d["lines"])
                         for n, dose in (x.get("doses") or {}).items()
                         if dose["drug"] == "tocilizumab" and dose["amount"] == 12)
    line["weight"] = {"below_kg": 70}  # 12 mg/kg at 69.9 kg: 839 mg, over the 800 mg cap
    return f"lines[{i}].doses.{name}.max_amount"


def mutate_escape_in_text(d):
    d["lines"][0]["text"] = "No ICANS treatment at grade 0\x1b]0;pwned\x07; keep assessing."
    return "lines[0].text"


def mutate_escape_in_citation(d):
    d["sources"]["asco2021"]["short"] = "ASCO\x1b[2J"
    return "sources.asco2021.short"


TYPOS = {
    "dexamethasone 100 mg every 6 h": mutate_dex_100_mg,
    "methylprednisolone 1,000 g/day": mutate_methylpred_1000_g,
    "methylprednisolone 100 mg/kg": mutate_methylpred_100_mg_kg,
    "lorazepam 1 mg/kg": mutate_lorazepam_1_mg_kg,
    "every 0.01 h": mutate_every_0_01_h,
    "dexamethasone in mL": mutate_dex_in_ml,
    "1e309 (inf mg)": mutate_infinite,
    "tocilizumab band round the 800 mg cap": mutate_tocilizumab_band_round_the_cap,
    "escape sequence in a line": mutate_escape_in_text,
    "escape sequence in a source": mutate_escape_in_citation,
}


def write(tmp_path, d, name="ward7.json"):
    text = json.dumps(d).replace('"__INF__"', "1e309")
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("typo", TYPOS)
def test_protocol_check_refuses_each_dose_typo_naming_the_field(tmp_path, typo):
    d = base()
    field = TYPOS[typo](d)
    p = write(tmp_path, d)
    r = runner.invoke(app, ["protocol", "check", str(p)])
    assert r.exit_code == 2, r.output
    assert field in r.stderr, r.stderr
    assert "cannot be used" in r.stderr
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr  # never obeyed on the screen


@pytest.mark.parametrize("typo", TYPOS)
def test_a_protocol_with_a_dose_typo_never_starts_a_command(tmp_path, typo, monkeypatch):
    d = base()
    TYPOS[typo](d)
    p = write(tmp_path, d)
    csv_in = "patient_id,ice_score\nPT-1,5\n"
    r = runner.invoke(app, ["grade", "-", "--protocol", str(p)], input=csv_in)
    assert r.exit_code == 2 and "cannot be used" in r.stderr
    assert r.stdout == ""
    monkeypatch.setenv("ICANS_PROTOCOL", str(p))
    r = runner.invoke(app, ["grade", "-"], input=csv_in)
    assert r.exit_code == 2 and "cannot be used" in r.stderr


def test_outside_usual_range_with_its_reason_is_accepted_and_shown_beside_the_dose(tmp_path):
    d = base()
    i, line, name = next((i, x, n) for i, x in enumerate(d["lines"])
                         for n, dose in (x.get("doses") or {}).items()
                         if dose["drug"] == "dexamethasone" and x.get("grades") == [3]
                         and x.get("crs") == "no" and x.get("patient") == "adult")
    line["doses"][name]["amount"] = 40
    line["outside_usual_range"] = "ward 7 neuro-oncology: 40 mg for cerebral edema"
    p = write(tmp_path, d)
    assert runner.invoke(app, ["protocol", "check", str(p)]).exit_code == 0
    r = runner.invoke(app, ["grade", "-", "-p", str(p), "-f", "jsonl"],
                      input="patient_id,age_years,ice_score,crs_grade\nPT-1,50,2,0\n")
    row = json.loads(r.stdout)
    texts = [x for b in row["recommendation"]["branches"] for x in b["lines"]
             if x["dose"] and x["dose"]["drug"] == "dexamethasone" and x["start"] == "now"]
    assert texts and all("OUTSIDE THE USUAL RANGE: ward 7 neuro-oncology" in x["text"]
                         for x in texts)
    assert texts[0]["outside_usual_range"].startswith("ward 7")


def test_outside_usual_range_never_excuses_a_unit_an_interval_or_infinity(tmp_path):
    for mutate in (mutate_dex_in_ml, mutate_every_0_01_h, mutate_infinite):
        d = base()
        field = mutate(d)
        dex_line(d)[1]["outside_usual_range"] = "a reason"
        r = runner.invoke(app, ["protocol", "check", str(write(tmp_path, d))])
        assert r.exit_code == 2 and field in r.stderr


def test_a_drug_the_tool_has_no_range_for_needs_a_reason(tmp_path):
    d = base()
    i, line, name = dex_line(d)
    line["doses"][name]["drug"] = "ruxolitinib"
    r = runner.invoke(app, ["protocol", "check", str(write(tmp_path, d))])
    assert r.exit_code == 2 and f"lines[{i}].doses.{name}.drug" in r.stderr


def test_a_childs_per_kg_maximum_is_never_above_the_adult_cap():
    d = base()
    i, line, name = next((i, x, n) for i, x in enumerate(d["lines"])
                         for n, dose in (x.get("doses") or {}).items()
                         if dose["drug"] == "lorazepam" and dose.get("per_kg"))
    line["doses"][name]["max_amount"] = 8
    with pytest.raises(ProtocolError) as e:
        Protocol.from_dict(d)
    assert any(f"lines[{i}].doses.{name}.max_amount" in p and "adult cap" in p
               for p in e.value.problems)


@pytest.mark.parametrize("name", ["asco-2021", "cartox-2018"])
def test_the_built_in_protocols_pass_their_own_prescription_check(name):
    Protocol.from_dict(json.loads(builtin_bytes(name)))


def test_a_derived_line_that_names_a_guideline_is_refused():
    d = base()
    line = copy.deepcopy(d["lines"][0])
    line.update(evidence="D", source="asco2021",
                text="No ICANS treatment at grade 0 (derived by this tool).")
    d["lines"].append(line)
    with pytest.raises(ProtocolError) as e:
        Protocol.from_dict(d)
    assert any("derived (D) line's source must be the tool's own" in p
               for p in e.value.problems)
