"""Accuracy statistics a report can stand behind: intervals for one accuracy and for a paired gain.

A gain of model B over model A (distilled over scratch) is estimated on the SAME held-out digits: each digit gives
d_i = correct_B - correct_A in {-1, 0, +1}, and the paired-difference normal interval mean(d) +- z * sd(d) / sqrt(n)
only pays for the digits the two models disagree on. A gain whose interval contains 0 is "within noise".

    g = paired_gain(scratch_correct, distilled_correct)
    print(g.describe("distilled - scratch"))   # "+0.84 pp (95 % CI +0.41 .. +1.27 pp, 5,000 paired digits)"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from edgekd_runtime.errors import UserInputError

DEFAULT_LEVEL = 0.95


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise UserInputError(f"confidence level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def _as_correct(correct: Sequence[bool] | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(correct)
    if a.ndim != 1 or a.size == 0:
        raise UserInputError(f"{what}: expected a non-empty 1-D vector of per-sample hits, got shape {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise UserInputError(f"{what}: per-sample hits must be 0/1 or booleans")
    return a.astype(np.float64)


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided confidence interval (fractions, not percent)."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = DEFAULT_LEVEL


def accuracy_interval(correct: Sequence[bool] | np.ndarray, level: float = DEFAULT_LEVEL) -> Interval:
    """Accuracy with its Wilson score interval (sound near 100 %, where the normal interval pokes above 1)."""
    c = _as_correct(correct, "accuracy")
    n, p, z = c.size, float(c.mean()), _z(level)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, level)


@dataclass(frozen=True)
class PairedGain:
    """acc(B) - acc(A) on the same samples, with its paired-difference interval."""

    acc_a: float
    acc_b: float
    gain: Interval
    b_only: int  # samples B gets right and A wrong
    a_only: int  # samples A gets right and B wrong

    @property
    def within_noise(self) -> bool:
        """True when the interval contains 0: the data cannot tell B from A."""
        return self.gain.low <= 0.0 <= self.gain.high

    def share_of_gap(self, acc_ref: float) -> float:
        """The share of the gap from A to a reference (the teacher) that B closes; NaN when A is not below it."""
        gap = acc_ref - self.acc_a
        return self.gain.estimate / gap if gap > 0 else float("nan")

    def describe(self, what: str = "gain") -> str:
        g = self.gain
        text = (f"{what}: {g.estimate * 100:+.2f} pp ({g.level * 100:.0f} % CI {g.low * 100:+.2f} .. "
                f"{g.high * 100:+.2f} pp, {g.n:,} paired samples, {self.b_only} won / {self.a_only} lost)")
        return text + (" - within noise: the data cannot tell the two apart" if self.within_noise else "")


def paired_gain(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray,
                level: float = DEFAULT_LEVEL) -> PairedGain:
    """acc(B) - acc(A) over the same samples, with the paired-difference normal interval (see the module doc).

    With no disagreements the interval collapses to the point (both models are equally right on every sample).
    """
    a, b = _as_correct(correct_a, "model A"), _as_correct(correct_b, "model B")
    if a.size != b.size:
        raise UserInputError(f"paired gain needs hits on the same samples: {a.size} for A, {b.size} for B")
    return _paired(float(a.mean()), float(b.mean()), b - a, level)


Hits = Sequence[bool] | np.ndarray


def seed_averaged_gain(correct_a: Sequence[Hits], correct_b: Sequence[Hits],
                       level: float = DEFAULT_LEVEL) -> PairedGain:
    """acc(B) - acc(A) averaged over training seeds: row j of each argument holds seed j's per-sample hits (the
    same samples, the same seeds). The interval is the paired one of the per-sample difference averaged over the
    seeds: it covers the held-out samples' noise of the seed-averaged gain; how far single seeds spread is each
    seed's own paired_gain. won/lost count the samples where B is right on more / fewer seeds than A."""
    if len(correct_a) != len(correct_b) or not correct_a:
        raise UserInputError(f"seed-averaged gain needs the same seeds for A and B: {len(correct_a)} and "
                             f"{len(correct_b)}")
    rows = [_as_correct(r, f"model {m}, seed {j}") for m, c in (("A", correct_a), ("B", correct_b))
            for j, r in enumerate(c)]
    if len({r.size for r in rows}) != 1:
        raise UserInputError(f"seed-averaged gain needs hits on the same samples for every seed and model, got "
                             f"{[r.size for r in rows]} samples")
    a, b = np.stack(rows[:len(correct_a)]), np.stack(rows[len(correct_a):])
    return _paired(float(a.mean()), float(b.mean()), (b - a).mean(0), level)


def _paired(acc_a: float, acc_b: float, d: np.ndarray, level: float) -> PairedGain:
    n, mean = d.size, float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else float("inf")
    half = _z(level) * se
    gain = Interval(mean, mean - half, mean + half, n, level)
    return PairedGain(acc_a, acc_b, gain, int((d > 0).sum()), int((d < 0).sum()))


def resolvable_gain(n: int, disagreement: float, level: float = DEFAULT_LEVEL) -> float:
    """The half-width of the paired interval for `n` samples when a `disagreement` share of them differ (a plan:
    how many digits a benchmark needs to resolve a gain)."""
    if n < 2 or not 0.0 <= disagreement <= 1.0:
        raise UserInputError(f"resolvable_gain needs n >= 2 and disagreement in [0, 1], got {n}, {disagreement}")
    return _z(level) * math.sqrt(disagreement) / math.sqrt(n)


def sign_test_p(b_only: int, a_only: int) -> float:
    """One-sided exact sign test on the digits exactly one model gets right: the chance of B being alone right on
    at least `b_only` of them if neither model were better (1.0 when they never disagree)."""
    if b_only < 0 or a_only < 0:
        raise UserInputError(f"sign test: counts must be >= 0, got {b_only} and {a_only}")
    n = b_only + a_only
    return sum(math.comb(n, k) for k in range(b_only, n + 1)) / 2 ** n if n else 1.0
