"""Pixel scales: the one rule for "is this 0..255 or 0..1", for raw images and for canvases.

- Raw pixels (`full_scale`): integers are levels (uint8 and any integer <= 255: 0..255; uint16 or larger values:
  0..65535), except that bool arrays and wider integer arrays holding only 0 and 1 are binary (1 is white);
  floats are 0..1 when no value exceeds 1 (+ `RANGE_TOLERANCE`, resampling overshoot), else 0..255,
  else 0..65535. Negative or NaN/inf pixels are refused (they look normalised, or broken).
- Canvases (`as_canvases`): the model-side images before normalisation, float32 in [0, 1] (pixel / 255). uint8
  canvases are pixels and are divided by 255; float canvases must already be in [0, 1] (`check_canvas_range`,
  whose message says what the values look like: normalised already, or 0..255 pixels). `to_uint8` stores
  canvases as pixels (rounded), the way data splits keep them.

Images (`images.load_gray`), the recognizers, the converters' calibration data and edgekd's data sources all ask
these functions, so a value means the same thing at every stage.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ImageError, InputShapeError, UserInputError

if TYPE_CHECKING:
    from .manifest import Normalization

#: Canvases and 0..1 images may stray this far above 1 (float rounding of resizes) and below 0 for canvases.
RANGE_TOLERANCE = 1e-3
_U32 = np.dtype(np.uint32)
# float32 bits read as uint32 are <= this for every value in [+0, 1 + tolerance]; negatives (sign bit), NaN, inf
# and anything above are larger (-0.0 too: the general check, which compares floats, then accepts it).
_CANVAS_BITS_MAX = int(np.float32(1.0 + RANGE_TOLERANCE).view(np.uint32))


def plainly_in_range(c: np.ndarray) -> bool:
    """Whether every value of a float32 canvas is finite and in [+0, 1 + tolerance], in one pass over its bits
    (the recognizers' hot paths: an argmax and one read, ~0.5 us on 28x28, half a max-reduction's cost). False
    is not an error: the general path's `check_canvas_range` then says what is wrong, or accepts -0.0."""
    u = c.view(_U32)
    return u.item(u.argmax()) <= _CANVAS_BITS_MAX


def full_scale(a: np.ndarray, what: str, error: type[UserInputError] = ImageError) -> float:
    """The value that means white in raw pixels `a`: 1.0, 255.0 or 65535.0 (see the module doc).

    Raises `error` (naming `what`) for NaN/inf or negative pixels: pass raw pixels, not a normalised tensor."""
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        if not finite.all():
            bad = int(a.size - np.count_nonzero(finite))
            raise error(f"{what}: {bad} NaN/inf pixel values; clean the array (e.g. np.nan_to_num) first")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0.0:
            raise error(f"{what}: negative pixel values (min {lo:.3g}); pass raw pixels (0..1 or 0..255), not a "
                        f"normalised tensor")
        return 1.0 if hi <= 1.0 + RANGE_TOLERANCE else 255.0 if hi <= 255.0 else 65535.0
    if a.dtype == np.uint8:
        return 255.0
    ilo, ihi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if ilo < 0:
        raise error(f"{what}: negative pixel values (min {ilo}); pass raw pixels (0..255 or 0..65535)")
    if a.dtype == np.uint16:
        return 65535.0
    if ihi <= 1 and a.dtype != np.int8:
        return 1.0  # a binary image (bool, or wider integers holding only 0 and 1): 1 is white
    return 255.0 if ihi <= 255 else 65535.0


def as_canvases(x: Any, norm: "Normalization | None" = None, what: str = "canvases",
                error: type[UserInputError] | None = None) -> np.ndarray:
    """`x` as float32 canvases in [0, 1]: uint8 pixels / 255, anything else as float32 (no copy when it already
    is) checked by `check_canvas_range`. Shape is left as it is."""
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    c = np.asarray(x, dtype=np.float32)
    if c.size:
        check_canvas_range(c, norm, what, error)
    return c


def to_uint8(canvases: Any) -> np.ndarray:
    """Canvases in [0, 1] -> uint8 pixels (rounded, clipped): how data splits store canvases; `as_canvases` reads
    them back."""
    return np.clip(np.rint(np.asarray(canvases, np.float32) * np.float32(255.0)), 0, 255).astype(np.uint8)


def check_canvas_range(c: np.ndarray, norm: "Normalization | None" = None, what: str = "canvases",
                       error: type[UserInputError] | None = None) -> None:
    """Canvases (digit or line) are un-normalised pixel/255 values in [0, 1]: refuse NaN/inf and anything outside,
    saying what the values look like (normalised already, 0..255 pixels) and what to pass instead.

    Raises `error` when given, else `ImageError` (NaN/inf) or `InputShapeError` (out of range); `norm` (the
    model's normalisation) is quoted in the hint for normalised-looking values."""
    lo, hi = float(c.min()), float(c.max())  # NaN propagates into both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise (error or ImageError)(f"{what} contain NaN/inf values; clean them (e.g. np.nan_to_num) first")
    if lo >= -RANGE_TOLERANCE and hi <= 1.0 + RANGE_TOLERANCE:
        return
    if lo < -RANGE_TOLERANCE:
        model = f"; this model's mean {norm.mean:g}, std {norm.std:g}" if norm is not None else ""
        hint = (f"negative values mean they look normalised already ((x - mean) / std{model}): pass them before "
                f"normalisation, which is applied to them")
    else:
        hint = "divide 0..255 pixel values by 255 (or pass uint8 canvases), or rescale them to [0, 1]"
    raise (error or InputShapeError)(f"{what} must be un-normalised values in [0, 1] (pixel / 255); got values in "
                                     f"[{lo:.4g}, {hi:.4g}]: {hint}")
