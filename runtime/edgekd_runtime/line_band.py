"""The text band of a photographed or scanned line: what `edgekd_runtime.lines.line_canvas` does with photos.

Steps (numpy and OpenCV: the operations of `imageops`, the rules of `preprocess`): 3x3 median; either polarity;
the desk around the sheet, found per edge with a cut that uneven lighting does not move; uneven lighting flattened
(a coarse background map subtracted); a noise-robust ink threshold (median + MAD, the rule of `preprocess`); the
text band with the most ink, without lines crossing it (sheet edges, rules) or specks at its ends; deskew up to
MAX_SKEW_DEG by the sharpest row profile, as a vertical shear so that x (the geometry) is kept; faint stroke ends
that hang on clear ink (hysteresis); strokes thinner than the training lines' thickened. Blank pages (a faint
line along the sheet's edge included), specks and blots raise BlankImageError; a solid region (but one upright
stroke, a lone '1') or only lines across the image (a ruled box, a frame), ImageError ("no text line found");
another line of writing above or below the band (not a stray character), MultipleLinesError.
"""

from __future__ import annotations

import numpy as np

from . import imageops as ops
from .errors import BlankImageError, ImageError, MultipleLinesError
from .preprocess import MIN_INK_CONTRAST, MIN_INK_SNR, drop_border_blobs, to_light_on_dark

#: Deskew: rotations searched (degrees, either way) and the search step.
MAX_SKEW_DEG, SKEW_STEP_DEG = 6.0, 0.25
#: Desk around the sheet: searched within this share of the image from each edge; it stands at least DESK_STEP
#: above the paper (in ink units) along a stretch of at least DESK_EDGE_SHARE of an edge.
DESK_SEARCH_SHARE, DESK_STEP, DESK_EDGE_SHARE = 0.4, 0.2, 0.25
#: Text band: its core rows hold at least this share of the fullest row's ink; a band under MIN_BAND_PX rows or
#: columns is specks; inked over less than MIN_BAND_FILL of its box, scattered specks (photos of composed lines:
#: 0.084 at least over 2,000 val photos, median 0.36; the specks a blank photo leaves: 0.046 at most over 600, and
#: 0.107 before the sliver of desk along a turned sheet's edge counted as desk); over MAX_BAND_FILL, a solid region
#: (composed lines: at most 0.55), a blot when smaller than BLOT_AREA_SHARE of the image.
BAND_CORE_SHARE, MIN_BAND_PX, MIN_BAND_FILL, MAX_BAND_FILL, BLOT_AREA_SHARE = 0.15, 8, 0.065, 0.8, 0.005
#: A solid region at least this many times taller than wide is one upright stroke (a lone '1'), not a solid region.
UPRIGHT_STROKE = 2.5
#: A run of inked columns at either end of a line holding less ink than this share of the median run's is a speck.
SPECK_SHARE = 0.15
#: A run of inked columns on the image's left or right edge narrower than this share of the band's core height
#: is the edge of the sheet, not writing.
EDGE_LINE_SHARE = 0.25
#: A run of inked columns whose ink continues past the band's core rows for longer than the core is high is a line
#: crossing the band (a sheet's edge, a margin rule) when narrower than this share of that length, or when the core
#: is a rule (under MIN_BAND_PX rows); a wider one is writing (a lone '2', whose core rows are its foot).
CROSSING_SHARE = 0.5
#: Ink that forms only lines across the image over less than this share of it is a sheet's edge showing through a
#: blank page (BlankImageError); more is a ruled box or a frame (ImageError, no text line).
EDGE_ONLY_SHARE = 0.005
#: A connected stroke at least CHAR_SHARE of a text band's height tall is a character (or most of one).
CHAR_SHARE = 0.3
#: Outside the text band, another band of writing with at least two strokes OTHER_LINE_HEIGHT of the band's
#: character height tall (a stroke wider than TOUCHING_WIDTH x its height is two characters touching) is a second
#: line of text (MultipleLinesError: one line is read, the others would be dropped silently); a lone character there
#: is a stray mark, the specks along a sheet's edge are no text, and writing cut by the image's edge is not judged.
OTHER_LINE_HEIGHT, TOUCHING_WIDTH = 0.65, 1.5
#: Faint stroke parts (above the paper's noise floor, under the ink threshold) are kept up to this share of the
#: text band's height away from clear ink.
FAINT_SHARE = 0.3
#: Mean stroke width / text band height of the composed training lines (median 0.139, 10th percentile 0.104).
STROKE_SHARE = 0.14


