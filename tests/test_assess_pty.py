"""One end-to-end interview in a real pseudo-terminal (pexpect), as a clinician would type it."""

import json
import os
import sys

import pexpect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_full_interview_in_a_real_terminal(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm-256color", COLUMNS="110",
               LINES="40", ICANS_DATA_DIR=str(tmp_path))
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "icans_cli", "assess", "--patient", "PT-PTY",
                                           "--assessor", "nurse-b", "--log-file", str(logf)],
                          cwd=ROOT, env=env, encoding="utf-8", timeout=20,
                          dimensions=(40, 110))
    try:
        child.expect("Age in years")
        child.send("45\r")
        child.expect("Weight in kg")
        child.send("72\r")
        child.expect("developmental delay")
        child.send("n")
        child.expect("SEDATING DRUG")
        child.send("n")
        child.expect("Level of consciousness")
        child.send("\r")
        child.expect("orientation")
        child.send("a\r")
        child.expect("naming")
        child.send("a\r")
        child.expect("command")
        child.send("y")
        child.expect("writing")
        child.send("n")
        child.expect("attention")
        child.send("y")
        child.expect("ICE 9/10")
        child.expect("Seizures")
        child.send("\r")
        child.expect("Motor")
        child.send("\r")
        child.expect("edema")
        child.send("\r")
        child.expect("NOT graded")
        child.send("\r")
        child.expect("Concurrent CRS")
        child.send("1\r")
        child.expect("Current ASTCT CRS grade")
        child.send("0\r")
        child.expect("product")
        child.send("1\r")
        child.expect("Accept: ICANS grade 1")
        child.send("\r")
        child.expect("ICANS GRADE 1")
        child.expect("treating team decide")
        child.expect("Save this assessment")
        child.send("y")
        child.expect("Saved as record")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    (line,) = logf.read_text().splitlines()
    rec = json.loads(line)
    assert rec["patient_id"] == "PT-PTY" and rec["result"]["icans_grade"] == 1
    assert rec["findings"]["product"] == "axi-cel" and rec["findings"]["weight_kg"] == 72
