"""Long output on a terminal goes through a pager; short output and output into a pipe never
do (issue 17). In a real pseudo-terminal, with PAGER pointed at a file in the test's folder."""

import os
import subprocess
import sys

import pytest

pexpect = pytest.importorskip("pexpect")
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")


def _spawn(tmp_path, *args, rows=24):
    paged = tmp_path / "paged.txt"
    env = dict(os.environ, PAGER=f"cat > '{paged}'", COLUMNS="80", LINES=str(rows),
               ICANS_DATA_DIR=str(tmp_path / "d"), TERM="xterm")
    child = pexpect.spawn(sys.executable, ["-m", "icans_cli", *args], env=env,
                          dimensions=(rows, 80), timeout=30)
    child.expect(pexpect.EOF)
    child.close()
    return child, paged


@POSIX
def test_a_long_explanation_on_a_terminal_goes_through_the_pager(tmp_path):
    child, paged = _spawn(tmp_path, "explain", "grading")
    assert child.exitstatus == 0
    text = paged.read_text()
    assert "ASTCT 2019 ICANS grading" in text and text.count("\n") > 24
    assert b"ASTCT 2019 ICANS grading" not in child.before  # not also dumped on the screen


@POSIX
def test_output_that_fits_the_screen_is_printed_without_a_pager(tmp_path):
    child, paged = _spawn(tmp_path, "explain", rows=60)
    assert child.exitstatus == 0 and not paged.exists()
    assert b"icans explain TOPIC" in child.before


def test_output_into_a_pipe_is_never_paged(tmp_path):
    paged = tmp_path / "paged.txt"
    r = subprocess.run([sys.executable, "-m", "icans_cli", "explain", "grading"],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PAGER=f"cat > '{paged}'",
                                ICANS_DATA_DIR=str(tmp_path / "d")))
    assert r.returncode == 0 and "ASTCT 2019 ICANS grading" in r.stdout
    assert not paged.exists()
