"""Error rates of text lines: edit distance and character error rate (CER), numpy-free pure Python.

The one definition the converters' sequence parity and the runtime use (training measures the same quantity with
rapidfuzz, `edgekd.train.ctc_metrics`): CER = total edit distance / total reference characters.
"""

from __future__ import annotations

from typing import Sequence


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Sum of edit distances / sum of reference lengths (0.0 for empty references that are read as empty)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    chars = sum(len(r) for r in refs)
    errors = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
    return errors / chars if chars else float(errors > 0)


def string_accuracy(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Share of lines read exactly."""
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"need as many hypotheses as references (>0); got {len(refs)} and {len(hyps)}")
    return sum(r == h for r, h in zip(refs, hyps)) / len(refs)
