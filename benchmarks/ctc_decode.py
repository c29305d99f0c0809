"""CTC decoding speed on the board's side: greedy vs constrained prefix beam search on one (48, 11) line.

    .venv/bin/python benchmarks/ctc_decode.py [--runs 2000] [--json]

The input imitates a line model's softmax output at the reference width (192 px -> 48 frames, 10 digits + blank):
an 8-digit string, one spike frame per digit (sometimes two), blanks between, and for a third of the characters a
runner-up class at 5-35 % (what real students show on unsure digits). Reports the median time per call of
`greedy`, of the unconstrained `beam_search` and of `decode` with a few constraints (compiled once, as a reader
does), plus the one-off compile time (readers cache compiled constraints). Targets: greedy < 0.1 ms, constrained
search <= 5 ms; exit 1 if missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from edgekd_runtime import ctc_decode
from edgekd_runtime.ctc_decode import beam_search, compile_constraint, decode, greedy

DIGITS = "0123456789"
TARGET_GREEDY_MS, TARGET_BEAM_MS = 0.1, 5.0


def line_probs(seed: int, frames: int = 48, chars: int = 8) -> np.ndarray:
    """A peaky (frames, 11) softmax output holding `chars` random digits."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (frames, 11))
    logits[:, 0] += 8.0
    spots = np.sort(rng.choice(np.arange(2, frames - 2, 5), chars, replace=False))
    for t in spots:
        c = int(rng.integers(1, 11))
        for dt in range(1 + int(rng.random() < 0.3)):
            logits[t + dt, c] += 16.0
            if rng.random() < 0.33:  # an unsure digit: a runner-up class
                logits[t + dt, 1 + (c % 10)] += 16.0 + rng.uniform(-3.0, -0.5)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    inputs = [line_probs(s) for s in range(8)]
    patterns = {"\\d{8}": dict(pattern="\\d{8}"), "\\d{6,10}": dict(pattern="\\d{6,10}"),
                "allowed 0-7, len 8": dict(allowed="01234567", min_len=8, max_len=8),
                "(19|20)\\d\\d\\d{4}": dict(pattern="(19|20)\\d\\d\\d{4}")}
    rows: dict[str, float] = {}
    per = max(1, args.runs // len(inputs))
    rows["greedy"] = max(median_ms(lambda p=p: greedy(p, DIGITS), per) for p in inputs)
    rows["beam, no constraint"] = max(median_ms(lambda p=p: beam_search(p, DIGITS), per // 4 or 1) for p in inputs)
    for name, kw in patterns.items():
        c = compile_constraint(DIGITS, **kw)
        rows[f"beam, {name}"] = max(median_ms(lambda p=p, c=c: decode(p, DIGITS, c), per // 4 or 1) for p in inputs)
    ctc_decode._compiled.cache_clear()  # time the compilation itself, not the cache
    t0 = time.perf_counter()
    for kw in patterns.values():
        compile_constraint(DIGITS, **kw)
    compile_ms = (time.perf_counter() - t0) * 1e3 / len(patterns)
    ok = rows["greedy"] < TARGET_GREEDY_MS and max(v for k, v in rows.items() if k != "greedy") <= TARGET_BEAM_MS
    if args.json:
        print(json.dumps({"ms_per_line": rows, "compile_ms": compile_ms, "targets_met": ok}, indent=2))
    else:
        print("(48, 11) line, median ms per call (worst of 8 lines):")
        for k, v in rows.items():
            print(f"  {k:28s} {v:8.4f}")
        print(f"  {'compile a constraint':28s} {compile_ms:8.4f}")
        print("targets met" if ok else f"target missed (greedy < {TARGET_GREEDY_MS} ms, beam <= {TARGET_BEAM_MS} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
