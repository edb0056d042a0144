"""Benchmark the assessment log. Run: python benchmarks/bench_log.py [--records 100000]

Prints, in one run:
- one append to a 1,000-record log against one append to a 100,000-record log (goal <= 1.2x:
  appending must not grow with the log);
- `history` of one patient over the large log against a bare json.loads-per-line scan of the
  same file (goal <= 1.5x);
- `verify` of the whole chain against the same scan (goal <= 3x);
- `icans log show -f jsonl` over a 20,000-record log against a 2,000-record one: peak memory
  (goal <= 1.3x: the reader streams) and its time against `icans log verify` of the same log
  (goal <= 2x), each in a fresh process writing into the benchmark's temporary directory;
- issue 18: `history` and `export fhir` of ONE patient with 50,000 records against 5,000 (peak
  memory, goal <= 1.3x), and `export fhir` of a 200 MB log against `log verify` of it (time,
  goal <= 2x). `--only issue18` runs just these, `--only export` the second alone;
  `--big-mb` sets the size of the big log.
Times are medians of repeated runs. This is a measurement, not a test: it never fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from icans_cli import log  # noqa: E402
from icans_cli.core.grading import Findings, grade_icans  # noqa: E402
from icans_cli.core.protocol import recommend  # noqa: E402
from icans_cli.history import annotate, patient_entries  # noqa: E402
from icans_cli.protocols import load  # noqa: E402
from icans_cli.records import assessment_record  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def bodies():
    """Eleven realistic record bodies (ICE 0-10), reused with varying patients and times."""
    out = []
    for ice in range(11):
        f = Findings(ice_score=ice, seizure="self_limited" if ice == 4 else "none")
        r = grade_icans(f)
        out.append(assessment_record(patient_id="X", assessor="nurse", source="batch",
                                     assessed_at=T0, findings=f, result=r,
                                     recommendation=recommend(load(), r, 0, "axi-cel"),
                                     crs_grade=0, product="axi-cel"))
    return out


def build(path: Path, n: int, patients: int) -> None:
    """Write n chained records fast (no fsync per record), exactly as append would."""
    templates = bodies()
    prev = ""
    with open(path, "wb") as fh:
        for i in range(n):
            b = dict(templates[i % 11])
            b["patient_id"] = f"PT-{i % patients:05d}"
            b["assessed_at"] = (T0 + timedelta(minutes=i)).isoformat()
            b.update(id=f"{i:032x}", recorded_at=b["assessed_at"], seq=i + 1, prev_sha256=prev)
            line = log.encode_record(b)
            fh.write(line + b"\n")
            prev = hashlib.sha256(line).hexdigest()
    path.chmod(0o600)


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bare_scan(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            json.loads(line)
            n += 1
    return n


COMMAND = """
import resource, sys
from icans_cli.cli import app
with open(sys.argv[1], "w") as out:
    sys.stdout = out
    try:
        app(sys.argv[2:])
    except SystemExit:
        pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""
ROOT = Path(__file__).resolve().parent.parent


