"""Text lines for CTC line recognizers: preprocessing to a line canvas, greedy CTC decoding, error rates.

Pure numpy + pillow (this module runs on the board, and training imports it so both see the same lines).

A "line canvas" is float32 (height, width) in [0, 1], light ink on dark, the text band scaled to the height the
model takes (ink filling TEXT_HEIGHT_SHARE of it, centred), left-aligned and zero-padded on the right.
CTC convention: class 0 is the blank, class i + 1 is `charset[i]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import BlankImageError, ImageError, UserInputError
from .images import MAX_WORK_SIDE_PX, ImageLike, describe, load_gray
from .preprocess import (MIN_INK_CONTRAST, MIN_INK_SNR, POLARITIES, _background, _dilate, _drop_border_blobs,
                         _median3, _pil_f, _resize, _stroke_width, _to_light_on_dark)

#: Share of the line height the ink band fills (median of the composed training lines, measured with the same
#: 35 %-of-peak ink mask as below).
TEXT_HEIGHT_SHARE = 0.83
BLANK = 0
#: Canvas columns left of the text (the composed training lines have 1-4).
LEFT_MARGIN_PX = 2
#: A line wider than the model is shrunk to fit down to this share of the text height (training's composed lines
#: are shrunk down to 0.69 of it by `fit_line`); wider ones are refused (LineTooWideError).
MIN_FIT_SHRINK = 0.7
#: `line_chunks` cuts a piece at the emptiest column in the last (1 - CHUNK_SEARCH_FROM) of the stretch that fits.
CHUNK_SEARCH_FROM = 0.6
#: Line images are loaded with their shorter side kept at LINE_MIN_SHORT_PX or more, within LINE_MAX_WORK_PX
#: pixels (see `_work_side_px`).
LINE_MIN_SHORT_PX, LINE_MAX_WORK_PX = 96, 1_500_000
#: Images whose shorter side is at least this go through the photo path (see `line_canvas`).
PHOTO_MIN_SIDE_PX = 48
#: Deskew: rotations searched (degrees, either way) and the search step.
MAX_SKEW_DEG, SKEW_STEP_DEG = 6.0, 0.25
#: Desk around the sheet: searched within this share of the image from each edge; it stands at least DESK_STEP
#: above the paper (in ink units) along a stretch of at least DESK_EDGE_SHARE of an edge.
DESK_SEARCH_SHARE, DESK_STEP, DESK_EDGE_SHARE = 0.4, 0.2, 0.25
#: Text band: its core rows hold at least this share of the fullest row's ink; a band under MIN_BAND_PX rows or
#: columns is specks; inked over less than MIN_BAND_FILL of its box, scattered specks (photos of composed lines:
#: 0.13 at least, median 0.34; the specks a blank photo leaves: 0.06 at most); over MAX_BAND_FILL, a solid region
#: (composed lines: at most 0.55), a blot when smaller than BLOT_AREA_SHARE of the image.
BAND_CORE_SHARE, MIN_BAND_PX, MIN_BAND_FILL, MAX_BAND_FILL, BLOT_AREA_SHARE = 0.15, 8, 0.09, 0.8, 0.005
#: A run of inked columns at either end of a line holding less ink than this share of the median run's is a speck.
SPECK_SHARE = 0.15
#: A run of inked columns on the image's left or right edge narrower than this share of the band's core height
#: is the edge of the sheet, not writing.
EDGE_LINE_SHARE = 0.25
#: Faint stroke parts (above the paper's noise floor, under the ink threshold) are kept up to this share of the
#: text band's height away from clear ink.
FAINT_SHARE = 0.3
#: Mean stroke width / text band height of the composed training lines (median 0.139, 10th percentile 0.104).
STROKE_SHARE = 0.14


class LineTooWideError(ImageError):
    """A line that does not fit the model's maximum width at its input height."""


@dataclass(frozen=True)
class LineGeometry:
    """Where a line canvas came from: canvas columns <-> the input image's x pixels.

    Attributes:
        image_width: the input image's width in pixels (as the user passed it, before any downscaling).
        x_origin: the input-image x (pixels, may be fractional) that canvas column `left` shows.
        scale: canvas columns per input-image pixel.
        left: the canvas column where the text starts (the left margin).
    """

    image_width: int
    x_origin: float
    scale: float
    left: int = LEFT_MARGIN_PX

    def to_image(self, c0: float, c1: float) -> tuple[int, int]:
        """Canvas columns [c0, c1) -> input-image pixels [x0, x1), clipped to the image."""
        x0 = math.floor(self.x_origin + (c0 - self.left) / self.scale)
        x1 = math.ceil(self.x_origin + (c1 - self.left) / self.scale)
        return min(max(x0, 0), self.image_width), min(max(x1, 0), self.image_width)


