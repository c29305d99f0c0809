"""Parity of a converted artifact against its reference outputs, with one declared tolerance per precision.

The check is `max_abs_diff <= atol + rtol * max|reference|` and `top1_agreement >= min_top1_agreement`; for CTC
line models (N, T, C) it is `SequenceScorer`'s: string agreement, and for int8 the CER increase (see below).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import CalibrationDataError, ParityError


@dataclass(frozen=True)
class _ScoreBound:
    """The bound on the max abs output difference both tolerances share (inf = not checked)."""

    atol: float
    rtol: float = 0.0

    def allowed_abs_diff(self, reference_abs_max: float) -> float:
        return self.atol + self.rtol * reference_abs_max

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Tolerance(_ScoreBound):
    """How far an artifact of one precision may be from its reference.

    Attributes:
        atol: absolute bound on the max abs output difference (inf = not checked).
        rtol: extra bound relative to the largest reference magnitude.
        min_top1_agreement: fraction of samples whose argmax must agree, in [0, 1].
    """

    min_top1_agreement: float = 1.0


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

    def summary(self) -> str:
        return (f"parity check against {self.reference} failed on {self.num_samples} samples: max abs diff "
                f"{self.max_abs_diff:.3g} (allowed {self.allowed_abs_diff:.3g}), top-1 agreement "
                f"{self.top1_agreement:.2%} (required {self.tolerance.min_top1_agreement:.2%})")

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


# ---- sequences (CTC line models) --------------------------------------------------------------------------------
# A line model's outputs are (N, T, C) CTC scores. Its decisions are the greedy-decoded strings: they must agree
# with the reference's on >= 99 % of the lines (like top-1 agreement for digits; all of them for fp32), and an
# int8 artifact may read at most 0.3 pp (absolute) more character errors than the reference on the same texts.

@dataclass(frozen=True)
class SequenceTolerance(_ScoreBound):
    """How far a line model artifact of one precision may be from its reference.

    Attributes:
        atol, rtol: bound on the max abs score difference, as in `Tolerance` (inf = not checked).
        min_string_agreement: share of lines whose greedy-decoded strings must be identical, in [0, 1].
        max_cer_increase: how much higher (absolute) the artifact's CER may be than the reference's.
    """

    min_string_agreement: float = 0.99
    max_cer_increase: float = math.inf


SEQUENCE_TOLERANCES: dict[str, SequenceTolerance] = {
    "fp32": SequenceTolerance(atol=1e-4, min_string_agreement=1.0),
    "fp16": SequenceTolerance(atol=1e-3, rtol=1e-2, min_string_agreement=0.99),
    "int8": SequenceTolerance(atol=math.inf, min_string_agreement=0.99, max_cer_increase=0.003),
}


@dataclass(frozen=True)
class SequenceParityResult:
    """Numbers of one sequence parity check; CERs and string accuracy are None without reference texts."""

    reference: str
    num_samples: int
    max_abs_diff: float
    mean_abs_diff: float
    string_agreement: float
    allowed_abs_diff: float
    tolerance: SequenceTolerance
    cer: float | None = None
    reference_cer: float | None = None
    string_accuracy: float | None = None
    finite: bool = True

    @property
    def cer_increase(self) -> float | None:
        return None if self.cer is None or self.reference_cer is None else self.cer - self.reference_cer

    @property
    def passed(self) -> bool:
        inc = self.cer_increase
        return (self.finite and self.max_abs_diff <= self.allowed_abs_diff
                and self.string_agreement >= self.tolerance.min_string_agreement
                and (inc is None or inc <= self.tolerance.max_cer_increase + 1e-12))

    def summary(self) -> str:
        tol = self.tolerance
        cer = "" if self.cer is None else (f", CER {self.cer:.2%} vs the reference's {self.reference_cer:.2%} "
                                           f"(at most +{tol.max_cer_increase:.2%} allowed)")
        return (f"parity check against {self.reference} failed on {self.num_samples} lines: max abs diff "
                f"{self.max_abs_diff:.3g} (allowed {self.allowed_abs_diff:.3g}), string agreement "
                f"{self.string_agreement:.2%} (required {tol.min_string_agreement:.2%}){cer}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference, "num_samples": self.num_samples, "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff, "string_agreement": self.string_agreement,
            "allowed_abs_diff": None if math.isinf(self.allowed_abs_diff) else self.allowed_abs_diff,
            "cer": self.cer, "reference_cer": self.reference_cer, "cer_increase": self.cer_increase,
            "string_accuracy": self.string_accuracy, "tolerance": self.tolerance.to_dict(),
            "finite": self.finite, "passed": self.passed,
        }


class SequenceScorer:
    """Judges (N, T, C) CTC outputs: greedy-decoded strings against the reference's and, with `texts`, CER and
    whole-string accuracy. Pass it to `convert_into(scorer=...)` for a line model."""

    def __init__(self, charset: str, texts: list[str] | None = None,
                 tolerances: dict[str, SequenceTolerance] | None = None) -> None:
        self.charset, self.texts = charset, None if texts is None else [str(t) for t in texts]
        self.tolerances = {**SEQUENCE_TOLERANCES, **(tolerances or {})}

    def strings(self, outputs: np.ndarray) -> list[str]:
        from edgekd_runtime.lines import greedy_decode

        return greedy_decode(outputs, self.charset)

    def accuracy(self, outputs: np.ndarray) -> float | None:
        """Whole-string accuracy of `outputs` on the texts (None without texts)."""
        from edgekd_runtime.line_metrics import string_accuracy

        return None if self.texts is None else string_accuracy(self.texts, self.strings(outputs))

    def compare(self, reference: np.ndarray, outputs: np.ndarray, precision: str,
                reference_name: str = "reference") -> SequenceParityResult:
        """Compare (N, T, C) outputs with the reference's; never raises on a mismatch of values."""
        from edgekd_runtime.line_metrics import char_error_rate, string_accuracy

        ref = np.asarray(reference, dtype=np.float64)
        out = np.asarray(outputs, dtype=np.float64)
        if ref.shape != out.shape or ref.ndim != 3 or len(ref) == 0:
            raise CalibrationDataError(f"sequence parity needs two non-empty (N, T, C) arrays of the same shape; "
                                       f"got reference {ref.shape} and outputs {out.shape}")
        if self.texts is not None and len(self.texts) != len(ref):
            raise CalibrationDataError(f"{len(self.texts)} texts for {len(ref)} lines")
        tol = self.tolerances[precision]
        finite = bool(np.isfinite(out).all())
        d = np.abs(out - ref) if finite else None
        diff, mean = (float(d.max()), float(d.mean())) if d is not None else (math.inf, math.inf)
        ref_s, out_s = self.strings(ref), self.strings(out) if finite else [""] * len(ref)
        agree = sum(a == b for a, b in zip(ref_s, out_s)) / len(ref)
        cer = ref_cer = acc = None
        if self.texts is not None:
            cer, ref_cer = char_error_rate(self.texts, out_s), char_error_rate(self.texts, ref_s)
            acc = string_accuracy(self.texts, out_s)
        return SequenceParityResult(reference_name, len(ref), diff, mean, agree,
                                    tol.allowed_abs_diff(float(np.abs(ref).max())), tol, cer, ref_cer, acc, finite)
