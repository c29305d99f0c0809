"""Wall time of `edgekd run` on the embedded default, with --quick and with the defaults (issue #6).

Targets on the 2-core development machine: --quick <= 120 s, defaults <= 600 s. Prints each run's wall time, the
ratio to its target, and the report's headline numbers (teacher / scratch / distilled accuracy, the deployed
artifact and its accuracy through edgekd_runtime, checks).

    .venv/bin/python benchmarks/pipeline.py                 # both runs (about 12 minutes here)
    .venv/bin/python benchmarks/pipeline.py --only quick    # the --quick run alone
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS_S = {"quick": 120.0, "default": 600.0}


def run(kind: str, out: Path) -> tuple[float, int, dict]:
    cmd = [sys.executable, "-m", "edgekd", "run", "--out", str(out)] + (["--quick"] if kind == "quick" else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rep = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    if proc.returncode not in (0, 1) or not rep:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return wall, proc.returncode, rep


def headline(rep: dict) -> str:
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
    ap.add_argument("--keep", action="store_true", help="keep the run directories and print where")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgekd-pipeline-bench-"))
    ok = True
    try:
        for kind in ([args.only] if args.only else ["quick", "default"]):
            wall, rc, rep = run(kind, tmp / kind)
            ratio = wall / TARGETS_S[kind]
            ok &= ratio <= 1.0 and rc == 0
            print(f"edgekd run {'--quick' if kind == 'quick' else '(defaults)'}: {wall:.1f} s, target "
                  f"{TARGETS_S[kind]:.0f} s, ratio {ratio:.2f} {'ok' if ratio <= 1 else 'MISSED'}; exit code {rc}")
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