def preprocess_line(image: ImageLike, height: int, width: int, polarity: str = "auto") -> np.ndarray:
    """One line image (path, PIL image or array) -> line canvas float32 (height, width) in [0, 1]
    (`line_canvas` without the geometry)."""
    return line_canvas(image, height, width, polarity)[0]


def line_canvas(image: ImageLike, height: int, width: int, polarity: str = "auto") -> tuple[np.ndarray, LineGeometry]:
    """One line image (path, PIL image or array) -> (line canvas float32 (height, width) in [0, 1], geometry).

    Small digital lines (shorter side under PHOTO_MIN_SIDE_PX, e.g. the composed canvases) are cropped to their
    ink as they are. Photos and scans go through the photo path: 3x3 median, either polarity, uneven lighting
    flattened (background map subtracted), the desk around the sheet dropped, a noise-robust ink threshold,
    deskew (up to MAX_SKEW_DEG), the largest text band and its ink columns, strokes thickened when thinner than
    the training lines', then the band scaled to TEXT_HEIGHT_SHARE of `height`.

    Raises:
        BlankImageError: no ink above the paper's level (or only the desk around the sheet).
        ImageError: ink but no text band (a solid blob, a rule, specks).
        LineTooWideError: the text, scaled to `height`, is wider than `width` (even shrunk to MIN_FIT_SHRINK):
            use `line_chunks` to read it in pieces.
    """
    band = _line_band(image, polarity)
    out, new_w = _place(band.ink, height, width, band.name)
    return out, band.geometry(0, new_w / band.ink.shape[1])


def line_chunks(image: ImageLike, height: int, width: int, polarity: str = "auto"
                ) -> list[tuple[np.ndarray, LineGeometry]]:
    """`line_canvas` for lines of any length: a line too wide for the model is cut, at the emptiest column near
    the end of each stretch that fits, into pieces read one by one (their texts joined in order); each piece has
    its own geometry. A line that fits is one piece, the same as `line_canvas`'s."""
    band = _line_band(image, polarity)
    ink = band.ink
    text_h = max(1, int(round(TEXT_HEIGHT_SHARE * height)))
    span = max(1, int((width - 2 * LEFT_MARGIN_PX) * ink.shape[0] / text_h))  # band columns per piece
    profile = np.convolve(ink.sum(axis=0), np.ones(3), mode="same")
    pieces, start = [], 0
    while start < ink.shape[1]:
        stop = ink.shape[1]
        if start + span < stop:  # the last of the emptiest columns where a cut may go
            window = profile[start + int(CHUNK_SEARCH_FROM * span):start + span]
            stop = start + span - int(np.argmin(window[::-1]))
        cols = np.flatnonzero(ink[:, start:stop].max(axis=0) > 0.05)
        if len(cols):  # trim the blank columns at the cut
            a, b = start + int(cols[0]), start + int(cols[-1]) + 1
            out, new_w = _place(ink[:, a:b], height, width, band.name)
            pieces.append((out, band.geometry(a, new_w / (b - a))))
        start = stop
    return pieces


@dataclass(frozen=True)
class _Band:
    """A line's text band at work resolution: `ink` (light on dark, [0, 1]), its first column `x0` in the work
    image, and the scale to the input image (`per_px` work pixels per input pixel, `image_width`)."""

    name: str
    ink: np.ndarray
    x0: int
    per_px: float
    image_width: int

    def geometry(self, col: int, scale: float) -> LineGeometry:
        """The geometry of a canvas showing band column `col` onward at `scale` canvas columns per band column."""
        return LineGeometry(self.image_width, (self.x0 + col) / self.per_px, scale * self.per_px)


def _line_band(image: ImageLike, polarity: str) -> _Band:
    """Load a line image and find its text band (see `line_canvas`)."""
    if polarity not in POLARITIES:
        raise UserInputError(f"polarity {polarity!r} is unknown; use one of {', '.join(POLARITIES)}")
    name = describe(image)
    size = _source_size(image)
    gray = load_gray(image, _work_side_px(size))
    if min(gray.shape) >= PHOTO_MIN_SIDE_PX:
        ink, x0 = _photo_band(gray, polarity, name)
    else:
        ink, x0 = _digital_band(gray, polarity, name)
    src_w = size[0] if size else gray.shape[1]
    return _Band(name, ink, x0, gray.shape[1] / src_w, src_w)


