"""The recognizers' input quantization (edgekd_runtime.quantize): one affine map for normalisation + quantization."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd_runtime.manifest import Normalization
from edgekd_runtime.quantize import InputQuantizer


def _two_steps(c: np.ndarray, norm: Normalization, scale: float, zp: int, dtype, clip: bool = True) -> np.ndarray:
    """The rule written out: normalise, divide by the scale, add the zero point, round, clip (float64)."""
    info = np.iinfo(dtype)
    q = np.rint((c.astype(np.float64) - norm.mean) / norm.std / scale + zp)
    return np.clip(q, info.min, info.max).astype(dtype) if clip else q


@pytest.mark.parametrize("dtype, scale, zp", [(np.int8, 0.0127, -95), (np.int8, 0.0125, -10), (np.uint8, 0.0127, 33)])
def test_the_folded_map_is_the_two_step_rule_but_for_ties(dtype, scale, zp):
    """Folding normalisation and quantization into rint(c * a + b) gives the two steps' integers, except a pixel
    within float32 rounding of a .5 tie, moved by one step; clipped to the dtype where the map leaves it."""
    norm = Normalization(0.1307, 0.3081)
    rng = np.random.default_rng(0)
    c = np.concatenate([rng.random((64, 192), dtype=np.float32), np.linspace(0, 1, 192, dtype=np.float32)[None],
                        np.arange(256, dtype=np.float32)[None, :192] / np.float32(255.0)])
    quantize = InputQuantizer.of(norm, scale, zp, dtype)
    got = quantize(c, np.empty(c.shape, dtype))
    want = _two_steps(c, norm, scale, zp, dtype)
    diff = np.abs(got.astype(np.int32) - want)
    assert got.dtype == dtype and diff.max() <= 1 and (diff > 0).mean() < 1e-3
    ends = _two_steps(np.array([0.0, 1.0]), norm, scale, zp, dtype, clip=False)
    assert quantize.clips(1.0) == bool(ends[0] < np.iinfo(dtype).min or ends[1] > np.iinfo(dtype).max)


def test_clipping_is_needed_where_the_range_overflows_and_skipped_only_there():
    """A scale that maps white past 127 clips (and says so); the default-range map needs no clipping, and skipping
    it changes nothing there."""
    norm = Normalization(0.1307, 0.3081)
    tight = InputQuantizer.of(norm, 0.0125, -10, np.int8)  # white -> 245
    assert tight.clips(1.0)
    c = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert tight(c, np.empty(c.shape, np.int8)).tolist() == _two_steps(c, norm, 0.0125, -10, np.int8).tolist()
    assert _two_steps(c, norm, 0.0125, -10, np.int8)[0, -1] == 127
    fits = InputQuantizer.of(norm, 1.0 / (255 * 0.3081), -95, np.int8)  # black -> -128.3, white -> 126.7
    assert not fits.clips(1.0)
    x = np.random.default_rng(1).random((24, 96), dtype=np.float32)
    assert np.array_equal(fits(x, np.empty(x.shape, np.int8), clip=False), fits(x, np.empty(x.shape, np.int8)))
