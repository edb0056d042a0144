"""End-to-end interviews in a real pseudo-terminal (pexpect), as a clinician would type them:
a first assessment, then a routine unchanged reassessment whose keystrokes are counted, with
the details one keypress away at the save prompt."""

import json
import os
import sys

import pexpect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Keys:
    """Sends keys to the child and counts them (a keystroke is one key press)."""

    def __init__(self, child):
        self.child = child
        self.count = 0

    def press(self, *keys):
        for k in keys:
            self.child.send(k)
            self.count += 1


def spawn(tmp_path, logf, *args, rows=24):
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm-256color", COLUMNS="80",
               LINES=str(rows), ICANS_DATA_DIR=str(tmp_path))
    env.pop("NO_COLOR", None)
    return pexpect.spawn(sys.executable, ["-m", "icans_cli", "assess", "--assessor", "nurse-b",
                                          "--log-file", str(logf), *args],
                         cwd=ROOT, env=env, encoding="utf-8", timeout=20,
                         dimensions=(rows, 80))


def test_first_assessment_then_reassessment_in_ten_keys_or_fewer(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    child = spawn(tmp_path, logf, "--patient", "PT-PTY")
    try:
        child.expect("Age in years")
        child.send("45\r")
        child.expect("Weight in kg")
        child.send("72\r")
        child.expect("developmental delay")
        child.send("n\r")
        child.expect("CAR-T product")
        child.send("a\r")
        child.expect("sedating drug")
        child.send("n\r")
        child.expect("Level of consciousness")
        child.send("\r")
        child.expect("ICE: mark each task")
        child.send("a")  # all ten
        child.send(" ")  # ... then un-mark the first (year): ICE 9
        child.send("\r")
        child.expect("ICE 9/10")
        child.expect("Seizure since")
        child.send("\r")
        child.expect("Motor")
        child.send("\r")
        child.expect("edema")
        child.send("\r")
        child.expect("NOT graded")
        child.send("\r")
        child.expect("Concurrent CRS")
        child.send("k\r")
        child.expect("Current ASTCT CRS grade")
        child.send("0\r")
        child.expect("Accept: ICANS grade 1")
        child.send("\r")
        child.expect("ICANS GRADE 1")
        child.expect("treating team decide")
        child.expect("Save to the log")
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

    # The routine reassessment, unchanged but for a perfect ICE: keys counted.
    child = spawn(tmp_path, logf, "--patient", "PT-PTY")
    keys = Keys(child)
    try:
        child.expect("Same patient details as last time")
        keys.press("\r")
        child.expect("sedating drug")
        keys.press("n", "\r")  # typed out, though Enter alone keeps last time's "no"
        child.expect("Level of consciousness")
        keys.press("\r")
        child.expect("ICE: mark each task")
        keys.press("a", "\r")
        child.expect("All of these the same now")
        keys.press("\r")
        child.expect("Accept: ICANS grade 0")
        keys.press("\r")
        child.expect("ICANS GRADE 0")
        child.expect("Save to the log")
        keys.press("d")  # the details, one keypress away
        child.expect("Domains")
        child.expect("Why this grade")
        child.expect("ICANS GRADE 0")  # the summary again, above the prompt
        child.expect("Save to the log")
        keys.press("y")
        child.expect("Saved as record")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert keys.count <= 10, keys.count
    second = json.loads(logf.read_text().splitlines()[1])
    assert second["result"]["icans_grade"] == 0 and second["findings"]["weight_kg"] == 72