def _digital_band(gray: np.ndarray, polarity: str, name: str) -> tuple[np.ndarray, int]:
    """A clean digital line: the ink above the median, cropped at 35 % of its peak, scaled to peak 1."""
    ink = _to_light_on_dark(gray, polarity)
    ink = np.clip(ink - float(np.median(ink)), 0.0, 1.0)
    peak = float(ink.max()) if ink.size else 0.0
    if peak < MIN_INK_CONTRAST:
        raise BlankImageError(f"{name}: no ink found (contrast {peak:.3f}); is the line blank or too faint?")
    mask = ink > 0.35 * peak
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] / peak, int(cols[0])


def _place(band: np.ndarray, height: int, width: int, name: str) -> tuple[np.ndarray, int]:
    """The band scaled to the text height (or shrunk to fit the width, as training's `fit_line` does, down to
    MIN_FIT_SHRINK of it), centred vertically, left-aligned at LEFT_MARGIN_PX; its new width."""
    text_h = max(1, int(round(TEXT_HEIGHT_SHARE * height)))
    new_w = band.shape[1] * text_h / band.shape[0]
    room = width - 2 * LEFT_MARGIN_PX
    if new_w > room:
        if room / new_w < MIN_FIT_SHRINK:
            raise LineTooWideError(
                f"{name}: the line is {int(round(new_w)) + 2 * LEFT_MARGIN_PX} px wide at height {height}, more than "
                f"the model's {width} px (even shrunk to {MIN_FIT_SHRINK:.0%}); split it into shorter lines (about "
                f"{int(width * MIN_FIT_SHRINK) // height} characters of this size fit)")
        text_h = max(1, int(round(text_h * room / new_w)))
        new_w = band.shape[1] * text_h / band.shape[0]
    new_w = min(max(1, int(round(new_w))), room)
    out = np.zeros((height, width), np.float32)
    top = (height - text_h) // 2
    out[top:top + text_h, LEFT_MARGIN_PX:LEFT_MARGIN_PX + new_w] = np.clip(
        _resize(band.astype(np.float32), (text_h, new_w)), 0.0, 1.0)
    return out, new_w


# ---- photos and scans ------------------------------------------------------------------------------------------

def _photo_band(gray: np.ndarray, polarity: str, name: str) -> tuple[np.ndarray, int]:
    """A photo or scan -> (the text band, ink scaled to [0, 1] on 0, after deskew; its first column)."""
    d = _to_light_on_dark(_median3(gray), polarity)
    desk = _desk(d)
    if desk.any():  # full ink there: the lighting map takes the paper's (darkest) level next to it instead
        d = np.where(desk, np.float32(1.0), d)
    d = np.where(desk, np.float32(0.0), np.clip(d - _background(d), 0.0, 1.0))
    med, thresh = _ink_threshold(d[~desk] if desk.any() else d.ravel(), name)
    mask = _drop_border_blobs((d > thresh) & ~desk)
    if not mask.any():
        raise BlankImageError(f"{name}: only a dark band along the edges (the desk around the sheet?), no "
                              f"writing found; crop the photo to the paper")
    image_px, x_off = mask.size, 0
    r0, r1, c0, c1 = _text_band(mask, name)
    angle = _skew_deg(mask[r0:r1, c0:c1])
    if angle:  # level the band and its surroundings (a band height around it) only
        m = r1 - r0
        y0, y1, x_off, x1 = max(r0 - m, 0), min(r1 + m, mask.shape[0]), max(c0 - m, 0), min(c1 + m, mask.shape[1])
        d, mask = _shear(d[y0:y1, x_off:x1], angle), _shear(mask[y0:y1, x_off:x1].astype(np.float32), angle) > 0.5
        r0, r1, c0, c1 = _text_band(mask, name)
    _check_text_like(_thicken(mask[r0:r1, c0:c1].astype(np.float32)) > 0.5, image_px, name)  # at training width
    floor = med + 0.5 * (thresh - med)
    top = float(np.percentile(d[r0:r1, c0:c1][mask[r0:r1, c0:c1]], 75))
    (r0, r1, c0, c1), keep = _with_faint_ends(d, mask, (r0, r1, c0, c1), floor)
    vals = np.clip((d[r0:r1, c0:c1] - floor) / max(top - floor, 1e-6), 0.0, 1.0).astype(np.float32)
    vals *= _dilate(keep.astype(np.float32), 3)  # noise away from the strokes -> 0
    return _thicken(vals), int(c0) + x_off


