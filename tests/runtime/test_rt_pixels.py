"""The one "is this 0..255 or 0..1" rule (`pixels`), the one normalisation (`Normalization.apply`) and the one set of
image suffixes, checked at their homes and where the board uses them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgekd_runtime.cli import expand_images
from edgekd_runtime.errors import ImageError, InputShapeError, ProfileError
from edgekd_runtime.images import IMAGE_SUFFIXES, has_image_suffix, load_gray
from edgekd_runtime.manifest import Normalization
from edgekd_runtime.pixels import RANGE_TOLERANCE, as_canvases, full_scale, to_uint8


@pytest.mark.parametrize("values, dtype, scale", [
    ([0, 1], np.uint8, 255.0),  # uint8 is always 0..255, even when it only holds 0 and 1
    ([0, 100], np.int8, 255.0),
    ([0, 1], np.uint16, 65535.0),
    ([0, 200], np.int64, 255.0),  # any integer within 0..255 counts levels of 0..255
    ([0, 1], np.int64, 1.0),  # ... but wider integers holding only 0 and 1 are a binary image
    ([False, True], np.bool_, 1.0),
    ([0, 256], np.int32, 65535.0),
    ([0.0, 0.0], np.float32, 1.0),  # all black: either reading gives black
    ([0.0, 1.0], np.float32, 1.0),
    ([0.0, 1.0 + RANGE_TOLERANCE / 2], np.float32, 1.0),  # a resize's overshoot is still 0..1
    ([0.0, 1.01], np.float64, 255.0),
    ([0.0, 255.0], np.float32, 255.0),
    ([0.0, 255.5], np.float32, 65535.0),
])
def test_full_scale_edges(values, dtype, scale):
    assert full_scale(np.array(values, dtype), "img") == scale


def test_full_scale_refuses_normalised_and_broken_pixels():
    with pytest.raises(ImageError, match="img: negative pixel values .*not a normalised tensor"):
        full_scale(np.array([-0.42, 2.8], np.float32), "img")
    with pytest.raises(ImageError, match="img: negative pixel values"):
        full_scale(np.array([-1, 3], np.int16), "img")
    with pytest.raises(ImageError, match="img: negative pixel values"):
        full_scale(np.array([-5, 3], np.int8), "img")
    with pytest.raises(ImageError, match="img: 1 NaN/inf"):
        full_scale(np.array([0.5, np.nan], np.float32), "img")
    with pytest.raises(ProfileError, match="img: negative"):  # callers choose their own typed error
        full_scale(np.array([-1.0]), "img", ProfileError)


def test_images_follow_the_rule():
    """A float image in 0..255 reads as the same uint8 image; a 0..1 float image as itself."""
    u8 = (np.arange(16 * 16) % 251).astype(np.uint8).reshape(16, 16)
    assert np.array_equal(load_gray(u8.astype(np.float32)), load_gray(u8))
    unit = (u8 / 255.0).astype(np.float32)
    assert np.allclose(load_gray(unit), unit, atol=1e-7)


def test_as_canvases_scales_uint8_and_checks_floats():
    u8 = np.array([[0, 128, 255]], np.uint8)
    assert np.array_equal(as_canvases(u8), np.array([[0.0, 128 / 255, 1.0]], np.float32))
    f32 = np.array([[0.0, 0.5, 1.0 + RANGE_TOLERANCE / 2]], np.float32)
    assert as_canvases(f32) is f32  # float32 canvases are not copied
    assert as_canvases([[0.0, 1.0]]).dtype == np.float32 and as_canvases(np.zeros((0, 4))).shape == (0, 4)
    norm = Normalization()
    with pytest.raises(InputShapeError, match=r"got values in \[-0.4242, 2.821\]: negative values mean they look "
                                              r"normalised already .*mean 0.1307, std 0.3081"):
        as_canvases(norm.apply(np.array([0.0, 1.0], np.float32)), norm)
    with pytest.raises(InputShapeError, match=r"\[0, 255\]: divide 0..255 pixel values by 255"):
        as_canvases(np.array([0.0, 255.0]))
    with pytest.raises(InputShapeError, match=r"\[0, 1.01\]"):  # just past the tolerance
        as_canvases(np.array([0.0, 1.01]))
    with pytest.raises(ImageError, match="line canvases contain NaN/inf"):
        as_canvases(np.array([np.inf]), what="line canvases")
    with pytest.raises(ProfileError, match="NaN/inf"):
        as_canvases(np.array([np.nan]), error=ProfileError)


def test_to_uint8_stores_canvases_as_rounded_pixels():
    c = np.array([-0.1, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 1.2], np.float32)
    assert to_uint8(c).tolist() == [0, 0, 0, 1, 128, 255, 255]
    x = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    assert np.abs(as_canvases(to_uint8(x)) - x).max() <= 0.5 / 255 + 1e-7  # the round trip loses half a level


def test_normalization_apply_is_float32_and_writes_into_a_buffer():
    c = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(1, 28, 28)
    norm = Normalization(0.1307, 0.3081)
    want = (c - np.float32(0.1307)) / np.float32(0.3081)
    got = norm.apply(c)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert norm.apply(c.astype(np.float64)).dtype == np.float32
    buf = np.empty((1, 1, 28, 28), np.float32)
    assert norm.apply(c, out=buf.reshape(1, 28, 28)).base is buf and np.array_equal(buf[:, 0], want)
    assert float(Normalization(0.5, 2.0).apply(np.float32(1.0))) == 0.25


def test_the_board_normalises_with_the_rule(bundle):
    """The recognizer's input tensor is `Normalization.apply` of the canvases, laid out."""
    from edgekd_runtime import load

    rec = load(bundle, backend="onnx")
    c = np.random.default_rng(0).random((3, rec.size, rec.size), dtype=np.float32)
    assert np.array_equal(rec.to_input(c).reshape(c.shape), rec.normalization.apply(c))
    assert np.array_equal(rec.to_input((c * 255).round().astype(np.uint8)),
                          rec.to_input(as_canvases((c * 255).round().astype(np.uint8))))