def run_icans(out: Path, *args: str) -> tuple[float, int]:
    """(seconds, peak RSS in KB) of one icans command in a fresh process, output to `out`;
    compiled modules cached in the run's folder (as an install has them), never the project."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(out.parent / "pycache")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", COMMAND, str(out), *args], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "0"
    return elapsed, int(last) if last.isdigit() else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--patients", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=["issue18", "export"], default=None)
    ap.add_argument("--big-mb", type=float, default=200)
    args = ap.parse_args()
    if args.only == "issue18":
        issue18(args)
        return
    if args.only == "export":
        with tempfile.TemporaryDirectory() as d:
            export_vs_verify(args, Path(d))
        return
    template = bodies()[5]
    with tempfile.TemporaryDirectory() as d:
        small, large = Path(d) / "small.jsonl", Path(d) / "large.jsonl"
        build(small, 1_000, args.patients)
        build(large, args.records, args.patients)
        mb = large.stat().st_size / 1e6

        def app(p):
            return lambda: log.append(p, dict(template))

        # interleave so both sizes see the same disk and cache conditions
        t_small, t_large = [], []
        for _ in range(40):
            t_small.append(median_time(app(small), 1))
            t_large.append(median_time(app(large), 1))
        a_small, a_large = statistics.median(t_small), statistics.median(t_large)

        scan = median_time(lambda: bare_scan(large), args.repeat)
        patient = "PT-00007"
        needle = json.dumps(patient)

        def hist():
            entries = patient_entries(log.iter_records(large, None, needle), patient)
            annotate(entries, datetime.now(timezone.utc))
            assert entries

        t_hist = median_time(hist, args.repeat)
        t_verify = median_time(lambda: log.verify(large), max(3, args.repeat // 2))
        assert not log.verify(large).problems

        show_small, show_large = Path(d) / "show2k.jsonl", Path(d) / "show20k.jsonl"
        build(show_small, 2_000, args.patients)
        build(show_large, 20_000, args.patients)
        sink = Path(d) / "out.txt"
        rss, t_show, t_ver = {}, [], []
        for _ in range(args.repeat):  # interleaved, fresh processes
            t, m = run_icans(sink, "log", "show", "-f", "jsonl", "--log-file", str(show_large))
            t_show.append(t)
            rss["large"] = max(rss.get("large", 0), m)
            t_ver.append(run_icans(sink, "log", "verify", "--log-file", str(show_large))[0])
            rss["small"] = max(rss.get("small", 0), run_icans(
                sink, "log", "show", "-f", "jsonl", "--log-file", str(show_small))[1])
        s_show, s_ver = statistics.median(t_show), statistics.median(t_ver)

    print(f"log of {args.records:,} records ({mb:.1f} MB), {args.patients:,} patients; "
          f"medians")
    print(f"{'measure':44} {'time':>10} {'baseline':>10} {'ratio':>7} {'goal':>7}")
    rows = [
        ("append: 100k-record log vs 1k-record log", a_large, a_small, 1.2),
        ("history (1 patient) vs bare json.loads scan", t_hist, scan, 1.5),
        ("verify (whole chain) vs bare json.loads scan", t_verify, scan, 3.0),
    ]
    for name, t, base, goal in rows:
        ratio = t / base
        print(f"{name:44} {t*1000:8.2f}ms {base*1000:8.2f}ms {ratio:6.2f}x {goal:5.1f}x "
              f"{'ok' if ratio <= goal else 'OVER'}")
    print()
    print("icans log show -f jsonl, fresh processes")
    mem_ratio = rss["large"] / rss["small"]
    print(f"{'peak RSS: 20k-record log vs 2k-record log':44} {rss['large']/1024:8.1f}MB "
          f"{rss['small']/1024:8.1f}MB {mem_ratio:6.2f}x {1.3:5.1f}x "
          f"{'ok' if mem_ratio <= 1.3 else 'OVER'}")
    print(f"{'time: show vs verify, 20k-record log':44} {s_show*1000:8.1f}ms "
          f"{s_ver*1000:8.1f}ms {s_show/s_ver:6.2f}x {2.0:5.1f}x "
          f"{'ok' if s_show / s_ver <= 2.0 else 'OVER'}")

    print()
    issue18(args)


def issue18(args) -> None:
    """One patient's 50k records against 5k (memory), and export against verify on a big log."""
    with tempfile.TemporaryDirectory() as d:
        five, fifty = Path(d) / "p5k.jsonl", Path(d) / "p50k.jsonl"
        build(five, 5_000, 1)  # every record the same patient: PT-00000
        build(fifty, 50_000, 1)
        sink = Path(d) / "out.txt"
        print("one patient, fresh processes, peak RSS (medians of maxima)")
        print(f"{'measure':44} {'50k':>10} {'5k':>10} {'ratio':>7} {'goal':>7}")
        for name, cmd in (("history PT -f jsonl", ["history", "PT-00000", "-f", "jsonl"]),
                          ("history PT -f table", ["history", "PT-00000", "-f", "table"]),
                          ("export fhir --patient PT", ["export", "fhir", "--patient",
                                                        "PT-00000"])):
            big, small = [], []
            for _ in range(max(2, args.repeat // 2)):
                big.append(run_icans(sink, *cmd, "--log-file", str(fifty))[1])
                small.append(run_icans(sink, *cmd, "--log-file", str(five))[1])
            b, s_ = statistics.median(big), statistics.median(small)
            print(f"{name:44} {b/1024:8.1f}MB {s_/1024:8.1f}MB {b/s_:6.2f}x {1.3:5.1f}x "
                  f"{'ok' if b / s_ <= 1.3 else 'OVER'}")
        export_vs_verify(args, Path(d))


def export_vs_verify(args, d: Path) -> None:
    """`export fhir -o` of a big log against `log verify` of it: fresh processes, interleaved,
    after one untimed run of each (the modules compiled and the file cached)."""
    sink = d / "out.txt"
    big_log = Path(d) / "big.jsonl"
    per = len(log.encode_record(dict(bodies()[5], seq=1, prev_sha256="0" * 64,
                                      id="0" * 32, patient_id="PT-00000",
                                      recorded_at=T0.isoformat(),
                                      assessed_at=T0.isoformat()))) + 1
    n = int(args.big_mb * 1e6 / per)
    build(big_log, n, 1_000)
    mb = big_log.stat().st_size / 1e6
    t_exp, t_ver, rss_exp = [], [], []
    run_icans(sink, "log", "verify", "--log-file", str(big_log))
    run_icans(sink, "export", "fhir", "--log-file", str(big_log), "-o", str(d / "b.json"))
    for _ in range(max(3, args.repeat)):  # interleaved
        t, m = run_icans(sink, "export", "fhir", "--log-file", str(big_log), "-o",
                         str(Path(d) / "bundle.json"))
        t_exp.append(t)
        rss_exp.append(m)
        t_ver.append(run_icans(sink, "log", "verify", "--log-file", str(big_log))[0])
    e, v = statistics.median(t_exp), statistics.median(t_ver)
    print()
    print(f"a {mb:.0f} MB log ({n:,} records), fresh processes, medians")
    print(f"{'export fhir -o FILE vs log verify':44} {e:8.2f}s  {v:8.2f}s  {e/v:6.2f}x "
          f"{2.0:5.1f}x {'ok' if e / v <= 2.0 else 'OVER'}")
    ratios = sorted(a / b for a, b in zip(t_exp, t_ver))
    print(f"{'  each pair (export/verify)':44} " + " ".join(f"{r:.2f}x" for r in ratios))
    print(f"{'export fhir peak RSS':44} {statistics.median(rss_exp)/1024:8.1f}MB")


if __name__ == "__main__":
    main()