def _with_faint_ends(d: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], floor: float
                     ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The band's box grown to hold the faint stroke ends that hang on its ink (hysteresis thresholding: pixels
    above `floor` within FAINT_SHARE of the band's height of clear ink), and the ink mask in that box."""
    r0, r1, c0, c1 = box
    h, w = mask.shape
    steps = max(2, int(round(FAINT_SHARE * (r1 - r0))))
    y0, y1, x0, x1 = max(r0 - steps, 0), min(r1 + steps, h), max(c0 - steps, 0), min(c1 + steps, w)
    seed = np.zeros((y1 - y0, x1 - x0), bool)
    seed[r0 - y0:r1 - y0, c0 - x0:c1 - x0] = mask[r0:r1, c0:c1]
    grown = _grow_into(seed, d[y0:y1, x0:x1] > floor, steps)
    rows, cols = np.flatnonzero(grown.any(axis=1)), np.flatnonzero(grown.any(axis=0))
    a, b, c, e = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (y0 + a, y0 + b, x0 + c, x0 + e), grown[a:b, c:e]


def _check_text_like(band: np.ndarray, image_px: int, name: str) -> None:
    """Refuse a band whose ink mask `band` is not writing: scattered specks (BlankImageError), a blot (the same)
    or a solid region (ImageError)."""
    fill, (h, w) = float(band.mean()), band.shape
    if fill < MIN_BAND_FILL or (fill > MAX_BAND_FILL and band.size < BLOT_AREA_SHARE * image_px):
        raise BlankImageError(f"{name}: no writing found, only {'specks' if fill < MIN_BAND_FILL else 'a blot'} "
                              f"({w}x{h} px, {fill:.0%} inked); the page looks blank. Write darker or bigger, or "
                              f"check the image is the right one")
    if fill > MAX_BAND_FILL:
        raise ImageError(f"{name}: no text line found: the largest dark region ({w}x{h} px) is {fill:.0%} solid "
                         f"ink, not pen strokes; photograph the written line itself")


def _grow_into(seed: np.ndarray, allowed: np.ndarray, steps: int) -> np.ndarray:
    """`seed` grown `steps` pixels (3x3) within `allowed`: faint stroke ends that hang on clear strokes
    (hysteresis thresholding), without the noise that lies apart from them."""
    grown = seed
    for _ in range(steps):
        grown = (_dilate(grown.astype(np.float32), 3) > 0.5) & (allowed | grown)
    return grown


def _desk(d: np.ndarray) -> np.ndarray:
    """The desk around a photographed sheet: along each image edge, the run of desk-bright pixels from the edge
    inwards, per column (row), grown by a few pixels (the sheet's blurred edge, its corners).

    Per column the run is cut halfway between the edge pixel's level and the darkest paper within
    DESK_SEARCH_SHARE of the image, so uneven lighting does not move it; a stretch of an edge counts as desk when
    its pixels stand DESK_STEP above that paper along at least DESK_EDGE_SHARE of the edge (a sheet turned a few
    degrees shows a thin wedge of desk along much of an edge; writing that merely touches an edge covers a
    short stretch of it and is kept)."""
    desk = np.zeros(d.shape, bool)
    halo = 3 + min(d.shape) // 40
    for flip in range(4):  # top, left, bottom, right as the "top" of a turned view
        view, out = np.rot90(d, flip), np.rot90(desk, flip)
        depth = max(1, int(view.shape[0] * DESK_SEARCH_SHARE))
        strip = view[:depth]
        edge, paper = strip[0], strip.min(axis=0)
        stands = _long_runs(edge - paper >= DESK_STEP, DESK_EDGE_SHARE * len(edge))
        if not stands.any():
            continue
        bright = strip > ((edge + paper) / 2)[None, :]
        run = np.where(bright.all(axis=0), depth, bright.argmin(axis=0)) * stands
        out |= np.arange(view.shape[0])[:, None] < run[None, :]  # a view of `desk`: writes through
    return _dilate(desk.astype(np.float32), 2 * halo + 1) > 0.5 if desk.any() else desk


