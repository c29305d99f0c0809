"""String confidence you can act on: temperature calibration and coverage vs accuracy (numpy only).

A line model's softmax is often over-confident. Temperature scaling (Guo et al. 2017, "On Calibration of Modern
Neural Networks") divides the CTC scores by one scalar T > 0 before the softmax: the argmax per frame, hence the
greedy reading, does not change, only how sure it says it is. `fit_temperature` picks T on the validation lines by
minimising the negative log-likelihood of "the reading is right" given the string confidence that
`edgekd_runtime.ctc_decode` computes from softmax(scores / T) (the very number `read()` returns), with a bounded
1-D golden-section search over log T.

`coverage_curve` answers the meter-reading question: reject the least confident x % of readings, how accurate is
the rest; `threshold_for` gives the lowest confidence threshold whose accepted readings reach a target accuracy.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .ctc_decode import greedy

REJECT_PERCENTS = (0, 1, 2, 5, 10, 20, 30, 50)  # the coverage curve's points: % of least confident reads rejected
T_BOUNDS = (0.05, 20.0)  # the temperature search interval
_EPS = 1e-6


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(scores / T) along the last axis, float32."""
    z = scores.astype(np.float32, copy=False) / np.float32(temperature)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def greedy_confidences(scores: np.ndarray, charset: str, temperature: float = 1.0,
                       blank: int = 0) -> tuple[list[str], np.ndarray]:
    """Greedy readings and their string confidences for CTC scores (N, T, C) at temperature T (the runtime's
    rule, `ctc_decode.greedy`)."""
    probs = softmax(scores, temperature)
    decoded = [greedy(p, charset, blank) for p in probs]
    return [d.text for d in decoded], np.array([d.confidence for d in decoded], np.float64)


def nll(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Mean negative log-likelihood of the outcomes `correct` (bool) under probabilities `confidence`."""
    p = np.clip(np.asarray(confidence, np.float64), _EPS, 1 - _EPS)
    y = np.asarray(correct, bool)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - mean confidence| over `bins` equal-width
    confidence bins (Naeini et al. 2015)."""
    p, y = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    if not len(p):
        return 0.0
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(p))


def fit_temperature(scores: np.ndarray, texts: Sequence[str], charset: str, blank: int = 0,
                    bounds: tuple[float, float] = T_BOUNDS, tol: float = 1e-3) -> float:
    """The T that minimises the NLL of "the greedy reading is right" given the string confidence at T, on CTC
    scores (N, T, C) of lines with their true `texts`. Golden-section search on log T within `bounds`, started from
    the best point of a coarse grid (the NLL need not be unimodal over the whole interval)."""
    readings, _ = greedy_confidences(scores, charset, 1.0, blank)
    correct = np.array([r == t for r, t in zip(readings, texts)])
    if correct.all() or not correct.any():
        return 1.0  # nothing to calibrate against: every reading right (or wrong)

    def loss(log_t: float) -> float:
        return nll(greedy_confidences(scores, charset, math.exp(log_t), blank)[1], correct)

    grid = np.linspace(math.log(bounds[0]), math.log(bounds[1]), 13)
    k = int(np.argmin([loss(g) for g in grid]))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = loss(d)
    return float(math.exp((a + b) / 2))


def coverage_curve(confidence: np.ndarray, correct: np.ndarray,
                   reject_percents: Sequence[float] = REJECT_PERCENTS) -> list[dict[str, float]]:
    """Per x in `reject_percents`: reject the round(x % of N) least confident readings (ties broken by order),
    the string accuracy of the rest and the lowest confidence kept."""
    p, y = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    order = np.argsort(-p, kind="stable")  # most confident first
    out = []
    for x in reject_percents:
        keep = order[:max(len(p) - int(round(len(p) * x / 100)), 1)] if len(p) else order
        out.append({"reject_percent": float(x), "coverage": float(len(keep) / max(len(p), 1)),
                    "accuracy": float(y[keep].mean()) if len(keep) else 0.0,
                    "min_confidence": float(p[keep].min()) if len(keep) else 0.0})
    return out


def threshold_for(confidence: np.ndarray, correct: np.ndarray, target: float) -> dict[str, float] | None:
    """The lowest confidence threshold t such that the readings with confidence >= t are at least `target`
    accurate (and their coverage), or None when no threshold reaches it."""
    p, y = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    order = np.argsort(-p, kind="stable")
    acc = np.cumsum(y[order]) / np.arange(1, len(p) + 1)
    ps = p[order]
    ok = [k for k in range(len(p)) if acc[k] >= target and (k + 1 == len(p) or ps[k + 1] < ps[k])]
    if not ok:
        return None
    k = ok[-1]
    return {"threshold": float(ps[k]), "coverage": float((k + 1) / len(p)), "accuracy": float(acc[k])}
