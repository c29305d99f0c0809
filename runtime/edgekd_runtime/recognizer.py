"""The `Recognizer` that `edgekd_runtime.load()` returns: recognise handwriting with a loaded student.

The recognizer turns canvases (preprocessed float32 (N, S, S) in [0, 1]) into the model's input tensor
(normalisation, NCHW/NHWC, int8 quantization, all taken from the model's own input details), runs the
backend, dequantizes int8 outputs and applies softmax when the model emits logits.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, overload

import numpy as np

from .backends import Backend, TensorInfo
from .errors import InputShapeError, ManifestError, ModelOutputError, UserInputError, WrongTaskError
from .images import ImageLike, describe, load_levels
from .loaded import LoadedModel
from .manifest import Artifact, InputSpec, Manifest, Normalization, PreprocessSpec
from .pixels import as_canvases, plainly_in_range
from .preprocess import WORK_SIDE_PX, preprocess
from .quantize import InputQuantizer, dequantize

if TYPE_CHECKING:
    from .bench import LatencyReport

_F32 = np.dtype(np.float32)
_exp = math.exp
_NEG_INF, _POS_INF = -math.inf, math.inf


class _TopK:
    """`Prediction.top_k`, ranked on first access: a recognizer hands over its scores (`_Scores`) and a loop
    that reads only the label pays no sort (~1 us of a ~50 us student). A list given by the caller is kept as
    it is. (A dataclass field whose default is a descriptor: the dataclass's __init__ assigns through it.)"""

    @overload
    def __get__(self, obj: None, objtype: Any = None) -> tuple[()]: ...
    @overload
    def __get__(self, obj: Prediction, objtype: Any = None) -> list[tuple[str, float]]: ...

    def __get__(self, obj: Prediction | None, objtype: Any = None) -> Any:
        if obj is None:
            return ()  # the field's default (hashable, as a dataclass default must be): no candidates
        top = obj.__dict__["_top_k"]
        if type(top) is _Scores:
            top = obj.__dict__["_top_k"] = top.ranked()
        return top

    def __set__(self, obj: Prediction, value: _Scores | Sequence[tuple[str, float]]) -> None:
        obj.__dict__["_top_k"] = value if isinstance(value, (_Scores, list)) else list(value)


class _Scores(tuple):
    """One image's scores for a lazy top-k, (vals, norm, labels, k): plain floats, `norm` (1 / the softmax's sum,
    with `vals` its exponentials) or 1.0 (probabilities), the labels and k. (A tuple: made in C, no __init__.)"""

    def ranked(self) -> list[tuple[str, float]]:
        vals, norm, labels, k = self
        order = sorted(range(len(vals)), key=vals.__getitem__, reverse=True)[:k]
        return [(labels[i], vals[i] * norm) for i in order]


@dataclass
class Prediction:
    """What a recognizer read in one image. (Not frozen: a frozen dataclass costs ~1 us more per predict.)"""

    label: str
    index: int  # class index into Recognizer.labels
    probability: float
    top_k: _TopK = _TopK()  # [(label, probability)], most likely first
    latency_ms: float = 0.0  # model inference only
    preprocess_ms: float = 0.0  # decode + preprocessing (0 when given a canvas)
    source: str | None = None  # the image's path or a short description

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top_k"] = [{"label": lab, "probability": p} for lab, p in self.top_k]
        return d


@dataclass
class Recognizer(LoadedModel):
    """A loaded student. Build it with `edgekd_runtime.load`."""

    backend: Backend
    model_path: Path
    precision: str
    labels: list[str]
    input_spec: InputSpec  # what the model file takes: name, shape, layout, dtype
    normalization: Normalization = field(default_factory=Normalization)
    preprocess_spec: PreprocessSpec = field(default_factory=PreprocessSpec)
    output_kind: str = "auto"  # logits | probs | auto (detected from the values)
    manifest: Manifest | None = None
    load_ms: float = 0.0
    rss_after_load_bytes: int | None = None
    first_inference_ms: float | None = None
    artifact: Artifact | None = None  # the bundle's manifest entry of the loaded file (None for a bare file)

    def __post_init__(self) -> None:
        inp: TensorInfo = self.backend.inputs[0]
        self._in_dtype = np.dtype(inp.dtype)
        self._quantizer = InputQuantizer.of(self.normalization, inp.scale, inp.zero_point, self._in_dtype) \
            if inp.quantized else None
        out: TensorInfo = self.backend.outputs[0]
        self._out_scale, self._out_zp = (out.scale, out.zero_point) if out.quantized else (0.0, 0)
        self._side = self.size
        self._canvas_shape = (self._side, self._side)
        self._sample_shape = tuple(int(d) for d in self.input_spec.shape[1:])
        channels = {"NCHW": self._sample_shape[0], "NHWC": self._sample_shape[-1]}.get(self.input_spec.layout, 1)
        self._fast_layout = self._in_dtype == np.float32 and channels == 1
        self._fixed_batch = self.backend.fixed_batch
        self._tls = threading.local()
        out_info = self.backend.outputs[0]
        # the inlined single-canvas path: float32 one-channel input, one float32 score row, batch 1 allowed
        self._hot = self._fast_layout and out_info.dtype == "float32" and not self._out_scale and \
            self._fixed_batch in (1, None)
        self._kind: str | None = None if self.output_kind == "auto" else self.output_kind
        if self._kind not in (None, "logits", "probs"):
            raise ManifestError(f"{self.model_path}: output kind {self.output_kind!r} must be logits or probs")

    # ---- what it is -------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Side of the square canvas the model takes."""
        return self.input_spec.size if self.input_spec.layout in ("NCHW", "NHWC") else _side(self.input_spec)

    def info(self) -> dict[str, Any]:
        """Everything `edgekd-rt info` shows: model file, interpreter, tensors, labels, manifest."""
        return {**self.model_info(), "input_size": self.size, "output_kind": self.output_kind,
                "labels": list(self.labels), "normalization": asdict(self.normalization),
                "preprocessing": asdict(self.preprocess_spec)}

    # ---- canvases -> scores ------------------------------------------------------------------------------------
    def to_input(self, canvases: np.ndarray) -> np.ndarray:
        """Canvases (N, S, S) float32 [0, 1] -> the model's input tensor (normalised, laid out, quantized)."""
        return self._to_input(canvases)

    def _to_input(self, canvases: np.ndarray, reuse: bool = False) -> np.ndarray:
        """`to_input`; with `reuse`, a single canvas goes into a per-thread buffer (interpreters copy their
        input, and a warm buffer saves ~2 us per onnxruntime call) that the next call overwrites."""
        c = self._check_canvases(canvases)
        n = c.shape[0]
        if self._fast_layout:  # float32, one channel: normalise straight into the laid-out tensor
            if reuse and n == 1:
                x = getattr(self._tls, "x1", None)
                if x is None:
                    x = self._tls.x1 = np.empty((1,) + self._sample_shape, np.float32)
            else:
                x = np.empty((n,) + self._sample_shape, np.float32)
            v = x.reshape(n, self._side, self._side)  # a view: NCHW/NHWC/NHW with C == 1, or NF
            self.normalization.apply(c, out=v)
            return x
        x = self.normalization.apply(c) if self._quantizer is None else self._quantizer(c, np.empty(c.shape,
                                                                                               self._in_dtype))
        layout, shape = self.input_spec.layout, self.input_spec.shape
        if layout == "NCHW":
            x = np.repeat(x[:, None], shape[1], axis=1)
        elif layout == "NHWC":
            x = np.repeat(x[..., None], shape[3], axis=3)
        elif layout == "NF":
            x = x.reshape(n, -1)
        return np.ascontiguousarray(x, dtype=self._in_dtype)

    def forward(self, canvases: np.ndarray) -> np.ndarray:
        """Raw model outputs (N, C) float32 for canvases (N, S, S): dequantized, no softmax. NaN outputs raise
        `ModelOutputError` (infinite logits are returned as they are)."""
        y = self._run(self.to_input(canvases))[0]
        if not np.isfinite(y).all() and np.isnan(y).any():
            raise self._output_error("NaN scores")
        return y

    def predict_proba(self, canvases: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) for canvases (N, S, S)."""
        return self._to_proba(self.forward(canvases))

    def evaluate(self, canvases: np.ndarray, labels: Sequence[int] | np.ndarray, batch_size: int = 256) -> float:
        """Top-1 accuracy on canvases (N, S, S) with integer class labels (N,)."""
        y = np.asarray(labels).reshape(-1)
        c = np.asarray(canvases)
        if c.shape[0] != y.shape[0]:
            raise InputShapeError(f"evaluate: {c.shape[0]} canvases but {y.shape[0]} labels; pass one label each")
        if y.size == 0:
            raise InputShapeError("evaluate: no canvases given; pass at least one")
        hits = 0
        for i in range(0, y.size, batch_size):
            hits += int((self.forward(c[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
        return hits / y.size

    # ---- images -> predictions ---------------------------------------------------------------------------------
    def load_image(self, image: ImageLike) -> np.ndarray:
        """Decode one image as `canvas` does first: uint8 grey levels (H, W) at the preprocessing's work
        resolution (`canvas(load_image(x))` equals `canvas(x)`; what `edgekd-rt bench --image` times)."""
        return load_levels(image, WORK_SIDE_PX)

    def canvas(self, image: ImageLike) -> np.ndarray:
        """Preprocess one image to the canvas this model takes (float32 (S, S))."""
        return preprocess(image, self.preprocess_spec, self.size)

    def predict(self, image: ImageLike, top_k: int = 3, preprocessed: bool = False) -> Prediction:
        """Recognise one image (path, PIL image, array); `preprocessed=True` takes a canvas (S, S) as is."""
        if preprocessed:
            if self._hot and type(image) is np.ndarray and (image.dtype is _F32 or image.dtype == _F32) and \
                    image.shape == self._canvas_shape:
                fast = self._predict_canvas(image, top_k)
                if fast is not None:
                    return fast
            c, prep_ms = np.asarray(image[None] if type(image) is np.ndarray and image.ndim == 2 else image), 0.0
        else:
            t0 = time.perf_counter()
            c = self.canvas(image)[None]
            prep_ms = (time.perf_counter() - t0) * 1e3
        scores, latency_ms = self._run(self._to_input(c, reuse=True))
        if scores.shape[0] != 1:
            raise InputShapeError(f"predict takes one image; got a batch of {scores.shape[0]}: use predict_batch")
        if self._kind is None:
            self._to_proba(scores)  # settles the output kind
        return self._decode(scores[0].tolist(), top_k, latency_ms, prep_ms,
                            None if preprocessed else describe(image), self._kind == "logits")

    def _predict_canvas(self, c: np.ndarray, top_k: int) -> Prediction | None:
        """The hot path of `predict(canvas, preprocessed=True)`: one float32 (S, S) canvas, a float32
        one-channel input and a float32 (1, C) output; the same steps as the general path, inlined, on
        per-thread buffers the backend keeps bound (`Backend.single_runner`). Returns None (general path, which
        raises the typed errors) for NaN/inf or out-of-range canvases."""
        try:
            v, call = self._tls.hot
        except AttributeError:
            x, call = self.backend.single_runner((1,) + self._sample_shape)
            v, call = self._tls.hot = (x.reshape(self._canvas_shape), call)  # a view: NCHW/NHWC/NHW, C == 1
        if not plainly_in_range(c):  # NaN/inf or outside [0, 1]: maybe
            return None
        self.normalization.apply(c, out=v)
        t0 = time.perf_counter()
        y = call()
        latency_ms = (time.perf_counter() - t0) * 1e3
        if self.first_inference_ms is None:
            self.first_inference_ms = latency_ms
        if self._kind is None:
            self._to_proba(y.reshape(1, -1))  # settles the output kind
        return self._decode(y.ravel().tolist(), top_k, latency_ms, 0.0, None, self._kind == "logits")

    def predict_batch(self, images: Sequence[ImageLike] | np.ndarray, top_k: int = 3,
                      preprocessed: bool = False) -> list[Prediction]:
        """Recognise several images in one model call (chunked when the model's batch is fixed)."""
        if len(images) == 0:
            return []
        t0 = time.perf_counter()
        if preprocessed:
            c = np.asarray(images, dtype=np.float32)
        else:
            c = np.stack([self.canvas(im) for im in images])
        prep_ms = (time.perf_counter() - t0) * 1e3 / len(images)
        scores, latency_ms = self._run(self.to_input(c))
        probs = self._to_proba(scores)
        per_ms = latency_ms / len(images)
        return [self._decode(row, top_k, per_ms, prep_ms, None if preprocessed else describe(images[i]), False)
                for i, row in enumerate(probs.tolist())]

    def read(self, *args: Any, **kwargs: Any) -> Any:
        """Text lines are read by a line bundle's `LineRecognizer`; on a digit model this raises."""
        raise self.wrong_call("read")

    def read_batch(self, *args: Any, **kwargs: Any) -> Any:
        raise self.wrong_call("read_batch")

    def wrong_call(self, what: str) -> WrongTaskError:
        """The error for a text-line call on this single-digit recognizer."""
        return WrongTaskError(f"{self.model_path} is a single-digit model: {what}() reads text lines with a "
                              f"line-recognition bundle; call predict() / predict_batch() (`edgekd-rt predict`)")

    def benchmark(self, runs: int = 100, warmup: int = 10, batch: int = 1, seed: int = 0,
                  progress: Any = None) -> LatencyReport:
        """Time `runs` inferences after `warmup` on a fixed random canvas batch, like benchmark_model.

        `progress(i)` is called after each measured run (for a progress bar)."""
        from .bench import run_benchmark

        return run_benchmark(self, runs=runs, warmup=warmup, batch=batch, seed=seed, progress=progress)

    # ---- internals ---------------------------------------------------------------------------------------------
    def _check_canvases(self, canvases: Any) -> np.ndarray:
        c = as_canvases(canvases, self.normalization)  # uint8 pixels / 255; floats checked to be in [0, 1]
        if c.shape[1:] != self._canvas_shape:  # not (N, S, S): accept (S, S), (N, 1, S, S), (N, S, S, 1)
            c = self._reshape_canvases(c, canvases)
        if c.shape[0] == 0:
            raise InputShapeError(f"an empty batch of canvases {c.shape}; pass at least one")
        return c

    def _reshape_canvases(self, c: np.ndarray, original: Any) -> np.ndarray:
        s = self.size
        if c.ndim == 2:
            c = c[None]
        if c.ndim == 4 and 1 in (c.shape[1], c.shape[3]):
            c = c.reshape(c.shape[0], c.shape[2] if c.shape[1] == 1 else c.shape[1], -1)
        if c.ndim != 3 or c.shape[1:] != (s, s):
            raise InputShapeError(f"canvases of shape {tuple(np.shape(original))} do not fit the model "
                                  f"{self.model_path.name}, which takes (N, {s}, {s}) canvases; preprocess images "
                                  f"with preprocess(image, size={s}) or resize_canvas(canvas, {s})")
        return c

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        be = self.backend
        t0 = time.perf_counter()
        y = be.invoke(x) if x.shape[0] == self._fixed_batch else be.run(x)
        ms = (time.perf_counter() - t0) * 1e3
        if self.first_inference_ms is None:
            self.first_inference_ms = ms
        if y.ndim != 2:
            y = y.reshape(y.shape[0], -1)
        if self._out_scale:
            y = dequantize(y, self._out_scale, self._out_zp)
        elif y.dtype != np.float32:
            y = y.astype(np.float32)
        return y, ms

    def _to_proba(self, y: np.ndarray) -> np.ndarray:
        if not np.isfinite(y).all():  # before the kind is settled: NaN is refused, infinities are no probabilities
            return self._nonfinite_proba(y)
        if self._kind is None:  # a bare model file: decide once, from the first outputs it produces
            self._kind = "probs" if looks_like_probabilities(y) else "logits"
        if self._kind == "probs":
            return y
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def _nonfinite_proba(self, y: np.ndarray) -> np.ndarray:
        """`_to_proba` for outputs with NaN (refused) or infinities: logits go through a softmax that takes the
        limit (+inf -> probability 1, shared if several; -inf -> 0); infinite probabilities are refused."""
        if np.isnan(y).any():
            raise self._output_error("NaN scores")
        if self._kind == "probs":
            raise self._output_error("infinite probabilities")
        self._kind = "logits"  # a bare model's outputs with infinities are no probabilities
        top = y.max(axis=1, keepdims=True)
        if np.isneginf(top).any():
            raise self._output_error("-inf for every class")
        pos = np.isposinf(y)
        with np.errstate(invalid="ignore"):  # inf - inf in the rows handled just below
            e = np.exp(y - top)
        p = e / e.sum(axis=1, keepdims=True)
        rows = pos.any(axis=1)
        p[rows] = pos[rows] / pos[rows].sum(axis=1, keepdims=True)
        return p.astype(np.float32)

    def _output_error(self, what: str) -> ModelOutputError:
        n = self.normalization
        return ModelOutputError(f"{self.model_path.name}: the model returned {what}, not an answer; its weights or "
                                f"its input normalisation (mean {n.mean:g}, std {n.std:g}) are broken: export and "
                                f"convert it again, or fix `normalization` in the bundle's manifest.json")

    def _decode(self, vals: list[float], top_k: int, latency_ms: float, prep_ms: float, src: str | None,
                logits: bool) -> Prediction:
        """One image's scores (plain floats: for 10..100 classes Python beats numpy's call overhead), logits
        (softmax applied here) or probabilities, -> Prediction; its top-k classes are ranked when first read."""
        if len(vals) != len(self.labels):
            raise ManifestError(f"{self.model_path}: the model outputs {len(vals)} scores but the manifest has "
                                f"{len(self.labels)} labels; re-export the bundle")
        k = top_k if type(top_k) is int and top_k > 0 else _top_k(top_k)
        if logits:  # softmax of one row; NaN/inf among the logits leave the sum NaN or inf (>= 1 otherwise)
            top = max(vals)
            exps = [_exp(v - top) for v in vals]
            total = sum(exps)
            if 1.0 <= total < _POS_INF:
                i0 = vals.index(top)
                norm = 1.0 / total
                return Prediction(self.labels[i0], i0, exps[i0] * norm, _Scores((exps, norm, self.labels, k)),
                                  latency_ms, prep_ms, src)
        if not _NEG_INF < sum(vals) < _POS_INF:  # NaN/inf among them: refused, or the limit of the softmax
            if logits or self._kind == "probs":
                vals = self._to_proba(np.asarray([vals], np.float32))[0].tolist()
            else:  # probabilities already (predict_batch): nothing non-finite may be reported
                raise self._output_error("non-finite probabilities")
        i0 = vals.index(max(vals))
        return Prediction(self.labels[i0], i0, vals[i0], _Scores((vals, 1.0, self.labels, k)),
                          latency_ms, prep_ms, src)


def looks_like_probabilities(y: np.ndarray) -> bool:
    """Whether (N, C) model outputs are probabilities (non-negative rows summing to 1) rather than logits: how a
    model without a manifest is read, and what `edgekd-convert` records in the manifest it writes."""
    return bool(y.min() >= 0 and np.allclose(y.sum(axis=1), 1.0, atol=2e-2))


def _top_k(top_k: Any) -> int:
    """`top_k` as a count of candidates (>= 1), or a UserInputError saying what to pass."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise UserInputError(f"top_k={top_k!r}: must be a whole number >= 1 (how many candidates to return)")
    return int(top_k)


def _side(spec: InputSpec) -> int:
    return int(spec.shape[1]) if spec.layout == "NHW" else int(round(spec.shape[1] ** 0.5))