def _long_runs(a: np.ndarray, min_len: float) -> np.ndarray:
    """A bool vector keeping only its runs of True at least `min_len` long."""
    idx = np.flatnonzero(a)
    out = np.zeros_like(a)
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
        if len(run) and len(run) >= min_len:
            out[run] = True
    return out


def _ink_threshold(d: np.ndarray, name: str) -> tuple[float, float]:
    """(paper level, ink threshold) of a flattened light-on-dark image's pixels (the sheet's, flat): median +
    max(4 noise sigmas (MAD), 20 % of the contrast), the rule of `preprocess`. Raises BlankImageError when no
    ink stands out."""
    sample = d[::4] if d.size > 40_000 else d
    med = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - med)))
    contrast = float(d.max()) - med
    if contrast < MIN_INK_CONTRAST or (sigma > 0 and contrast / sigma < MIN_INK_SNR):
        raise BlankImageError(f"{name}: no ink found (ink contrast {contrast:.3f}, noise {sigma:.3f}); the line "
                              f"looks blank. Write darker, crop closer to the line, or check the image")
    return med, med + max(4.0 * sigma, 0.2 * contrast)


def _skew_deg(mask: np.ndarray) -> float:
    """The rotation in degrees of the text band `mask` (y down: positive = the line runs down to the right),
    from the sharpest horizontal ink profile over shears of +-MAX_SKEW_DEG; 0 for a band under 2x wider than
    tall (one or two characters: no line to align)."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 50 or mask.shape[1] < 2 * mask.shape[0]:
        return 0.0
    step = -(-len(ys) // 5_000)
    ys, xs = ys[::step].astype(np.float32), xs[::step].astype(np.float32) - float(xs.mean())
    angles = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 1e-6, SKEW_STEP_DEG)
    scores = []
    for a in angles:
        y = np.rint(ys - xs * np.float32(np.tan(np.radians(a))))
        scores.append(float((np.bincount((y - y.min()).astype(np.int64)).astype(np.float64) ** 2).sum()))
    best = float(angles[int(np.argmax(scores))])
    return best if abs(best) >= SKEW_STEP_DEG / 2 else 0.0


def _shear(a: np.ndarray, angle_deg: float) -> np.ndarray:
    """Undo a rotation of the text by shifting each column vertically (x is kept, so the geometry holds)."""
    from PIL import Image

    t = float(np.tan(np.radians(angle_deg)))
    h, w = a.shape
    off = max(t * w, 0.0)
    out = _pil_f(a).transform((w, h + int(np.ceil(abs(t) * w))), Image.AFFINE, (1, 0, 0, t, 1, -off),
                              resample=Image.BILINEAR, fillcolor=0.0)
    return np.asarray(out, dtype=np.float32)


def _text_band(mask: np.ndarray, name: str) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1) of the text band holding the most ink: its core rows (at least BAND_CORE_SHARE of the
    fullest row's ink), the columns inked there less lines crossing the band and edge specks, then the rows grown
    while those columns hold ink."""
    profile = mask.sum(axis=1)
    core = np.flatnonzero(profile >= BAND_CORE_SHARE * profile.max())
    runs = np.split(core, np.flatnonzero(np.diff(core) > 1) + 1)
    run = max(runs, key=lambda r: int(profile[r[0]:r[-1] + 1].sum()))
    k0, k1 = int(run[0]), int(run[-1]) + 1
    keep = _band_columns(mask, k0, k1)
    inked = np.flatnonzero(mask[:, keep].any(axis=1)) if keep.any() else np.zeros(0, np.int64)
    r0, r1 = k0, k1
    while r0 > 0 and r0 - 1 in inked:
        r0 -= 1
    while r1 < mask.shape[0] and r1 in inked:
        r1 += 1
    if keep.any():
        c0, c1 = _line_span(np.where(keep, mask[r0:r1].sum(axis=0), 0))
        rows = np.flatnonzero(mask[r0:r1, c0:c1].any(axis=1))  # the band's height over its own columns
        r0, r1 = r0 + int(rows[0]), r0 + int(rows[-1]) + 1
    if not keep.any():
        raise ImageError(f"{name}: no text line found: the ink forms only lines across the image (a rule, the "
                         f"sheet's edge), not writing; photograph the written line itself")
    if r1 - r0 < MIN_BAND_PX or c1 - c0 < MIN_BAND_PX:
        raise BlankImageError(f"{name}: no writing found, only specks or thin lines ({c1 - c0}x{r1 - r0} px); the "
                              f"page looks blank. Write darker or bigger, or check the image is the right one")
    return r0, r1, int(c0), int(c1)


