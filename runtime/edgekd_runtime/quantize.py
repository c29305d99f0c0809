"""Canvases -> a quantized model input in one pass: the recognizers' one home for the input quantization rule.

A full-int8 model takes q = clip(rint(x / scale + zero_point)) of its normalised input x = (c - mean) / std (the
input tensor's quantization parameters, the bundle's `Normalization`). Both steps are affine, so they fold into
one: q = clip(rint(c * a + b)) with a = 1 / (std * scale) and b = zero_point - mean / (std * scale), computed in
float64 and applied in float32: three numpy calls where the two steps take six, which is most of what quantizing a
line costs on the board (a ufunc call costs about as much as its arithmetic on a 24 x 192 canvas). Folding can move
a value that lies within float32 rounding of a .5 tie to the other integer: one step in 256, on a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .manifest import Normalization


@dataclass(frozen=True)
class InputQuantizer:
    """`quantizer(canvases, out)`: float32 canvases in [0, 1] -> the quantized input tensor, written into `out`.

    Attributes:
        a, b: the folded affine map (0-d float32 arrays: a ufunc turns a numpy scalar into an array on every call).
        lo, hi: the input dtype's range (0-d float32).
        dtype: the input dtype (int8 or uint8).
    """

    a: np.ndarray
    b: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    dtype: np.dtype

    @classmethod
    def of(cls, norm: Normalization, scale: float, zero_point: int, dtype: np.dtype | str) -> InputQuantizer:
        a = 1.0 / (float(norm.std) * float(scale))
        info = np.iinfo(np.dtype(dtype))
        a32, b32, lo, hi = (np.array(v, np.float32) for v in (a, zero_point - float(norm.mean) * a, info.min, info.max))
        return cls(a32, b32, lo, hi, np.dtype(dtype))

    def __call__(self, canvases: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None,
                 clip: bool = True) -> np.ndarray:
        """Quantize `canvases` into `out` (same shape, the input dtype) through `scratch` (float32, same shape; a
        new one when None). `clip=False` where it cannot bite (see `clips`)."""
        f = np.empty(canvases.shape, np.float32) if scratch is None else scratch
        np.multiply(canvases, self.a, f)  # (out positional: keyword parsing is a tenth of these calls)
        np.add(f, self.b, f)
        if clip:
            np.clip(f, self.lo, self.hi, f)
        np.rint(f, out, casting="unsafe")
        return out

    def clips(self, top: float) -> bool:
        """Whether quantizing canvases in [0, `top`] can leave the dtype's range (the map is monotonic: the two
        ends tell)."""
        ends = np.array([0.0, top], np.float32) * self.a + self.b
        return bool(np.rint(ends.min()) < self.lo or np.rint(ends.max()) > self.hi)
