"""TFLite backend: ai_edge_litert (LiteRT), else tflite_runtime, else tensorflow.lite, in that order.

The interpreter actually used and its version are reported; XNNPACK is the default CPU delegate of all three.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backends import Backend, TensorInfo, check_io
from .errors import BackendUnavailableError, ModelLoadError

TFLITE_MODULES = ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")


def find_interpreter() -> tuple[Any, str, str]:
    """(Interpreter class, module name, version) of the first importable TFLite runtime.

    Raises:
        BackendUnavailableError: none of ai_edge_litert, tflite_runtime, tensorflow is usable; says why each failed.
    """
    why: list[str] = []
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert", getattr(ai_edge_litert, "__version__", "unknown")
    except Exception as e:  # ImportError, or a binary built for another numpy
        why.append(f"ai_edge_litert: {type(e).__name__}: {e}")
    try:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime", getattr(tflite_runtime, "__version__", "unknown")
    except Exception as e:  # tflite_runtime 2.14 fails under numpy 2 (_ARRAY_API not found)
        why.append(f"tflite_runtime: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow.lite", tf.__version__
    except Exception as e:
        why.append(f"tensorflow: {type(e).__name__}: {e}")
    raise BackendUnavailableError("no TFLite interpreter is importable (" + "; ".join(why) + "); install one with "
                                  "`pip install 'edgekd-runtime[tflite]'` (ai-edge-litert), or use the .onnx model")


class TFLiteBackend(Backend):
    """A TFLite `Interpreter` with an explicit thread count; resizes a dynamic batch dimension on demand."""

    format = "tflite"

    def __init__(self, path: Path, threads: int) -> None:
        interpreter_cls, self.name, self.version = find_interpreter()
        _check_flatbuffer(path)
        try:
            self._it = interpreter_cls(model_path=str(path), num_threads=threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{path}: {self.name} cannot load it ({str(e).splitlines()[0][:300]}); the file is "
                                 f"not a valid TFLite model or was truncated in transit: copy it again") from None
        self.delegate = "XNNPACK"
        self.threads = threads
        ins, outs = self._it.get_input_details(), self._it.get_output_details()
        self.inputs = [_info(d) for d in ins]
        self.outputs = [_info(d) for d in outs]
        check_io(path, self.inputs, self.outputs)
        self._in_index, self._out_index = int(ins[0]["index"]), int(outs[0]["index"])
        self._batch = int(ins[0]["shape"][0]) if len(ins[0]["shape"]) else 1
        self._lock = threading.Lock()

    def invoke(self, x: np.ndarray) -> np.ndarray:
        with self._lock:  # a TFLite interpreter is not reentrant; ORT sessions are, so only this backend locks
            if x.shape[0] != self._batch:  # only reached for a dynamic batch dimension
                self._it.resize_tensor_input(self._in_index, list(x.shape))
                self._it.allocate_tensors()
                self._batch = x.shape[0]
            self._it.set_tensor(self._in_index, x)
            self._it.invoke()
            return self._it.get_tensor(self._out_index)  # a copy, safe after the lock is released


    def single_runner(self, shape: tuple[int, ...]) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
        """`Backend.single_runner` on the interpreter's own calls, bound once: the batch is sized here (not
        checked per call), and `call()` is set_tensor + invoke + get_tensor under the lock, what a bare loop
        does (the interpreter's tensor() views cannot stay bound: invoke() refuses to run while one is held)."""
        x = np.zeros(shape, np.dtype(self.inputs[0].dtype))
        it, lock, i, o = self._it, self._lock, self._in_index, self._out_index
        with lock:
            if shape[0] != self._batch:
                it.resize_tensor_input(i, list(shape))
                it.allocate_tensors()
                self._batch = shape[0]
        set_tensor, invoke, get_tensor = it.set_tensor, it.invoke, it.get_tensor

        def call() -> np.ndarray:
            with lock:
                if self._batch == shape[0]:
                    set_tensor(i, x)
                    invoke()
                    return get_tensor(o)
            return self.invoke(x)  # another batch size ran in between (predict_batch): resized back there

        return x, call


def _check_flatbuffer(path: Path) -> None:
    """Cheap sanity check before handing bytes to C++: the TFL3 identifier and a root offset inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelLoadError(f"{path}: not a TFLite model (no 'TFL3' identifier in its header); pass a .tflite "
                             f"written by `edgekd convert` or the TFLite converter")
    if int.from_bytes(head[:4], "little") >= size:
        raise ModelLoadError(f"{path}: the TFLite file is truncated ({size} bytes); copy it again")


def _info(d: dict) -> TensorInfo:
    sig = d.get("shape_signature")
    shape = tuple(int(s) for s in (sig if sig is not None and len(sig) else d["shape"]))
    scale, zp = d.get("quantization", (0.0, 0))
    return TensorInfo(name=d["name"], shape=shape, dtype=np.dtype(d["dtype"]).name, scale=float(scale),
                      zero_point=int(zp))
