"""Benchmark `icans grade`. Run: python benchmarks/bench_grade.py [--rows 200000]
[--baseline REV]

Prints, in one run:
- the time of `icans grade FILE --format csv` on N realistic rows against a bare
  csv.reader -> csv.writer passthrough of the same file, as a ratio (the issue's ceiling:
  2.7x), and the same with --jobs 1 (one process; the default grades the second half of a
  large plain file in a second process when the machine has two processors); with --baseline
  REV (a git revision, e.g. a03fb28), the same for that revision's code, measured in the same
  run, paired with it (passthrough, baseline, current, current --jobs 1, then again);
- the peak memory (max RSS, the higher of the two processes) of `icans grade` at 10,000 and
  1,000,000 rows (goal: within 1.3x), with and without --jobs 1.
Each measurement runs in its own fresh process; times are medians. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["patient_id", "assessed_at", "age_years", "developmental_delay", "ice_orientation",
          "ice_naming", "ice_commands", "ice_writing", "ice_attention", "ice_score",
          "capd_score", "consciousness", "seizure", "motor", "icp_edema", "excluded", "sedated",
          "crs_grade", "product", "ward"]
PRODUCTS = ["axi-cel", "brexu-cel", "tisa-cel", "liso-cel", "ide-cel", "cilta-cel", ""]


def generate(path: Path, n: int, seed: int = 7) -> None:
    """Rows shaped like a ward's export: mostly well adults, some ICANS, some children,
    a few sedated, a few bad rows."""
    rnd = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(n):
            child = rnd.random() < 0.08
            age = rnd.randint(1, 11) if child else rnd.choice(["", rnd.randint(12, 85)])
            ice = capd = ""
            items = ["", "", "", "", ""]
            if child:
                capd = rnd.choice([0, 0, 2, 5, 8, 9, 12, 20])
            elif rnd.random() < 0.5:
                items = [rnd.choice([4, 4, 4, 3, 2]), rnd.choice([3, 3, 2, 1]),
                         rnd.choice([1, 1, 0]), rnd.choice([1, 1, 0]), rnd.choice([1, 0])]
            else:
                ice = rnd.choice([10, 10, 10, 9, 8, 7, 6, 4, 2, 0])
            cons = rnd.choices(["", "alert", "spontaneous", "voice", "tactile"],
                               [60, 20, 10, 7, 3])[0]
            sedated = "yes" if rnd.random() < 0.02 else ""
            if rnd.random() < 0.003:
                ice = 11  # a bad row
            w.writerow([
                f"PT-{i % 5000:05d}", f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00+00:00", age,
                "", *items, ice, capd, cons,
                rnd.choices(["", "none", "self_limited", "prolonged"], [85, 10, 4, 1])[0],
                rnd.choices(["", "focal_weakness"], [99, 1])[0],
                rnd.choices(["", "focal_edema", "diffuse_edema;papilledema"], [97, 2, 1])[0],
                rnd.choices(["", "tremor", "myoclonus"], [90, 7, 3])[0],
                sedated, rnd.choice(["", 0, 0, 1, 2, 3]), rnd.choice(PRODUCTS),
                rnd.choice(["7A", "7B", "ICU"]),
            ])


PASSTHROUGH = """
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as fi, open(sys.argv[2], "w", newline="") as fo:
    w = csv.writer(fo)
    for row in csv.reader(fi):
        w.writerow(row)
"""

GRADE = """
import resource, sys
from icans_cli.cli import app
try:
    app(["grade", sys.argv[1], "--format", "csv", "-o", sys.argv[2], *sys.argv[3:]])
except SystemExit:
    pass
# the peak of this process and of the second process (--jobs 2), whichever is higher
print(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss), file=sys.stderr)
"""
BASELINE_GRADE = GRADE.replace(", *sys.argv[3:]", "")  # a revision without --jobs


def run(code: str, src: Path, dst: Path, path: Path | None = None,
        extra: tuple[str, ...] = ()) -> tuple[float, int]:
    import os

    # compiled modules cached as an installed package has them (pip writes them), in the
    # run's own folder (next to dst), never in the project: a run then measures no compiling
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(dst.parent / "pycache")
    if path is not None:  # another revision's package, first on the path
        env["PYTHONPATH"] = str(path)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, str(src), str(dst), *extra],
                       cwd=path or ROOT, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "0"
    return elapsed, int(last) if last.isdigit() else 0


def checkout(rev: str, into: Path) -> Path:
    """The icans_cli package of a git revision, extracted into a folder of the run's own."""
    data = subprocess.run(["git", "archive", rev, "icans_cli"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=data, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory-rows", type=int, nargs=2, default=[10_000, 1_000_000])
    ap.add_argument("--baseline", metavar="REV", help="a git revision to measure beside")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.csv", Path(d) / "out.csv"
        base = None
        if args.baseline:
            base = checkout(args.baseline, Path(d) / "baseline")
        generate(src, args.rows)
        mb = src.stat().st_size / 1e6
        t_pass, t_grade, t_base, t_one = [], [], [], []
        run(GRADE, src, dst)  # compile once (cached in the run's folder), as an install has
        if base is not None:
            run(BASELINE_GRADE, src, dst, base)
        for _ in range(args.repeat):  # interleaved, fresh process each
            t_pass.append(run(PASSTHROUGH, src, dst)[0])
            if base is not None:
                t_base.append(run(BASELINE_GRADE, src, dst, base)[0])
            t_grade.append(run(GRADE, src, dst)[0])
            t_one.append(run(GRADE, src, dst, extra=("--jobs", "1"))[0])
        tp, tg = statistics.median(t_pass), statistics.median(t_grade)
        mem, mem_one = [], []
        for n in args.memory_rows:
            generate(src, n)
            mem.append(run(GRADE, src, dst)[1])
            mem_one.append(run(GRADE, src, dst, extra=("--jobs", "1"))[1])
    print(f"{args.rows:,} rows ({mb:.1f} MB); medians of {args.repeat} fresh processes, paired")
    print(f"csv passthrough baseline   {tp:7.2f} s")
    if t_base:
        tb = statistics.median(t_base)
        print(f"icans grade at {args.baseline:<11} {tb:7.2f} s   ratio {tb / tp:5.2f}x")
    print(f"icans grade (this tree)    {tg:7.2f} s   ratio {tg / tp:5.2f}x   (ceiling 2.7x) "
          f"{'ok' if tg / tp <= 2.7 else 'OVER'}")
    to = statistics.median(t_one)
    print(f"  the same with --jobs 1     {to:7.2f} s   ratio {to / tp:5.2f}x   (one process)")
    print("  pairs (this tree / passthrough): "
          + " ".join(f"{g / p:.2f}" for g, p in zip(t_grade, t_pass)))
    small, large = args.memory_rows
    for label, m in (("(higher of the two processes)", mem), ("(--jobs 1)", mem_one)):
        print(f"peak RSS {label}")
        print(f"  at {small:>9,} rows  {m[0] / 1024:7.1f} MB")
        print(f"  at {large:>9,} rows  {m[1] / 1024:7.1f} MB")
        print(f"  ratio               {m[1] / m[0]:7.2f}x   (goal <= 1.3x) "
              f"{'ok' if m[1] / m[0] <= 1.3 else 'OVER'}")


if __name__ == "__main__":
    main()
