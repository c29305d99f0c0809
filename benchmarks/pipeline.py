"""Wall time of `edgekd run` on the embedded default, with --quick and with the defaults (issues #6 and #12).

Targets on the 2-core development machine, for both tasks (`--task digits`, the default, and `--task lines`):
--quick <= 120 s, defaults <= 600 s. Prints each run's wall time, the ratio to its target, the CPU time the run
used (user + system of the child; on a shared machine the wall time is inflated by the other processes, and the
load average is printed to say how much), and the report's headline numbers (digits: teacher / scratch /
distilled accuracy; lines: CER and string accuracy, the 8-character line's predicted and measured latency; the
deployed artifact through edgekd_runtime, checks).

    .venv/bin/python benchmarks/pipeline.py                             # both digit runs (about 4 minutes here)
    .venv/bin/python benchmarks/pipeline.py --task lines                # both line runs (about 10 minutes)
    .venv/bin/python benchmarks/pipeline.py --task lines --only quick   # the --quick run alone
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS_S = {"quick": 120.0, "default": 600.0}


def run(kind: str, out: Path, task: str) -> tuple[float, float, int, dict]:
    """(wall s, CPU s of the child, exit code, report.json)."""
    cmd = [sys.executable, "-m", "edgekd", "run", "--task", task, "--out", str(out)]
    cmd += ["--quick"] if kind == "quick" else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rep = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    if proc.returncode not in (0, 1) or not rep:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return wall, cpu, proc.returncode, rep


def lines_headline(rep: dict) -> str:
    pct = lambda x: "—" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    m = {r["role"]: r for r in rep.get("models", [])}
    parts = [f"{r} CER {pct(m.get(r, {}).get('test_cer'))} / string {pct(m.get(r, {}).get('test_string_accuracy'))}"
             for r in ("teacher", "scratch", "distilled")]
    dep, lat = rep.get("deployed", {}), rep.get("line_latency") or {}
    failed = [c["name"] for c in rep.get("checks", []) if not c["ok"]]
    return (f"student {(rep.get('budget') or {}).get('chosen')}; " + "; ".join(parts)
            + f"; deployed {dep.get('path')} CER {pct(dep.get('cer'))} / string {pct(dep.get('string_accuracy'))}; "
            f"8-char line {lat.get('predicted_board_ms', 0):.3f} ms predicted on {lat.get('board')}, "
            f"{lat.get('measured_inference_ms') or 0:.3f} ms measured here; checks: "
            f"{'all passed' if not failed else 'FAILED ' + ', '.join(failed)}")


def headline(rep: dict) -> str:
    if rep.get("task") == "lines":
        return lines_headline(rep)
    acc = {m["role"]: m.get("test_accuracy") for m in rep.get("models", [])}
    dep = rep.get("deployed", {})
    failed = [c["name"] for c in rep.get("checks", []) if not c["ok"]]
    chosen = (rep.get("budget") or {}).get("chosen")
    return (f"student {chosen}; teacher {100 * acc.get('teacher', 0):.2f}%, "
            f"scratch {100 * acc.get('scratch', 0):.2f}%, "
            f"distilled {100 * acc.get('distilled', 0):.2f}%; deployed {dep.get('path')} "
            f"{100 * dep.get('accuracy', 0):.2f}%; checks: "
            f"{'all passed' if not failed else 'FAILED ' + ', '.join(failed)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(TARGETS_S), help="run just one of the two")
    ap.add_argument("--task", choices=("digits", "lines"), default="digits", help="the task to run (default digits)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories and print where")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgekd-pipeline-bench-"))
    ok = True
    try:
        for kind in ([args.only] if args.only else ["quick", "default"]):
            load = os.getloadavg()[0]
            wall, cpu, rc, rep = run(kind, tmp / kind, args.task)
            ratio = wall / TARGETS_S[kind]
            ok &= ratio <= 1.0 and rc == 0
            print(f"edgekd run --task {args.task} {'--quick' if kind == 'quick' else '(defaults)'}: {wall:.1f} s, "
                  f"target {TARGETS_S[kind]:.0f} s, ratio {ratio:.2f} {'ok' if ratio <= 1 else 'MISSED'}; exit code "
                  f"{rc}; CPU {cpu:.1f} s; load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
                  f"CPUs")
            if rep:
                print(f"  {headline(rep)}")
    finally:
        if args.keep:
            print(f"run directories kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
