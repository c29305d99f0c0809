"""The image operations of the preprocessing (digits and lines), on OpenCV's C++ kernels.

One implementation for the board and for training (edgekd's data pipeline calls `preprocess`, which calls these).
Images are 8-bit grey levels (uint8) wherever a step allows it, a quarter of float32's memory traffic; the
functions that also serve the line path take float32 too and keep the dtype they are given. `cv2` is imported
on first use (`cv()`), so that `import edgekd_runtime` (a program that only runs a model on canvases, or
`edgekd-rt bench`) does not pay OpenCV's import time and ~14 MiB of RSS.

OpenCV runs single-threaded (`CV_THREADS_ENV`): on a frame of a camera's size its thread pool costs more than it
gains (a 640x480 frame's preprocessing: 0.37 ms wall / 0.37 ms CPU with one thread, 0.56 ms wall / 1.0 ms CPU
with two; its idle workers spin and slow the decoding and the interpreter that run next). albumentations makes
the same choice for its data pipelines. The setting is OpenCV's, process-wide.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from typing import Any

import numpy as np

from .errors import UserInputError

#: The number of threads OpenCV may use (default 1); "keep" leaves OpenCV's own setting (all cores).
CV_THREADS_ENV = "EDGEKD_OPENCV_THREADS"


@functools.lru_cache(maxsize=1)
def cv() -> Any:
    """The `cv2` module, imported once, with its thread count set from `CV_THREADS_ENV`.

    Raises:
        UserInputError: the variable is neither a whole number >= 1 nor "keep"."""
    import cv2

    raw = os.environ.get(CV_THREADS_ENV, "1").strip().lower()
    if raw != "keep":
        if not raw.isdigit() or int(raw) < 1:
            raise UserInputError(f"{CV_THREADS_ENV}={raw!r}: use a whole number of threads >= 1, or 'keep' for "
                             f"OpenCV's own setting; unset it for 1")
        cv2.setNumThreads(int(raw))
    return cv2


@functools.lru_cache(maxsize=64)
def _square(k: int) -> np.ndarray:
    return np.ones((k, k), np.uint8)


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
_LEVELS = np.arange(256, dtype=np.float64)
_HALF_LEVELS = _LEVELS + 0.5
_WORK = threading.local()


def work(name: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
    """A per-thread work array, reused from call to call for a frame-sized intermediate step: a fresh one each
    time costs more than the step itself on a busy machine (the allocator hands large blocks back to the kernel
    and faults them in again). Its content is whatever the last user left; valid until `work(name, ...)` is
    asked for again in this thread."""
    a = _WORK.__dict__.get(name)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = _WORK.__dict__[name] = np.empty(shape, dtype)
    return a


def clip01(a: np.ndarray) -> np.ndarray:
    """A float array clipped to [0, 1] in place (as np.clip computes it, without its Python-level wrapper)."""
    return np.minimum(np.maximum(a, 0.0, out=a), 1.0, out=a)


def to_levels(a: np.ndarray) -> np.ndarray:
    """Grey levels uint8 from float32 in [0, 1] (rounded, half to even like np.rint); uint8 is returned as is."""
    cv2 = cv()

    if a.dtype == np.uint8:
        return a
    return cv2.convertScaleAbs(np.asarray(a, np.float32), alpha=255.0)


def from_levels(a: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from uint8 grey levels (a new array)."""
    return a.astype(np.float32) * np.float32(1.0 / 255.0)


