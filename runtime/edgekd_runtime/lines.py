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

from .errors import BlankImageError, ImageError
from .images import MAX_WORK_SIDE_PX, ImageLike, describe, load_gray
from .preprocess import MIN_INK_CONTRAST, _resize, _to_light_on_dark

#: Share of the line height the ink band fills (median of the composed training lines, measured with the same
#: 35 %-of-peak ink mask as below).
TEXT_HEIGHT_SHARE = 0.83
BLANK = 0
#: Canvas columns left of the text (the composed training lines have 1-4).
LEFT_MARGIN_PX = 2


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

    Raises:
        BlankImageError: no ink above the paper's level.
        LineTooWideError: the text, scaled to `height`, is wider than `width`.
    """
    name = describe(image)
    gray = load_gray(image)
    ink = _to_light_on_dark(gray, polarity)
    ink = np.clip(ink - float(np.median(ink)), 0.0, 1.0)
    peak = float(ink.max()) if ink.size else 0.0
    if peak < MIN_INK_CONTRAST:
        raise BlankImageError(f"{name}: no ink found (contrast {peak:.3f}); is the line blank or too faint?")
    mask = ink > 0.35 * peak
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    band = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] / peak
    text_h = max(1, int(round(TEXT_HEIGHT_SHARE * height)))
    scale = text_h / band.shape[0]
    new_w = max(1, int(round(band.shape[1] * scale)))
    if new_w + 2 * LEFT_MARGIN_PX > width:
        raise LineTooWideError(f"{name}: the line is {new_w + 2 * LEFT_MARGIN_PX} px wide at height {height}, more than the model's "
                               f"{width} px; split it into shorter lines (about {width // height} characters "
                               f"of this size fit)")
    out = np.zeros((height, width), np.float32)
    top = (height - text_h) // 2
    out[top:top + text_h, LEFT_MARGIN_PX:LEFT_MARGIN_PX + new_w] = np.clip(
        _resize(band.astype(np.float32), (text_h, new_w)), 0.0, 1.0)
    src_w = _source_width(image, gray)
    per_px = gray.shape[1] / src_w  # work pixels per input pixel
    return out, LineGeometry(src_w, cols[0] / per_px, new_w / band.shape[1] * per_px)


def _source_width(image: ImageLike, gray: np.ndarray) -> int:
    """The input image's width in pixels (`load_gray` may have downscaled it)."""
    if max(gray.shape) <= MAX_WORK_SIDE_PX // 2:  # the loader only reduces images above its work side
        return int(gray.shape[1])
    if isinstance(image, np.ndarray):
        return int(image.shape[2] if image.ndim == 3 and image.shape[0] in (1, 3, 4)
                   and image.shape[2] not in (1, 2, 3, 4) else image.shape[1])  # HW(C), or CHW as the loader reads it
    if hasattr(image, "size") and hasattr(image, "mode"):
        return int(image.size[0])
    from PIL import Image

    with Image.open(image) as im:  # the header only; EXIF orientations 5-8 are turned a quarter by the loader
        return int(im.size[1] if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else im.size[0])


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