def _line_span(profile: np.ndarray) -> tuple[int, int]:
    """[start, stop) of a line's ink columns, dropping specks at either end: edge runs (after a gap) holding
    under SPECK_SHARE of the median run's ink (a line holds many characters, so each end run is judged against
    a typical one, not against the whole line as for one digit)."""
    idx = np.flatnonzero(profile)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1)
    ink = [float(profile[r].sum()) for r in runs]
    floor = SPECK_SHARE * float(np.median(ink))
    lo, hi = 0, len(runs) - 1
    while lo < hi and min(ink[lo], ink[hi]) < floor:
        if ink[lo] <= ink[hi]:
            lo += 1
        else:
            hi -= 1
    return int(runs[lo][0]), int(runs[hi][-1]) + 1


def _band_columns(mask: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """Columns inked in the band's core rows [k0, k1), less lines crossing the band (a sheet's edge, a margin
    rule): runs of columns whose ink continues past the core for more than its height (above and below
    together), and thin runs on the image's left or right edge (under EDGE_LINE_SHARE of the core height)."""
    keep = np.zeros(mask.shape[1], bool)
    idx = np.flatnonzero(mask[k0:k1].any(axis=0))
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1):
        if len(run) == 0:
            continue
        rows = mask[:, run[0]:run[-1] + 1].any(axis=1)
        crossing = _leading(rows[:k0][::-1]) + _leading(rows[k1:]) > k1 - k0
        on_edge = (run[0] == 0 or run[-1] == mask.shape[1] - 1) and len(run) < EDGE_LINE_SHARE * (k1 - k0)
        keep[run] = not (crossing or on_edge)
    return keep


def _leading(a: np.ndarray) -> int:
    """How many leading entries of a bool vector are True."""
    return len(a) if a.all() else int(a.argmin())


def _thicken(vals: np.ndarray) -> np.ndarray:
    """Thicken strokes thinner than 0.7x the training lines' (STROKE_SHARE of the band height) to that width."""
    if vals.shape[0] < 40:  # near the canvas' own scale: nothing to gain
        return vals
    target = STROKE_SHARE * vals.shape[0]
    width = _stroke_width(vals > 0.5)
    if width < 0.7 * target:
        k = 2 * int(round((target - width) / 2)) + 1
        if k >= 3:
            return _dilate(vals, k)
    return vals


def _work_side_px(size: tuple[int, int] | None) -> int:
    """The longest side to load a line image at: the loader's usual MAX_WORK_SIDE_PX, but never reducing the
    shorter side below LINE_MIN_SHORT_PX (a long line keeps its height, so a too-wide line is measured, not
    squashed), within LINE_MAX_WORK_PX pixels."""
    if size is None:
        return MAX_WORK_SIDE_PX
    w, h = size
    longest, shortest = max(w, h), min(w, h)
    factor = max(1, min(-(-longest // MAX_WORK_SIDE_PX), shortest // LINE_MIN_SHORT_PX),
                 math.ceil(math.sqrt(w * h / LINE_MAX_WORK_PX)))
    return max(MAX_WORK_SIDE_PX, -(-longest // factor))


def _source_size(image: ImageLike) -> tuple[int, int] | None:
    """The input image's (width, height) in pixels as `load_gray` turns it, or None when it cannot be told
    (then `load_gray` says what is wrong with the image)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (1, 2, 3, 4):
            return int(image.shape[2]), int(image.shape[1])  # CHW, as the loader reads it
        return (int(image.shape[1]), int(image.shape[0])) if image.ndim >= 2 else None
    if hasattr(image, "size") and hasattr(image, "mode"):
        return int(image.size[0]), int(image.size[1])
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings(), Image.open(image) as im:  # the header only
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = im.size
            return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)  # turned upright by the loader
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def greedy_decode(logits: np.ndarray, charset: str) -> list[str]:
    """Best-path CTC decoding of (N, T, C) scores (logits or probabilities): argmax per frame, merge repeats,
    drop blanks."""
    best = np.asarray(logits).argmax(-1)
    return [collapse(row, charset) for row in best]


def collapse(path: np.ndarray, charset: str) -> str:
    """A CTC path of class ids -> text (repeats merged, blanks dropped)."""
    path = np.asarray(path)
    keep = np.ones(len(path), bool)
    keep[1:] = path[1:] != path[:-1]
    return "".join(charset[int(c) - 1] for c in path[keep] if c != BLANK)