def median3(levels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """3x3 median filter of uint8 levels, edges replicated (into `out` when given)."""
    cv2 = cv()

    return cv2.medianBlur(np.ascontiguousarray(levels), 3, dst=out)


def invert(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """255 - levels for uint8 (into `out` when given), 1 - a for float in [0, 1]."""
    cv2 = cv()

    return cv2.bitwise_not(a, dst=out) if a.dtype == np.uint8 else np.float32(1.0) - a


def dilate(a: np.ndarray, k: int) -> np.ndarray:
    """Grey dilation with a k x k square (k odd); pixels outside the image do not count (for ink >= 0: zero
    outside). uint8, float32 or bool (as 0/1) in, the same dtype out."""
    cv2 = cv()

    if a.dtype == np.bool_:
        return cv2.dilate(np.ascontiguousarray(a).view(np.uint8), _square(k)).view(np.bool_)
    return cv2.dilate(a, _square(k))


def erode(a: np.ndarray, k: int) -> np.ndarray:
    """Grey erosion with a k x k square (k odd); pixels outside the image do not count (= edges replicated)."""
    cv2 = cv()

    if a.dtype == np.bool_:
        return cv2.erode(np.ascontiguousarray(a).view(np.uint8), _square(k)).view(np.bool_)
    return cv2.erode(a, _square(k))


def stroke_width(b: np.ndarray) -> float:
    """Mean stroke width in pixels of a mask (bool or uint8, nonzero = ink), ~ 2 * area / boundary length; the
    boundary is the ink with a 4-neighbour off the ink or off the image."""
    cv2 = cv()

    m = np.ascontiguousarray(b).view(np.uint8) if b.dtype == np.bool_ else b
    area = cv2.countNonZero(m)
    if area == 0:
        return 0.0
    interior = cv2.countNonZero(cv2.erode(m, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0))
    return 2.0 * area / max(area - interior, 1)


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Means of f x f blocks (uint8: rounded), the rows and columns past a whole number of blocks left out."""
    cv2 = cv()

    h, w = a.shape[:2]
    return cv2.resize(a[:h // f * f, :w // f * f], (w // f, h // f), interpolation=cv2.INTER_AREA)


def block_max(a: np.ndarray, f: int) -> np.ndarray:
    """Maxima of f x f blocks, (ceil(h / f), ceil(w / f)); the last blocks may be partial."""
    cv2 = cv()

    return cv2.dilate(a, _square(f), anchor=(0, 0))[::f, ::f]


def box_means(a: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    """float32 (height, width) means of a (width, height) `wh` grid of boxes over `a` (uint8 or float32), each
    pixel counted in the box its centre falls in: an exact box filter, from the column sums of each band of rows
    (an area resize by a non-integer factor is ~8x slower, and reducing by an integer factor first misplaces
    the boxes along the far edges, where a photo's desk is)."""
    cv2 = cv()

    h, w = a.shape[:2]
    if w % wh[0] == 0 and h % wh[1] == 0 and a.dtype == np.uint8:  # whole boxes (a 640x480 frame): two calls
        fx, fy = w // wh[0], h // wh[1]
        rows = cv2.reduce(a.reshape(h * wh[0], fx), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)  # each box's row runs
        return (rows.reshape(wh[1], fy, wh[0]).sum(axis=1) / (fx * fy)).astype(np.float32)
    xb, xn = _box_edges(w, wh[0])
    yb, yn = _box_edges(h, wh[1])
    depth, dtype = (cv2.CV_32S, np.int32) if a.dtype == np.uint8 else (cv2.CV_64F, np.float64)
    bands = np.zeros((wh[1], w), dtype)
    for i in range(wh[1]):
        if yn[i]:
            cv2.reduce(a[yb[i]:yb[i] + yn[i]], 0, cv2.REDUCE_SUM, dst=bands[i:i + 1], dtype=depth)
    sums = np.add.reduceat(bands, xb, axis=1).astype(np.float64)
    return (sums / (np.maximum(yn, 1)[:, None] * np.maximum(xn, 1)[None, :])).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _box_edges(n: int, boxes: int) -> tuple[np.ndarray, np.ndarray]:
    """(first pixel of each box, clipped to n - 1 for `np.add.reduceat`; pixels per box) for `boxes` boxes over
    n pixels, pixel j in the box that holds its centre j + 0.5."""
    edges = np.clip(np.ceil(np.arange(boxes + 1) * (n / boxes) - 0.5).astype(np.int64), 0, n)
    return np.minimum(edges[:-1], n - 1), np.diff(edges)


def background(d: np.ndarray, cells: int = 16, out: np.ndarray | None = None, dark: bool = False) -> np.ndarray:
    """A smooth map of the paper's level (uneven lighting), from the darkest part of coarse cells: box means on
    a grid of `cells` along the longer side, their 3x3 minimum, a 3x3 mean, bilinear back to full size. uint8
    or float32 in, the same dtype out (into `out` when given). `dark`: the ink is dark on `d` (light paper):
    the map of the inverted image, inverted back (the brightest part of the cells), without inverting `d`."""
    cv2 = cv()

    h, w = d.shape
    side = max(h, w)
    coarse = box_means(d, (max(2, w * cells // side), max(2, h * cells // side)))
    low = cv2.blur((cv2.dilate if dark else cv2.erode)(coarse, _square(3)), (3, 3), borderType=cv2.BORDER_REPLICATE)
    if d.dtype == np.uint8:
        low = cv2.convertScaleAbs(low)
    return cv2.resize(low, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)


def flatten(levels: np.ndarray, dark: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The ink of uint8 levels, light on dark (255 - levels when the ink is `dark`), less its `background`,
    clipped at 0 (into `out` when given): for dark ink (255 - x) - (255 - map) = map - x, so the inverted frame
    is never made."""
    cv2 = cv()

    bg = background(levels, out=out, dark=dark)
    return cv2.subtract(bg, levels, dst=out) if dark else cv2.subtract(levels, bg, dst=out)


def bitwise_and(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a & b of two uint8 images (a level & a 0/255 mask: the level where the mask is set, else 0)."""
    cv2 = cv()

    return cv2.bitwise_and(a, b)


def subtract(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a - b clipped at 0 (and at 1 for float): saturating for uint8 levels (into `out` when given, which may be
    `b`)."""
    cv2 = cv()

    if a.dtype == np.uint8:
        return cv2.subtract(a, b, dst=out)
    return np.clip(a - b, 0.0, 1.0)


def histogram(levels: np.ndarray, mask: np.ndarray | None = None, step: int = 1, above: int = -1) -> np.ndarray:
    """Counts (256,) float32 (exact below 2**24) of the uint8 levels (within `mask`, nonzero = counted; every
    `step`-th row and column; only levels > `above`: the counts within `threshold(levels, above)`, without
    making the mask)."""
    cv2 = cv()

    a = np.ascontiguousarray(levels[::step, ::step]) if step > 1 else levels
    if mask is not None:
        if step > 1:
            mask = np.ascontiguousarray(mask[::step, ::step])
        if mask.dtype == np.bool_:
            mask = np.ascontiguousarray(mask).view(np.uint8)
    hist = cv2.calcHist([a], [0], mask, [256], [0, 256]).ravel()
    if above >= 0:
        hist[:above + 1] = 0
    return hist


def hist_percentile(hist: np.ndarray, q: float, values: np.ndarray | None = None) -> float:
    """np.percentile(x, 100 q) (linear interpolation; q=0.5 is np.median) of the values a histogram counts:
    hist[i] values equal to values[i] (default: i), `values` ascending."""
    c = hist.cumsum()  # (whole counts below 2**24: exact in float32; a dtype= argument costs a slower loop)
    n = int(c[-1])
    if n == 0:
        raise ValueError("percentile of an empty histogram")
    pos = q * (n - 1)
    lo = math.floor(pos)
    i, j = c.searchsorted((lo, lo + 1), side="right").tolist()
    v = _LEVELS if values is None else values
    a, b = float(v[i]), float(v[min(j, len(v) - 1)])
    return a + (pos - lo) * (b - a)


def hist_median_mad(hist: np.ndarray) -> tuple[float, float]:
    """(median, median absolute deviation from it) of the levels a histogram counts, as np.median computes them
    on the levels themselves."""
    med = hist_percentile(hist, 0.5)
    m, n = math.floor(med), len(hist)  # the median is a whole or a half level
    half = int(med != m)
    # the deviations in ascending order: the histogram folded about the median (k or k + 1/2 levels away)
    folded = np.zeros(n, hist.dtype)
    folded[:m + 1] += hist[m::-1]
    folded[1 - half:n - m - half] += hist[m + 1:]
    return med, hist_percentile(folded, 0.5, _HALF_LEVELS if half else _LEVELS)


def threshold(levels: np.ndarray, above: float, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 mask (255 where the level is > `above`, else 0; into `out` when given)."""
    cv2 = cv()

    return cv2.threshold(levels, math.floor(above), 255, cv2.THRESH_BINARY, dst=out)[1]


def row_col_sums(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sums along each row, sums along each column) of a uint8 image, as int32 vectors."""
    cv2 = cv()

    return (cv2.reduce(mask, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel(),
            cv2.reduce(mask, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel())


def lut(levels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table[levels] for uint8 levels and a (256,) uint8 or float32 table."""
    cv2 = cv()

    return cv2.LUT(levels, table)


def blocks_to(a: np.ndarray, f: int, hw: tuple[int, int]) -> np.ndarray:
    """Each pixel of `a` as an f x f block, the result's last row and column repeated up to (height, width) `hw`
    (the inverse of `block_mean`'s grid)."""
    cv2 = cv()

    h, w = a.shape[:2]
    up = cv2.resize(a, (w * f, h * f), interpolation=cv2.INTER_NEAREST_EXACT)
    return cv2.copyMakeBorder(up, 0, hw[0] - h * f, 0, hw[1] - w * f, cv2.BORDER_REPLICATE)


def centre_of_mass(a: np.ndarray) -> tuple[float, float] | None:
    """(row, column) of a non-negative float32 image's centre of mass, in pixel indices; None when it is all 0."""
    cv2 = cv()

    m = cv2.moments(a)
    return (m["m01"] / m["m00"], m["m10"] / m["m00"]) if m["m00"] > 0 else None


def min_max(a: np.ndarray) -> tuple[float, float]:
    """(minimum, maximum) of a 2-D image in one pass."""
    cv2 = cv()

    lo, hi, _, _ = cv2.minMaxLoc(a)
    return float(lo), float(hi)


def count(a: np.ndarray) -> int:
    """Nonzero pixels of a 2-D uint8 image."""
    cv2 = cv()

    return int(cv2.countNonZero(a))


def components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 8-connected components of `mask` (bool) that hold a pixel of `seeds` (bool): a geodesic
    reconstruction of the seeds within the mask."""
    cv2 = cv()

    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    hit = np.zeros(n, bool)
    hit[np.unique(labels[seeds & mask])] = True
    hit[0] = False
    return hit[labels]


def component_boxes(mask: np.ndarray) -> np.ndarray:
    """The bounding boxes (x, y, width, height), int32 (n, 4), of the 8-connected components of `mask` (bool)."""
    cv2 = cv()

    _, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask).view(np.uint8), connectivity=8)
    return stats[1:, :4]


def pil_float(a: np.ndarray) -> Any:
    """A float32 array as a Pillow "F" image (for Pillow's geometric transforms)."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")


def resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """float32 (any values) resized to (height, width) `hw` with an antialiased Lanczos-3 filter, as Pillow's
    `Image.resize(..., LANCZOS)` computes it on a float image (its support widens with the shrink factor;
    OpenCV's INTER_LANCZOS4 does not, and aliases thin strokes when shrinking): two small matrix products."""
    h, w = a.shape
    out = np.asarray(a, np.float64)
    if w != hw[1]:
        out = out @ _lanczos_matrix(w, hw[1]).T
    if h != hw[0]:
        out = _lanczos_matrix(h, hw[0]) @ out
    return out.astype(np.float32)


def _lanczos(x: np.ndarray) -> np.ndarray:
    """Pillow's Lanczos-3 kernel: sinc(x) sinc(x / 3) on [-3, 3)."""
    return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3.0), 0.0)


@functools.lru_cache(maxsize=256)
def _lanczos_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling weights of Pillow's precompute_coeffs for the Lanczos filter (support 3, widened
    by the shrink factor; each output pixel's window of input pixels, weights normalised to sum 1)."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        k = _lanczos((np.arange(lo, hi) - centre + 0.5) / filterscale)
        total = k.sum()
        m[i, lo:hi] = k / total if total != 0.0 else k
    m.setflags(write=False)
    return m


def trim_weak_ends(ink: list[float], floor: float) -> tuple[int, int]:
    """Indices [lo, hi] of the runs left after dropping, from either end, runs holding less ink than `floor` (the
    weaker end first): specks beside a digit or a line. At least one run is kept."""
    lo, hi = 0, len(ink) - 1
    while lo < hi and min(ink[lo], ink[hi]) < floor:
        if ink[lo] <= ink[hi]:
            lo += 1
        else:
            hi -= 1
    return lo, hi
