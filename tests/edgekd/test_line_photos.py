"""Line preprocessing of photos and scans (edgekd_runtime.lines.line_canvas) against edgekd.data.line_photos."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.line_photos import PhotoParams, aligned_corr, draw_params, render_line_photo
from edgekd_runtime.errors import BlankImageError, ImageError
from edgekd_runtime.lines import TEXT_HEIGHT_SHARE, LineTooWideError, line_canvas, preprocess_line

H, W = 24, 192


@pytest.fixture(scope="module")
def lines():
    from edgekd.data.lines import LineSpec, load_lines

    d = load_lines(LineSpec(train_lines=1, val_lines=1, test_lines=12))
    return d.test.x


def test_the_photo_renderer_is_deterministic_and_makes_photos_of_the_line(lines):
    a, b = render_line_photo(lines[0], 3), render_line_photo(lines[0], 3)
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, render_line_photo(lines[0], 4))
    p = draw_params(3)
    assert 2.0 <= p.scale <= 3.0 and abs(p.angle_deg) <= 5.0
    assert a.shape[0] > 2 * H  # 2-3x the canvas, plus paper and desk
    assert np.median(a) > 150 and np.median(render_line_photo(lines[0], 3, "light-on-dark")) < 105  # paper
    with pytest.raises(ValueError, match="polarity"):
        render_line_photo(lines[0], 3, "sideways")


def test_photos_preprocess_to_the_clean_canvas_across_seeds_and_polarities(lines):
    # measured over 120 photos (60 lines x 2 polarities): min 0.79, 5th percentile 0.89, median 0.97
    scores = []
    for i, canvas in enumerate(lines):
        ref = preprocess_line(canvas, H, 256)
        for polarity in ("dark-on-light", "light-on-dark"):
            out, _ = line_canvas(render_line_photo(canvas, [i, 11], polarity), H, 256)
            scores.append(aligned_corr(ref, out))
    assert min(scores) > 0.7 and np.median(scores) > 0.93


@pytest.mark.parametrize("angle", [-5.0, 5.0])
@pytest.mark.parametrize("polarity", ["dark-on-light", "light-on-dark"])
def test_rotated_blurred_photos_are_deskewed(lines, angle, polarity):
    canvas = lines[1]
    params = PhotoParams(scale=2.5, angle_deg=angle, blur_sigma_px=1.2, noise_sigma=0.03)
    out, _ = line_canvas(render_line_photo(canvas, 5, polarity, params), H, 256)
    assert aligned_corr(preprocess_line(canvas, H, 256), out) > 0.85
    rows = np.flatnonzero(out.max(1) > 0.5)  # a band left tilted would be squeezed into fewer rows
    assert len(rows) >= round(TEXT_HEIGHT_SHARE * H) - 4  # 18-20 measured


def _bars_canvas(xs: list[int], width: int = 160) -> np.ndarray:
    """A clean light-on-dark line canvas of 3-px-wide, 16-px-tall bars starting at columns `xs`."""
    c = np.zeros((H, width), np.uint8)
    for x in xs:
        c[4:20, x:x + 3] = 255
    return c


def test_a_straight_line_comes_out_level_from_any_tilt():
    canvas = _bars_canvas(list(range(6, 150, 12)))
    for angle in (-4.0, -2.0, 2.0, 4.0):
        params = PhotoParams(scale=2.5, angle_deg=angle, blur_sigma_px=0.8, noise_sigma=0.01)
        out, _ = line_canvas(render_line_photo(canvas, 1, params=params), H, W)
        cols = np.flatnonzero(out.max(0) > 0.5)
        bars = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        tops = [int(np.flatnonzero(out[:, b].max(1) > 0.5)[0]) for b in bars]
        assert len(bars) == 12 and max(tops) - min(tops) <= 1, (angle, tops)


def test_geometry_maps_each_character_back_to_its_pixels_in_the_photo():
    xs = [8, 40, 80, 110, 140]
    params = PhotoParams(scale=2.7, angle_deg=3.0, blur_sigma_px=0.8, noise_sigma=0.02)
    photo = render_line_photo(_bars_canvas(xs), 2, params=params)
    out, geom = line_canvas(photo, H, W)
    assert geom.image_width == photo.shape[1]
    cols = np.flatnonzero(out.max(0) > 0.3)
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    assert len(runs) == len(xs)
    for k, run in enumerate(runs[:-1]):  # (the renderer crops after the last bar: keep it in every photo)
        # this bar's own pixels: the same photo (same seed: same paper, light and noise) without the bar
        without = render_line_photo(_bars_canvas([x for j, x in enumerate(xs) if j != k]), 2, params=params)
        ink_x = np.flatnonzero((without.astype(int) - photo.astype(int)).max(0) > 40)
        x0, x1 = geom.to_image(run[0], run[-1] + 1)
        assert x0 - 2 <= ink_x[0] and ink_x[-1] < x1 + 2, (k, (x0, x1), (ink_x[0], ink_x[-1]))
        assert (x1 - x0) < 1.6 * (ink_x[-1] + 1 - ink_x[0])  # and tightly


def test_geometry_is_in_the_callers_pixels_when_the_loader_downscales():
    from PIL import Image

    photo = render_line_photo(_bars_canvas([8, 40, 80, 130]), 2)
    big = Image.fromarray(photo).resize((photo.shape[1] * 5, photo.shape[0] * 5), Image.BILINEAR)
    _, g_small = line_canvas(photo, H, W)
    _, g_big = line_canvas(big, H, W)
    assert g_big.image_width == 5 * photo.shape[1]
    for c0, c1 in ((2, 10), (50, 70)):
        (a0, a1), (b0, b1) = g_small.to_image(c0, c1), g_big.to_image(c0, c1)
        assert abs(b0 - 5 * a0) <= 8 and abs(b1 - 5 * a1) <= 8


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("polarity", ["dark-on-light", "light-on-dark"])
def test_a_photo_of_a_blank_sheet_is_blank(seed, polarity):
    photo = render_line_photo(np.zeros((H, 100), np.uint8), seed, polarity)
    with pytest.raises(BlankImageError, match="blank"):
        line_canvas(photo, H, W)


def test_photos_without_a_text_line_are_refused_clearly():
    blank = render_line_photo(np.zeros((H, 100), np.uint8), 3)
    blob = blank.copy()
    blob[60:120, 80:200] = 30  # a thumb, a sticker
    with pytest.raises(ImageError, match="no text line found.*solid ink"):
        line_canvas(blob, H, W)
    rule = blank.copy()
    rule[90:93, 20:-20] = 40  # a ruled line and nothing written
    with pytest.raises(BlankImageError, match="no writing found, only specks or thin lines"):
        line_canvas(rule, H, W)
    frame = blank.copy()
    frame[40:150, 60:63] = frame[40:150, 200:203] = 40  # lines across the text band only
    frame[40:43, 60:203] = frame[147:150, 60:203] = 40
    with pytest.raises(ImageError, match="no text line found"):
        line_canvas(frame, H, W)
    with pytest.raises(BlankImageError):
        line_canvas(np.full((200, 600), 255, np.uint8), H, W)


def test_photos_of_lone_digits_are_read_not_refused():
    """A line of one character: a '1' is one solid upright stroke (not a solid region), a '2' or a '7' has its core
    rows in its foot or bar with the rest above or below (not a line crossing the band). 300 test digits, each
    composed as a one-character line and photographed: 2 refused (a faint '1', a '2' still taken for a line across
    the band), where 10 were before."""
    from edgekd.data import DataSpec, load_data
    from edgekd.data.lines import compose_line

    d = load_data(DataSpec("embedded", seed=0))
    refused = []
    for i in range(300):
        photo = render_line_photo(compose_line([d.test.x[i]], np.random.default_rng(i), H, W), [i, 5])
        try:
            line_canvas(photo, H, W)
        except ImageError as e:
            refused.append((int(d.test.y[i]), str(e)[-80:]))
    assert len(refused) <= 4, refused


def test_lines_a_little_too_wide_are_shrunk_to_fit_and_very_wide_ones_refused():
    page = np.full((40, 400), 255, np.uint8)
    page[10:30, 10:220] = 0  # 20 x 210 px: 210 + 4 columns at the text height; shrunk by 188/210
    x = preprocess_line(page, H, W)
    rows, cols = np.flatnonzero(x.max(1) > 0.5), np.flatnonzero(x.max(0) > 0.5)
    assert cols[-1] < W - 1 and len(rows) == round(round(TEXT_HEIGHT_SHARE * H) * 188 / 210)
    huge = np.full((100, 20000), 255, np.uint8)
    for c in range(100, 19900, 40):
        huge[30:70, c:c + 6] = 0
    with pytest.raises(LineTooWideError, match="192 px.*split it into shorter lines"):
        line_canvas(huge, H, W)


def test_faint_stroke_ends_hanging_on_clear_strokes_are_kept():
    page = np.full((120, 300), 230, np.uint8)
    for x in range(50, 130, 12):
        page[40:60, x:x + 4] = 30  # clear strokes, 20 px tall (the band: 1 canvas px per pixel)
    page[40:43, 126:132] = 200  # the last one's faint end, 6 px past it (the band is 20 px tall)
    page[40:43, 220:236] = 200  # a faint mark of the same level, alone
    out, geom = line_canvas(page, H, W)
    far_end = slice(*[int(round(geom.scale * (x - geom.x_origin))) + geom.left for x in (128, 131)])
    assert out[:, far_end].max(0).min() > 0.05  # kept to its tip
    cols = np.flatnonzero(out.max(0) > 0.05)
    assert geom.to_image(cols[-1], cols[-1] + 1)[1] < 150  # the lone faint mark is not part of the line


def test_thin_pen_strokes_are_thickened_to_the_training_lines_width():
    page = np.full((300, 900), 235, np.uint8)
    for x in range(60, 800, 80):
        page[100:200, x:x + 2] = 20  # 2-px strokes, 100 px tall: 0.4 px at the canvas' scale
    out, _ = line_canvas(page, H, W)
    row = out[H // 2]
    widths = np.diff(np.flatnonzero(np.diff(np.r_[0, row > 0.5, 0])))[::2]
    assert out.max() > 0.9 and len(widths) == 10 and widths.min() >= 2


def test_blank_sheets_are_blank_across_seeds():
    errors = []
    for seed in range(40):
        for polarity in ("dark-on-light", "light-on-dark"):
            with pytest.raises(ImageError) as e:  # never a reading
                line_canvas(render_line_photo(np.zeros((H, 100), np.uint8), [seed, 9], polarity), H, W)
            errors.append(e.type)
    assert set(errors) <= {BlankImageError, ImageError}  # not "too wide, split it": a blank page has no line
    assert errors.count(BlankImageError) >= 0.95 * len(errors)  # 80 of 80 (74 before the sheet's edge was desk)


def test_a_blank_sheet_whose_edge_shows_is_blank_not_a_line():
    """A sheet turned so that the desk along one edge thins out to a sliver: the sliver is desk, not a line of
    writing (it was read as a band 8 px high and refused as "too wide, split it"); a faint edge left alone is the
    sheet's edge of a blank page, not a frame."""
    for seed in ([61, 9], [2, 9], [4, 9]):
        with pytest.raises(BlankImageError, match="blank"):
            line_canvas(render_line_photo(np.zeros((H, 100), np.uint8), seed), H, W)


