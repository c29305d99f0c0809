"""The recognizers' input quantization (edgekd_runtime.quantize): one affine map for normalisation + quantization."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd_runtime.manifest import Normalization
from edgekd_runtime.quantize import InputQuantizer, dequantize


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
    assert quantize(c[3], np.empty(192, dtype)).tolist() == got[3].tolist()  # 1-D: through the 2-D copy


def test_it_saturates_where_the_map_leaves_the_range_and_nowhere_else():
    """A scale that maps white past 127 saturates to 127 as the rule clips; a map that fits changes nothing."""
    norm = Normalization(0.1307, 0.3081)
    tight = InputQuantizer.of(norm, 0.0125, -10, np.int8)  # white -> 245
    c = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert tight(c, np.empty(c.shape, np.int8)).tolist() == _two_steps(c, norm, 0.0125, -10, np.int8).tolist()
    assert _two_steps(c, norm, 0.0125, -10, np.int8)[0, -1] == 127
    assert _two_steps(c, norm, 0.0125, -10, np.int8, clip=False)[0, -1] > 127
    low = InputQuantizer.of(norm, 0.0125, 40, np.uint8)  # black -> 6, -0.2 -> -46: saturates to 0
    c = np.array([[-0.2, 0.0, 1.0]], np.float32)
    assert low(c, np.empty(c.shape, np.uint8)).tolist() == _two_steps(c, norm, 0.0125, 40, np.uint8).tolist()


def test_it_writes_into_a_strided_plane_and_any_batch_layout():
    """The hot paths quantize into a view of the bound input tensor (the first w of W columns): only those
    columns change. A batch (N, H, W, 1) is quantized as its planes are."""
    norm = Normalization(0.1307, 0.3081)
    q = InputQuantizer.of(norm, 1.0 / (255 * 0.3081), -95, np.int8)
    rng = np.random.default_rng(1)
    c = rng.random((24, 96), dtype=np.float32)
    plane = np.full((24, 128), 7, np.int8)
    view = plane[:, :96]
    assert q(c, view) is view and np.all(plane[:, 96:] == 7)
    want = _two_steps(c, norm, 1.0 / (255 * 0.3081), -95, np.int8)
    assert np.abs(plane[:, :96].astype(int) - want).max() <= 1
    batch = np.stack([c, c[::-1]])[..., None]
    got = q(batch, np.empty(batch.shape, np.int8))
    assert got.shape == (2, 24, 96, 1) and np.array_equal(got[0, ..., 0], plane[:, :96])
    assert np.array_equal(got[1, ..., 0], q(c[::-1].copy(), np.empty((24, 96), np.int8)))
    assert q(np.empty((0, 24, 96), np.float32), np.empty((0, 24, 96), np.int8)).shape == (0, 24, 96)
    with pytest.raises(ValueError, match="int8 or uint8"):
        InputQuantizer.of(norm, 0.01, 0, np.int16)


@pytest.mark.parametrize("dtype, scale, zp", [(np.int8, 0.0625, -3), (np.uint8, 0.5, 128)])
def test_dequantize_is_the_output_rule_in_float32(dtype, scale, zp):
    """(q - zero_point) * scale over every 8-bit value, in float32 (exact here: the scales are powers of two)."""
    info = np.iinfo(dtype)
    q = np.arange(info.min, info.max + 1).astype(dtype).reshape(4, 64)
    got = dequantize(q, scale, zp)
    assert got.dtype == np.float32 and got.shape == q.shape
    np.testing.assert_array_equal(got, (q.astype(np.float64) - zp) * scale)
    assert got.min() == (info.min - zp) * scale and got.max() == (info.max - zp) * scale
