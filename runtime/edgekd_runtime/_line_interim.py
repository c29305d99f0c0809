"""Interim stand-ins for what branch i12-decode adds (constrained decoding in `ctc_decode`, `lines.line_canvas`
with its `LineGeometry`): greedy CTC decoding with per-character spans, and the map from canvas columns back to
the input image. `line_recognizer` imports them from here only until that branch is merged; the signatures are
the ones it publishes, so switching is a change of import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UserInputError
from .images import ImageLike, load_gray
from .lines import preprocess_line
from .preprocess import _to_light_on_dark


@dataclass(frozen=True)
class Decoded:
    """A decoded line: text, string confidence in [0, 1], and per character (char, probability, first frame,
    last frame)."""

    text: str
    confidence: float
    characters: tuple[tuple[str, float, int, int], ...]


def compile_constraint(charset: str, pattern: str | None = None, allowed: str | None = None,
                       min_len: int | None = None, max_len: int | None = None) -> None:
    """No constraint support yet: any constraint is refused with a clear message."""
    if pattern is not None or allowed is not None or min_len is not None or max_len is not None:
        raise UserInputError("constrained decoding (a pattern, allowed characters or lengths) is not available in "
                             "this edgekd-runtime; read without --pattern")
    return None


def decode(probs: np.ndarray, charset: str, constraint: Any = None, blank: int = 0,
           beam_width: int = 16) -> Decoded:
    """Greedy (best-path) decoding of one line's (T, C) probabilities; the confidence is the best path's
    probability (the product of each frame's top probability)."""
    best = probs.argmax(-1)
    top = probs[np.arange(len(best)), best]
    chars: list[tuple[str, float, int, int]] = []
    t = 0
    while t < len(best):
        c, end = int(best[t]), t
        while end + 1 < len(best) and best[end + 1] == c:
            end += 1
        if c != blank:
            chars.append((charset[c - 1], float(top[t:end + 1].max()), t, end))
        t = end + 1
    conf = float(np.exp(np.log(np.clip(top, 1e-30, 1.0)).sum()))
    return Decoded("".join(ch for ch, *_ in chars), conf, tuple(chars))


@dataclass(frozen=True)
class LineGeometry:
    """Canvas column c -> input image x = x_offset + (c - left) * x_scale."""

    left: float
    x_offset: float
    x_scale: float
    image_width: int

    def to_image(self, c0: float, c1: float) -> tuple[int, int]:
        def x(c: float) -> int:
            return int(round(min(max(self.x_offset + (c - self.left) * self.x_scale, 0.0), self.image_width)))

        return x(c0), x(c1)


def line_canvas(image: ImageLike, height: int, width: int, polarity: str = "auto") -> tuple[np.ndarray, LineGeometry]:
    """`preprocess_line` plus where the canvas's columns lie in the input image."""
    canvas = preprocess_line(image, height, width, polarity)
    gray = load_gray(image)
    ink = _to_light_on_dark(gray, polarity)
    ink = np.clip(ink - float(np.median(ink)), 0.0, 1.0)
    cols = np.flatnonzero((ink > 0.35 * float(ink.max())).any(0))
    used = np.flatnonzero((canvas > 0).any(0))
    full_w = _image_width(image, gray.shape[1])
    per_work = full_w / gray.shape[1]
    span_canvas = max(1.0, float(used[-1] + 1 - used[0]))
    scale = (cols[-1] + 1 - cols[0]) / span_canvas * per_work
    return canvas, LineGeometry(float(used[0]), float(cols[0]) * per_work, float(scale), full_w)


def _image_width(image: Any, work_width: int) -> int:
    if isinstance(image, np.ndarray):
        return int(image.shape[1])
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        with Image.open(image) as im:
            return int(im.width)
    return int(getattr(image, "width", work_width))
