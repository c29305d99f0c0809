"""Photos of digits, for measuring the board's image path on what users send (the run's report, benchmarks).

`render_digit_photo(canvas)` draws a digit canvas (light ink on dark, 28x28) large, in dark ink, on unevenly lit,
noisy paper, off centre, at a camera's 640x480: the kind of frame `edgekd_runtime` decodes and preprocesses.
"""

from __future__ import annotations

import numpy as np

PHOTO_HEIGHT_PX, PHOTO_WIDTH_PX = 480, 640


def render_digit_photo(canvas: np.ndarray, height: int = PHOTO_HEIGHT_PX, width: int = PHOTO_WIDTH_PX,
                       seed: int = 0) -> np.ndarray:
    """A digit canvas (S, S) light-on-dark (uint8 0-255 or float 0-1) -> a grayscale photo uint8 (height, width):
    the digit 10x larger (at most 3/4 of the height), dark ink on paper lit brighter to the right, sensor noise."""
    from PIL import Image

    from edgekd_runtime.pixels import as_canvases

    c = as_canvases(canvas, what="digit canvas")
    side = min(10 * c.shape[0], 3 * height // 4, width // 2)
    big = np.asarray(Image.fromarray(c, mode="F").resize((side, side), Image.BILINEAR), np.float32)
    ink = np.zeros((height, width), np.float32)
    top, left = (height - side) // 3, width // 2
    ink[top:top + side, left:left + side] = np.clip(big, 0.0, 1.0)
    paper = 0.72 + 0.2 * np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    img = paper * (1.0 - 0.85 * ink) + np.random.default_rng(seed).normal(0.0, 0.04, (height, width))
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)
