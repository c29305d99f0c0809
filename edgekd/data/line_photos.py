"""Photos of composed lines, for testing and benchmarking the board's line preprocessing on what users send.

`render_line_photo(canvas, seed)` turns a composed line canvas (`edgekd.data.lines`, light ink on dark) into a
photo of that line written in dark ink on a sheet of light paper: 2-3x larger than the canvas, slightly rotated
(up to +-5 degrees), unevenly lit, with a margin of desk around the sheet, a slight blur and sensor noise.
Deterministic for a seed; `polarity="light-on-dark"` renders the negative (chalk on a board, a screen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from edgekd_runtime.pixels import as_canvases

POLARITIES = ("dark-on-light", "light-on-dark")
Seed = Union[int, Sequence[int]]


@dataclass(frozen=True)
class PhotoParams:
    """What a photo's seed drew (for tests that need the truth, e.g. where the text went)."""

    scale: float
    angle_deg: float
    blur_sigma_px: float
    noise_sigma: float


def draw_params(seed: Seed, max_angle_deg: float = 5.0) -> PhotoParams:
    """The scale, rotation, blur and noise a photo of `seed` gets."""
    rng = np.random.default_rng(seed)
    return PhotoParams(float(rng.uniform(2.0, 3.0)), float(rng.uniform(-max_angle_deg, max_angle_deg)),
                       float(rng.uniform(0.5, 1.3)), float(rng.uniform(0.01, 0.03)))


def render_line_photo(canvas: np.ndarray, seed: Seed, polarity: str = "dark-on-light",
                      params: PhotoParams | None = None) -> np.ndarray:
    """A composed line canvas (H, W) light-on-dark (uint8 0-255 or float 0-1) -> a photo of it, uint8 (h, w).

    Args:
        canvas: the line canvas (the zero padding on its right is dropped).
        seed: an int or a sequence of ints; makes the photo (paper, lighting, desk, noise) and draws `params`
            unless they are given.
        polarity: `dark-on-light` (ink on paper) or `light-on-dark` (its negative).
        params: scale, rotation, blur and noise to use instead of drawing them.
    """
    import cv2

    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    p = params or draw_params(seed)
    rng = np.random.default_rng([*np.atleast_1d(np.asarray(seed, dtype=np.int64)).tolist(), 7])
    ink = as_canvases(np.asarray(canvas), what="line canvas")
    cols = np.flatnonzero(ink.max(0) > 0.1)
    ink = ink[:, :cols[-1] + 3] if len(cols) else ink
    big = np.clip(cv2.resize(ink, None, fx=p.scale, fy=p.scale, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    h, w = big.shape
    sheet = _on_sheet(big, rng)
    desk = _desk_margins(h, rng)
    frame_h, frame_w = sheet.shape[0] + desk[0] + desk[1], sheet.shape[1] + desk[2] + desk[3]
    m = cv2.getRotationMatrix2D((desk[2] + sheet.shape[1] / 2, desk[0] + sheet.shape[0] / 2), p.angle_deg, 1.0)
    m[:, 2] += (desk[2], desk[0])  # place the sheet inside the frame, then turn it about its centre
    warp = dict(dsize=(frame_w, frame_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ink_f = cv2.warpAffine(sheet, m, borderValue=0.0, **warp)
    paper_f = cv2.warpAffine(np.ones_like(sheet), m, borderValue=0.0, **warp)
    photo = _expose(ink_f, paper_f, rng)
    photo = cv2.GaussianBlur(photo, (0, 0), p.blur_sigma_px)
    photo = photo + rng.normal(0.0, p.noise_sigma, photo.shape).astype(np.float32)
    if polarity == "light-on-dark":
        photo = 1.0 - photo
    return np.clip(np.rint(photo * 255.0), 0, 255).astype(np.uint8)


def _on_sheet(big: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The text on a sheet with paper margins (0.6-1.6 text heights above/below, 0.3-1.2 left/right)."""
    h = big.shape[0]
    top, bottom = (int(rng.uniform(0.6, 1.6) * h) for _ in range(2))
    left, right = (int(rng.uniform(0.3, 1.2) * h) for _ in range(2))
    return np.pad(big, ((top, bottom), (left, right)))


def _desk_margins(text_h: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Desk visible above, below, left and right of the sheet (at least one side shows some)."""
    sides = [int(rng.uniform(0.0, 0.5) * text_h) if rng.random() < 0.6 else 0 for _ in range(4)]
    if not any(sides):
        sides[int(rng.integers(0, 4))] = int(rng.uniform(0.2, 0.5) * text_h)
    return sides[0], sides[1], sides[2], sides[3]


def _expose(ink: np.ndarray, paper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Reflectances under uneven light: paper 0.8-0.95, ink 0.1-0.35, desk 0.1-0.35 with a coarse texture;
    lighting falls off by up to 35 % along a random direction and towards the corners."""
    import cv2

    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * xx / w + np.sin(theta) * yy / h)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    vignette = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * rng.uniform(0.0, 0.4)
    light = (1.0 - rng.uniform(0.1, 0.35) * ramp - vignette).astype(np.float32)
    paper_r, ink_r, desk_r = rng.uniform(0.8, 0.95), rng.uniform(0.1, 0.35), rng.uniform(0.1, 0.35)
    grain = cv2.resize(rng.normal(0, 0.04, (max(2, h // 16), max(2, w // 16))).astype(np.float32), (w, h))
    surface = paper * (paper_r + (ink_r - paper_r) * ink) + (1.0 - paper) * (desk_r + grain)
    return (surface * light).astype(np.float32)


def aligned_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two canvases (blurred 1 px) at the best horizontal stretch (+-10 %) and shift (+-3 px):
    a photo's text band can come out a pixel taller or shorter than the clean canvas's, which stretches it."""
    import cv2

    a, b = cv2.GaussianBlur(a, (0, 0), 1.0), cv2.GaussianBlur(b, (0, 0), 1.0)
    best = -1.0
    for s in np.arange(0.9, 1.101, 0.02):
        w = int(round(a.shape[1] * s))
        bs = cv2.resize(b, (w, b.shape[0]))
        bs = bs[:, :a.shape[1]] if w >= a.shape[1] else np.pad(bs, ((0, 0), (0, a.shape[1] - w)))
        for dx in range(-3, 4):
            best = max(best, float(np.corrcoef(a.ravel(), np.roll(bs, dx, 1).ravel())[0, 1]))
    return best
