"""Data for the `lines` task: strings of handwritten characters, one text line per image (read with CTC).

Two sources (a registry, like the digit sources):

* `embedded`: digit strings composed from the embedded MNIST digits, no download. The digits are first split
  (the digit task's stratified split, same seed); strings of the train split use train digits only and the val/test
  strings their own split's digits, so no digit image is in two splits. See `compose_line` for the composition.
* `folder`: a directory of line images and a `labels.tsv` (file, text per row, read by `line_labels`); the
  character set is inferred. Images go through the runtime's line preprocessing
  (`edgekd_runtime.lines.preprocess_line`), the one the board uses.

A line is a "line canvas": uint8 (H, W) light ink on dark, the text left-aligned, zero-padded on the right to the
fixed width W (the width policy of the models: fixed width with padding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekd.models.line_models import FRAME_STRIDE
from edgekd.models.students import INPUT_SIZE_RANGE
from edgekd_runtime.errors import UserInputError
from edgekd_runtime.pixels import to_uint8
from edgekd_runtime.registry import Registry

from .idx import DataFileError
from .line_labels import LABELS_FILE, LabelRow, check_fits_frames, folder_split_sizes, read_labels_tsv
from .spec import path_hint

DIGIT_CHARSET = "0123456789"


@dataclass(frozen=True)
class LineSpec:
    """Everything that rebuilds the same line splits.

    Attributes:
        source: `embedded` (composed digit strings) or `folder` (images + labels.tsv).
        path: the folder for `folder`.
        seed: seed of the digit split and of the composition.
        height: line height in pixels (the models' input height).
        width: fixed line width in pixels (lines are left-aligned and padded to it; wider ones are refused).
        min_len, max_len: string lengths of the composed train/val lines.
        test_min_len, test_max_len: string lengths of the composed test lines.
        train_lines, val_lines, test_lines: how many lines each composed split holds (train: per view).
        val_fraction, test_fraction: shares of a `folder` source's lines that go to val and test.
    """

    source: str = "embedded"
    path: str | None = None
    seed: int = 0
    height: int = 24
    width: int = 192
    min_len: int = 1
    max_len: int = 12
    test_min_len: int = 3
    test_max_len: int = 10
    train_lines: int = 4000
    val_lines: int = 500
    test_lines: int = 2000
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        lo, hi = INPUT_SIZE_RANGE
        if not lo <= self.height <= hi or self.width < self.height or self.width % FRAME_STRIDE:
            raise UserInputError(f"line height must be {lo}..{hi} px (the heights the line students take) and width "
                                 f">= height and a multiple of {FRAME_STRIDE} (got height {self.height}, width "
                                 f"{self.width})")
        if not 1 <= self.min_len <= self.max_len or not 1 <= self.test_min_len <= self.test_max_len:
            raise UserInputError(f"line lengths must satisfy 1 <= min <= max (got {self.min_len}..{self.max_len}, "
                                 f"test {self.test_min_len}..{self.test_max_len})")
        if min(self.train_lines, self.val_lines, self.test_lines) < 1:
            raise UserInputError("train_lines, val_lines and test_lines must be >= 1")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise UserInputError("val_fraction and test_fraction must be in [0, 1) and sum to < 1")
        if self.source == "embedded":
            self._check_composed_lengths()

    def _check_composed_lengths(self) -> None:
        """Composed strings of up to max_len digits (a digit may repeat: 2 * max_len - 1 frames) fit the frames."""
        longest = max(self.max_len, self.test_max_len)
        if 2 * longest - 1 > self.frames:
            raise UserInputError(f"composed lines of up to {longest} digits need up to {2 * longest - 1} CTC frames "
                                 f"(a repeated digit takes a blank between), but a line {self.width} px wide has "
                                 f"{self.frames}: set max_len and test_max_len <= {(self.frames + 1) // 2}, or width "
                                 f">= {(2 * longest - 1) * FRAME_STRIDE}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LineSpec":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserInputError(f"unknown line data option(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    @property
    def frames(self) -> int:
        """CTC frames per line: every line model downsamples the width by FRAME_STRIDE."""
        return self.width // FRAME_STRIDE


@dataclass(frozen=True)
class LineSplit:
    """One split: `x` uint8 (N, H, W) line canvases, `texts` the transcriptions; for composed lines, `sources`
    holds per line the indices of the digit images it was composed from (into its split's digit array)."""

    x: np.ndarray
    texts: list[str]
    sources: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class LineSplits:
    """train/val/test lines, the character set (CTC class i+1 = charset[i]; 0 is the blank) and the spec.
    `compose_train(view)` makes another composition of the training digits (None for fixed data sets)."""

    train: LineSplit
    val: LineSplit
    test: LineSplit
    charset: str
    spec: LineSpec
    compose_train: Callable[[int], LineSplit] | None = field(default=None, compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        """Charset plus the CTC blank."""
        return len(self.charset) + 1

    def train_view(self, view: int) -> LineSplit:
        """View 0 is `train`; others are fresh compositions (or `train` again for fixed data sets)."""
        return self.train if view == 0 or self.compose_train is None else self.compose_train(view)


LINE_SOURCES: Registry[Callable[[LineSpec], LineSplits]] = Registry("line data source")


def load_lines(spec: LineSpec) -> LineSplits:
    """Load `spec.source` (same spec, same splits)."""
    return LINE_SOURCES.get(spec.source)(spec)


def encode_texts(texts: list[str], charset: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (targets int64 (N, Lmax) zero-padded with class ids 1..len(charset), lengths int64 (N,)).

    Raises UserInputError naming the first text with a character outside `charset` or an empty text.
    """
    lut = {c: i + 1 for i, c in enumerate(charset)}
    lengths = np.array([len(t) for t in texts], np.int64)
    targets = np.zeros((len(texts), max(1, int(lengths.max(initial=1)))), np.int64)
    for i, t in enumerate(texts):
        if not t:
            raise UserInputError(f"{where}: line {i} has an empty transcription; every line needs text")
        try:
            targets[i, :len(t)] = [lut[c] for c in t]
        except KeyError:
            bad = sorted(set(t) - set(charset))
            raise UserInputError(f"{where}: line {i} ({t!r}) has character(s) {bad} outside the model's charset "
                                 f"{charset!r}; retrain with these characters or drop the line") from None
    return targets, lengths


# ---------------------------------------------------------------------------------------------------------------
# Composition of digit strings
# ---------------------------------------------------------------------------------------------------------------

def _ink_crop(canvas: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(canvas.max(1) > 24), np.flatnonzero(canvas.max(0) > 24)
    if not len(rows):
        return canvas
    return canvas[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def compose_line(digits: list[np.ndarray], rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Compose 28x28 digit canvases into one line canvas uint8 (height, width), light on dark, left-aligned.

    Realistic variation: a per-line writing size and per-digit scale, per-digit rotation and baseline jitter,
    spacing from overlapping/touching to wide gaps (per line, jittered per digit), a per-line slant, and
    thinner or thicker strokes. A line that comes out wider than `width` is shrunk to fit.
    """
    import cv2

    size = height * rng.uniform(0.66, 0.84)  # digit height in px
    spacing = rng.uniform(-0.12, 0.45)  # gap / digit height
    pieces, x, ys = [], 0.0, []
    for d in digits:
        crop = _ink_crop(d)
        h = size * rng.uniform(0.88, 1.1)
        s = h / crop.shape[0]
        w = max(1, int(round(crop.shape[1] * s)))
        a = cv2.resize(crop, (w, max(1, int(round(h)))), interpolation=cv2.INTER_AREA)
        rot = cv2.getRotationMatrix2D((w / 2, a.shape[0] / 2), rng.uniform(-7, 7), 1.0)
        a = cv2.warpAffine(a, rot, (w, a.shape[0]), flags=cv2.INTER_LINEAR)
        pieces.append((a, int(round(x))))
        ys.append(rng.normal(0, 0.05) * height)
        gap = (spacing + rng.normal(0, 0.06)) * size
        x += w + max(gap, -0.2 * w)
    pad = height  # room for slant and jitter
    total = int(round(x)) + 2 * pad + 8
    line = np.zeros((height, total), np.uint8)
    for (a, x0), dy in zip(pieces, ys):
        top = int(round((height - a.shape[0]) / 2 + dy))
        top = min(max(top, 0), height - a.shape[0])
        sl = np.s_[top:top + a.shape[0], pad + x0:pad + x0 + a.shape[1]]
        line[sl] = np.maximum(line[sl], a)
    slant = rng.uniform(-0.3, 0.3)
    shear = np.float32([[1, slant, -slant * height / 2], [0, 1, 0]])
    line = cv2.warpAffine(line, shear, (total, height), flags=cv2.INTER_LINEAR)
    stroke = rng.choice([-1, 0, 0, 1])
    if stroke:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2, 2))
        line = cv2.dilate(line, k) if stroke > 0 else cv2.erode(line, k)
    return fit_line(line, height, width, margins=(int(rng.integers(1, 5)), int(rng.integers(1, 5))))


def fit_line(line: np.ndarray, height: int, width: int, margins: tuple[int, int] = (2, 2)) -> np.ndarray:
    """Crop a light-on-dark line to its ink columns, keep `margins` px of background left/right, shrink it if it
    is wider than `width`, and left-align it on a (height, width) zero canvas."""
    import cv2

    cols = np.flatnonzero(line.max(0) > 24)
    if len(cols):
        line = line[:, max(cols[0] - margins[0], 0):cols[-1] + 1 + margins[1]]
    if line.shape[1] > width:
        new_h = max(1, int(round(height * width / line.shape[1])))
        small = cv2.resize(line, (width, new_h), interpolation=cv2.INTER_AREA)
        line = np.zeros((height, width), np.uint8)
        top = (height - new_h) // 2
        line[top:top + new_h] = small
    out = np.zeros((height, width), np.uint8)
    out[:, :line.shape[1]] = line
    return out


def compose_split(x: np.ndarray, y: np.ndarray, class_names: list[str], n: int, lengths: tuple[int, int],
                  height: int, width: int, seed: Any) -> LineSplit:
    """`n` lines composed from the digit canvases `x` (labels `y`), lengths uniform in `lengths`."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, height, width), np.uint8)
    texts, sources = [], []
    for i in range(n):
        idx = rng.integers(0, len(y), int(rng.integers(lengths[0], lengths[1] + 1)))
        out[i] = compose_line([x[j] for j in idx], rng, height, width)
        texts.append("".join(class_names[int(y[j])] for j in idx))
        sources.append(idx)
    return LineSplit(out, texts, sources)


@LINE_SOURCES.register(key="embedded")
def embedded_lines(spec: LineSpec) -> LineSplits:
    """Digit strings composed from the embedded digits (see the module doc); deterministic for `spec.seed`."""
    from . import DataSpec, load_data

    d = load_data(DataSpec("embedded", seed=spec.seed))
    names, h, w = d.class_names, spec.height, spec.width
    full, test_len = (spec.min_len, spec.max_len), (spec.test_min_len, spec.test_max_len)

    def train_view(view: int) -> LineSplit:
        return compose_split(d.train.x, d.train.y, names, spec.train_lines, full, h, w, [spec.seed, 0, view])

    return LineSplits(train_view(0),
                      compose_split(d.val.x, d.val.y, names, spec.val_lines, full, h, w, [spec.seed, 1]),
                      compose_split(d.test.x, d.test.y, names, spec.test_lines, test_len, h, w, [spec.seed, 2]),
                      DIGIT_CHARSET, spec, train_view)


# ---------------------------------------------------------------------------------------------------------------
# A folder of line images with labels.tsv (its rows: line_labels)
# ---------------------------------------------------------------------------------------------------------------

@LINE_SOURCES.register(key="folder")
def folder_lines(spec: LineSpec) -> LineSplits:
    """Line images listed in `labels.tsv`, preprocessed like on the board, split at random by `spec.seed`."""
    if not spec.path:
        raise UserInputError(f"line data source 'folder' needs a folder with {LABELS_FILE}: {path_hint('lines')}")
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise DataFileError(f"line folder {root} is not a directory")
    rows = read_labels_tsv(root)
    check_fits_frames(root / LABELS_FILE, rows, spec)
    x = _preprocess_rows(rows, spec)
    texts = [r.text for r in rows]
    charset = "".join(sorted(set("".join(texts))))
    order = np.random.default_rng(spec.seed).permutation(len(rows))
    n_test, n_val, _ = folder_split_sizes(len(rows), spec)
    parts = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    pick = lambda i: LineSplit(x[np.sort(i)], [texts[j] for j in np.sort(i)])  # noqa: E731
    train = pick(parts[2])
    return LineSplits(train, pick(parts[1]), pick(parts[0]), charset, spec,
                      lambda view: rerender_split(train, [spec.seed, 3, view]))


def _preprocess_rows(rows: list[LabelRow], spec: LineSpec) -> np.ndarray:
    """The rows' images as line canvases uint8 (N, height, width), preprocessed as the board does."""
    from edgekd_runtime.errors import ImageError
    from edgekd_runtime.lines import preprocess_line

    xs = []
    for r in rows:
        try:
            xs.append(preprocess_line(r.path, spec.height, spec.width))
        except ImageError as e:
            raise DataFileError(f"line folder: cannot use {r.path} (row {r.line} of {LABELS_FILE}: {e})") from None
    return to_uint8(np.stack(xs))


def rerender_split(split: LineSplit, seed: Any) -> LineSplit:
    """A label-preserving re-rendering of fixed lines (the extra training views of a `folder` source): per line a
    random slant, a small change of writing size, thinner or thicker strokes, then `fit_line` again."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = split.x.shape[1:]
    out = np.empty_like(split.x)
    for i, line in enumerate(split.x):
        slant = rng.uniform(-0.2, 0.2)
        shear = np.float32([[1, slant, -slant * h / 2], [0, 1, 0]])
        a = cv2.warpAffine(line, shear, (w, h), flags=cv2.INTER_LINEAR)
        s = rng.uniform(0.9, 1.05)
        a = cv2.resize(a, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        extra = h - a.shape[0]  # keep the text band centred: pad (shrunk) or crop (grown) both sides alike
        a = np.pad(a, ((extra // 2, extra - extra // 2), (0, 0))) if extra >= 0 else a[-extra // 2:][:h]
        stroke = rng.choice([-1, 0, 1])
        if stroke:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2, 2))
            a = cv2.dilate(a, k) if stroke > 0 else cv2.erode(a, k)
        out[i] = fit_line(a, h, w)
    return LineSplit(out, list(split.texts))
