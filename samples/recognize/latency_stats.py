"""Latency summary for a run of predictions: count, p50, p99, mean and max in milliseconds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence


def percentile(values_ms: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default); NaN if empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q} is outside 0..100")
    if not values_ms:
        return math.nan
    ordered = sorted(values_ms)
    rank = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> "LatencySummary":
        if not values_ms:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(len(values_ms), percentile(values_ms, 50), percentile(values_ms, 99),
                   sum(values_ms) / len(values_ms), max(values_ms))

    def to_dict(self) -> dict:
        """JSON-ready; NaN (no samples) becomes null."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        if not self.count:
            return "no latencies"
        return (f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, mean {self.mean_ms:.2f} ms, "
                f"max {self.max_ms:.2f} ms")
