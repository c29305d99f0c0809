"""Parity of a converted artifact against its reference outputs, with one declared tolerance per precision.

The check is `max_abs_diff <= atol + rtol * max|reference|` and `top1_agreement >= min_top1_agreement`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import CalibrationDataError, ParityError


@dataclass(frozen=True)
class Tolerance:
    """How far an artifact of one precision may be from its reference.

    Attributes:
        atol: absolute bound on the max abs output difference (inf = not checked).
        rtol: extra bound relative to the largest reference magnitude.
        min_top1_agreement: fraction of samples whose argmax must agree, in [0, 1].
    """

    atol: float
    rtol: float = 0.0
    min_top1_agreement: float = 1.0

    def allowed_abs_diff(self, reference_abs_max: float) -> float:
        return self.atol + self.rtol * reference_abs_max

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


# fp32 is a re-expression of the same arithmetic; fp16 rounds weights to ~3 significant digits; int8 is judged
# by its decisions only (its logit error is reported, not bounded).
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=0.0, min_top1_agreement=1.0),
    "fp16": Tolerance(atol=1e-3, rtol=1e-2, min_top1_agreement=0.99),
    "int8": Tolerance(atol=math.inf, rtol=0.0, min_top1_agreement=0.99),
}


@dataclass(frozen=True)
class ParityResult:
    """Numbers of one parity check (stored in the manifest's artifact entry)."""

    reference: str
    num_samples: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    allowed_abs_diff: float
    tolerance: Tolerance
    finite: bool = True  # False when the artifact produced NaN or inf

    @property
    def passed(self) -> bool:
        return (self.finite and self.max_abs_diff <= self.allowed_abs_diff
                and self.top1_agreement >= self.tolerance.min_top1_agreement)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference, "num_samples": self.num_samples,
            "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
            "top1_agreement": self.top1_agreement,
            "allowed_abs_diff": None if math.isinf(self.allowed_abs_diff) else self.allowed_abs_diff,
            "tolerance": self.tolerance.to_dict(), "finite": self.finite, "passed": self.passed,
        }


def compare(reference: np.ndarray, outputs: np.ndarray, tolerance: Tolerance,
            reference_name: str = "reference") -> ParityResult:
    """Compare (N, C) outputs with (N, C) reference outputs; never raises on a mismatch of values."""
    reference = np.asarray(reference, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    if reference.shape != outputs.shape or reference.ndim != 2 or len(reference) == 0:
        raise CalibrationDataError(f"parity needs two non-empty (N, C) arrays of the same shape; got reference "
                                   f"{reference.shape} and outputs {outputs.shape}")
    finite = bool(np.isfinite(outputs).all())
    if not finite:
        diff = mean = math.inf
    else:
        d = np.abs(outputs - reference)
        diff, mean = float(d.max()), float(d.mean())
    agree = float(np.mean(reference.argmax(1) == outputs.argmax(1)))
    allowed = tolerance.allowed_abs_diff(float(np.abs(reference).max()))
    return ParityResult(reference_name, len(reference), diff, mean, agree, allowed, tolerance, finite)


def check(artifact: str, reference: np.ndarray, outputs: np.ndarray, tolerance: Tolerance,
          reference_name: str = "reference") -> ParityResult:
    """`compare`, then raise `ParityError` (carrying the numbers) when the tolerance is not met."""
    result = compare(reference, outputs, tolerance, reference_name)
    if not result.passed:
        raise ParityError(artifact, result)
    return result
