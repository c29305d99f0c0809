"""`LineRecognizer`: what `edgekd_runtime.load()` returns for a text-line bundle (task `line-recognition`).

A line canvas (float32 (H, W) in [0, 1], light ink on dark, see `edgekd_runtime.lines`) becomes the model's input
tensor (normalisation, NCHW/NHWC, int8 quantization, all from the interpreter's tensor details); the model
emits CTC scores (N, T, C) with T = W // frame_stride and class 0 the blank; `read` decodes them into a string,
its confidence and where each character lies in the input image.

Width policy (the manifest's `lines` block): an artifact with a fixed input width (TFLite) takes lines up to that
width, zero-padded on the right; one with a dynamic width axis (ONNX) takes any width up to `max_width`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .backends import Backend
from .confidence import softmax
from .ctc_decode import (
    Decoded,
    compile_constraint,
    decode,
    exp_table,
    greedy_scores,
    quantized_best_path,
    rescored,
    scored_best_path,
)
from .errors import InputShapeError, ModelLoadError, ModelOutputError, UserInputError, WrongTaskError
from .images import ImageLike, describe
from .line_reading import CharacterFrames, Reading
from .lines import LineGeometry, LineTooWideError, greedy_decode, line_canvas, load_line_image
from .loaded import LoadedModel
from .manifest import Artifact, InputSpec, LinesSpec, Manifest, Normalization
from .pixels import as_canvases, plainly_in_range
from .quantize import InputQuantizer, dequantize

if TYPE_CHECKING:
    from .bench import LatencyReport

_F32 = np.dtype(np.float32)
_dot, _isfinite = np.dot, math.isfinite


@dataclass
class LineRecognizer(LoadedModel):
    """A loaded CTC line student. Build it with `edgekd_runtime.load(bundle)`."""

    backend: Backend
    model_path: Path
    precision: str
    lines: LinesSpec
    input_spec: InputSpec  # name, shape (width -1 when dynamic), layout NCHW/NHWC, dtype
    normalization: Normalization = field(default_factory=Normalization)
    manifest: Manifest | None = None
    load_ms: float = 0.0
    rss_after_load_bytes: int | None = None
    first_inference_ms: float | None = None
    polarity: str = "auto"
    artifact: Artifact | None = None  # the manifest's entry of the loaded file

    def __post_init__(self) -> None:
        inp, out = self.backend.inputs[0], self.backend.outputs[0]
        self._in_dtype = np.dtype(inp.dtype)
        self._out_q = (out.scale, out.zero_point) if out.quantized else None
        w = self.input_spec.shape[3 if self.input_spec.layout == "NCHW" else 2]
        self.fixed_width: int | None = int(w) if w > 0 else None
        self._tls = threading.local()
        self._t32 = np.array(self.lines.confidence_temperature, np.float32)  # 0-d arrays: see Normalization._f32
        self._quantizer = InputQuantizer.of(self.normalization, inp.scale, inp.zero_point, self._in_dtype) \
            if inp.quantized else None
        self._classes, self._blank, self._stride = self.lines.num_classes, self.lines.blank, self.lines.frame_stride
        self._charset = self.lines.charset
        self._divisor = None if self.lines.confidence_temperature == 1.0 else self._t32
        self._shape = (self.height, self.max_width)  # the canvases the hot path takes: this high, at most this wide
        # 8-bit quantized scores are decoded greedily through a table of their tempered exponentials (read() and
        # read_batch() alike); None for other scores, and where the table underflows (the softmax decodes them)
        eight_bit = ("int8", "uint8")
        self._exp_table = exp_table(self._tempered_scores(np.dtype(out.dtype))) \
            if self._out_q is not None and out.dtype in eight_bit else None
        # the hot path of read(canvas, preprocessed=True): one line per call, a float32 or 8-bit quantized input,
        # float32 or 8-bit quantized scores
        self._hot = self.backend.fixed_batch in (1, None) and \
            (self._in_dtype == np.float32 or (self._quantizer is not None and inp.dtype in eight_bit)) and \
            (out.dtype == "float32" or self._exp_table is not None)

    # ---- what it is -------------------------------------------------------------------------------------------
    task = "lines"

    @property
    def charset(self) -> str:
        return self.lines.charset

    @property
    def labels(self) -> list[str]:
        return list(self.lines.charset)

    @property
    def height(self) -> int:
        return self.lines.height

    @property
    def max_width(self) -> int:
        """The widest line canvas this artifact takes."""
        return self.fixed_width or self.lines.max_width

    @property
    def max_chars(self) -> int:
        """The most characters one reading can hold: the output frames at `max_width`."""
        return self.max_width // self.lines.frame_stride

    def constraint(self, pattern: str | None = None, allowed: str | None = None, min_len: int | None = None,
                   max_len: int | None = None) -> Any:
        """`ctc_decode.compile_constraint` for this model (its charset, `max_chars`): check a pattern before
        reading anything (PatternError); cached, so the read that follows does not compile it again."""
        return compile_constraint(self.charset, pattern, allowed, min_len, max_len, self.max_chars)

    @property
    def canvas_shape(self) -> tuple[int, int]:
        """(height, reference width): the canvas benchmarks time."""
        return self.lines.height, self.fixed_width or self.lines.width

    def info(self) -> dict[str, Any]:
        """Everything `edgekd-rt info` shows."""
        return {"task": "lines", **self.model_info(), "input_height": self.height, "input_width": self.fixed_width,
                "max_width": self.max_width, "charset": self.charset, "lines": self.lines.to_dict(),
                "labels": self.labels, "normalization": asdict(self.normalization),
                "confidence_temperature": self.lines.confidence_temperature,
                "confidence": (self.manifest.extra or {}).get("confidence") if self.manifest else None}

    # ---- canvases -> scores ------------------------------------------------------------------------------------
    def to_input(self, canvases: np.ndarray) -> np.ndarray:
        """Line canvases (N, H, W) float32 [0, 1] -> the model's input tensor: zero-padded on the right to the
        artifact's width (fixed) or to a multiple of the frame stride (dynamic), normalised, laid out, quantized."""
        c = self._check_canvases(canvases)
        n, h, w = c.shape
        target = self._padded_width(w)
        if w < target:
            c = np.concatenate([c, np.zeros((n, h, target - w), np.float32)], axis=2)
        x = self.normalization.apply(c) if self._quantizer is None else self._quantizer(c, np.empty(c.shape,
                                                                                               self._in_dtype))
        x = x[:, None] if self.input_spec.layout == "NCHW" else x[..., None]
        return np.ascontiguousarray(x, dtype=self._in_dtype)

    def _padded_width(self, w: int) -> int:
        """The input width a canvas `w` columns wide runs at."""
        return self.fixed_width or -(-w // self.lines.frame_stride) * self.lines.frame_stride

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        """Quantized scores -> float32: (q - zp) * scale."""
        assert self._out_q is not None
        return dequantize(y, *self._out_q)

    def _tempered_scores(self, dtype: np.dtype) -> np.ndarray:
        """For 8-bit quantized scores: the 256 values dequantized and divided by the confidence temperature, indexed
        by the score's bits read as uint8 (what `_dequantize` and the softmax compute, looked up)."""
        q = np.arange(256, dtype=np.uint8).view(dtype)
        return self._dequantize(q) / self._t32

    def forward(self, canvases: np.ndarray) -> np.ndarray:
        """Raw CTC scores (N, T, C) float32 (dequantized, no softmax) for canvases (N, H, W); T is the padded
        width // frame_stride. Non-finite scores raise `ModelOutputError`."""
        return self._run(self.to_input(canvases))[0]

    def evaluate(self, canvases: np.ndarray, texts: Sequence[str], batch_size: int = 256) -> dict[str, float]:
        """Greedy-decoded CER and whole-string accuracy on canvases (N, H, W) with their texts."""
        from .line_metrics import char_error_rate, string_accuracy

        if len(canvases) != len(texts) or not len(texts):
            raise InputShapeError(f"evaluate: {len(canvases)} canvases and {len(texts)} texts; pass one text each")
        foreign = sorted({ch for t in texts for ch in str(t)} - set(self.charset))
        if foreign:  # those strings could never be read right: the numbers would blame the model for the labels
            raise UserInputError(f"evaluate: the texts use {foreign}, which {self.model_path.name} cannot read (its "
                                 f"characters: {self.charset!r}); fix the labels or pass a model trained on them")
        hyps: list[str] = []
        for i in range(0, len(texts), batch_size):
            hyps += greedy_decode(self.forward(canvases[i:i + batch_size]), self.charset)
        return {"cer": char_error_rate(list(texts), hyps), "string_accuracy": string_accuracy(list(texts), hyps)}

    # ---- images -> readings ------------------------------------------------------------------------------------
    def load_image(self, image: ImageLike) -> np.ndarray:
        """Decode one line image as `canvas` does first (`lines.load_line_image`)."""
        return load_line_image(image)

    def canvas(self, image: ImageLike) -> tuple[np.ndarray, LineGeometry]:
        """One line image -> (line canvas (H, W), geometry mapping canvas columns to image pixels). A dynamic-width
        artifact gets the line's own width (at least the reference width), a fixed one its width."""
        canvas, geom = line_canvas(image, self.height, self.max_width, self.polarity)
        if self.fixed_width is None:
            used = np.flatnonzero(canvas.any(0))
            stride = self.lines.frame_stride
            w = max(self.lines.width, -(-(int(used[-1]) + 3) // stride) * stride)
            canvas = canvas[:, :min(w, canvas.shape[1])]
        return canvas, geom

    def read(self, image: ImageLike, pattern: str | None = None, *, allowed: str | None = None,
             min_len: int | None = None, max_len: int | None = None, preprocessed: bool = False) -> Reading:
        """Read the text line in one image (path, PIL image or array).

        Args:
            pattern: a pattern the whole reading must match (e.g. `\\d{6}`, `\\d+[.,]\\d\\d`; see
                `edgekd_runtime.ctc_decode`); allowed, min_len, max_len: the characters it may use, its length.
                With any of them a constrained prefix beam search decodes; greedy decoding without.
            preprocessed: `image` is a line canvas already ((H, W) float32 in [0, 1] or uint8, light ink on
                dark, as `lines.line_canvas` makes it), taken as is; character spans are then in its columns.

        Raises:
            PatternError (before decoding), BlankImageError (no ink), LineTooWideError (wider than the model
            takes), ImageError.
        """
        if preprocessed and self._hot and pattern is None and allowed is None and min_len is None and \
                max_len is None and type(image) is np.ndarray and (image.dtype is _F32 or image.dtype == _F32) and \
                image.ndim == 2:
            fast = self._read_canvas(image)
            if fast is not None:
                return fast
        return self.read_batch([image], pattern, allowed=allowed, min_len=min_len, max_len=max_len,
                               preprocessed=preprocessed)[0]

    def read_batch(self, images: Sequence[ImageLike], pattern: str | None = None, *, allowed: str | None = None,
                   min_len: int | None = None, max_len: int | None = None,
                   preprocessed: bool = False) -> list[Reading]:
        """Read several line images in one model call (canvases padded to the widest); see `read`."""
        if len(images) == 0:
            return []
        constraint = self.constraint(pattern, allowed, min_len, max_len)
        t0 = time.perf_counter()
        made = [self._as_canvas(im) if preprocessed else self.canvas(im) for im in images]
        prep_ms = (time.perf_counter() - t0) * 1e3 / len(images)
        width = max(c.shape[1] for c, _ in made)
        batch = np.zeros((len(made), self.height, width), np.float32)
        for i, (c, _) in enumerate(made):
            batch[i, :, :c.shape[1]] = c
        scores, ms = self._run(self.to_input(batch), raw=constraint is None)
        s = self.lines.frame_stride
        out = []
        for i, (row, (_, geom)) in enumerate(zip(scores, made)):
            d = self._greedy(row) if constraint is None else self._constrained(row, constraint)
            out.append(Reading(d.text, d.confidence, CharacterFrames((d.characters, geom, s)), ms / len(images),
                               prep_ms, describe(images[i])))
        return out

    def _greedy(self, scores: np.ndarray) -> Decoded:
        """Greedy decoding of one line's scores as `_run(raw=True)` gave them: 8-bit ones through `_exp_table`
        (what the hot path reads), float32 ones straight (`ctc_decode.greedy_scores`)."""
        if scores.dtype != np.float32:
            assert self._exp_table is not None
            return Decoded(*quantized_best_path(scores, scores.argmax(1), self._charset, self._blank, self._exp_table))
        return greedy_scores(scores, self._charset, self.lines.confidence_temperature, self._blank)

    def _constrained(self, scores: np.ndarray, constraint: Any) -> Decoded:
        """Constrained decoding on the model's posteriors; character probabilities and confidence from the
        calibrated ones (softmax(scores / confidence_temperature), see `edgekd_runtime.ctc_decode`)."""
        d = decode(softmax(scores), self.charset, constraint, blank=self.lines.blank)
        t = self.lines.confidence_temperature
        return d if t == 1.0 else rescored(d, softmax(scores, t), self.charset, self.lines.blank)

    def _read_canvas(self, c: np.ndarray) -> Reading | None:
        """The hot path of `read(canvas, preprocessed=True)` with greedy decoding: one float32 (H, W) canvas
        normalised (and quantized, `InputQuantizer`) straight into a per-thread input buffer the backend keeps
        bound (`Backend.single_runner`); the scores decoded straight from the interpreter's output
        (`ctc_decode.scored_best_path`; 8-bit scores through `_exp_table`, `ctc_decode.quantized_best_path`). The
        same reading as the general path, which it leaves (returns None) to canvases of another height, too wide,
        NaN/inf or outside [0, 1], and to non-finite scores: the general path raises the typed errors."""
        h, w = c.shape
        if h != self._shape[0] or not 0 < w <= self._shape[1] or not plainly_in_range(c):
            return None
        hot = getattr(self._tls, "hot", None)
        if hot is None or hot.used != w:
            hot = self._hot_line(w)
        x = hot.view
        quantize = self._quantizer
        if quantize is None:
            self.normalization.apply(c, out=x)
        else:
            quantize(c, x)
        t0 = time.perf_counter()
        y = hot.call()
        latency_ms = (time.perf_counter() - t0) * 1e3
        if self.first_inference_ms is None:
            self.first_inference_ms = latency_ms
        table = self._exp_table
        if table is None:
            flat = y.reshape(-1)
            if not _isfinite(_dot(flat, flat)):
                return None  # NaN/inf (or a sum of squares that overflows: the general path tells)
        y = y.reshape(-1, self._classes)
        text, conf, chars = scored_best_path(y, y.argmax(1), self._charset, self._blank, self._divisor) \
            if table is None else quantized_best_path(y, y.argmax(1), self._charset, self._blank, table)
        return Reading(text, conf, CharacterFrames((chars, hot.geom, self._stride)), latency_ms, 0.0, hot.describe(c))

    def _hot_line(self, w: int) -> _HotLine:
        """This thread's `_HotLine` fitted to a canvas `w` columns wide (a new one for another input width)."""
        hot = getattr(self._tls, "hot", None)
        if hot is None or hot.width != self._padded_width(w):
            hot = self._tls.hot = _HotLine(self, self._padded_width(w))
        hot.fit(w)
        return hot

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise self.wrong_call("predict")

    def predict_batch(self, *args: Any, **kwargs: Any) -> Any:
        raise self.wrong_call("predict_batch")

    def wrong_call(self, what: str) -> WrongTaskError:
        """The error for a digit-recognizer call on this line recognizer."""
        return WrongTaskError(f"{self.model_path} is a text-line model ({self.manifest.name if self.manifest else ''}"
                              f", task line-recognition): {what}() is for single-digit bundles; call read() / "
                              f"read_batch() (`edgekd-rt read IMAGES --model BUNDLE`)")

    def benchmark(self, runs: int = 100, warmup: int = 10, batch: int = 1, seed: int = 0,
                  progress: Any = None) -> "LatencyReport":
        """Time the interpreter call on a line canvas of the reference width (`canvas_shape`)."""
        from .bench import run_benchmark

        return run_benchmark(self, runs=runs, warmup=warmup, batch=batch, seed=seed, progress=progress)

    # ---- internals ---------------------------------------------------------------------------------------------
    def _as_canvas(self, canvas: Any) -> tuple[np.ndarray, LineGeometry]:
        """A line canvas (H, W) taken as is (checked like `forward`'s), with the identity geometry."""
        if np.ndim(canvas) != 2:
            raise InputShapeError(f"a preprocessed line is one canvas (H, W); got shape {np.shape(canvas)}")
        c = self._check_canvases(canvas)[0]
        return c, LineGeometry(image_width=c.shape[1], x_origin=0.0, scale=1.0, left=0)

    def _check_canvases(self, canvases: Any) -> np.ndarray:
        c = as_canvases(canvases, self.normalization, "line canvases")  # uint8 / 255; floats checked in [0, 1]
        if c.ndim == 2:
            c = c[None]
        if c.ndim != 3 or c.shape[0] == 0 or c.shape[1] != self.height:
            raise InputShapeError(f"line canvases of shape {tuple(np.shape(canvases))} do not fit "
                                  f"{self.model_path.name}, which takes (N, {self.height}, W) canvases; make them with "
                                  f"edgekd_runtime.lines.preprocess_line(image, {self.height}, width)")
        if c.shape[2] > self.max_width:
            raise LineTooWideError(f"line canvases are {c.shape[2]} px wide; {self.model_path.name} takes at most "
                                   f"{self.max_width} px at height {self.height}: split the line")
        return c

    def _run(self, x: np.ndarray, raw: bool = False) -> tuple[np.ndarray, float]:
        """(scores (N, T, C), inference ms): float32, dequantized, or (`raw`) 8-bit ones as the model gave them
        where `_exp_table` decodes them."""
        t0 = time.perf_counter()
        y = self.backend.run(x)
        ms = (time.perf_counter() - t0) * 1e3
        if self.first_inference_ms is None:
            self.first_inference_ms = ms
        y = y.reshape(x.shape[0], -1, self.lines.num_classes)
        if self._out_q:
            return (y if raw and self._exp_table is not None else self._dequantize(y)), ms
        if not np.isfinite(y).all():  # NaN/inf CTC scores are no reading (never decoded into one)
            n = self.normalization
            raise ModelOutputError(f"{self.model_path.name}: the model returned non-finite scores, not a reading; its "
                                   f"weights or its input normalisation (mean {n.mean:g}, std {n.std:g}) are broken: "
                                   f"export and convert it again, or fix `normalization` in the bundle's manifest.json")
        return y.astype(np.float32, copy=False), ms


class _HotLine:
    """One thread's state for `LineRecognizer._read_canvas` at one input width: the input tensor the backend keeps
    bound (`Backend.single_runner`) seen as an (H, W) plane the canvas is normalised (or quantized) into, what a
    column without ink holds in the input (the general path pads canvases with zeros), and the identity geometry
    and description of the last canvas."""

    __slots__ = ("width", "call", "geom", "used", "view", "_x", "_pad", "_src")

    def __init__(self, rec: LineRecognizer, width: int) -> None:
        shape = list(rec.input_spec.shape)
        shape[0], shape[3 if rec.input_spec.layout == "NCHW" else 2] = 1, width
        x, self.call = rec.backend.single_runner(tuple(shape))
        self._x = x.reshape(rec.height, width)  # a view: one channel
        empty = np.zeros((rec.height, 1), np.float32)
        self._pad = rec.normalization.apply(empty) if rec._quantizer is None else \
            rec._quantizer(empty, np.empty(empty.shape, rec._in_dtype))
        self.width, self.used, self._src = width, -1, ((), "")
        self.geom = LineGeometry(image_width=width, x_origin=0.0, scale=1.0, left=0)
        self.view = self._x

    def fit(self, w: int) -> None:
        """Make `view` the input plane's first `w` columns, for a canvas `w` columns wide (`used`); the columns right
        of it hold the empty column."""
        if w != self.used:
            self._x[:, w:] = self._pad
            self.view = self._x[:, :w]
            self.geom = LineGeometry(image_width=w, x_origin=0.0, scale=1.0, left=0)
            self.used = w

    def describe(self, c: np.ndarray) -> str:
        if c.shape != self._src[0]:
            self._src = (c.shape, describe(c))
        return self._src[1]


def make_line_recognizer(be: Backend, model_path: Path, precision: str, manifest: Manifest, load_ms: float,
                         rss: int | None, artifact: Artifact | None = None) -> LineRecognizer:
    """The `load()` path for a line-recognition bundle: check the artifact against the manifest's lines block."""
    spec = manifest.lines
    assert spec is not None
    t, out = be.inputs[0], be.outputs[0]
    shape = t.shape
    if len(shape) != 4 or 1 not in (shape[1], shape[3]):
        raise ModelLoadError(f"{model_path}: input {t.name} has shape {list(shape)}; a line student takes "
                             f"(N, 1, {spec.height}, W) or (N, {spec.height}, W, 1)")
    layout = "NCHW" if shape[1] == 1 and shape[3] != 1 else "NHWC"
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if h != spec.height or (w > 0 and (w % spec.frame_stride or w > spec.max_width)):
        raise ModelLoadError(f"{model_path}: input {list(shape)} ({layout}) does not take lines {spec.height} px "
                             f"high (width a multiple of {spec.frame_stride}, at most {spec.max_width}) as the "
                             f"manifest says; re-export the bundle")
    if len(out.shape) == 3 and out.shape[-1] > 0 and out.shape[-1] != spec.num_classes:
        raise ModelLoadError(f"{model_path}: outputs {out.shape[-1]} classes per frame but the charset has "
                             f"{len(spec.charset)} characters + blank; re-export the bundle")
    return LineRecognizer(be, model_path, precision, spec, InputSpec(t.name, tuple(shape), layout, t.dtype),
                          manifest.normalization, manifest, load_ms, rss, artifact=artifact)
