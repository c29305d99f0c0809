"""Text lines for CTC line recognizers: preprocessing to a line canvas, greedy CTC decoding, error rates.

Pure numpy + pillow (this module runs on the board, and training imports it so both see the same lines).

A "line canvas" is float32 (height, width) in [0, 1], light ink on dark, the text band scaled to the height the
model takes (ink filling TEXT_HEIGHT_SHARE of it, centred), left-aligned and zero-padded on the right.
CTC convention: class 0 is the blank, class i + 1 is `charset[i]`.
"""

from __future__ import annotations

import numpy as np

from .errors import BlankImageError, ImageError
from .images import ImageLike, describe, load_gray
from .preprocess import MIN_INK_CONTRAST, _resize, _to_light_on_dark

#: Share of the line height the ink band fills (median of the composed training lines, measured with the same
#: 35 %-of-peak ink mask as below).
TEXT_HEIGHT_SHARE = 0.83
BLANK = 0


class LineTooWideError(ImageError):
    """A line that does not fit the model's maximum width at its input height."""


def preprocess_line(image: ImageLike, height: int, width: int, polarity: str = "auto") -> np.ndarray:
    """One line image (path, PIL image or array) -> line canvas float32 (height, width) in [0, 1].

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
    if new_w + 4 > width:
        raise LineTooWideError(f"{name}: the line is {new_w + 4} px wide at height {height}, more than the model's "
                               f"{width} px; split it into shorter lines (about {width // height} characters "
                               f"of this size fit)")
    out = np.zeros((height, width), np.float32)
    top = (height - text_h) // 2
    out[top:top + text_h, 2:2 + new_w] = np.clip(_resize(band.astype(np.float32), (text_h, new_w)), 0.0, 1.0)
    return out


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