def photo_band(gray: np.ndarray, polarity: str, name: str) -> tuple[np.ndarray, int]:
    """A photo or scan -> (the text band, ink scaled to [0, 1] on 0, after deskew; its first column)."""
    d = ops.from_levels(to_light_on_dark(ops.median3(ops.to_levels(gray)), polarity))
    desk = _desk(d)
    if desk.any():  # full ink there: the lighting map takes the paper's (darkest) level next to it instead
        d = np.where(desk, np.float32(1.0), d)
    d = np.where(desk, np.float32(0.0), ops.subtract(d, ops.background(d)))
    med, thresh = _ink_threshold(d[~desk] if desk.any() else d.ravel(), name)
    mask = drop_border_blobs((d > thresh) & ~desk)
    if not mask.any():
        raise BlankImageError(f"{name}: only a dark band along the edges (the desk around the sheet?), no "
                              f"writing found; crop the photo to the paper")
    image_px, x_off = mask.size, 0
    r0, r1, c0, c1 = _refuse_other_lines(mask, _text_band(mask, name), image_px, name)
    angle = _skew_deg(mask[r0:r1, c0:c1])
    if angle:  # level the band and its surroundings (a band height around it) only
        m = r1 - r0
        y0, y1, x_off, x1 = max(r0 - m, 0), min(r1 + m, mask.shape[0]), max(c0 - m, 0), min(c1 + m, mask.shape[1])
        ink = np.zeros((y1 - y0, x1 - x_off), np.float32)  # the band's ink: the marks around it were judged above
        ink[r0 - y0:r1 - y0] = mask[r0:r1, x_off:x1]
        d, mask = _shear(d[y0:y1, x_off:x1], angle), _shear(ink, angle) > 0.5
        r0, r1, c0, c1 = _refuse_other_lines(mask, _text_band(mask, name), image_px, name)  # lines close together
    _check_text_like(_thicken(mask[r0:r1, c0:c1].astype(np.float32)) > 0.5, image_px, name)  # at training width
    floor = med + 0.5 * (thresh - med)
    top = float(np.percentile(d[r0:r1, c0:c1][mask[r0:r1, c0:c1]], 75))
    (r0, r1, c0, c1), keep = _with_faint_ends(d, mask, (r0, r1, c0, c1), floor)
    vals = np.clip((d[r0:r1, c0:c1] - floor) / max(top - floor, 1e-6), 0.0, 1.0).astype(np.float32)
    vals *= ops.dilate(keep, 3)  # noise away from the strokes -> 0
    return _thicken(vals), int(c0) + x_off


def _refuse_other_lines(mask: np.ndarray, band: tuple[int, int, int, int], image_px: int, name: str
                        ) -> tuple[int, int, int, int]:
    """`band` (r0, r1, c0, c1), the text band `_text_band` found in `mask`, unless the rows above or below it hold
    another line of writing (OTHER_LINE_HEIGHT, TOUCHING_WIDTH): then MultipleLinesError. Rules, frames, specks
    and stray marks there are not writing (`_text_band`, `_check_text_like`) and are left to the band's crop."""
    r0, r1, c0, c1 = band
    rest = mask.copy()
    rest[r0:r1] = False
    if not rest.any():
        return band
    try:
        s0, s1, d0, d1 = _text_band(rest, name)
        _check_text_like(_thicken(rest[s0:s1, d0:d1].astype(np.float32)) > 0.5, image_px, name)
    except ImageError:
        return band
    _, y, w, h = ops.component_boxes(rest[s0:s1, d0:d1]).T
    whole = (s0 + y > 0) & (s0 + y + h < len(rest))  # not cut by the image's (or the levelled region's) edge
    tall = whole & (h >= OTHER_LINE_HEIGHT * _char_height(mask[r0:r1, c0:c1]))
    if np.count_nonzero(tall) + np.count_nonzero(w[tall] > TOUCHING_WIDTH * h[tall]) < 2:
        return band
    where = "above" if s0 < r0 else "below"
    raise MultipleLinesError(f"{name}: more than one line of writing: another line stands {where} the one with "
                             f"the most ink; a line model reads one line per image. Crop the photo to each line and "
                             f"read the crops")