def test_thin_widely_spaced_strokes_are_writing_not_specks():
    """Eight 2-px strokes 28 px apart ink 7.8 % of their band: under the old 9 % floor (a blank page was refused
    as specks up to 10.7 % before its sheet's edge counted as desk; 4.6 % since), over the 6.5 % one."""
    page = np.full((120, 400), 235, np.uint8)
    for i in range(8):
        page[45:80, 40 + 28 * i:42 + 28 * i] = 40
    out, _ = line_canvas(page, H, W)
    row = out[H // 2] > 0.5
    assert np.count_nonzero(np.diff(row.astype(np.int8)) == 1) == 8  # the eight strokes, apart


def _stacked(canvases: list[np.ndarray], gap: int) -> np.ndarray:
    """Line canvases one above the other, `gap` blank rows apart, left-aligned: a photo of several lines."""
    width = max(c.shape[1] for c in canvases)
    rows = []
    for k, c in enumerate(canvases):
        rows.append(np.pad(c, ((0, gap if k < len(canvases) - 1 else 0), (0, width - c.shape[1]))))
    return np.concatenate(rows)


@pytest.fixture(scope="module")
def more_lines():
    from edgekd.data.lines import LineSpec, load_lines

    return load_lines(LineSpec(train_lines=1, val_lines=1, test_lines=60)).test


def test_a_photo_of_several_lines_is_refused_not_half_read(more_lines):
    """Two or three lines in one photo used to read as the line with the most ink, the others dropped with no word.
    Measured: 200 of 200 stacks of 2-3 test lines (gaps of 0-23 canvas rows, both polarities) refused, none of
    200 lines with one stray digit above or below them, none of 8,000 photos of one line (val and test lines)."""
    from edgekd_runtime.errors import MultipleLinesError

    rng = np.random.default_rng(0)
    for i in range(24):
        idx = rng.choice(len(more_lines.x), 2 + i % 2, replace=False)
        photo = render_line_photo(_stacked([more_lines.x[j] for j in idx], int(rng.integers(0, 24))), [i, 77],
                                  ("dark-on-light", "light-on-dark")[i % 2])
        with pytest.raises(MultipleLinesError, match="more than one line of writing.*Crop the photo to each line"):
            line_canvas(photo, H, W)
    assert issubclass(MultipleLinesError, ImageError)


def test_a_stray_character_beside_the_line_is_no_second_line(more_lines):
    from edgekd.data import DataSpec, load_data
    from edgekd.data.lines import compose_line

    d = load_data(DataSpec("embedded", seed=0))
    for i in range(16):
        line = more_lines.x[i]
        digit = compose_line([d.test.x[i]], np.random.default_rng(i), H, line.shape[1])
        stray = np.roll(digit, 20 + 7 * i, axis=1)
        photo = render_line_photo(_stacked([line, stray] if i % 2 else [stray, line], 4 + i), [i, 78])
        out, _ = line_canvas(photo, H, W)
        assert aligned_corr(preprocess_line(line, H, W), out) > 0.7  # the line itself, not the digit
