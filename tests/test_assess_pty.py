"""End-to-end interviews in a real pseudo-terminal (pexpect), as a clinician would type them:
a first assessment, then a routine unchanged reassessment whose keystrokes are counted, with
the details one keypress away at the save prompt; Enter pressed through an interview saves
nothing; a key that is not an answer says so on the screen."""

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32",
                                reason="a POSIX pseudo-terminal (pexpect.spawn)")


import json
import os

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
    # PAGER=cat: the details (d) go through the pager on a terminal; cat shows them at once
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm-256color", COLUMNS="80",
               LINES=str(rows), ICANS_DATA_DIR=str(tmp_path), PAGER="cat")
    env.pop("NO_COLOR", None)
    return pexpect.spawn(sys.executable, ["-m", "icans_cli", "assess", "--assessor", "nurse-b",
                                          "--log-file", str(logf), *args],
                         cwd=ROOT, env=env, encoding="utf-8", timeout=20,
                         dimensions=(rows, 80))


def first_assessment(tmp_path, logf, patient="PT-0042"):
    """A first assessment of an adult with ICE 7/10 (grade 1), saved."""
    child = spawn(tmp_path, logf, "--patient", patient)
    try:
        child.expect("Age in years")
        child.send("45\r")
        child.expect("Weight in kg")
        child.send("72\r")
        child.expect("developmental delay")
        child.send("n")
        child.expect("CAR-T product")
        child.send("a")
        child.expect("sedating drug")
        child.send("n")
        child.expect("Level of consciousness")
        child.send("0")
        child.expect("Tick the tasks")
        child.send("c")
        child.expect("ICE: tick each task")
        child.send("a")  # all ten ...
        child.send(" \x1b[B \x1b[B ")  # ... then un-tick year, month, city: ICE 7
        child.send("\r")
        child.expect("ICE 7/10")
        child.expect("Seizure since")
        child.send("0")
        child.expect("Motor")
        child.send("0")
        child.expect("edema")
        child.send("n")
        child.expect("NOT graded")
        child.send("n")
        child.expect("Concurrent CRS")
        child.send("k")
        child.expect("Current ASTCT CRS grade")
        child.send("0")
        child.expect("Accept: ICANS grade 1")
        child.send("a")
        child.expect("ICANS GRADE 1")
        child.expect("treating team decide")
        child.expect("Save to the log")
        child.send("y")
        child.expect("Saved as record")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


@pytest.mark.slow
def test_first_assessment_then_unchanged_ice_7_reassessment_in_ten_keys_or_fewer(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    first_assessment(tmp_path, logf)
    (line,) = logf.read_text().splitlines()
    rec = json.loads(line)
    assert rec["patient_id"] == "PT-0042" and rec["result"]["icans_grade"] == 1
    assert rec["result"]["ice_score"] == 7
    assert rec["findings"]["product"] == "axi-cel" and rec["findings"]["weight_kg"] == 72

    # The routine reassessment, all unchanged with ICE 7/10: keys counted from the command.
    child = spawn(tmp_path, logf, "--patient", "PT-0042")
    keys = Keys(child)
    try:
        child.expect("Patient details: the same as last time")
        keys.press("s")
        child.expect("sedating drug")
        keys.press("n")
        child.expect("Level of consciousness")
        keys.press("0")
        child.expect("Same as last time: ICE 7: missed Year, Month, City")
        keys.press("s")
        child.expect("the same as last time")
        keys.press("s")
        child.expect("Accept: ICANS grade 1")
        keys.press("a")
        child.expect("ICANS GRADE 1")
        child.expect("Save to the log")
        keys.press("d")  # the details, one keypress away
        child.expect("Domains")
        child.expect("Why this grade")
        child.expect("ICANS GRADE 1")  # the summary again, above the prompt
        child.expect("Save to the log")
        keys.press("y")
        child.expect("Saved as record")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert keys.count <= 10, keys.count
    second = json.loads(logf.read_text().splitlines()[1])
    assert second["result"]["icans_grade"] == 1 and second["result"]["ice_score"] == 7
    assert second["findings"]["weight_kg"] == 72


def words(text):
    """A pattern for text on a screen that prompt_toolkit redraws by difference: the spaces
    between words may come as cursor moves."""
    import re

    return r"(?:\s|\x1b\[\d*C)+".join(re.escape(w) for w in text.split())


def _enter_through(child, says, times=30):
    for _ in range(times):
        child.send("\r")
    child.expect(words(says))


@pytest.mark.slow
def test_30_enters_through_a_reassessment_save_nothing(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    first_assessment(tmp_path, logf)
    before = logf.read_bytes()
    child = spawn(tmp_path, logf, "--patient", "PT-0042")
    try:
        child.expect("Patient details: the same as last time")
        _enter_through(child, "Enter is not an answer here")
        child.sendcontrol("c")
        child.expect("nothing was saved")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
    assert logf.read_bytes() == before  # no grade 3 (nor anything) saved


@pytest.mark.slow
def test_30_enters_through_a_new_assessment_save_nothing(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    child = spawn(tmp_path, logf, "--patient", "PT-0043")
    try:
        child.expect("Age in years")
        _enter_through(child, "Enter alone is not an answer")  # the age is asked again
        child.sendcontrol("c")
        child.expect("nothing was saved")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
    assert not logf.exists() or logf.read_text() == ""


@pytest.mark.slow
def test_a_key_that_is_not_an_answer_says_so_on_the_screen(tmp_path):
    logf = tmp_path / "assessments.jsonl"
    child = spawn(tmp_path, logf, "--patient", "PT-0044", "--age", "50", "--weight", "70")
    try:
        child.expect("developmental delay")
        child.send("n")
        child.expect("CAR-T product")
        child.send("n")
        child.expect("sedating drug")
        child.send("n")
        child.expect("Level of consciousness")
        child.send("0")
        child.expect("Tick the tasks")
        child.send("t")
        child.expect("ICE total")
        child.send("10\r")
        child.expect("Seizure since last check")
        child.send("y")  # not an answer: said so, and nothing recorded
        child.expect(words("'y' is not an answer here: press 0, 3, 4 or e"))
        child.send("\r")
        # (the screen is redrawn by difference: letters that stay in place are not resent)
        child.expect("Enter is not an answer")
        child.sendcontrol("c")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
