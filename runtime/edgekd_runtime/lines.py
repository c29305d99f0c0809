"""Text lines for CTC line recognizers: preprocessing to a line canvas (with its geometry), greedy CTC decoding.

numpy, Pillow and OpenCV through `imageops` (this module runs on the board, and training imports it so both see
the same lines).

A "line canvas" is float32 (height, width) in [0, 1], light ink on dark, the text band scaled to the height the
model takes (ink filling TEXT_HEIGHT_SHARE of it, centred), left-aligned and zero-padded on the right.
`line_canvas` returns it with a `LineGeometry` (canvas columns -> the input image's x pixels; CTC frame f covers
canvas columns [f * stride, (f + 1) * stride)); photos and scans go through `line_band.photo_band`; `line_chunks`
reads lines too wide for the model in pieces. Decoding with constraints and confidences: `ctc_decode`.
CTC convention: class 0 is the blank, class i + 1 is `charset[i]`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .errors import BlankImageError, ImageError, UserInputError
from .imageops import resize
from .images import MAX_WORK_SIDE_PX, ImageLike, describe, load_gray, upright_size
from .line_band import photo_band
from .preprocess import MIN_INK_CONTRAST, POLARITIES, to_light_on_dark

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
        ink, x0 = photo_band(gray, polarity, name)
    else:
        ink, x0 = _digital_band(gray, polarity, name)
    if size and (size[0] > size[1]) != (gray.shape[1] > gray.shape[0]) and size[0] != size[1]:
        size = (size[1], size[0])  # turned upright by an orientation the header did not show (`upright_size`)
    src_w = size[0] if size else gray.shape[1]
    return _Band(name, ink, x0, gray.shape[1] / src_w, src_w)


def load_line_image(image: ImageLike) -> np.ndarray:
    """A line image decoded as `line_canvas` decodes it: float32 grayscale at the line's work resolution."""
    return load_gray(image, _work_side_px(_source_size(image)))


def _digital_band(gray: np.ndarray, polarity: str, name: str) -> tuple[np.ndarray, int]:
    """A clean digital line: the ink above the median, cropped at 35 % of its peak, scaled to peak 1."""
    ink = to_light_on_dark(gray, polarity)
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
        resize(band.astype(np.float32), (text_h, new_w)), 0.0, 1.0)
    return out, new_w


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
    """The input image's (width, height) in pixels as `load_gray` turns it, or None when it cannot be told (then
    `load_gray` says what is wrong with the image). A file is refused here as `load_gray` refuses it (ImageError),
    from its header when its decoding would exceed the budget (`images.upright_size`)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (1, 2, 3, 4):
            return int(image.shape[2]), int(image.shape[1])  # CHW, as the loader reads it
        return (int(image.shape[1]), int(image.shape[0])) if image.ndim >= 2 else None
    if hasattr(image, "size") and hasattr(image, "mode"):
        return int(image.size[0]), int(image.size[1])
    if isinstance(image, (str, os.PathLike)):
        return upright_size(image)
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