def test_image_suffixes_are_one_set(tmp_path):
    """`.ppm`, `.pbm` and upper-case names are images to `edgekd-rt predict FOLDER` (and to every other folder
    reader, which import the same `has_image_suffix`); other files are skipped."""
    assert {".ppm", ".pgm", ".pbm", ".png", ".jpg"} <= set(IMAGE_SUFFIXES)
    assert has_image_suffix("a.PPM") and has_image_suffix(tmp_path / "b.pbm") and not has_image_suffix("c.txt")
    img = np.zeros((28, 28), np.uint8)
    img[8:20, 12:16] = 255
    for name in ("a.ppm", "b.PGM", "c.png"):
        Image.fromarray(img).convert("RGB" if name.endswith("ppm") else "L").save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in expand_images([tmp_path])] == ["a.ppm", "b.PGM", "c.png"]


@pytest.mark.parametrize("value, plain", [
    (0.0, True), (0.5, True), (1.0, True), (1.0 + RANGE_TOLERANCE / 2, True),
    (1.0 + 2 * RANGE_TOLERANCE, False), (-0.0, False), (-1e-9, False), (np.nan, False), (-np.nan, False),
    (np.inf, False), (-np.inf, False), (255.0, False)])
def test_the_hot_paths_range_check_agrees_with_the_general_one(value, plain):
    """`plainly_in_range` (one pass over the float bits) says True only where the general check accepts the canvas
    as it is; False sends a canvas to the general path (which accepts -0.0 and says what is wrong otherwise)."""
    from edgekd_runtime.pixels import plainly_in_range

    c = np.full((28, 28), 0.25, np.float32)
    c[3, 17] = value
    assert plainly_in_range(c) is plain
    if plain:
        np.testing.assert_array_equal(as_canvases(c, Normalization()), c)
    elif -RANGE_TOLERANCE <= value <= 1.0 + RANGE_TOLERANCE:  # -0.0, a resize's undershoot: accepted there
        assert as_canvases(c, Normalization())[3, 17] == value
    else:
        with pytest.raises(ImageError if np.isnan(value) or np.isinf(value) else InputShapeError):
            as_canvases(c, Normalization())
