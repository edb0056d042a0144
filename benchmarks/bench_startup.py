"""Benchmark startup. Run: python benchmarks/bench_startup.py [--repeat 15]

Prints, in one run:
- `icans --help` against a minimal two-command typer app run by the same interpreter
  (goal <= 1.15x);
- the time from launching `icans assess` in a pseudo-terminal to its first prompt
  (goal < 0.3 s on this machine).
Medians of fresh processes. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = '''
import typer
app = typer.Typer(add_completion=False)

@app.command()
def one(name: str = "x") -> None:
    """First command."""

@app.command()
def two(count: int = 1) -> None:
    """Second command."""

app()
'''

ICANS = "from icans_cli.cli import main; main()"


def time_help(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, capture_output=True,
                       check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_first_prompt(repeat: int) -> float:
    import pexpect

    times = []
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", ICANS_DATA_DIR=d, TERM="xterm")
        for _ in range(repeat):
            t = time.perf_counter()
            child = pexpect.spawn(sys.executable, ["-m", "icans_cli", "assess"], cwd=ROOT,
                                  env=env, encoding="utf-8", timeout=20)
            child.expect("Patient pseudonym")
            times.append(time.perf_counter() - t)
            child.sendcontrol("c")
            child.expect(pexpect.EOF)
            child.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    time_help(ICANS, 2)  # warm the file cache for both
    time_help(MINIMAL, 2)
    mins, icans = [], []
    for _ in range(args.repeat):  # interleaved
        mins.append(time_help(MINIMAL, 1))
        icans.append(time_help(ICANS, 1))
    m, i = statistics.median(mins), statistics.median(icans)
    prompt = time_first_prompt(max(5, args.repeat // 2))
    print(f"medians of {args.repeat} fresh processes")
    print(f"icans --help                 {i * 1000:7.1f} ms")
    print(f"minimal typer app --help     {m * 1000:7.1f} ms")
    print(f"ratio                        {i / m:7.2f}x   (goal <= 1.15x) "
          f"{'ok' if i / m <= 1.15 else 'OVER'}")
    print(f"icans assess: first prompt   {prompt * 1000:7.1f} ms   (goal < 300 ms) "
          f"{'ok' if prompt < 0.3 else 'OVER'}")


if __name__ == "__main__":
    main()
