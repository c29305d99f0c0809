"""Inference backends: one small class per interpreter, all with the same surface.

A backend owns a loaded model and runs already-laid-out input tensors. It reports what it is (name, version,
delegate/provider, threads actually used) and what the model takes (`TensorInfo`). Interpreters are imported
lazily inside `open_backend`, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EdgekdWarning, ModelLoadError, UserInputError

BACKENDS = ("onnx", "tflite")
FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite"}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as the interpreter sees it."""

    name: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension
    dtype: str  # numpy dtype name: float32, float16, int8, uint8
    scale: float = 0.0  # quantization: real = (q - zero_point) * scale; scale 0 = not quantized
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale > 0.0 and self.dtype in ("int8", "uint8", "int16")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quantized:
            d.update(scale=self.scale, zero_point=self.zero_point)
        return d


class Backend:
    """Common surface. Subclasses fill the attributes in `__init__` and implement `run`."""

    name: str  # "onnxruntime" | "ai_edge_litert" | "tflite_runtime" | "tensorflow.lite"
    version: str
    format: str  # "onnx" | "tflite"
    delegate: str  # XNNPACK / CPUExecutionProvider ...
    threads: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """Run one batch that fits the model as loaded; return the first output (raw dtype). Hot path."""
        raise NotImplementedError

    def single_runner(self, shape: tuple[int, ...]) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
        """`(x, call)` for repeated runs of one input tensor of `shape` from one thread (the hot path of
        `Recognizer.predict`): write the input into `x` in place, then `call()` runs the model on it and returns
        the first output (raw dtype), which stays valid until the next `call()`. This default invokes with `x`."""
        x = np.zeros(shape, np.dtype(self.inputs[0].dtype))
        invoke = self.invoke
        return x, lambda: invoke(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run any batch size: one call when the batch dimension allows it, else in model-sized chunks."""
        fixed = self.fixed_batch
        n = x.shape[0]
        if n == fixed or fixed is None:
            return self.invoke(x)
        if n % fixed:
            raise ModelLoadError(f"model input {self.inputs[0].name} has a fixed batch of {fixed}; "
                                 f"cannot run a batch of {n}")  # unreachable for fixed == 1
        return np.concatenate([self.invoke(x[i:i + fixed]) for i in range(0, n, fixed)])

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model insists on; None when the batch dimension is dynamic."""
        try:
            return self._fixed_batch
        except AttributeError:
            b = self.inputs[0].shape[0] if self.inputs[0].shape else 1
            self._fixed_batch: int | None = None if b <= 0 else b
            return self._fixed_batch


def check_io(path: Path, inputs: list[TensorInfo], outputs: list[TensorInfo]) -> None:
    """Refuse, at load, a model that is not one image in, scores out (every predict would fail on it later)."""
    if len(inputs) != 1 or not outputs:
        names = ", ".join(f"{t.name} {list(t.shape)}" for t in inputs) or "none"
        raise ModelLoadError(f"{path}: the model has {len(inputs)} inputs ({names}) and {len(outputs)} outputs; an "
                             f"edgekd student has exactly one image input and one score output: export the model "
                             f"with a single input")


def usable_cores() -> int:
    """Cores this process may run on (affinity-aware: a taskset or cgroup cpuset counts, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """Cores this process may use, capped at 4 like benchmark_model's usual settings."""
    return min(4, usable_cores())


def resolve_threads(threads: int | None) -> int:
    """Interpreter threads to use for a request: None = `default_threads()`; more than `usable_cores()` is
    capped there with an `EdgekdWarning` (like xz/zstd lower a thread count they cannot use: more threads
    than cores only add context switches, and 100k would exhaust the process); below 1 is a `UserInputError`."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserInputError(f"threads={threads!r}: must be an integer >= 1 (or None for the number of usable "
                             f"cores, at most 4)")
    cores = usable_cores()
    if threads > cores:
        warnings.warn(f"threads={threads} is more than the {cores} cores this process may use; using {cores}",
                      EdgekdWarning, stacklevel=3)
        return cores
    return threads


def resolve_format(path: Path, backend: str) -> str:
    """Which model format a backend request means for a file."""
    fmt = FORMAT_OF_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ModelLoadError(f"{path}: not a model file (suffix {path.suffix or 'none'!r}); pass a .onnx or .tflite "
                             f"file or a bundle directory with manifest.json")
    if backend not in ("auto", fmt):
        raise ModelLoadError(f"{path}: backend {backend!r} cannot run a .{fmt} file; use --backend {fmt} or auto")
    return fmt


def open_backend(path: Path, fmt: str, threads: int | None = None) -> Backend:
    """Load `path` with the interpreter for `fmt` ("onnx" or "tflite").

    Raises:
        ModelLoadError: not a model / truncated / corrupt. BackendUnavailableError: no interpreter installed.
        UserInputError: threads below 1 (more than the usable cores are capped, see `resolve_threads`).
    """
    threads = resolve_threads(threads)
    if fmt == "onnx":
        from .backend_onnx import OnnxBackend

        return OnnxBackend(path, threads)
    if fmt == "tflite":
        from .backend_tflite import TFLiteBackend

        return TFLiteBackend(path, threads)
    raise ModelLoadError(f"{path}: unknown backend {fmt!r}; known backends: {', '.join(BACKENDS)}")


def tflite_available() -> bool:
    """Whether any TFLite interpreter can be imported (without importing tensorflow)."""
    import importlib.util

    def installed(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a meta-path hook that refuses the name, a broken __spec__
            return False

    return any(installed(m) for m in ("ai_edge_litert", "tflite_runtime", "tensorflow"))