def _char_height(band: np.ndarray) -> float:
    """The median height of the characters in a text band's ink mask: of its connected components at least
    CHAR_SHARE of the band's height tall (not specks, dots or detached bars)."""
    heights = ops.component_boxes(band)[:, 3]
    chars = heights[heights >= CHAR_SHARE * band.shape[0]]
    return float(np.median(chars)) if len(chars) else float(band.shape[0])


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
    or a solid region (ImageError) other than one upright stroke."""
    fill, (h, w) = float(band.mean()), band.shape
    if fill < MIN_BAND_FILL or (fill > MAX_BAND_FILL and band.size < BLOT_AREA_SHARE * image_px):
        raise BlankImageError(f"{name}: no writing found, only {'specks' if fill < MIN_BAND_FILL else 'a blot'} "
                              f"({w}x{h} px, {fill:.0%} inked); the page looks blank. Write darker or bigger, or "
                              f"check the image is the right one")
    if fill > MAX_BAND_FILL and h < UPRIGHT_STROKE * w:
        raise ImageError(f"{name}: no text line found: the largest dark region ({w}x{h} px) is {fill:.0%} solid "
                         f"ink, not pen strokes; photograph the written line itself")


def _grow_into(seed: np.ndarray, allowed: np.ndarray, steps: int) -> np.ndarray:
    """`seed` grown `steps` pixels (3x3) within `allowed`: faint stroke ends that hang on clear strokes
    (hysteresis thresholding), without the noise that lies apart from them."""
    grown = seed
    for _ in range(steps):
        grown = ops.dilate(grown, 3) & (allowed | grown)
    return grown


def _desk(d: np.ndarray) -> np.ndarray:
    """The desk around a photographed sheet: along each image edge, the run of desk-bright pixels from the edge
    inwards, per column (row), grown by a few pixels (the sheet's blurred edge, its corners).

    Per column the run is cut halfway between the edge pixel's level and the darkest paper within
    DESK_SEARCH_SHARE of the image, so uneven lighting does not move it; a stretch of an edge counts as desk when
    its pixels stand DESK_STEP above that paper along at least DESK_EDGE_SHARE of the edge (a sheet turned a few
    degrees shows a thin wedge of desk along much of an edge; writing that merely touches an edge covers a
    short stretch of it and is kept). Along an edge where desk stands, the edge's outermost pixels all count as
    desk, so the grown mask takes the sliver the wedge thins out to, which no cut finds."""
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
        out[0] = True  # the whole edge: where the wedge thins out, its sliver lies within the halo of the edge
    return ops.dilate(desk, 2 * halo + 1) if desk.any() else desk


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
    fy, fx = ys[::step].astype(np.float32), xs[::step].astype(np.float32) - float(xs.mean())
    angles = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 1e-6, SKEW_STEP_DEG)
    scores = []
    for a in angles:
        y = np.rint(fy - fx * np.float32(np.tan(np.radians(a))))
        scores.append(float((np.bincount((y - y.min()).astype(np.int64)).astype(np.float64) ** 2).sum()))
    best = float(angles[int(np.argmax(scores))])
    return best if abs(best) >= SKEW_STEP_DEG / 2 else 0.0


def _shear(a: np.ndarray, angle_deg: float) -> np.ndarray:
    """Undo a rotation of the text by shifting each column vertically (x is kept, so the geometry holds)."""
    from PIL import Image

    t = float(np.tan(np.radians(angle_deg)))
    h, w = a.shape
    off = max(t * w, 0.0)
    out = ops.pil_float(a).transform((w, h + int(np.ceil(abs(t) * w))), Image.Transform.AFFINE, (1, 0, 0, t, 1, -off),
                              resample=Image.Resampling.BILINEAR, fillcolor=0.0)
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
    if not keep.any():
        if np.count_nonzero(mask) < EDGE_ONLY_SHARE * mask.size:
            raise BlankImageError(f"{name}: no writing found, only a faint line along the sheet's edge; the page "
                                  f"looks blank. Write darker or bigger, or check the image is the right one")
        raise ImageError(f"{name}: no text line found: the ink forms only lines across the image (a rule, the "
                         f"sheet's edge), not writing; photograph the written line itself")
    inked = np.flatnonzero(mask[:, keep].any(axis=1))
    r0, r1 = k0, k1
    while r0 > 0 and r0 - 1 in inked:
        r0 -= 1
    while r1 < mask.shape[0] and r1 in inked:
        r1 += 1
    c0, c1 = _line_span(np.where(keep, mask[r0:r1].sum(axis=0), 0))
    rows = np.flatnonzero(mask[r0:r1, c0:c1].any(axis=1))  # the band's height over its own columns
    r0, r1 = r0 + int(rows[0]), r0 + int(rows[-1]) + 1
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
    lo, hi = ops.trim_weak_ends(ink, floor)
    return int(runs[lo][0]), int(runs[hi][-1]) + 1


def _band_columns(mask: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """Columns inked in the band's core rows [k0, k1), less lines crossing the band (a sheet's edge, a margin
    rule): runs of columns whose ink continues past the core for more than its height (above and below together),
    narrow ones or on a thin core (CROSSING_SHARE), and thin runs on the image's left or right edge (under
    EDGE_LINE_SHARE of the core height)."""
    keep = np.zeros(mask.shape[1], bool)
    idx = np.flatnonzero(mask[k0:k1].any(axis=0))
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1):
        if len(run) == 0:
            continue
        rows = np.asarray(mask[:, run[0]:run[-1] + 1].any(axis=1))
        past = _leading(rows[:k0][::-1]) + _leading(rows[k1:])  # rows of ink it continues into past the core
        crossing = past > k1 - k0 and (len(run) < CROSSING_SHARE * past or k1 - k0 < MIN_BAND_PX)
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
    width = ops.stroke_width(vals > 0.5)
    if width < 0.7 * target:
        k = 2 * int(round((target - width) / 2)) + 1
        if k >= 3:
            return ops.dilate(vals, k)
    return vals
